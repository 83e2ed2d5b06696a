"""Recording channels for the built-in corpus: microphone, room, background noise.

A :class:`Channel` is one recording session, shared by the utterances
recorded in it: a microphone colouring (random smooth EQ through 12 log-spaced
knots plus a spectral tilt, high-pass and sometimes a low-pass), a room
(none, or an exponentially decaying synthetic impulse response with random
RT60 and direct-to-reverberant ratio) and a coloured background noise whose
SNR varies around the session's. :func:`apply_channel` applies all of it in
one full-length FFT; each utterance also perturbs the EQ by ~1 dB, so two
recordings of one session are not identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft, rfftfreq

from ...audio import dsp
from ...audio.io import SAMPLE_RATE_HZ


@dataclass(frozen=True)
class Channel:
    """A recording session: microphone, room and background, shared by its utterances."""

    eq_knots_hz: np.ndarray  # (K,) log-spaced frequencies of the EQ curve
    eq_gain_db: np.ndarray  # (K,) microphone colouring at those frequencies
    highpass_hz: float
    lowpass_hz: float
    noise_slope_db_per_octave: float  # background colour (0 white, -3 pink, -6 brown)
    noise_peak_hz: float  # a resonance in the background (fan, hum, traffic)
    noise_peak_db: float
    snr_db: float  # session mean; utterances vary around it
    rt60_s: float  # 0: no reverberation
    drr_db: float  # direct-to-reverberant ratio


def draw_channel(rng: np.random.Generator) -> Channel:
    """A random session channel."""
    knots = np.geomspace(60.0, 7800.0, 12)
    tilt_db = rng.uniform(-1.0, 1.0) * np.log2(knots / 1000.0)
    reverberant = rng.random() < 0.5
    return Channel(
        eq_knots_hz=knots,
        eq_gain_db=rng.normal(0.0, rng.uniform(1.0, 3.0), size=len(knots)) + tilt_db,
        highpass_hz=float(np.exp(rng.uniform(np.log(40), np.log(150)))),
        lowpass_hz=float(8000.0 if rng.random() < 0.75 else rng.uniform(5000, 7500)),
        noise_slope_db_per_octave=float(rng.uniform(-6.0, 0.0)),
        noise_peak_hz=float(np.exp(rng.uniform(np.log(150), np.log(4000)))),
        noise_peak_db=float(rng.uniform(0.0, 15.0) if rng.random() < 0.5 else 0.0),
        snr_db=float(rng.uniform(10.0, 30.0)),
        rt60_s=float(rng.uniform(0.2, 0.7) if reverberant else 0.0),
        drr_db=float(rng.uniform(0.0, 10.0)),
    )


def _channel_gain(channel: Channel, freqs_hz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Microphone magnitude response at ``freqs_hz``; the utterance varies it by ~1 dB."""
    gain_db = channel.eq_gain_db + rng.normal(0.0, 1.0, size=len(channel.eq_gain_db))
    log_f = np.log(np.maximum(freqs_hz, 1.0))
    eq = 10.0 ** (np.interp(log_f, np.log(channel.eq_knots_hz), gain_db) / 20.0)
    highpass = 1.0 / np.sqrt(1.0 + (channel.highpass_hz / np.maximum(freqs_hz, 1.0)) ** 4)
    lowpass = 1.0 / np.sqrt(1.0 + (freqs_hz / channel.lowpass_hz) ** 8)
    return eq * highpass * lowpass


def _noise_colour(channel: Channel, freqs_hz: np.ndarray) -> np.ndarray:
    octaves = np.log2(np.maximum(freqs_hz, 20.0) / 1000.0)
    colour_db = channel.noise_slope_db_per_octave * octaves
    distance = np.log2(np.maximum(freqs_hz, 20.0) / channel.noise_peak_hz)
    colour_db += channel.noise_peak_db * np.exp(-0.5 * (distance / 0.3) ** 2)
    return 10.0 ** (colour_db / 20.0)


def room_impulse_response(channel: Channel, rng: np.random.Generator) -> np.ndarray:
    """The channel's room (:func:`voxmetric.audio.dsp.room_impulse_response`, 2 ms gap)."""
    return dsp.room_impulse_response(rng, channel.rt60_s, channel.drr_db, gap_s=0.002)


def apply_channel(speech: np.ndarray, channel: Channel, rng: np.random.Generator) -> np.ndarray:
    """Reverberation, background noise at the utterance's SNR, microphone colouring.

    Returns:
        ``(len(speech),)`` float32, RMS around -26 dBFS, peak below 1.
    """
    n = len(speech)
    rir = room_impulse_response(channel, rng) if channel.rt60_s > 0 else np.ones(1)
    n_fft = next_fast_len(n + len(rir) - 1, real=True)
    freqs = rfftfreq(n_fft, 1 / SAMPLE_RATE_HZ)
    spectrum = rfft(speech, n_fft) * rfft(rir, n_fft)
    white = rng.standard_normal((len(freqs), 2))
    noise = (white[:, 0] + 1j * white[:, 1]) * _noise_colour(channel, freqs)
    snr_db = np.clip(channel.snr_db + rng.normal(0.0, 3.0), 5.0, 30.0)
    energy_ratio = np.sum(np.abs(spectrum) ** 2) / np.sum(np.abs(noise) ** 2)
    spectrum += noise * np.sqrt(energy_ratio * 10.0 ** (-snr_db / 10.0))
    out = irfft(spectrum * _channel_gain(channel, freqs, rng), n_fft)[:n]
    level_db = -26.0 + rng.uniform(-6.0, 6.0)
    out *= 10.0 ** (level_db / 20.0) / (np.sqrt(np.mean(out**2)) + 1e-12)
    peak = np.max(np.abs(out))
    if peak > 0.99:  # quieter rather than clipped
        out *= 0.99 / peak
    return out.astype(np.float32)
