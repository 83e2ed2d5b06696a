"""The noise and room-impulse-response banks augmentation draws from: folders of audio files,
read once per process in a fixed order (every DataLoader worker builds the same bank)."""

from __future__ import annotations

import os
import warnings

import numpy as np

from .. import audio
from ..audio.io import readable_extensions
from ..errors import AudioError, ConfigError
from .scan import audio_files_under

MAX_RIR_DURATION_S = 2.0
"""RIRs are cut after this long: later tails hold little energy and lengthen every FFT."""


def stack_rirs(rirs) -> np.ndarray:
    """``(B, L)`` float64 from an array or a list of 1-D RIRs of any lengths."""
    if isinstance(rirs, np.ndarray) and rirs.ndim == 2:
        return rirs.astype(np.float64, copy=False)
    rows = [np.asarray(r, dtype=np.float64).ravel() for r in rirs]
    stacked = np.zeros((len(rows), max(len(r) for r in rows)), dtype=np.float64)
    for i, row in enumerate(rows):  # once per RIR list, not per sample
        stacked[i, : len(row)] = row
    return stacked


def check_has_audio(field: str, folder: str) -> None:
    """Fail early (in the main process) on a missing folder or one without audio (found as the
    banks find it: :func:`voxmetric.data.scan.audio_files_under`)."""
    if not os.path.isdir(folder):
        raise ConfigError(f"{field}: {folder} is not a folder")
    if not audio_files_under(folder):
        raise ConfigError(f"{field}: {folder} holds no audio files ({', '.join(readable_extensions())})")


def _shuffled(paths: list[str]) -> list[str]:
    # A fixed seed: every worker must build the same bank, and a sorted prefix
    # would take all of the budget from the first sub-folder.
    order = np.random.default_rng(0).permutation(len(paths))
    return [paths[i] for i in order]


def read_noise_bank(folder: str, max_noise_s: float, sample_rate_hz: int) -> np.ndarray:
    """Concatenated noise files, up to ``max_noise_s``: ``(samples,)`` float32."""
    budget = int(round(max_noise_s * sample_rate_hz))
    pieces, total = [], 0
    for path in _shuffled(audio_files_under(folder)):
        if total >= budget:
            break
        try:
            piece = audio.read(path, 0.0, (budget - total) / sample_rate_hz, sample_rate_hz)
        except AudioError as error:
            warnings.warn(f"noise_dir: skipping unreadable noise file: {error}", stacklevel=2)
            continue
        pieces.append(piece[: budget - total])
        total += len(pieces[-1])
    if not pieces:
        raise ConfigError(f"noise_dir: {folder} holds no readable audio file")
    return np.concatenate(pieces)


def read_rirs(folder: str, max_rir_files: int, sample_rate_hz: int) -> np.ndarray:
    """Up to ``max_rir_files`` RIRs, zero-padded: ``(files, L)`` float64."""
    paths = [p for p in audio_files_under(folder) if "noise" not in os.path.relpath(p, folder).lower()]
    rirs = []
    for path in _shuffled(paths)[:max_rir_files]:
        try:
            rirs.append(audio.read(path, 0.0, MAX_RIR_DURATION_S, sample_rate_hz))
        except AudioError as error:
            warnings.warn(f"rir_dir: skipping unreadable impulse response: {error}", stacklevel=2)
    if not rirs:
        raise ConfigError(f"rir_dir: {folder} holds no readable impulse response (files named *noise* are left out)")
    return stack_rirs(rirs)
