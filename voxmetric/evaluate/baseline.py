"""A training-free reference embedding: the mean MFCC vector of a file.

Scored with cosine similarity it is the floor any learned model must beat,
and the yardstick the built-in synthetic corpus is tuned against
(:mod:`voxmetric.data.synth`). Pure numpy/scipy.

Front-end: pre-emphasis 0.97, 25 ms Hamming frames every 10 ms, 512-point
power spectrum, 40 triangular mel filters (HTK mel scale, 0 Hz to Nyquist),
natural log, orthonormal DCT-II, coefficients c1..c20 (c0 is dropped: it only
follows the recording level), averaged over all frames (no voice activity
detection, so silence and background noise count too).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.fft import dct, rfft

from ..audio import dsp
from ..errors import ArgumentError

N_MELS = 40
N_COEFFICIENTS = 20
FRAME_S = 0.025
HOP_S = 0.010
PRE_EMPHASIS = 0.97


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int = N_MELS) -> np.ndarray:
    """``(n_fft // 2 + 1, n_mels)`` triangular filters from 0 Hz to Nyquist, peak 1, HTK mel
    spacing (:func:`voxmetric.audio.dsp.mel_filterbank`)."""
    return dsp.mel_filterbank(n_mels, n_fft, sample_rate_hz, 0.0, sample_rate_hz / 2).numpy()


def mfcc(waveform: np.ndarray, sample_rate_hz: int = 16_000) -> np.ndarray:
    """MFCCs c1..c20 of a mono waveform.

    Args:
        waveform: ``(samples,)`` float array.

    Returns:
        ``(frames, 20)`` float64; a waveform shorter than one frame is
        zero-padded to one frame.
    """
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1:
        raise ArgumentError(f"waveform must be 1-D (samples,), got shape {x.shape}")
    x = np.append(x[:1], x[1:] - PRE_EMPHASIS * x[:-1])
    frame = int(round(FRAME_S * sample_rate_hz))
    hop = int(round(HOP_S * sample_rate_hz))
    if len(x) < frame:
        x = np.pad(x, (0, frame - len(x)))
    n_fft = 1 << (frame - 1).bit_length()
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop] * np.hamming(frame)
    power = np.abs(rfft(frames, n=n_fft, axis=1)) ** 2
    log_mel = np.log(power @ mel_filterbank(sample_rate_hz, n_fft) + 1e-10)
    return dct(log_mel, type=2, norm="ortho", axis=1)[:, 1 : N_COEFFICIENTS + 1]


def mean_mfcc_embedding(waveform: np.ndarray, sample_rate_hz: int = 16_000) -> np.ndarray:
    """The mean over frames of :func:`mfcc`: a ``(20,)`` float64 embedding."""
    return mfcc(waveform, sample_rate_hz).mean(axis=0)
