"""Whole-file embeddings from any ``(batch, samples) -> (batch, dim)`` network.

The seed system embeds a file by sliding a 3.0 s window every 0.1 s and averaging the
window embeddings; a file shorter than one window is embedded whole. The window
positions come from :func:`window_starts`, the one place that decides them.

Two ways to compute the window embeddings (``method``):

- ``"naive"``: every window through the whole network, in batches of windows. Any
  model; the reference.
- ``"shared"``: the frame layers run once over the file and every window is pooled
  from the shared frames (:mod:`voxmetric.evaluate.shared_frames`): about 20-30x
  faster with the seed's windows. Window starts move to the model's frame grid (at
  most half a frame hop, 4.2 ms for SincTDNN). Exact (up to float rounding, for these
  starts) when the model's frames are local; for models with instance norm or
  per-utterance mean normalisation an approximation, used only when asked for.
- ``"auto"`` (default): ``"shared"`` where it is exact
  (:func:`~voxmetric.evaluate.shared_frames.shares_frames_exactly`), else ``"naive"``.
  So SincTDNN with batch norm (``waveform_normalize: false, instance_normalize: false``)
  and XVector with ``cmn: false`` are fast by default; the seed's instance-normalised
  SincTDNN, XVector with CMN and ECAPA-TDNN (squeeze-excitation and attentive pooling
  see the whole input) keep the window-by-window result.

**Whole inputs** (``window_s=None``, the bundled models' default) are bounded in memory
too (one pass over an hour of audio holds every activation of the hour: 3.6-3.9 GB for
30 minutes):

- frame-local mean/std-pooling models (SincTDNN with batch norm, the bundled
  ``sinctdnn-aam``) longer than ``block_s`` compute their frames in blocks and pool the
  moments incrementally (:func:`~voxmetric.evaluate.shared_frames.whole_input_moments`):
  the same embedding up to float rounding;
- other models (ECAPA-TDNN, the bundled ``ecapa-aam``: its squeeze-excitation blocks
  and attentive pooling see the whole input, so no blockwise computation reproduces a
  one-pass result) are embedded in one pass up to ``max_whole_s`` (:data:`MAX_WHOLE_S`,
  60 s); a longer input is cut into the fewest equal consecutive segments of at most
  ``max_whole_s`` and its embedding is the length-weighted mean of theirs. That is an
  approximation, for inputs over a minute only (``benchmarks/embed_memory.py`` reports
  its cosine to the one-pass embedding).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .. import audio
from ..fileio import progress_bar
from .shared_frames import DEFAULT_BLOCK_S, frame_aligned_starts, pool_windows, shared_frame_embeddings
from .shared_frames import shares_frames_exactly, supports_shared_frames, whole_input_moments
from ..errors import ArgumentError

MAX_WHOLE_S = 60.0
"""Longest input a non-frame-local model embeds in one pass with ``window_s=None`` (module docstring)."""
DEFAULT_WINDOW_S = 3.0
DEFAULT_STEP_S = 0.1
METHODS = ("auto", "shared", "naive")
CPU_WINDOW_BATCH = 8
"""Windows per forward pass of the ``"naive"`` method on the CPU (``batch_size=None``). Measured
(one thread, 3 s windows every 0.1 s, CPU time per window): 8 is ~1.5x faster than 64 for the
bundled ecapa-aam and for the seed SincTDNN (a batch's activations stay in cache); 4 and 16
are close to 8."""
ACCELERATOR_WINDOW_BATCH = 64
"""Windows per forward pass on other devices (``batch_size=None``)."""


def window_starts(num_samples: int, window_samples: int, step_samples: int) -> np.ndarray:
    """First sample of every window covering a signal.

    Windows start every ``step_samples`` from 0 while they fit in the signal; when the
    last of them stops short of the end, one more window is aligned to the end of the
    signal (starting at ``num_samples - window_samples``), so the tail is always covered
    and every window is full length. A signal no longer than one window gets a single
    window at 0 (the caller then embeds the whole, shorter, signal).

    Args:
        num_samples: signal length, ``>= 1``.
        window_samples: window length, ``>= 1``.
        step_samples: hop between window starts, ``>= 1``.

    Returns:
        ``(windows,)`` int64 ascending starts.
    """
    for name, value in (("num_samples", num_samples), ("window_samples", window_samples),
                        ("step_samples", step_samples)):
        if value < 1:
            raise ArgumentError(f"{name} must be at least 1, got {value}")
    last = num_samples - window_samples
    if last <= 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, last + 1, step_samples, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, np.int64(last))
    return starts


@contextlib.contextmanager
def _inference(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and ``torch.inference_mode`` for the block; the previous mode is restored."""
    was_training = model.training
    if was_training or any(module.training for module in model.modules()):
        model.eval()  # (a walk over every module: skipped for a model in eval mode already, the usual case)
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train(True)


def _embed_batch(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """``(batch, samples)`` -> ``(batch, dim)`` float64 on the CPU, with a shape check."""
    out = model(batch)
    if out.ndim != 2 or out.shape[0] != batch.shape[0]:
        raise ArgumentError(
            f"model must map (batch, samples) to (batch, dim); "
            f"got {tuple(out.shape)} for input {tuple(batch.shape)}"
        )
    return out.detach().to("cpu", torch.float64)


def choose_method(model: torch.nn.Module, method: str = "auto") -> str:
    """``"shared"`` or ``"naive"``: how :func:`embed_waveform` computes ``model``'s windows.

    Raises:
        ValueError: ``method`` is not one of :data:`METHODS`, or ``"shared"`` for a model
            without the shared-frame interface (mean/std pooling over ``frames``).
    """
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if method == "auto":
        return "shared" if shares_frames_exactly(model) else "naive"
    if method == "shared" and not supports_shared_frames(model):
        raise ArgumentError(
            f"method 'shared' needs a model that pools mean and std over its frames (SincTDNN, XVector); "
            f"{type(model).__name__} is not one: use 'naive' or 'auto'"
        )
    return method


def naive_window_embeddings(
    model: torch.nn.Module, signal: torch.Tensor, starts: np.ndarray, window_samples: int,
    batch_size: int = CPU_WINDOW_BATCH,
) -> Iterator[torch.Tensor]:
    """Embeddings of the windows ``signal[s : s + window_samples]``, ``s`` in ``starts``, each
    through the whole model; ``(batch, dim)`` float64 CPU tensors of up to ``batch_size`` windows."""
    offsets = torch.arange(window_samples, device=signal.device)
    for first in range(0, len(starts), batch_size):
        batch_starts = torch.from_numpy(np.asarray(starts[first : first + batch_size])).to(signal.device)
        # (batch, window) gather: windows may overlap and the tail window is off the hop grid
        yield _embed_batch(model, signal[batch_starts[:, None] + offsets])


def _device_of(model: torch.nn.Module) -> torch.device | None:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def _embed_whole(model: torch.nn.Module, signal: torch.Tensor, sample_rate_hz: int, block_s: float,
                 max_whole_s: float | None) -> torch.Tensor:
    """``(dim,)`` float64 embedding of the whole ``signal``, memory bounded (module docstring)."""
    length = int(signal.shape[0])
    if shares_frames_exactly(model):
        if length <= block_s * sample_rate_hz + model.receptive_field_samples:
            return _embed_batch(model, signal[None])[0]
        mean, variance = whole_input_moments(model, signal, block_s)
        return model.embed_moments(mean.to(torch.float32), variance.to(torch.float32))[0].to("cpu", torch.float64)
    if max_whole_s is None or length <= max_whole_s * sample_rate_hz:
        return _embed_batch(model, signal[None])[0]
    pieces = math.ceil(length / (max_whole_s * sample_rate_hz))
    bounds = np.linspace(0, length, pieces + 1).round().astype(np.int64)
    total = 0.0
    for first, stop in zip(bounds[:-1], bounds[1:]):
        total = total + _embed_batch(model, signal[None, first:stop])[0] * float(stop - first)
    return total / length


def _to_samples(seconds: float, sample_rate_hz: int, name: str) -> int:
    if seconds <= 0:
        raise ArgumentError(f"{name} must be positive, got {seconds}")
    return max(1, int(round(seconds * sample_rate_hz)))


def embed_waveform(
    model: torch.nn.Module,
    waveform: np.ndarray,
    window_s: float | None = DEFAULT_WINDOW_S,
    step_s: float = DEFAULT_STEP_S,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    sample_rate_hz: int = audio.SAMPLE_RATE_HZ,
    method: str = "auto",
    block_s: float = DEFAULT_BLOCK_S,
    max_whole_s: float | None = MAX_WHOLE_S,
) -> np.ndarray:
    """Embedding of a whole waveform: the mean of its sliding-window embeddings.

    Windows are placed by :func:`window_starts` (the last one aligned to the end of
    the waveform); the ``"shared"`` method moves them to the model's frame grid (see
    the module docstring). The window embeddings are averaged as they come out of the
    model (not L2-normalised first), as in the seed system.

    Args:
        model: maps ``(batch, samples)`` float32 to ``(batch, dim)``; used in eval mode
            under ``torch.inference_mode`` and moved to ``device``.
        waveform: ``(samples,)`` float array at ``sample_rate_hz``.
        window_s: window length in seconds; ``None`` embeds the whole waveform at once.
        step_s: hop between windows in seconds.
        batch_size: windows per forward pass (``"naive"``); ``None``: :data:`CPU_WINDOW_BATCH`
            on the CPU, :data:`ACCELERATOR_WINDOW_BATCH` elsewhere.
        device: where the model runs.
        sample_rate_hz: sample rate of ``waveform``.
        method: ``"auto"``, ``"shared"`` or ``"naive"`` (module docstring).
        block_s: seconds of audio whose frames are computed at once (``"shared"``, and
            whole inputs of frame-local models); bounds memory on long files.
        max_whole_s: with ``window_s=None``, the longest input a non-frame-local model
            sees in one pass (module docstring); ``None``: no limit.

    Returns:
        ``(dim,)`` float32 embedding.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 1 or waveform.size == 0:
        raise ArgumentError(f"waveform must be a non-empty (samples,) array, got shape {waveform.shape}")
    device = torch.device(device)
    if batch_size is None:
        batch_size = CPU_WINDOW_BATCH if device.type == "cpu" else ACCELERATOR_WINDOW_BATCH
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be at least 1, got {batch_size}")
    method = choose_method(model, method)
    if _device_of(model) != device:  # moving a model that is there already costs a walk over its tensors
        model.to(device)
    signal = torch.from_numpy(waveform).to(device)
    window = None if window_s is None else _to_samples(window_s, sample_rate_hz, "window_s")
    with _inference(model):
        if window is None or waveform.size <= window:
            return _embed_whole(model, signal, sample_rate_hz, block_s, max_whole_s).numpy().astype(np.float32)
        starts = window_starts(waveform.size, window, _to_samples(step_s, sample_rate_hz, "step_s"))
        if method == "shared":
            starts = frame_aligned_starts(starts, model.frame_hop_samples, waveform.size, window)
            batches = shared_frame_embeddings(model, signal, starts, window, block_s)
        else:
            batches = naive_window_embeddings(model, signal, starts, window, batch_size)
        total = sum(batch.to("cpu", torch.float64).sum(0) for batch in batches)
    return (total / len(starts)).numpy().astype(np.float32)


def embed_waveform_each(
    model: torch.nn.Module,
    waveform: np.ndarray,
    windows: Sequence[tuple[float | None, float]],
    device: str | torch.device = "cpu",
    sample_rate_hz: int = audio.SAMPLE_RATE_HZ,
    block_s: float = DEFAULT_BLOCK_S,
) -> list[np.ndarray]:
    """One waveform's embedding under each ``(window_s, step_s)`` of ``windows``, each equal (up
    to float rounding) to :func:`embed_waveform` with that window and step.

    Choosing the extraction settings on validation
    (:mod:`voxmetric.training.frontend_select`) embeds every file several ways. For a
    frame-local mean/std-pooling model (:func:`shares_frames_exactly`) and a waveform of at
    most one block (``block_s``, as validation files are) the frame layers run once and the
    whole-waveform embedding and every window layout are pooled from those frames (the
    costly part of SincTDNN is its frame layers); otherwise each setting is computed on its
    own by :func:`embed_waveform`.

    Returns:
        ``len(windows)`` ``(dim,)`` float32 embeddings, in the order of ``windows``.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if not (shares_frames_exactly(model) and waveform.ndim == 1
            and model.min_samples <= waveform.size <= block_s * sample_rate_hz + model.receptive_field_samples):
        return [embed_waveform(model, waveform, window_s, step_s, device=device, sample_rate_hz=sample_rate_hz,
                               block_s=block_s) for window_s, step_s in windows]
    device = torch.device(device)
    if _device_of(model) != device:
        model.to(device)
    hop, rows = model.frame_hop_samples, []
    with _inference(model):
        frames = model.frames(torch.from_numpy(waveform).to(device)[None])  # (1, channels, frames)
        for window_s, step_s in windows:
            window = None if window_s is None else _to_samples(window_s, sample_rate_hz, "window_s")
            if window is None or waveform.size <= window:  # as embed_waveform: the whole input
                rows.append(model.embed_frames(frames)[0].to("cpu", torch.float64))
                continue
            starts = window_starts(waveform.size, window, _to_samples(step_s, sample_rate_hz, "step_s"))
            start_frames = frame_aligned_starts(starts, hop, waveform.size, window) // hop
            window_frames = model.num_frames(window)
            # Only the frames the windows cover, as shared_frame_embeddings computes them.
            used = frames[0, :, : int(start_frames[-1]) + window_frames]
            pooled = pool_windows(model, used, start_frames, window_frames)
            rows.append(pooled.to("cpu", torch.float64).sum(0) / len(start_frames))
    return [row.numpy().astype(np.float32) for row in rows]


def extract_embeddings(
    model: torch.nn.Module,
    paths: Sequence[str],
    ids: Sequence[str] | None = None,
    window_s: float | None = DEFAULT_WINDOW_S,
    step_s: float = DEFAULT_STEP_S,
    batch_size: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    method: str = "auto",
    block_s: float = DEFAULT_BLOCK_S,
) -> tuple[list[str], np.ndarray]:
    """Embed every file of a list (see :func:`embed_waveform`).

    Args:
        model: maps ``(batch, samples)`` to ``(batch, dim)``.
        paths: audio files, read with :func:`voxmetric.audio.read` (16 kHz mono).
        ids: one id per path (the rows' names in the embeddings file); default ``paths``.
        window_s, step_s, batch_size, device: as in :func:`embed_waveform`.
        progress: show a progress bar (only on a terminal: :func:`voxmetric.fileio.progress_bar`).
        method, block_s: as in :func:`embed_waveform`.

    Returns:
        ``(ids, matrix)``: the ids and the ``(files, dim)`` float32 embeddings.

    Raises:
        AudioError: a file is missing or unreadable (the message names it).
    """
    paths = [str(p) for p in paths]
    ids = list(paths) if ids is None else [str(i) for i in ids]
    if len(ids) != len(paths):
        raise ArgumentError(f"{len(ids)} ids for {len(paths)} paths; give one id per path")
    choose_method(model, method)  # a bad method fails before any file is read
    rows = []
    for path in progress_bar(paths, enabled=progress, desc="embedding", unit="file", leave=False):
        waveform = audio.read(path)
        rows.append(embed_waveform(model, waveform, window_s, step_s, batch_size, device,
                                   method=method, block_s=block_s))
    if not rows:
        return ids, np.zeros((0, 0), dtype=np.float32)
    return ids, np.stack(rows)
