"""Reading, writing and resampling audio: the only module that touches soundfile.

Everything voxmetric computes works on 16 kHz mono float32 waveforms in [-1, 1].
:func:`read` returns that from any file libsndfile can decode (wav, flac, ogg,
...), whatever its sample rate, channel count or sample format, and can read a
segment without decoding the rest of the file. Every problem with a file is an
:class:`~voxmetric.errors.AudioError` whose message starts with the path.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
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

MIN_SAMPLE_RATE_HZ = 4_000
MAX_SAMPLE_RATE_HZ = 384_000
"""Sample rates outside this range are refused as corrupt headers (no real recording has them)."""

MAX_CHANNELS = 32
"""Files declaring more channels are refused."""

MAX_DURATION_S = 4 * 3600.0
"""Longest audio a file may declare (and :func:`read` decodes): a header claiming more
is refused before anything is allocated. Change it here for longer recordings."""

READ_BLOCK_FRAMES = 1 << 16
"""Frames decoded per block: memory follows the samples actually in the file, never the
length its header claims."""

_UNKNOWN_FRAMES = 1 << 62
"""libsndfile reports a file whose header leaves the length unknown (a FLAC whose encoder wrote
to a pipe: STREAMINFO total_samples 0) as holding 2**63 - 1 frames: at least this many means
"unknown", and the samples are counted by decoding them."""

_MAX_RESAMPLE_FACTOR = 1000
"""Odd sample-rate ratios (e.g. 44101 -> 16000 Hz) are approximated by a ratio of integers
at most this large (relative pitch error below 1e-5) instead of a filter of millions of taps."""
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
    counted_to_limit: bool = False  # the header left the length unknown and counting stopped at a limit

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
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OverflowError, MemoryError) as error:
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
    try:
        _check_header(path, f.samplerate, f.channels, f.frames)
    except AudioError:
        f.close()
        raise
    return f


def array_rate(sample_rate_hz, source: str = "input array") -> int:
    """The sample rate given with an array (None: 16 kHz), checked: a whole number of Hz within
    the rates files may have (:data:`MIN_SAMPLE_RATE_HZ`..:data:`MAX_SAMPLE_RATE_HZ`).

    Raises:
        AudioError: naming ``source`` and the value.
    """
    if sample_rate_hz is None:
        return SAMPLE_RATE_HZ
    try:
        rate = float(sample_rate_hz)
    except (TypeError, ValueError):
        rate = math.nan
    if isinstance(sample_rate_hz, bool) or not math.isfinite(rate) or rate != int(rate) or \
            not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(f"{source}: sample rate {sample_rate_hz!r} must be a whole number of Hz from "
                         f"{MIN_SAMPLE_RATE_HZ} to {MAX_SAMPLE_RATE_HZ}")
    return int(rate)


def _check_header(path: str, sample_rate_hz: int, channels: int, frames: int) -> None:
    """Refuse headers no real recording has, before any sample is decoded or allocated."""
    if not MIN_SAMPLE_RATE_HZ <= sample_rate_hz <= MAX_SAMPLE_RATE_HZ:
        raise AudioError(f"{path}: corrupt header or unsupported audio: sample rate {sample_rate_hz} Hz is "
                         f"outside {MIN_SAMPLE_RATE_HZ}-{MAX_SAMPLE_RATE_HZ} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{path}: corrupt header or unsupported audio: {channels} channels "
                         f"(at most {MAX_CHANNELS})")
    if frames >= _UNKNOWN_FRAMES:
        return  # "length unknown" (a FLAC written to a pipe): reading stops at MAX_DURATION_S
    if frames > MAX_DURATION_S * sample_rate_hz:
        raise AudioError(f"{path}: corrupt header or too long: it declares {frames / sample_rate_hz / 3600:.1f} h "
                         f"of audio, more than the {MAX_DURATION_S / 3600:g} h limit "
                         f"(voxmetric.audio.io.MAX_DURATION_S)")


def info(path: str | os.PathLike, stop_after_frames: int | None = None) -> AudioInfo:
    """Header information of an audio file (no samples decoded).

    A header that leaves the length unknown (a FLAC written to a pipe) has its frames counted
    by decoding; with ``stop_after_frames`` the count stops as soon as it passes that many
    (``frames`` is then only a lower bound and ``counted_to_limit`` is true): a caller with a
    length limit learns that it is exceeded without decoding the rest.

    Raises:
        AudioError: the file is missing, empty, unreadable or holds no samples.
    """
    path = os.fspath(path)
    with _open(path) as f:
        frames = f.frames if f.frames < _UNKNOWN_FRAMES else _count_frames(path, f, stop_after_frames)
        stopped = f.frames >= _UNKNOWN_FRAMES and stop_after_frames is not None and frames > stop_after_frames
        result = AudioInfo(path, f.samplerate, f.channels, frames, f.format, f.subtype, stopped)
    if result.frames <= 0:
        raise AudioError(f"{path}: contains no samples (zero-length audio)")
    return result


def _count_frames(path: str, f: sf.SoundFile, stop_after: int | None = None) -> int:
    """Frames of a file whose header does not say, by decoding it block by block (nothing kept);
    past ``stop_after`` frames, the count so far."""
    limit, total = int(MAX_DURATION_S * f.samplerate), 0
    stop = limit if stop_after is None else min(limit, stop_after)
    try:
        while total <= stop:
            count = _read_block(f, READ_BLOCK_FRAMES).shape[0]
            total += count
            if count < READ_BLOCK_FRAMES:
                break
    except (sf.LibsndfileError, RuntimeError) as error:
        if not total:
            raise AudioError(f"{path}: unreadable or corrupt audio ({error})") from None
    if total > limit:
        raise AudioError(f"{path}: too long: more than the {MAX_DURATION_S / 3600:g} h limit "
                         f"(voxmetric.audio.io.MAX_DURATION_S)")
    return total


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
    length = None
    if max(up, down) > _MAX_RESAMPLE_FACTOR:  # an odd rate: approximate the ratio, fix the length after
        ratio = Fraction(target_hz, orig_hz).limit_denominator(_MAX_RESAMPLE_FACTOR)
        up, down = ratio.numerator, ratio.denominator
        length = int(round(np.shape(waveform)[-1] * target_hz / orig_hz))
    # Kaiser window (beta 5) as in scipy's default: ~-60 dB stop band, flat pass band.
    out = resample_poly(np.asarray(waveform, dtype=np.float64), up, down, axis=-1)
    if length is not None and out.shape[-1] != length:
        if out.shape[-1] > length:
            out = out[..., :length]
        else:
            pad = [(0, 0)] * (out.ndim - 1) + [(0, length - out.shape[-1])]
            out = np.pad(out, pad, mode="edge" if out.shape[-1] else "constant")
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
        limit = int(MAX_DURATION_S * native_hz)
        count = limit if duration_s is None else min(limit, int(round(duration_s * native_hz)))
        try:
            if first:
                f.seek(first)
            waveform = _read_blocks(path, f, count)
        except (sf.LibsndfileError, RuntimeError, ValueError, OverflowError) as error:
            raise AudioError(f"{path}: unreadable or corrupt audio ({error})") from None
        except MemoryError:
            raise AudioError(f"{path}: corrupt audio (decoding it needs more memory than there is)") from None
    if waveform.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples (zero-length audio)")
    if native_hz != sample_rate_hz:
        waveform = resample(waveform, native_hz, sample_rate_hz)
    return np.ascontiguousarray(waveform, dtype=np.float32)


def _read_blocks(path: str, f: sf.SoundFile, count: int) -> np.ndarray:
    """Up to ``count`` frames from the current position, mixed to mono, block by block:
    only what the file really holds is allocated and returned, whatever its header claims
    (a file whose data ends early, e.g. truncated, gives the samples it has)."""
    blocks, total = [], 0
    while total < count:
        wanted = min(READ_BLOCK_FRAMES, count - total)
        try:
            block = _read_block(f, wanted)
        except (sf.LibsndfileError, RuntimeError):
            if not blocks:
                raise
            break  # the data ends before the header says (a truncated file): keep what was decoded
        if block.shape[0] == 0:
            break
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()
        if not np.isfinite(mono).all():
            raise AudioError(f"{path}: contains NaN or infinite samples")
        blocks.append(mono)
        total += mono.shape[0]
        if block.shape[0] < wanted:
            break  # a short block: the end of the data
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def _read_block(f: sf.SoundFile, frames: int) -> np.ndarray:
    """``(<= frames, channels)`` float32 from the current position.

    ``SoundFile.read`` seeks to ``position + frames read`` after reading, which fails
    (losing the block) where a header claims more frames than the data holds; libsndfile's
    ``sf_readf_float`` is called directly instead when soundfile exposes it.
    """
    snd, ffi, handle = getattr(sf, "_snd", None), getattr(sf, "_ffi", None), getattr(f, "_file", None)
    if snd is None or ffi is None or handle is None:
        return f.read(frames=frames, dtype="float32", always_2d=True)
    out = np.empty((frames, f.channels), dtype=np.float32)
    count = snd.sf_readf_float(handle, ffi.cast("float *", out.ctypes.data), frames)
    if count <= 0 and snd.sf_error(handle):
        raise RuntimeError(ffi.string(snd.sf_strerror(handle)).decode("utf-8", "replace"))
    return out[:max(0, count)]


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
