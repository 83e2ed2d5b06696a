"""The one front-end: a recording in, the network's input and one embedding out.

Every number voxmetric reports for a network comes through :class:`Frontend`:
training validation, ``compare``, ``eval`` of a checkpoint, ``embed``, ``calibrate``,
``verify``, ``enroll``, ``identify`` and ``serve``. Its steps, in order:

1. read the file (or take the array) and convert it to 16 kHz mono float32
   (:func:`voxmetric.audio.read`, :func:`voxmetric.audio.resample`);
2. high-pass it (70 Hz: DC offset and hum, :func:`voxmetric.audio.vad.highpass`), assess
   it (speech duration, SNR, clipping, source rate, band limit:
   :mod:`voxmetric.audio.quality`) and, with ``vad``, keep only its speech
   (:mod:`voxmetric.audio.vad`);
3. scale it to ``rms_dbfs`` when the model was trained at a fixed level;
4. embed it: the mean of sliding ``window_s`` windows every ``step_s``, or the whole
   waveform at once (``window_s=None``; memory-bounded on long inputs, see
   :mod:`voxmetric.evaluate.extract`) (:func:`voxmetric.evaluate.extract.embed_waveform`).

A 1-hour file stays under 1 GB peak resident memory with the bundled models
(``benchmarks/embed_memory.py``): the waveform is float32 throughout (230 MB an hour),
filtered and scaled in place, and the VAD works on blocks of frames.

The settings (:class:`FrontendSettings`) are recorded next to every result: in
``results.json``, in embeddings files, in checkpoints and in exported weights.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from .. import audio
from ..audio.quality import QualityReport, load_speech
from ..errors import ArgumentError, AudioError
from ..evaluate.extract import DEFAULT_STEP_S, DEFAULT_WINDOW_S, embed_waveform, embed_waveform_each
from ..fileio import progress_bar

SILENCE_DBFS = -90.0
"""Input quieter than this (RMS, dB re full scale) is refused as silent: nothing to embed."""

MAX_ARRAY_CHANNELS = 8
"""Most channels an input array may have (they are averaged to mono)."""

_KEYS = ("vad", "window_s", "step_s", "rms_dbfs")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class FrontendSettings:
    """How a recording becomes one embedding.

    Attributes:
        vad: trim non-speech before embedding (an input without speech is then an error).
        window_s: sliding-window length in seconds; ``None`` embeds the whole input at once.
        step_s: hop between windows in seconds.
        rms_dbfs: RMS level in dB re full scale the input is scaled to before embedding
            (the level the model was trained at), or ``None`` to leave the level alone.
    """

    vad: bool = True
    window_s: float | None = DEFAULT_WINDOW_S
    step_s: float = DEFAULT_STEP_S
    rms_dbfs: float | None = None

    def __post_init__(self):
        if not isinstance(self.vad, bool):
            raise ArgumentError(f"front-end vad must be true or false, got {self.vad!r}")
        if self.window_s is not None and not (_finite(self.window_s) and self.window_s > 0):
            raise ArgumentError(f"front-end window_s must be a positive number or None, got {self.window_s!r}")
        if not (_finite(self.step_s) and self.step_s > 0):
            raise ArgumentError(f"front-end step_s must be a positive number, got {self.step_s!r}")
        if self.rms_dbfs is not None and not (_finite(self.rms_dbfs) and self.rms_dbfs < 0):
            raise ArgumentError(f"front-end rms_dbfs must be a negative number (dB re full scale) or None, "
                                f"got {self.rms_dbfs!r}")

    @classmethod
    def from_dict(cls, data: Any) -> "FrontendSettings":
        """From ``{"vad", "window_s", "step_s", "rms_dbfs"}`` (any subset; the rest default)."""
        if isinstance(data, FrontendSettings):
            return data
        if not isinstance(data, dict) or not set(data) <= set(_KEYS):
            raise ArgumentError(f"front-end settings must be a mapping with keys {', '.join(_KEYS)}; got {data!r}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes) -> "FrontendSettings":
        unknown = sorted(set(changes) - set(_KEYS))
        if unknown:
            raise ArgumentError(f"unknown front-end setting {unknown[0]!r}; the settings are {', '.join(_KEYS)}")
        return replace(self, **changes)


def as_mono(samples, sample_rate_hz: int | None) -> np.ndarray:
    """An input array as ``(samples,)`` float32 at 16 kHz.

    ``samples`` is ``(samples,)`` mono or ``(samples, channels)`` / ``(channels, samples)``
    with at most :data:`MAX_ARRAY_CHANNELS` channels (averaged); float in [-1, 1] or
    int16 / int32 PCM (scaled); ``sample_rate_hz`` is its rate (default 16000).
    """
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().cpu().numpy()
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    elif samples.dtype == np.int32:
        samples = samples.astype(np.float32) / 2147483648.0
    elif not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"input array: unsupported sample type {samples.dtype}; use float, int16 or int32")
    if samples.ndim == 2:
        channel_axis = int(np.argmin(samples.shape))
        if samples.shape[channel_axis] > MAX_ARRAY_CHANNELS:
            raise AudioError(f"input array: shape {samples.shape} is not (samples,), (samples, channels) or "
                             f"(channels, samples) with at most {MAX_ARRAY_CHANNELS} channels")
        samples = samples.mean(axis=channel_axis)
    elif samples.ndim != 1:
        raise AudioError(f"input array: expected (samples,) or (samples, channels), got shape {samples.shape}")
    samples = samples.astype(np.float32)
    if samples.size == 0:
        raise AudioError("input array: contains no samples")
    if not np.isfinite(samples).all():
        raise AudioError("input array: contains NaN or infinite samples")
    if sample_rate_hz is not None and int(sample_rate_hz) != audio.SAMPLE_RATE_HZ:
        samples = audio.resample(samples, int(sample_rate_hz), audio.SAMPLE_RATE_HZ)
    return samples


def rms_level(waveform: np.ndarray, chunk: int = 1 << 20) -> float:
    """RMS of a ``(samples,)`` waveform, summed in float64 chunk by chunk (no float64 copy of the whole)."""
    total = 0.0
    for first in range(0, waveform.shape[0], chunk):
        piece = waveform[first:first + chunk].astype(np.float64)
        total += float(np.einsum("i,i->", piece, piece))  # not np.dot: BLAS threads spin on a loaded machine
    return math.sqrt(total / max(waveform.shape[0], 1))


def check_several(items, what: str) -> list:
    """``items`` (a list or other iterable of inputs) as a list; one path or one array, which
    would be taken apart character by character or row by row, is an error."""
    if isinstance(items, (str, os.PathLike, bytes, np.ndarray, torch.Tensor)) or not hasattr(items, "__iter__"):
        raise ArgumentError(f"{what}: give a list of files or arrays, got {type(items).__name__} "
                            f"(for one input, put it in a list)")
    return list(items)


ARRAY_NAME = "input array"
"""How an array input is named in messages (a file is named by its path)."""


def source_name(item) -> str:
    """How an input is named in messages: its path, or :data:`ARRAY_NAME`."""
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else ARRAY_NAME


class Frontend:
    """A network with its front-end settings: files or arrays in, embeddings out.

    Args:
        network: maps ``(batch, samples)`` float32 at 16 kHz to ``(batch, dim)``; used in
            eval mode under ``torch.inference_mode``.
        settings: :class:`FrontendSettings` (default: VAD on, 3 s windows every 0.1 s).
        device: where the network runs.
        cache: a :class:`~voxmetric.inference.prepared_cache.PreparedCache` that keeps the
            prepared waveforms of files (steps 1-3) for the next front-end with the same
            ``vad`` and ``rms_dbfs``: validation and comparisons, which embed the same files
            with changing networks. None (default): every call reads the file.

    Each input is embedded on its own, so a batch gives exactly the embeddings of its
    items alone (no padding).
    """

    def __init__(self, network: torch.nn.Module, settings: FrontendSettings = FrontendSettings(),
                 device: str | torch.device = "cpu", cache=None):
        self.network = network
        self.settings = FrontendSettings.from_dict(settings)
        self.device = torch.device(device)
        self.cache = cache

    def __repr__(self) -> str:
        return f"Frontend({type(self.network).__name__}, {self.settings}, device={str(self.device)!r})"

    @property
    def embedding_dim(self) -> int:
        return self.network.embedding_dim

    def to(self, device: str | torch.device) -> "Frontend":
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def prepare(self, item, sample_rate_hz: int | None = None) -> tuple[np.ndarray, QualityReport]:
        """``(waveform, report)``: the input read, assessed, trimmed (``vad``) and level-normalised,
        as the ``(samples,)`` 16 kHz float32 waveform the network sees.

        Raises:
            AudioError: unreadable, empty, non-finite or silent input (named).
            NoSpeechError: ``vad`` is on and the input holds no speech.
        """
        source = source_name(item)
        if isinstance(item, (str, os.PathLike)):  # its rate is in its header: sample_rate_hz is for arrays
            if self.cache is None:
                return self._prepare_file(source)
            shaping = (self.settings.vad, self.settings.rms_dbfs)
            return self.cache.get(item, shaping, lambda: self._prepare_file(source))
        waveform, report = load_speech(as_mono(item, None), sample_rate_hz=sample_rate_hz, vad=self.settings.vad)
        return self._normalise_level(waveform, source), report

    def _prepare_file(self, source: str) -> tuple[np.ndarray, QualityReport]:
        waveform, report = load_speech(source, vad=self.settings.vad)
        return self._normalise_level(waveform, source), report

    def _normalise_level(self, waveform: np.ndarray, source: str) -> np.ndarray:
        if waveform.size == 0:
            raise AudioError(f"{source}: contains no samples")
        if not np.isfinite(waveform).all():
            raise AudioError(f"{source}: contains NaN or infinite samples")
        rms = rms_level(waveform)
        level_db = 20 * math.log10(rms) if rms > 0 else -math.inf
        if level_db < SILENCE_DBFS:
            raise AudioError(f"{source}: input is silent (RMS level {level_db:.1f} dBFS, below {SILENCE_DBFS:.0f}); "
                             f"nothing to embed")
        if self.settings.rms_dbfs is None:
            return waveform
        gain = np.float32(10 ** ((self.settings.rms_dbfs - level_db) / 20))
        # In place: load_speech always returns a fresh array (high-passed, trimmed), so no
        # second copy of a long recording is made here.
        waveform = np.asarray(waveform, dtype=np.float32)
        waveform *= gain
        return waveform

    def embed(self, item, sample_rate_hz: int | None = None) -> tuple[np.ndarray, QualityReport]:
        """``(embedding, report)`` of a file or array; the embedding is ``(dim,)`` float32."""
        waveform, report = self.prepare(item, sample_rate_hz)
        try:
            embedding = embed_waveform(self.network, waveform, window_s=self.settings.window_s,
                                       step_s=self.settings.step_s, device=self.device)
        except (AudioError, ValueError) as error:  # e.g. too short for the network: say which input
            raise AudioError(f"{source_name(item)}: {error}") from None
        return embedding, report

    def embed_each(self, item, windows: Sequence[tuple[float | None, float]]) -> list[np.ndarray]:
        """``(dim,)`` float32 embeddings of one file or array under each ``(window_s, step_s)`` of
        ``windows`` (VAD and level: this front-end's), each equal up to float rounding to
        :meth:`embed` with that window and step. The input is read, trimmed and level-normalised
        once, and frame-local networks compute its frames once
        (:func:`~voxmetric.evaluate.extract.embed_waveform_each`): how validation compares
        windows at the end of training (:mod:`voxmetric.training.frontend_select`)."""
        waveform, _ = self.prepare(item)
        try:
            return embed_waveform_each(self.network, waveform, windows, device=self.device)
        except (AudioError, ValueError) as error:
            raise AudioError(f"{source_name(item)}: {error}") from None

    def embed_files(self, items: Sequence, sample_rate_hz: int | None = None,
                    progress: bool = False) -> np.ndarray:
        """Embeddings of several files or arrays: ``(len(items), dim)`` float32.

        ``progress`` shows a bar, only on a terminal (:func:`voxmetric.fileio.progress_bar`).
        """
        items = check_several(items, "embed_files")
        rows = [self.embed(item, sample_rate_hz)[0]
                for item in progress_bar(items, enabled=progress, desc="embedding", unit="file", leave=False)]
        return np.stack(rows) if rows else np.zeros((0, self.embedding_dim), dtype=np.float32)
