"""Reading, writing and resampling audio: the only module that touches soundfile.

Everything voxmetric computes works on 16 kHz mono float32 waveforms in [-1, 1].
:func:`read` returns that from any file libsndfile can decode (wav, flac, ogg,
...), whatever its sample rate, channel count or sample format, and can read a
segment without decoding the rest of the file. Every problem with a file is an
:class:`~voxmetric.errors.AudioError` whose message starts with the path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ..errors import AudioError
from ..fileio import atomic_path

SAMPLE_RATE_HZ = 16_000
"""Sample rate of every waveform inside voxmetric."""

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
"""File name endings that corpus readers treat as audio."""

CONTAINER_EXTENSIONS = (".m4a", ".aac", ".mp4")
"""AAC/MP4 containers libsndfile cannot read: convert them with ffmpeg (README, "Audio formats")."""


def readable_extensions() -> tuple[str, ...]:
    """File name endings this installation reads: :data:`AUDIO_EXTENSIONS`, plus ``.mp3`` when
    the installed libsndfile decodes MP3 (1.1 or newer)."""
    return AUDIO_EXTENSIONS + ((".mp3",) if "MP3" in sf.available_formats() else ())


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says, read without decoding samples."""

    path: str
    sample_rate_hz: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz


def _check_exists(path: str) -> None:
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def _open(path: str) -> sf.SoundFile:
    _check_exists(path)
    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        reason = str(error).split(":")[-1].strip() or "unknown error"
        suffix = Path(path).suffix.lower()
        if suffix in CONTAINER_EXTENSIONS:
            raise AudioError(f"{path}: '{suffix}' (AAC/MP4) is not readable here; convert it first: "
                             f"ffmpeg -i {path} -ac 1 -ar 16000 out.flac (README, 'Audio formats')") from None
        if suffix and suffix not in AUDIO_EXTENSIONS and "format" in reason.lower():
            raise AudioError(
                f"{path}: unsupported audio format '{suffix}' ({reason}); "
                f"use one of {', '.join(readable_extensions())}"
            ) from None
        raise AudioError(f"{path}: unreadable or corrupt audio ({reason})") from None


def info(path: str | os.PathLike) -> AudioInfo:
    """Header information of an audio file (no samples decoded).

    Raises:
        AudioError: the file is missing, empty, unreadable or holds no samples.
    """
    path = os.fspath(path)
    with _open(path) as f:
        result = AudioInfo(path, f.samplerate, f.channels, f.frames, f.format, f.subtype)
    if result.frames <= 0:
        raise AudioError(f"{path}: contains no samples (zero-length audio)")
    return result


def duration_s(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds, from its header."""
    return info(path).duration_s


def resample(waveform: np.ndarray, orig_hz: int, target_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Resample along the last axis with a polyphase anti-aliasing filter.

    Args:
        waveform: ``(..., samples)`` float array.
        orig_hz: sample rate of ``waveform``.
        target_hz: wanted sample rate.

    Returns:
        ``(..., round(samples * target_hz / orig_hz))`` float32 array.
    """
    orig_hz, target_hz = int(orig_hz), int(target_hz)
    if orig_hz <= 0 or target_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_hz} -> {target_hz}")
    if orig_hz == target_hz:
        return np.asarray(waveform, dtype=np.float32)
    common = gcd(orig_hz, target_hz)
    up, down = target_hz // common, orig_hz // common
    # Kaiser window (beta 5) as in scipy's default: ~-60 dB stop band, flat pass band.
    out = resample_poly(np.asarray(waveform, dtype=np.float64), up, down, axis=-1)
    return out.astype(np.float32)


def read(
    path: str | os.PathLike,
    start_s: float = 0.0,
    duration_s: float | None = None,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
) -> np.ndarray:
    """Read a file (or a segment of it) as a mono float32 waveform in [-1, 1].

    Only the requested segment is decoded (soundfile seeks to it). Stereo and
    multi-channel audio is averaged to mono; integer samples are scaled to
    [-1, 1]; any sample rate is resampled to ``sample_rate_hz``.

    Args:
        path: wav, flac, ogg or any format libsndfile reads.
        start_s: where the segment starts, in seconds from the start of the file.
        duration_s: segment length in seconds; ``None`` reads to the end. A
            segment running past the end of the file is returned shorter.
        sample_rate_hz: sample rate of the returned waveform.

    Returns:
        ``(samples,)`` float32 array.

    Raises:
        AudioError: missing, empty, corrupt or unsupported file, zero-length
            audio, a segment starting past the end, NaN or infinite samples.
    """
    path = os.fspath(path)
    if start_s < 0:
        raise AudioError(f"{path}: segment start {start_s} s is negative")
    if duration_s is not None and duration_s <= 0:
        raise AudioError(f"{path}: segment duration {duration_s} s must be positive")
    with _open(path) as f:
        if f.frames <= 0:
            raise AudioError(f"{path}: contains no samples (zero-length audio)")
        native_hz = f.samplerate
        first = int(round(start_s * native_hz))
        if first >= f.frames:
            raise AudioError(
                f"{path}: segment starts at {start_s:.3f} s, after the end of the "
                f"file ({f.frames / native_hz:.3f} s)"
            )
        count = -1 if duration_s is None else int(round(duration_s * native_hz))
        try:
            if first:
                f.seek(first)
            samples = f.read(frames=count, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"{path}: unreadable or corrupt audio ({error})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples (zero-length audio)")
    waveform = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if not np.isfinite(waveform).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    if native_hz != sample_rate_hz:
        waveform = resample(waveform, native_hz, sample_rate_hz)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def write(
    path: str | os.PathLike,
    waveform: np.ndarray,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    subtype: str | None = None,
) -> None:
    """Write a mono waveform atomically (temporary file, then rename).

    The format follows the file name ending (``.wav``, ``.flac``, ``.ogg``);
    wav and flac default to 16-bit PCM. A crash never leaves a half-written
    file under ``path``.
    """
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if suffix not in AUDIO_EXTENSIONS:
        raise AudioError(f"{path}: cannot write '{suffix}' audio; use one of {', '.join(AUDIO_EXTENSIONS)}")
    if subtype is None and suffix in (".wav", ".flac"):
        subtype = "PCM_16"
    data = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, data, int(sample_rate_hz), subtype=subtype, format=suffix[1:].upper())
