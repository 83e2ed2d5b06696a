"""Generated noise, room impulse responses and recording degradations.

No MUSAN or RIRS_NOISES can be downloaded here, so voxmetric makes its own:

- :func:`write_noise_folder` writes background noises (coloured noise with
  resonances, mains hum with harmonics, babble of synthetic talkers) usable as
  ``data.augmentation.noise_dir``;
- :func:`write_rir_folder` writes synthetic room impulse responses (direct path
  plus an exponentially decaying diffuse tail) usable as ``rir_dir``;
- :func:`degrade` turns one clean recording into a realistic bad one (noise,
  reverberation, telephone band, tilt, gain), each with a probability, so
  that two files of one speaker end up on different channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.fft import irfft, next_fast_len, rfftfreq
from scipy.signal import fftconvolve

from .. import audio
from ..audio import dsp
from .augment import add_noise, band_limit, eq_tilt

SAMPLE_RATE_HZ = audio.SAMPLE_RATE_HZ


def coloured_noise(rng: np.random.Generator, samples: int, slope_db_per_octave: float,
                   peak_hz: float | None = None, peak_db: float = 0.0) -> np.ndarray:
    """Gaussian noise with a spectral slope (0 white, -3 pink, -6 brown) and an optional resonance."""
    n_fft = next_fast_len(samples, real=True)
    freqs = rfftfreq(n_fft, 1 / SAMPLE_RATE_HZ)
    octaves = np.log2(np.maximum(freqs, 20.0) / 1000.0)
    colour_db = slope_db_per_octave * octaves
    if peak_hz:
        colour_db += peak_db * np.exp(-0.5 * (np.log2(np.maximum(freqs, 20.0) / peak_hz) / 0.3) ** 2)
    spectrum = (rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))) * 10 ** (colour_db / 20)
    noise = irfft(spectrum, n_fft)[:samples]
    return (noise / (np.std(noise) + 1e-12)).astype(np.float32)


def hum(rng: np.random.Generator, samples: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and decaying harmonics, with a little broadband noise."""
    t = np.arange(samples) / SAMPLE_RATE_HZ
    base_hz = 50.0 if rng.random() < 0.5 else 60.0
    x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base_hz * k * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 12))
    x = x + 0.05 * coloured_noise(rng, samples, 0.0)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def babble(rng: np.random.Generator, samples: int, talkers: int, seed: int) -> np.ndarray:
    """Several synthetic talkers at once (speakers not in any corpus: seed offset)."""
    from .synth.corpus import render_utterance

    mix = np.zeros(samples, dtype=np.float64)
    for talker in range(talkers):
        speech = np.zeros(0, dtype=np.float32)
        utterance = 0
        while len(speech) < samples:
            speech = np.concatenate([speech, render_utterance(seed, talker, 0, utterance)])
            utterance += 1
        offset = rng.integers(0, len(speech) - samples + 1)
        piece = speech[offset:offset + samples]
        mix += piece / (np.std(piece) + 1e-12)
    return (mix / (np.std(mix) + 1e-12)).astype(np.float32)


def room_impulse_response(rng: np.random.Generator, rt60_s: float, drr_db: float) -> np.ndarray:
    """:func:`voxmetric.audio.dsp.room_impulse_response` (3 ms gap), peak 1, float32."""
    tail = dsp.room_impulse_response(rng, rt60_s, drr_db, gap_s=0.003)
    return (tail / np.max(np.abs(tail))).astype(np.float32)


def make_noise(index: int, duration_s: float = 10.0, seed: int = 0) -> tuple[str, np.ndarray]:
    """Noise number ``index`` of a seeded family: ``(kind, (samples,) float32)``, kinds in turn."""
    rng = np.random.default_rng([seed, index])
    samples = int(duration_s * SAMPLE_RATE_HZ)
    kind = ("coloured", "hum", "babble")[index % 3]
    if kind == "coloured":
        x = coloured_noise(rng, samples, rng.uniform(-6, 0), np.exp(rng.uniform(np.log(100), np.log(5000))),
                           rng.uniform(0, 15))
    elif kind == "hum":
        x = hum(rng, samples)
    else:
        x = babble(rng, samples, talkers=int(rng.integers(3, 8)), seed=10_000 + seed * 100 + index)
    return kind, (0.25 * x / (np.max(np.abs(x)) + 1e-12)).astype(np.float32)


def write_noise_folder(out_dir: str | Path, files: int = 48, duration_s: float = 10.0, seed: int = 0) -> Path:
    """Write ``files`` background noises of ``duration_s`` (a third each: coloured, hum, babble)."""
    out = Path(out_dir)
    for i in range(files):
        kind, x = make_noise(i, duration_s, seed)
        audio.write(out / f"{kind}-{i:03d}.wav", x)
    return out


def write_rir_folder(out_dir: str | Path, files: int = 64, seed: int = 0) -> Path:
    """Write ``files`` synthetic RIRs with RT60 in 0.2-0.9 s and DRR in -3..10 dB."""
    out = Path(out_dir)
    for i in range(files):
        rng = np.random.default_rng([seed, 1, i])
        rir = room_impulse_response(rng, rng.uniform(0.2, 0.9), rng.uniform(-3.0, 10.0))
        audio.write(out / f"rir-{i:03d}.wav", 0.99 * rir)
    return out


@dataclass(frozen=True)
class Degradation:
    """What :func:`degrade` did to one file."""

    snr_db: float | None
    rt60_s: float | None
    telephone: bool
    tilt_db_per_octave: float
    gain_db: float

    def describe(self) -> str:
        parts = []
        if self.rt60_s is not None:
            parts.append(f"reverb RT60 {self.rt60_s:.2f} s")
        if self.snr_db is not None:
            parts.append(f"noise {self.snr_db:.1f} dB SNR")
        if self.telephone:
            parts.append("telephone band (8 kHz)")
        parts.append(f"tilt {self.tilt_db_per_octave:+.1f} dB/oct, gain {self.gain_db:+.1f} dB")
        return ", ".join(parts)


def degrade(waveform: np.ndarray, rng: np.random.Generator, noise_bank: list[np.ndarray],
            snr_db: tuple[float, float] = (5.0, 20.0)) -> tuple[np.ndarray, Degradation]:
    """One realistic bad recording of ``waveform`` (16 kHz): each effect with a probability.

    Reverberation (p 0.5), additive noise from ``noise_bank`` (p 0.8) at an SNR
    drawn in ``snr_db``, telephone channel (p 0.4: 300-3400 Hz band and a round
    trip through 8 kHz), spectral tilt of +-4 dB/octave and a gain of -12..+6 dB.
    """
    x = np.asarray(waveform, dtype=np.float32)
    rt60_s = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.5 else None
    if rt60_s is not None:
        rir = room_impulse_response(rng, rt60_s, rng.uniform(0.0, 8.0))
        wet = fftconvolve(x, rir)[: len(x)]
        x = (wet * np.sqrt(np.mean(x**2) / (np.mean(wet**2) + 1e-20))).astype(np.float32)
    snr = float(rng.uniform(*snr_db)) if rng.random() < 0.8 else None
    if snr is not None:
        noise = noise_bank[rng.integers(len(noise_bank))]
        noise = np.resize(noise, len(x)) if len(noise) < len(x) else noise
        start = rng.integers(0, len(noise) - len(x) + 1)
        x = add_noise(x[None], noise[None, start:start + len(x)], np.array([snr]))[0]
    telephone = bool(rng.random() < 0.4)
    if telephone:
        x = audio.resample(audio.resample(band_limit(x[None])[0], SAMPLE_RATE_HZ, 8000), 8000, SAMPLE_RATE_HZ)
        x = np.resize(x, len(waveform)) if len(x) != len(waveform) else x
    tilt = float(rng.uniform(-4.0, 4.0))
    x = eq_tilt(x[None], np.array([tilt]))[0]
    gain = float(rng.uniform(-12.0, 6.0))
    x = x * 10 ** (gain / 20)
    peak = np.max(np.abs(x))
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32), Degradation(snr, rt60_s, telephone, tilt, gain)
