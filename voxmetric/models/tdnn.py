"""x-vector TDNN (Snyder et al. 2018) and the classic x-vector system on MFCC/fbank.

The five frame layers use Kaldi's frame contexts: [-2..2], {-2, 0, 2}, {-3, 0, 3},
{0}, {0}; a context {-d, 0, d} is a kernel-3 convolution with dilation d. No layer
pads (as in Kaldi), so 15 input frames make one output frame. Each layer is
Conv1d -> ReLU -> BatchNorm, Kaldi's order (its ``relu-batchnorm-layer``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..checks import check_bool, check_choice, check_int
from .base import EmbeddingModel
from .features import MFCC, Fbank
from .pooling import StatsPooling

# (kernel_size, dilation) of the frame layers: Kaldi contexts [-2..2], {-2,0,2}, {-3,0,3}, {0}, {0}.
FRAME_CONTEXTS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))


class TDNN(nn.Module):
    """x-vector network on feature frames: ``(batch, in_channels, frames)`` -> ``(batch, embedding_dim)``.

    Parameters
    ----------
    in_channels : int
        Channels of the input frames (60 for SincNet, 30 for MFCC).
    channels : int
        Width of the first four frame layers (512).
    stats_channels : int
        Width of the fifth frame layer, pooled into ``2 * stats_channels`` statistics (1500).
    embedding_dim : int
        Output of the segment layer (512).
    embedding_batch_norm : bool
        Batch-normalise the embedding (no affine part: the loss that follows can scale);
        seed: False.
    embedding_unit_norm : bool
        L2-normalise the embedding; seed: False (the losses normalise where they need to).

    With the defaults on 60 SincNet channels: 4.30 M parameters, 0.31 G MACs per second of
    audio at SincNet's frame rate (``benchmarks/model_cost.py``).

    >>> tdnn = TDNN(in_channels=60)
    >>> tdnn.frames(torch.randn(2, 60, 100)).shape
    torch.Size([2, 1500, 86])
    >>> tdnn(torch.randn(2, 60, 100)).shape
    torch.Size([2, 512])
    """

    context_frames = 1 + sum((kernel - 1) * dilation for kernel, dilation in FRAME_CONTEXTS)
    """Input frames that one output frame sees (15)."""

    def __init__(
        self,
        in_channels: int,
        channels: int = 512,
        stats_channels: int = 1500,
        embedding_dim: int = 512,
        embedding_batch_norm: bool = False,
        embedding_unit_norm: bool = False,
    ):
        super().__init__()
        owner = "TDNN"
        check_int(owner, "in_channels", in_channels)
        check_int(owner, "channels", channels)
        check_int(owner, "stats_channels", stats_channels)
        self.embedding_dim = check_int(owner, "embedding_dim", embedding_dim)
        self.embedding_unit_norm = check_bool(owner, "embedding_unit_norm", embedding_unit_norm)
        check_bool(owner, "embedding_batch_norm", embedding_batch_norm)
        widths = [in_channels, channels, channels, channels, channels, stats_channels]
        layers = []
        for (kernel, dilation), c_in, c_out in zip(FRAME_CONTEXTS, widths[:-1], widths[1:]):
            layers += [nn.Conv1d(c_in, c_out, kernel, dilation=dilation), nn.ReLU(), nn.BatchNorm1d(c_out)]
        self.frame_layers = nn.Sequential(*layers)
        self.pooling = StatsPooling()
        self.segment = nn.Linear(2 * stats_channels, embedding_dim)
        self.embedding_norm = nn.BatchNorm1d(embedding_dim, affine=False) if embedding_batch_norm else nn.Identity()
        self.out_channels = stats_channels

    def num_frames(self, num_input_frames: int) -> int:
        """Frames out of the frame layers for ``num_input_frames`` input frames (0 if too few)."""
        return max(0, num_input_frames - self.context_frames + 1)

    def frames(self, features: Tensor) -> Tensor:
        """Frame layers: ``(batch, in_channels, frames)`` -> ``(batch, stats_channels, frames - 14)``."""
        return self.frame_layers(features)

    def embed_frames(self, frames: Tensor) -> Tensor:
        """Stats pooling and segment layer: ``(batch, stats_channels, frames)`` -> ``(batch, embedding_dim)``."""
        return self._embed_stats(self.pooling(frames))

    def embed_moments(self, mean: Tensor, variance: Tensor) -> Tensor:
        """Segment layer on per-segment moments of the frames: ``(batch, stats_channels)`` each
        -> ``(batch, embedding_dim)``; equals :meth:`embed_frames` on frames with these moments."""
        return self._embed_stats(self.pooling.from_moments(mean, variance))

    def _embed_stats(self, stats: Tensor) -> Tensor:
        embeddings = self.embedding_norm(self.segment(stats))
        if self.embedding_unit_norm:
            embeddings = F.normalize(embeddings, dim=1)
        return embeddings

    def forward(self, features: Tensor) -> Tensor:
        return self.embed_frames(self.frames(features))


class XVector(EmbeddingModel):
    """The classic x-vector system: MFCC (or log mel fbank) -> :class:`TDNN`.

    Waveforms ``(batch, samples)`` at 16 kHz -> embeddings ``(batch, embedding_dim)``;
    :meth:`frames` gives ``(batch, stats_channels, frames)`` every 160 samples (10 ms),
    each frame seeing 2640 samples (165 ms: 15 feature frames); ``min_samples`` is that
    receptive field. Default size: 4.23 M parameters, 0.26 G MACs per second of audio
    (``benchmarks/model_cost.py``, 3 s input).

    Parameters
    ----------
    features : {"mfcc", "fbank"}
        Input features (Kaldi's recipe: 30 MFCC).
    n_mels : int
        Mel filters (30).
    n_mfcc : int or None
        Cepstral coefficients kept with ``features="mfcc"``; None: ``n_mels``. Must be
        None with ``features="fbank"``.
    cmn : bool
        Per-utterance mean normalisation of the features (True).
    channels, stats_channels, embedding_dim, embedding_batch_norm, embedding_unit_norm
        See :class:`TDNN` (512, 1500, 512, False, False).

    >>> model = XVector()
    >>> model(torch.randn(2, 16000)).shape
    torch.Size([2, 512])
    >>> model.frames(torch.randn(2, 16000)).shape
    torch.Size([2, 1500, 84])
    """

    def __init__(
        self,
        features: str = "mfcc",
        n_mels: int = 30,
        n_mfcc: Optional[int] = None,
        cmn: bool = True,
        channels: int = 512,
        stats_channels: int = 1500,
        embedding_dim: int = 512,
        embedding_batch_norm: bool = False,
        embedding_unit_norm: bool = False,
    ):
        super().__init__()
        owner = "XVector"
        check_choice(owner, "features", features, ("mfcc", "fbank"))
        if features == "mfcc":
            self.features = MFCC(n_mfcc=n_mels if n_mfcc is None else n_mfcc, n_mels=n_mels, cmn=cmn)
        else:
            if n_mfcc is not None:
                raise ConfigError(f"{owner}: n_mfcc={n_mfcc!r} only applies to features='mfcc', not 'fbank'")
            self.features = Fbank(n_mels=n_mels, cmn=cmn)
        self.tdnn = TDNN(
            self.features.out_channels, channels, stats_channels, embedding_dim, embedding_batch_norm, embedding_unit_norm
        )
        self.embedding_dim = embedding_dim
        self.frame_hop_samples = self.features.hop_samples
        self.receptive_field_samples = self.features.win_samples + (TDNN.context_frames - 1) * self.frame_hop_samples
        self.min_samples = self.receptive_field_samples
        self.frames_are_local = not cmn
        self.pools_mean_std = True

    def num_frames(self, num_samples: int) -> int:
        return self.tdnn.num_frames(self.features.num_frames(num_samples))

    def frames(self, waveforms: Tensor) -> Tensor:
        """``(batch, samples)`` -> ``(batch, stats_channels, num_frames(samples))``."""
        self.check_waveforms(waveforms)
        return self.tdnn.frames(self.features(waveforms))

    def embed_frames(self, frames: Tensor) -> Tensor:
        """``(batch, stats_channels, frames)`` -> ``(batch, embedding_dim)``."""
        return self.tdnn.embed_frames(frames)

    def embed_moments(self, mean: Tensor, variance: Tensor) -> Tensor:
        """See :meth:`TDNN.embed_moments`."""
        return self.tdnn.embed_moments(mean, variance)
