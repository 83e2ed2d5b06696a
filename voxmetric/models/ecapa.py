"""ECAPA-TDNN (Desplanques, Thienpondt & Demuynck, Interspeech 2020).

Log mel fbank -> Conv1d k5 -> three SE-Res2Blocks (dilations 2, 3, 4) -> multi-layer
feature aggregation (the blocks' outputs concatenated, 1x1 conv) -> attentive
statistics pooling with global context -> BN -> Linear -> BN. Convolutions pad to
keep the frame count ("same"), with zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..checks import check_bool, check_int, check_int_list
from .base import EmbeddingModel
from .features import Fbank
from .pooling import mean_std


def conv_relu_bn(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    """The paper's basic unit, Conv1d -> ReLU -> BatchNorm: ``(batch, in, frames)`` -> ``(batch, out, frames)``."""
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding="same"),
        nn.ReLU(),
        nn.BatchNorm1d(out_channels),
    )


class Res2Conv(nn.Module):
    """Res2Net convolution (Gao et al. 2019): ``(batch, channels, frames)`` -> same shape.

    The channels are split into ``scale`` groups; group 1 passes unchanged, group ``i > 1``
    is convolved after adding the previous group's output, so later groups see a wider
    context at the cost of one small convolution each.

    >>> Res2Conv(64, scale=8, kernel_size=3, dilation=2)(torch.randn(2, 64, 50)).shape
    torch.Size([2, 64, 50])
    """

    def __init__(self, channels: int, scale: int = 8, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.convs = nn.ModuleList([conv_relu_bn(width, width, kernel_size, dilation) for _ in range(scale - 1)])

    def forward(self, x: Tensor) -> Tensor:
        groups = x.chunk(self.scale, dim=1)
        outputs = [groups[0]]
        previous = groups[0]
        for index, conv in enumerate(self.convs):
            previous = conv(groups[index + 1] if index == 0 else groups[index + 1] + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the utterance mean (Hu et al. 2018): ``(batch, channels, frames)`` -> same.

    >>> SqueezeExcitation(64, 16)(torch.randn(2, 64, 50)).shape
    torch.Size([2, 64, 50])
    """

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.squeeze = nn.Linear(channels, bottleneck)
        self.excite = nn.Linear(bottleneck, channels)

    def forward(self, x: Tensor) -> Tensor:
        gates = torch.sigmoid(self.excite(F.relu(self.squeeze(x.mean(dim=2)))))
        return x * gates.unsqueeze(2).to(x.dtype)


class SERes2Block(nn.Module):
    """1x1 conv -> Res2 dilated conv -> 1x1 conv -> SE, plus a residual connection.

    ``(batch, channels, frames)`` -> same shape.

    >>> SERes2Block(64, scale=8, dilation=2, se_channels=16)(torch.randn(2, 64, 50)).shape
    torch.Size([2, 64, 50])
    """

    def __init__(self, channels: int, scale: int = 8, kernel_size: int = 3, dilation: int = 1, se_channels: int = 128):
        super().__init__()
        self.layers = nn.Sequential(
            conv_relu_bn(channels, channels),
            Res2Conv(channels, scale, kernel_size, dilation),
            conv_relu_bn(channels, channels),
            SqueezeExcitation(channels, se_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)


class AttentiveStatsPooling(nn.Module):
    """Channel- and context-dependent attentive statistics pooling (ECAPA section 2.3).

    Attention logits per channel and frame come from the frames concatenated with the
    utterance mean and std (the "global context"); softmax over frames (in float32)
    weights the mean and std of every channel.
    ``(batch, channels, frames)`` -> ``(batch, 2 * channels)`` float32.

    >>> AttentiveStatsPooling(32, 16)(torch.randn(2, 32, 50)).shape
    torch.Size([2, 64])
    """

    def __init__(self, channels: int, attention_channels: int = 128):
        super().__init__()
        self.attention = nn.Sequential(
            conv_relu_bn(3 * channels, attention_channels),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, 1),
        )

    def forward(self, frames: Tensor) -> Tensor:
        num_frames = frames.shape[2]
        mean, std = mean_std(frames)
        context = torch.cat(
            [frames.float(), mean.unsqueeze(2).expand(-1, -1, num_frames), std.unsqueeze(2).expand(-1, -1, num_frames)],
            dim=1,
        )
        weights = torch.softmax(self.attention(context).float(), dim=2)
        mean, std = mean_std(frames, weights)
        return torch.cat([mean, std], dim=1)


class ECAPA_TDNN(EmbeddingModel):
    """ECAPA-TDNN: waveforms ``(batch, samples)`` at 16 kHz -> embeddings ``(batch, embedding_dim)``.

    :meth:`frames` gives the aggregated block outputs ``(batch, mfa_channels, frames)``, one
    frame every 160 samples (10 ms; ``num_frames(n) = 1 + (n - 400) // 160``). The
    convolutions alone see 21200 samples (1.3 s) around a frame, but the squeeze-excitation
    gates average over the whole input, so frames are not local. ``min_samples`` is one
    fbank window (400 samples); embeddings of very short input are poor, not wrong.

    Default size (``channels=512``): 6.19 M parameters (the paper: 6.2 M), 0.52 G MACs per
    second of audio; ``channels=1024``: 14.66 M parameters (paper: 14.7 M), 1.32 G MACs per
    second (``benchmarks/model_cost.py``, 3 s input).

    Parameters
    ----------
    n_mels : int
        Log mel fbank channels (80), per-utterance mean-normalised.
    channels : int
        Width C of the blocks (512 or 1024).
    dilations : list of 3 ints
        Dilation of each SE-Res2Block's kernel-3 convolutions ([2, 3, 4]).
    res2_scale : int
        Res2Net groups (8); must divide ``channels``.
    se_channels : int
        Squeeze-excitation bottleneck (128).
    attention_channels : int
        Attention bottleneck of the pooling (128).
    mfa_channels : int
        Output of the feature aggregation (1536 for both C = 512 and C = 1024: the value
        that reproduces the paper's parameter counts).
    embedding_dim : int
        192.
    embedding_batch_norm : bool
        Final batch norm after the linear layer, as in the paper (True); no affine part.
    embedding_unit_norm : bool
        L2-normalise the embedding (False).

    >>> model = ECAPA_TDNN(channels=64, se_channels=16, attention_channels=16, mfa_channels=96, embedding_dim=32)
    >>> model(torch.randn(2, 16000)).shape
    torch.Size([2, 32])
    >>> model.frames(torch.randn(2, 16000)).shape
    torch.Size([2, 96, 98])
    """

    def __init__(
        self,
        n_mels: int = 80,
        channels: int = 512,
        dilations: tuple[int, int, int] = (2, 3, 4),
        res2_scale: int = 8,
        se_channels: int = 128,
        attention_channels: int = 128,
        mfa_channels: int = 1536,
        embedding_dim: int = 192,
        embedding_batch_norm: bool = True,
        embedding_unit_norm: bool = False,
    ):
        super().__init__()
        owner = "ECAPA_TDNN"
        check_int(owner, "channels", channels)
        dilations = check_int_list(owner, "dilations", dilations, length=3)
        check_int(owner, "res2_scale", res2_scale, minimum=2)
        if channels % res2_scale != 0:
            raise ConfigError(f"{owner}: res2_scale={res2_scale} must divide channels={channels}")
        check_int(owner, "se_channels", se_channels)
        check_int(owner, "attention_channels", attention_channels)
        check_int(owner, "mfa_channels", mfa_channels)
        self.embedding_dim = check_int(owner, "embedding_dim", embedding_dim)
        check_bool(owner, "embedding_batch_norm", embedding_batch_norm)
        self.embedding_unit_norm = check_bool(owner, "embedding_unit_norm", embedding_unit_norm)

        self.features = Fbank(n_mels=n_mels)
        self.stem = conv_relu_bn(n_mels, channels, kernel_size=5)
        self.blocks = nn.ModuleList(
            [SERes2Block(channels, res2_scale, 3, dilation, se_channels) for dilation in dilations]
        )
        self.aggregate = conv_relu_bn(len(dilations) * channels, mfa_channels)
        self.pooling = AttentiveStatsPooling(mfa_channels, attention_channels)
        self.pooling_norm = nn.BatchNorm1d(2 * mfa_channels)
        self.linear = nn.Linear(2 * mfa_channels, embedding_dim)
        self.embedding_norm = nn.BatchNorm1d(embedding_dim, affine=False) if embedding_batch_norm else nn.Identity()

        self.frame_hop_samples = self.features.hop_samples
        context_frames = 5 + sum((res2_scale - 1) * 2 * dilation for dilation in dilations)
        self.receptive_field_samples = self.features.win_samples + (context_frames - 1) * self.frame_hop_samples
        self.min_samples = self.features.win_samples
        self.frames_are_local = False

    def num_frames(self, num_samples: int) -> int:
        return self.features.num_frames(num_samples)

    def frames(self, waveforms: Tensor) -> Tensor:
        """``(batch, samples)`` -> ``(batch, mfa_channels, num_frames(samples))``."""
        self.check_waveforms(waveforms)
        x = self.stem(self.features(waveforms))
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return self.aggregate(torch.cat(outputs, dim=1))

    def embed_frames(self, frames: Tensor) -> Tensor:
        """``(batch, mfa_channels, frames)`` -> ``(batch, embedding_dim)``."""
        embeddings = self.embedding_norm(self.linear(self.pooling_norm(self.pooling(frames))))
        if self.embedding_unit_norm:
            embeddings = F.normalize(embeddings, dim=1)
        return embeddings
