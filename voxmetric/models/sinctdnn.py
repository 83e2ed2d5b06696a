"""SincTDNN, the seed network of Coria et al. (2020): SincNet frames -> x-vector TDNN."""

from __future__ import annotations

from torch import Tensor

from ..checks import check_int
from .base import EmbeddingModel
from .sincnet import SincNet
from .tdnn import TDNN


class SincTDNN(EmbeddingModel):
    """SincNet front-end on the raw waveform, x-vector TDNN on its frames.

    Waveforms ``(batch, samples)`` at 16 kHz -> embeddings ``(batch, embedding_dim)``.
    :meth:`frames` gives the TDNN's last frame layer, ``(batch, tdnn_stats_channels, frames)``.
    Flat arguments so that a YAML ``model:`` section maps onto them one to one.

    With the defaults: frames every 135 samples (8.4 ms), each seeing 2511 samples
    (157 ms = SincNet's 621 plus the TDNN's 14 extra frames); shorter input is refused
    (``min_samples = 2511``). A 3 s chunk gives 351 SincNet frames and 337 TDNN frames.
    Default size: 4.35 M parameters, 0.41 G MACs per second of audio; with
    ``tdnn_channels=128, tdnn_stats_channels=384, embedding_dim=128``: 0.35 M parameters,
    0.12 G MACs per second (``benchmarks/model_cost.py``, 3 s input).

    Parameters
    ----------
    embedding_dim : int
        512.
    sinc_filters, sinc_kernel_samples, min_low_hz, min_band_hz, conv_channels, conv_kernel_size,
    strides, pool_size, waveform_normalize, instance_normalize, kernel_normalization
        See :class:`~voxmetric.models.sincnet.SincNet` (80, 251, 50, 50, 60, 5, [5, 1, 1], 3,
        True, True, "pyannote").
    tdnn_channels, tdnn_stats_channels
        Widths of the TDNN frame layers (512, 1500); e.g. 128 / 384 for a small demo model.
    embedding_batch_norm, embedding_unit_norm
        See :class:`~voxmetric.models.tdnn.TDNN` (seed: False, False).

    >>> import torch
    >>> model = SincTDNN(tdnn_channels=128, tdnn_stats_channels=384, embedding_dim=64)
    >>> model(torch.randn(2, 48000)).shape
    torch.Size([2, 64])
    >>> model.frames(torch.randn(2, 48000)).shape
    torch.Size([2, 384, 337])
    """

    def __init__(
        self,
        embedding_dim: int = 512,
        sinc_filters: int = 80,
        sinc_kernel_samples: int = 251,
        min_low_hz: float = 50.0,
        min_band_hz: float = 50.0,
        conv_channels: int = 60,
        conv_kernel_size: int = 5,
        strides: tuple[int, int, int] = (5, 1, 1),
        pool_size: int = 3,
        waveform_normalize: bool = True,
        instance_normalize: bool = True,
        kernel_normalization: str = "pyannote",
        tdnn_channels: int = 512,
        tdnn_stats_channels: int = 1500,
        embedding_batch_norm: bool = False,
        embedding_unit_norm: bool = False,
    ):
        super().__init__()
        # Checked here so that errors name this class's (config's) field, not TDNN's.
        check_int("SincTDNN", "tdnn_channels", tdnn_channels)
        check_int("SincTDNN", "tdnn_stats_channels", tdnn_stats_channels)
        self.sincnet = SincNet(
            sample_rate_hz=self.sample_rate_hz,
            sinc_filters=sinc_filters,
            sinc_kernel_samples=sinc_kernel_samples,
            min_low_hz=min_low_hz,
            min_band_hz=min_band_hz,
            conv_channels=conv_channels,
            conv_kernel_size=conv_kernel_size,
            strides=strides,
            pool_size=pool_size,
            waveform_normalize=waveform_normalize,
            instance_normalize=instance_normalize,
            kernel_normalization=kernel_normalization,
        )
        self.tdnn = TDNN(
            conv_channels, tdnn_channels, tdnn_stats_channels, embedding_dim, embedding_batch_norm, embedding_unit_norm
        )
        self.embedding_dim = embedding_dim
        self.frame_hop_samples = self.sincnet.frame_hop_samples
        self.receptive_field_samples = (
            self.sincnet.receptive_field_samples + (TDNN.context_frames - 1) * self.frame_hop_samples
        )
        self.min_samples = self.receptive_field_samples
        self.frames_are_local = self.sincnet.frames_are_local
        self.pools_mean_std = True

    def num_frames(self, num_samples: int) -> int:
        return self.tdnn.num_frames(self.sincnet.num_frames(num_samples))

    def frames(self, waveforms: Tensor) -> Tensor:
        """``(batch, samples)`` -> ``(batch, tdnn_stats_channels, num_frames(samples))``."""
        self.check_waveforms(waveforms)
        return self.tdnn.frames(self.sincnet(waveforms))

    def embed_frames(self, frames: Tensor) -> Tensor:
        """``(batch, tdnn_stats_channels, frames)`` -> ``(batch, embedding_dim)``."""
        return self.tdnn.embed_frames(frames)

    def embed_moments(self, mean: Tensor, variance: Tensor) -> Tensor:
        """See :meth:`~voxmetric.models.tdnn.TDNN.embed_moments`."""
        return self.tdnn.embed_moments(mean, variance)
