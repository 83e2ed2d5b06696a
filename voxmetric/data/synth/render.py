"""Rendering source-filter speech: glottal source, vocal-tract filter, STFT overlap-add.

:func:`render_speech` turns a :class:`~voxmetric.data.synth.speech.Voice` and a lexicon
(:mod:`voxmetric.data.synth.speech`) into a waveform.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import irfft, rfft

from ...audio.io import SAMPLE_RATE_HZ
from .speech import (_OLA_GAIN, _WINDOW, HOP, N_FFT, TIMBRE_KNOTS_HZ, Voice, _BINS_HZ, _Z1, build_tracks,
                     f0_track, plan_segments)


# ---------------------------------------------------------------- source


def _glottal_flow_derivative(phase: np.ndarray, open_quotient: float, skew: float) -> np.ndarray:
    """Derivative (per unit phase) of a Rosenberg (1971) C-type pulse at ``phase`` in [0, 1)."""
    rise, fall = open_quotient * skew, open_quotient * (1.0 - skew)
    out = np.zeros_like(phase)
    rising = phase < rise
    falling = ~rising & (phase < open_quotient)
    out[rising] = 0.5 * np.pi / rise * np.sin(np.pi * phase[rising] / rise)
    out[falling] = -0.5 * np.pi / fall * np.sin(0.5 * np.pi * (phase[falling] - rise) / fall)
    return out


def glottal_source(f0_hz: np.ndarray, voice: Voice, rng: np.random.Generator, open_quotient: float):
    """Pulse train with jitter and shimmer, and the glottal flow (for breath noise).

    Args:
        f0_hz: ``(samples,)`` instantaneous F0.

    Returns:
        ``(derivative, flow)``, each ``(samples,)``.
    """
    n = len(f0_hz)
    period = int(SAMPLE_RATE_HZ / voice.f0_hz)
    jitter = np.repeat(rng.normal(0.0, voice.jitter, n // period + 1), period)[:n]
    phase = np.cumsum(f0_hz * (1.0 + jitter)) / SAMPLE_RATE_HZ
    cycle = phase.astype(np.int64)
    frac = phase - cycle
    shimmer = np.exp(rng.normal(0.0, voice.shimmer, cycle[-1] + 1))[cycle]
    derivative = _glottal_flow_derivative(frac, open_quotient, voice.pulse_skew) * shimmer
    flow = np.clip(frac / open_quotient, 0.0, 1.0)
    flow = np.where(frac < open_quotient, np.sin(np.pi * flow), 0.0)
    return derivative, flow


# ---------------------------------------------------------------- filter


def _resonator(freq_hz: np.ndarray, bandwidth_hz: np.ndarray) -> np.ndarray:
    """``(frames, bins)`` response of 2-pole resonators (Klatt 1980), unity gain at DC."""
    r = np.exp(-np.pi * bandwidth_hz / SAMPLE_RATE_HZ)[:, None]
    c = (2.0 * r * np.cos(2.0 * np.pi * freq_hz / SAMPLE_RATE_HZ)[:, None]).astype(np.float32)
    r2 = (r * r).astype(np.float32)
    z1 = _Z1.astype(np.complex64)
    return (1.0 - c + r2) / (1.0 - c * z1 + r2 * z1 * z1)


def tract_response(tracks: dict, voice: Voice) -> np.ndarray:
    """``(frames, bins)`` vocal-tract transfer function: F1-F5 cascade and nasal pair."""
    scale = 1.0 / voice.vtl_factor
    n_frames = len(tracks["voicing"])
    bandwidths = np.array([60.0, 90.0, 130.0, 200.0, 260.0]) * voice.bandwidth_scale
    bandwidths[0] *= 1.0 + 4.0 * voice.breathiness  # glottal losses widen B1
    formants = np.concatenate(
        [tracks["formants_hz"], np.tile([voice.f4_hz * scale, voice.f5_hz * scale], (n_frames, 1))], axis=1
    )
    response = np.ones((n_frames, len(_BINS_HZ)), dtype=np.complex64)
    for k in range(5):
        freq = np.minimum(formants[:, k], 0.45 * SAMPLE_RATE_HZ)
        response *= _resonator(freq, np.full(n_frames, bandwidths[k]))
    coupling, zero_hz = tracks["nasal"][:, 0], tracks["nasal"][:, 1]
    pole_hz = np.full(n_frames, 270.0 * scale)
    zero_hz = pole_hz + coupling * (zero_hz - pole_hz)  # coupling 0: zero cancels the pole
    nasal_bw = np.full(n_frames, 100.0)
    response *= _resonator(pole_hz, nasal_bw) / _resonator(zero_hz, nasal_bw)
    # The piriform sinuses put a speaker-specific notch at 4-5 kHz (Dang & Honda 1997).
    response /= _resonator(np.full(n_frames, voice.sinus_zero_hz * scale), np.full(n_frames, 400.0))
    return response


def frication_shape(tracks: dict) -> np.ndarray:
    """``(frames, bins)`` magnitude of the frication noise spectrum (peak ~1)."""
    centre, bandwidth = tracks["noise_hz"][:, 0], tracks["noise_hz"][:, 1]
    peak = np.abs(_resonator(np.minimum(centre, 7500.0), bandwidth))
    peak /= peak.max(axis=1, keepdims=True)
    highpass = (_BINS_HZ / 1000.0) ** 2 / (1.0 + (_BINS_HZ / 1000.0) ** 2)
    return (0.05 + peak) * highpass


def voice_colour(voice: Voice) -> np.ndarray:
    """``(bins,)`` gain of the speaker's long-term spectral colouring (timbre)."""
    log_bins = np.log(np.maximum(_BINS_HZ, 50.0))
    return 10.0 ** (np.interp(log_bins, np.log(TIMBRE_KNOTS_HZ), voice.timbre_db) / 20.0)


# ---------------------------------------------------------------- STFT


def _stft(signal: np.ndarray, n_frames: int) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(signal, N_FFT)[::HOP][:n_frames]
    return rfft(frames * _WINDOW, axis=1)


def _istft(spectrum: np.ndarray) -> np.ndarray:
    """Weighted overlap-add; output sample ``t * HOP + N_FFT // 2`` is frame ``t``'s centre."""
    frames = irfft(spectrum, n=N_FFT, axis=1) * (_WINDOW / _OLA_GAIN)
    n_frames = len(frames)
    blocks = frames.reshape(n_frames, N_FFT // HOP, HOP)
    out = np.zeros((n_frames + N_FFT // HOP - 1, HOP))
    for k in range(N_FFT // HOP):
        out[k : k + n_frames] += blocks[:, k]
    return out.reshape(-1)


def _to_samples(track: np.ndarray, n_samples: int) -> np.ndarray:
    """Frame-rate track -> per-sample values (frame centres at ``t * HOP + N_FFT / 2``)."""
    centres = np.arange(len(track)) * HOP + N_FFT // 2
    return np.interp(np.arange(n_samples), centres, track)


def render_speech(lexicon, voice: Voice, rng: np.random.Generator, duration_s: float) -> np.ndarray:
    """Clean speech of one utterance, ``(round(duration_s * 16000),)`` float64."""
    n_samples = round(duration_s * SAMPLE_RATE_HZ)
    n_frames = n_samples // HOP + 1
    rate = voice.speaking_rate * np.exp(rng.normal(0.0, 0.07))
    segments = plan_segments(lexicon, rng, rate, n_frames)
    tracks = build_tracks(segments, voice, n_frames)
    n_ex = (n_frames - 1) * HOP + N_FFT
    f0 = _to_samples(f0_track(segments, voice, rng, n_frames), n_ex)
    open_quotient = float(np.clip(voice.open_quotient + rng.normal(0.0, 0.03), 0.3, 0.85))
    derivative, flow = glottal_source(f0, voice, rng, open_quotient)
    voicing = _to_samples(tracks["voicing"], n_ex)
    breath = voice.breathiness * voicing * (0.3 + flow) + _to_samples(tracks["aspiration"], n_ex)
    excitation = voicing * derivative / 4.0 + breath * rng.standard_normal(n_ex)

    tilt_hz = voice.tilt_hz * np.exp(rng.normal(0.0, 0.15))  # vocal effort varies a little
    tilt = 1.0 / np.sqrt(1.0 + (_BINS_HZ / tilt_hz) ** 2)
    spectrum = _stft(excitation, n_frames) * tilt * tract_response(tracks, voice)
    noise = rng.standard_normal((n_frames, len(_BINS_HZ), 2)).astype(np.float32)
    # sqrt(0.75 N) per component gives unit-variance noise after overlap-add.
    noise = (noise[..., 0] + 1j * noise[..., 1]) * np.sqrt(0.75 * N_FFT)
    spectrum += noise * frication_shape(tracks) * tracks["frication"][:, None]
    spectrum *= voice_colour(voice)
    return _istft(spectrum)[N_FFT // 2 : N_FFT // 2 + n_samples]
