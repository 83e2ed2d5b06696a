"""The interface every embedding network implements, and argument checks shared by them.

A model maps 16 kHz waveforms to fixed-size embeddings in two stages, so that a
caller sliding windows over a long file can compute the frame stage once and
pool many windows out of it::

    frames = model.frames(waveforms)        # (batch, channels, frames)
    embeddings = model.embed_frames(frames)  # (batch, embedding_dim)
    # same as model(waveforms)

Frame ``i`` of :meth:`EmbeddingModel.frames` is computed from samples
``[i * frame_hop_samples, i * frame_hop_samples + receptive_field_samples)``.
That is exact only where ``frames_are_local`` is True: utterance-level
normalisation (instance norm, mean normalisation) or global context
(squeeze-excitation) make every frame depend a little on the whole input.

Export for inference: ``torch.export.export`` (tested for every model). XVector and
ECAPA_TDNN export with a dynamic batch size and length (give an example batch of at
least 2 and a minimum length of at least 2 frames: export specialises sizes 0 and 1);
SincTDNN exports for one fixed length (its max-pooling makes the tracer specialise on
the frame count), i.e. one program per sliding-window length. ``torch.jit.script`` is
deprecated in torch 2.13 and cannot compile the float32 (autocast-disabled) feature
block, so it is not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import AudioError, InputTooShortError


class EmbeddingModel(nn.Module):
    """Base class: waveforms ``(batch, samples)`` at 16 kHz -> embeddings ``(batch, embedding_dim)``.

    Subclasses set the attributes below in their constructor and implement
    :meth:`frames`, :meth:`embed_frames` and :meth:`num_frames`.

    Attributes
    ----------
    sample_rate_hz : int
        Sample rate the model expects (16000).
    embedding_dim : int
        Size of the output embedding.
    frame_hop_samples : int
        Distance in samples between two consecutive output frames of :meth:`frames`.
    receptive_field_samples : int
        Input samples that one output frame of :meth:`frames` sees.
    min_samples : int
        Shortest input :meth:`forward` accepts; shorter input raises
        :class:`InputTooShortError` (no silent padding: padding would change
        the embedding without the caller knowing).
    frames_are_local : bool
        True when frame ``i`` depends only on its receptive field (see module docstring).
    pools_mean_std : bool
        True when :meth:`embed_frames` is mean / standard-deviation pooling over all frames
        followed by :meth:`embed_moments` (the x-vector family). With ``frames_are_local``
        too, sliding windows can share one pass of :meth:`frames` over a whole file
        (:mod:`voxmetric.evaluate.shared_frames`).
    """

    sample_rate_hz: int = 16000
    embedding_dim: int
    frame_hop_samples: int
    receptive_field_samples: int
    min_samples: int
    frames_are_local: bool
    pools_mean_std: bool = False

    def frames(self, waveforms: Tensor) -> Tensor:
        """Everything before pooling: ``(batch, samples)`` -> ``(batch, channels, frames)``."""
        raise NotImplementedError

    def embed_frames(self, frames: Tensor) -> Tensor:
        """Pooling and segment layers: ``(batch, channels, frames)`` -> ``(batch, embedding_dim)``."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """Number of frames :meth:`frames` returns for an input of ``num_samples`` samples."""
        raise NotImplementedError

    def embed_moments(self, mean: Tensor, variance: Tensor) -> Tensor:
        """Layers after pooling, from per-segment moments of the frames (``pools_mean_std`` models).

        ``mean``, ``variance``: ``(batch, channels)`` population mean and variance over time
        -> ``(batch, embedding_dim)``; equals :meth:`embed_frames` on frames with these moments.
        """
        raise NotImplementedError(f"{type(self).__name__} does not pool mean and standard deviation")

    def forward(self, waveforms: Tensor) -> Tensor:
        """Embed a batch of equal-length waveforms.

        Parameters
        ----------
        waveforms : Tensor, (batch, samples)
            16 kHz audio, at least ``min_samples`` long.

        Returns
        -------
        Tensor, (batch, embedding_dim)
        """
        return self.embed_frames(self.frames(waveforms))

    def check_waveforms(self, waveforms: Tensor) -> None:
        """Raise if ``waveforms`` is not ``(batch, samples)`` with ``samples >= min_samples``."""
        if waveforms.dim() != 2:
            raise ValueError(
                f"{type(self).__name__} expects waveforms of shape (batch, samples), "
                f"got shape {tuple(waveforms.shape)}"
            )
        num_samples = waveforms.shape[1]
        if num_samples < self.min_samples:
            raise InputTooShortError(
                f"{type(self).__name__} needs at least {self.min_samples} samples "
                f"({self.min_samples / self.sample_rate_hz:.3f} s at {self.sample_rate_hz} Hz), "
                f"got {num_samples}"
            )
