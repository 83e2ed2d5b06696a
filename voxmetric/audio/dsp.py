"""Signal-processing pieces shared by features, the baseline, augmentation and the synthetic
corpus: the mel scale, triangular mel filters and synthetic room impulse responses."""

from __future__ import annotations

import numpy as np
import torch

from .io import SAMPLE_RATE_HZ


def hz_to_mel(hz):
    """HTK mel scale (O'Shaughnessy 1987): ``2595 log10(1 + f / 700)``; tensors stay tensors."""
    if isinstance(hz, torch.Tensor):
        return 2595.0 * torch.log10(1.0 + hz / 700.0)
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """Inverse of :func:`hz_to_mel`."""
    if isinstance(mel, torch.Tensor):
        return 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate_hz: int, f_min_hz: float, f_max_hz: float) -> torch.Tensor:
    """Triangular mel filters, ``(n_fft // 2 + 1, n_mels)`` float64, to right-multiply a power spectrum.

    Filter ``m`` rises linearly in mel from edge ``m`` to ``m + 1`` and falls to ``m + 2``,
    the ``n_mels + 2`` edges being equally spaced in mel between ``f_min_hz`` and ``f_max_hz``;
    peak 1. A filter holding no FFT bin (too many filters for ``n_fft``) is all zeros:
    callers that need every filter check ``weights.sum(0) > 0``.

    >>> mel_filterbank(40, 512, 16000, 20.0, 8000.0).shape
    torch.Size([257, 40])
    """
    bins_mel = hz_to_mel(torch.linspace(0.0, sample_rate_hz / 2, n_fft // 2 + 1, dtype=torch.float64)).unsqueeze(1)
    edges = torch.linspace(float(hz_to_mel(float(f_min_hz))), float(hz_to_mel(float(f_max_hz))), n_mels + 2,
                           dtype=torch.float64)
    rising = (bins_mel - edges[:-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[2:] - bins_mel) / (edges[2:] - edges[1:-1])
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def room_impulse_response(rng: np.random.Generator, rt60_s: float, drr_db: float, gap_s: float = 0.003,
                          sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Synthetic room: a direct path (1.0 at sample 0), then, after ``gap_s``, a Gaussian
    noise tail decaying exponentially to -60 dB at ``rt60_s`` whose energy is ``drr_db``
    below the direct path's. ``(samples,)`` float64, ``rt60_s`` long."""
    n = int(rt60_s * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    tail[: int(gap_s * sample_rate_hz)] = 0.0  # reflections arrive after the direct sound
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    tail[0] = 1.0
    return tail
