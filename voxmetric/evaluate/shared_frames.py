"""Sliding-window embeddings that share one pass of the frame layers over a file.

The seed embeds a file with 3 s windows every 0.1 s, so computed window by window
each second of audio goes through the network about 30 times. For the x-vector
family (:class:`~voxmetric.models.SincTDNN`, :class:`~voxmetric.models.XVector`)
everything before statistics pooling is convolutional, and when the model's
``frames_are_local`` the frames of a window *are* the frames of the whole file at
the same positions (no layer pads; eval-mode batch norm is affine). So:

1. ``model.frames`` runs once over the file (in blocks, below);
2. every window's mean and variance over its frames come from running sums of
   ``x`` and ``x**2`` over the frames (float64, after subtracting the block's
   per-channel mean, so that ``E[x^2] - E[x]^2`` does not cancel away the digits);
3. only the segment layer runs per window (:meth:`EmbeddingModel.embed_moments`).

**Frame grid.** A window's frames coincide with the file's only when the window
starts on the frame grid (a multiple of ``model.frame_hop_samples``: 135 samples
for SincTDNN, 160 for XVector). :func:`frame_aligned_starts` moves every window
start to the nearest grid point that keeps the window inside the file: at most
half a hop (4.2 ms for SincTDNN), a shift far below what changes an embedding
of a 3 s window (see ``benchmarks/embed.py`` for the measured deviation).
With these starts the result equals the window-by-window computation up to float
rounding (``tests/test_shared_frames.py``: max abs difference < 1e-4).

**Blocks.** A long file is cut into blocks of about ``block_s`` seconds of frames;
consecutive blocks overlap by one window (minus one frame) so that every window
lies entirely in one block. Each block's new frames are computed from exactly the
samples they need; the overlap's frames are taken over from the previous block when
the frames are local (they are the same frames), and computed again otherwise (each
block is then normalised on its own, as a window would be). Memory is bounded by the
block, whatever the file length (the waveform itself aside: 230 MB for an hour of
float32 audio).

**Whole inputs.** :func:`whole_input_moments` is the same idea for a whole file
embedded at once (``window_s=None``, the bundled models' default): the frames are
computed block by block (each block from exactly the samples its frames need) and
their mean and variance accumulated on the way, so that a 1-hour file needs the
memory of one block instead of every activation of the hour (3.6 GB for 30 minutes
through SincTDNN in one pass). Exact, up to float rounding, for local frames.

**Non-local models.** Instance norm (the seed SincTDNN's ``waveform_normalize`` and
``instance_normalize``) and per-utterance mean normalisation (XVector's ``cmn``)
use statistics of the whole input, so a window's frames depend on where the input
ends: no shared computation reproduces them. :func:`shares_frames_exactly` is False
for these; callers use the window-by-window path unless they explicitly ask for
the shared one, which then normalises over each block instead of each window
(an approximation whose deviation ``benchmarks/embed.py`` reports).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from ..models.base import EmbeddingModel

DEFAULT_BLOCK_S = 15.0
"""Seconds of audio per block of frames. Measured on 2 CPU cores (seed-size SincTDNN,
3 s windows, 1 thread): 15 s blocks are ~15% faster than 60 s and ~25% faster than 120 s
(the activations stay in cache). With the overlap's frames taken over from the previous
block (bundled sinctdnn-aam, 72.5 s file, CPU time): 8 s and 15 s blocks are equally fast,
30 s ~20% and 4 s ~50% slower. A block's activations then take ~100-200 MB."""


def supports_shared_frames(model: torch.nn.Module) -> bool:
    """Whether ``model`` has the two-stage interface the shared path needs (exact or not)."""
    return isinstance(model, EmbeddingModel) and model.pools_mean_std


def shares_frames_exactly(model: torch.nn.Module) -> bool:
    """Whether the shared path gives the window-by-window result for ``model``.

    True for :class:`EmbeddingModel` instances that pool mean and standard deviation
    (``pools_mean_std``) and whose frames depend only on their receptive field
    (``frames_are_local``): e.g. SincTDNN with ``waveform_normalize=False,
    instance_normalize=False`` (batch norm) and XVector with ``cmn=False``.
    """
    return supports_shared_frames(model) and model.frames_are_local


def frame_aligned_starts(starts: np.ndarray, hop_samples: int, num_samples: int, window_samples: int) -> np.ndarray:
    """Window starts moved to the nearest multiple of ``hop_samples`` inside the signal.

    Args:
        starts: ``(windows,)`` int window starts (e.g. from
            :func:`~voxmetric.evaluate.extract.window_starts`).
        hop_samples: the model's ``frame_hop_samples``.
        num_samples: signal length; ``>= window_samples``.
        window_samples: window length.

    Returns:
        ``(windows,)`` int64 non-decreasing starts, each a multiple of ``hop_samples`` in
        ``[0, num_samples - window_samples]``. Two windows may land on the same start
        (the end-aligned tail window and its neighbour); both are kept, so that the
        average gives every window of the original layout its weight.
    """
    if num_samples < window_samples:
        raise ValueError(f"signal of {num_samples} samples is shorter than one window ({window_samples})")
    last = (num_samples - window_samples) // hop_samples
    grid = np.floor(np.asarray(starts, dtype=np.float64) / hop_samples + 0.5).astype(np.int64)
    return np.clip(grid, 0, last) * hop_samples


def _block_ranges(start_frames: np.ndarray, window_frames: int, block_frames: int) -> Iterator[tuple[int, int]]:
    """Consecutive ``[first, stop)`` ranges of windows whose frames span at most ``block_frames``."""
    block_frames = max(block_frames, window_frames)
    first = 0
    while first < len(start_frames):
        # Windows starting at frame <= start_frames[first] + block_frames - window_frames fit.
        stop = int(np.searchsorted(start_frames, start_frames[first] + block_frames - window_frames, side="right"))
        yield first, stop
        first = stop


def _window_moments(frames: Tensor, offsets: Tensor, window_frames: int) -> tuple[Tensor, Tensor]:
    """Mean and variance over time of ``frames`` ``(channels, frames)`` for every window.

    Window ``w`` covers frames ``[offsets[w], offsets[w] + window_frames)``. Returns
    ``(windows, channels)`` float64 each. Running sums in float64 of the block's
    frames minus their per-channel mean: the variance ``E[x^2] - E[x]^2`` then
    subtracts numbers of the size of the variance, not of the squared mean.
    """
    centred = frames.double()
    centre = centred.mean(dim=1, keepdim=True)
    centred -= centre
    sums = centred.new_zeros(centred.shape[0], centred.shape[1] + 1)
    ends = offsets + window_frames
    torch.cumsum(centred, dim=1, out=sums[:, 1:])
    mean = (sums[:, ends] - sums[:, offsets]) / window_frames  # centred mean
    torch.cumsum(centred.square_(), dim=1, out=sums[:, 1:])
    variance = (sums[:, ends] - sums[:, offsets]) / window_frames - mean.square()
    return (mean + centre).T, variance.clamp_(min=0.0).T


def shared_frame_embeddings(
    model: EmbeddingModel,
    signal: Tensor,
    starts: np.ndarray,
    window_samples: int,
    block_s: float = DEFAULT_BLOCK_S,
) -> Iterator[Tensor]:
    """Embeddings of the windows ``signal[s : s + window_samples]``, ``s`` in ``starts``.

    Call under ``torch.inference_mode`` with the model in eval mode.

    Args:
        model: a :func:`supports_shared_frames` model (exact when :func:`shares_frames_exactly`).
        signal: ``(samples,)`` float32 on the model's device.
        starts: ``(windows,)`` non-decreasing multiples of ``model.frame_hop_samples``
            (:func:`frame_aligned_starts`), each window inside ``signal``.
        window_samples: window length, at least ``model.min_samples``.
        block_s: seconds of frames computed at once (bounds memory; see module docstring).

    Yields:
        ``(windows_in_block, embedding_dim)`` tensors, windows in the order of ``starts``.
    """
    if not supports_shared_frames(model):
        raise ValueError(f"{type(model).__name__} does not pool mean and std over frames: no shared-frame path")
    if block_s <= 0:
        raise ValueError(f"block_s must be positive, got {block_s}")
    hop = model.frame_hop_samples
    starts = np.asarray(starts, dtype=np.int64)
    if np.any(starts % hop) or np.any(np.diff(starts) < 0):
        raise ValueError(f"window starts must be non-decreasing multiples of the frame hop ({hop} samples)")
    if starts[0] < 0 or starts[-1] + window_samples > signal.shape[0]:
        raise ValueError(f"windows must lie inside the signal of {signal.shape[0]} samples")
    window_frames = model.num_frames(window_samples)
    if window_frames < 1:
        raise ValueError(f"a window of {window_samples} samples gives no frame (min_samples: {model.min_samples})")
    start_frames = starts // hop
    block_frames = int(round(block_s * model.sample_rate_hz / hop))
    tail, tail_first = None, 0  # local models: the previous block's last window of frames, its first index
    for first, stop in _block_ranges(start_frames, window_frames, block_frames):
        frame0 = int(start_frames[first])
        frame_end = int(start_frames[stop - 1]) + window_frames  # frames frame0 .. frame_end - 1
        # Blocks overlap by up to one window: local frames already computed are not computed again.
        reused = 0 if tail is None else min(max(0, tail_first + tail.shape[1] - frame0), frame_end - frame0)
        frames = _frames_between(model, signal, frame0 + reused, frame_end) if frame0 + reused < frame_end else None
        if reused:
            old = tail[:, frame0 - tail_first:frame0 - tail_first + reused]
            frames = old if frames is None else torch.cat([old, frames], dim=1)
        embeddings = pool_windows(model, frames, start_frames[first:stop] - frame0, window_frames)
        if model.frames_are_local:
            tail, tail_first = frames[:, -window_frames:].clone(), frame_end - window_frames
        del frames  # before the caller resumes: one block's frames alive at a time
        yield embeddings


def pool_windows(model: EmbeddingModel, frames: Tensor, offsets: np.ndarray, window_frames: int) -> Tensor:
    """Embeddings ``(windows, embedding_dim)`` of the windows of ``window_frames`` frames starting at
    frame ``offsets`` ``(windows,)`` of ``frames`` ``(channels, frames)`` (mean/std pooling, then
    :meth:`~voxmetric.models.base.EmbeddingModel.embed_moments`)."""
    offsets = torch.as_tensor(np.asarray(offsets, dtype=np.int64), device=frames.device)
    mean, variance = _window_moments(frames, offsets, window_frames)
    return model.embed_moments(mean, variance)


def _frames_between(model: EmbeddingModel, signal: Tensor, frame0: int, frame_end: int) -> Tensor:
    """Frames ``frame0 .. frame_end - 1`` of ``signal``, ``(channels, frame_end - frame0)``,
    computed from exactly the samples they see."""
    hop = model.frame_hop_samples
    begin = frame0 * hop
    end = begin + (frame_end - frame0 - 1) * hop + model.receptive_field_samples
    frames = model.frames(signal[None, begin:end])[0]
    if frames.shape[1] != frame_end - frame0:
        raise RuntimeError(
            f"{type(model).__name__}.frames gave {frames.shape[1]} frames for {end - begin} samples, "
            f"expected {frame_end - frame0}: frame_hop_samples / receptive_field_samples disagree with frames()"
        )
    return frames


def whole_input_moments(model: EmbeddingModel, signal: Tensor, block_s: float = DEFAULT_BLOCK_S) -> tuple[Tensor, Tensor]:
    """Mean and (population) variance over all frames of ``model.frames(signal[None])``, block by block.

    Call under ``torch.inference_mode`` with the model in eval mode; exact (up to float
    rounding) for :func:`shares_frames_exactly` models (module docstring, "Whole inputs").
    Sums run in float64 around the first block's per-channel mean (no cancellation).

    Returns:
        ``(mean, variance)``, each ``(1, channels)`` float64, for
        :meth:`~voxmetric.models.base.EmbeddingModel.embed_moments`.
    """
    if not supports_shared_frames(model):
        raise ValueError(f"{type(model).__name__} does not pool mean and std over frames: no blockwise path")
    if block_s <= 0:
        raise ValueError(f"block_s must be positive, got {block_s}")
    hop = model.frame_hop_samples
    total = model.num_frames(int(signal.shape[0]))
    if total < 1:
        model.check_waveforms(signal[None])  # too short: the model's own error
        raise ValueError(f"an input of {signal.shape[0]} samples gives no frame")
    block_frames = max(1, int(round(block_s * model.sample_rate_hz / hop)))
    shift = sum1 = sum2 = None
    for frame0 in range(0, total, block_frames):
        count = min(block_frames, total - frame0)
        begin = frame0 * hop
        end = begin + (count - 1) * hop + model.receptive_field_samples
        frames = model.frames(signal[None, begin:end])[0]
        if frames.shape[1] != count:
            raise RuntimeError(f"{type(model).__name__}.frames gave {frames.shape[1]} frames for {end - begin} "
                               f"samples, expected {count}")
        frames = frames.double()
        if shift is None:
            shift = frames.mean(dim=1, keepdim=True)
            sum1 = torch.zeros_like(shift[:, 0])
            sum2 = torch.zeros_like(shift[:, 0])
        frames -= shift
        sum1 += frames.sum(dim=1)
        sum2 += frames.square_().sum(dim=1)
        del frames
    mean = sum1 / total
    variance = (sum2 / total - mean.square()).clamp_(min=0.0)
    return (mean + shift[:, 0])[None], variance[None]
