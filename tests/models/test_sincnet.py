"""SincNet's first layer against the published formula (pyannote.audio 1.x ``SincConv1d``,
which is mravanelli/SincNet's ``SincConv_fast``), written out here independently."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from voxmetric.errors import ConfigError
from voxmetric.models import SincConv1d, SincNet, build_model

SR = 16000


def reference_kernels(low_hz_: torch.Tensor, band_hz_: torch.Tensor, kernel_size: int = 251,
                      sample_rate: int = SR, min_low_hz: float = 50.0, min_band_hz: float = 50.0) -> torch.Tensor:
    """The published formula, in float64: (n_filters, 1, kernel_size)."""
    low_hz_, band_hz_ = low_hz_.double(), band_hz_.double()
    n_lin = torch.linspace(0, kernel_size / 2 - 1, steps=int(kernel_size / 2), dtype=torch.float64)
    window = 0.54 - 0.46 * torch.cos(2 * math.pi * n_lin / kernel_size)
    n = (kernel_size - 1) / 2.0
    n_ = 2 * math.pi * torch.arange(-n, 0, dtype=torch.float64).view(1, -1) / sample_rate
    low = min_low_hz + low_hz_.abs()
    high = torch.clamp(low + min_band_hz + band_hz_.abs(), min_low_hz, sample_rate / 2)
    band = (high - low)[:, 0]
    left = (torch.sin(high @ n_) - torch.sin(low @ n_)) / (n_ / 2) * window
    centre = 2 * band.view(-1, 1)
    kernels = torch.cat([left, centre, left.flip(dims=[1])], dim=1) / (2 * band[:, None])
    return kernels.view(-1, 1, kernel_size)


def test_default_kernels_are_pyannote_1x_exactly():
    sinc = SincConv1d()
    assert sinc.kernel_normalization == "pyannote"
    with torch.no_grad():
        ours = sinc.filters().double()
    expected = reference_kernels(sinc.low_hz_.detach(), sinc.band_hz_.detach())
    assert ours.shape == expected.shape == (80, 1, 251)
    assert (ours - expected).abs().max().item() < 1e-5
    assert torch.equal(ours[:, 0, 125], torch.ones(80, dtype=torch.float64))  # centre tap 1


def test_kernels_match_after_training_like_parameter_changes():
    torch.manual_seed(0)
    sinc = SincConv1d()
    with torch.no_grad():
        sinc.low_hz_.mul_(torch.empty_like(sinc.low_hz_).uniform_(-1.2, 1.2))
        sinc.band_hz_.mul_(torch.empty_like(sinc.band_hz_).uniform_(-1.5, 1.5))
        ours = sinc.filters().double()
    expected = reference_kernels(sinc.low_hz_.detach(), sinc.band_hz_.detach())
    # Relative to the kernel scale (centre tap 1): float32 sines of up to 2 pi 8000 * 125 / 16000.
    assert (ours - expected).abs().max().item() < 1e-5


def test_conv_output_matches_reference_conv():
    torch.manual_seed(1)
    sinc = SincConv1d(stride_samples=5)
    x = torch.randn(2, 1, 4000)
    with torch.no_grad():
        ours = sinc(x).double()
    expected = F.conv1d(x.double(), reference_kernels(sinc.low_hz_.detach(), sinc.band_hz_.detach()), stride=5)
    assert ours.shape == expected.shape == (2, 80, (4000 - 251) // 5 + 1)
    scale = expected.abs().max().item()
    assert (ours - expected).abs().max().item() < 1e-5 * scale


def test_ideal_bandpass_is_the_reference_scaled_by_2band_over_fs_with_its_own_window():
    old, new = SincConv1d(kernel_normalization="ideal_bandpass"), SincConv1d()
    low, high = new.cutoffs_hz()
    with torch.no_grad():
        ratio = new.filters()[:, 0, 125] / old.filters()[:, 0, 125]
    assert torch.allclose(ratio, SR / (2 * (high - low)), rtol=1e-4)
    assert ratio.min() > 25 and ratio.max() < 111


def test_kernel_normalization_is_a_model_param():
    assert build_model("sinctdnn").config["kernel_normalization"] == "pyannote"
    model = build_model("sinctdnn", kernel_normalization="ideal_bandpass", tdnn_channels=32,
                        tdnn_stats_channels=64, embedding_dim=16)
    assert model.sincnet.convs[0].kernel_normalization == "ideal_bandpass"
    with pytest.raises(ConfigError, match="kernel_normalization must be one of"):
        build_model("sinctdnn", kernel_normalization="unit")


def test_seed_sincnet_size_and_frames():
    sincnet = SincNet()
    assert sum(p.numel() for p in sincnet.parameters()) == 42_682
    assert sincnet.num_frames(3 * SR) == 351
    assert sincnet(torch.randn(1, 3 * SR)).shape == (1, 60, 351)


def test_inference_kernels_are_cached_until_a_parameter_changes():
    torch.manual_seed(2)
    sinc = SincConv1d(stride_samples=5)
    x = torch.randn(1, 1, 3000)
    sinc.train()
    with torch.no_grad():
        assert sinc.kernels() is not sinc.kernels()  # training: always recomputed
    sinc.eval()
    with torch.inference_mode():
        cached = sinc.kernels()
        assert sinc.kernels() is cached
        assert torch.equal(cached, sinc.filters())
    with torch.no_grad():
        assert sinc.kernels() is cached
        sinc.low_hz_.add_(25.0)  # an in-place update (optimizer step, copy_)
        changed = sinc.kernels()
    assert changed is not cached and not torch.allclose(changed, cached)
    expected = reference_kernels(sinc.low_hz_.detach(), sinc.band_hz_.detach())
    assert (changed.double() - expected).abs().max().item() < 1e-5
    with torch.inference_mode():
        ours = sinc(x).double()
    reference = F.conv1d(x.double(), expected, stride=5)
    assert (ours - reference).abs().max().item() < 1e-5 * reference.abs().max().item()


def test_cached_kernels_follow_loaded_weights_and_leave_gradients_alone():
    torch.manual_seed(3)
    sinc, other = SincConv1d().eval(), SincConv1d()
    with torch.no_grad():
        other.band_hz_.mul_(0.5)
        before = sinc.kernels()
    sinc.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert torch.equal(sinc.kernels(), other.filters())
        assert not torch.equal(sinc.kernels(), before)
    # Gradients on (eval-mode fine-tuning, attribution): the graph goes through the parameters.
    kernels = sinc.kernels()
    assert kernels.grad_fn is not None
    kernels.sum().backward()
    assert sinc.low_hz_.grad is not None
