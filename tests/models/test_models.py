"""Tests of voxmetric.models: shapes, frame arithmetic, sinc filters, pooling, precision, export, registry."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim, export

from voxmetric.errors import ConfigError
from voxmetric.models import (
    ECAPA_TDNN,
    MFCC,
    MODELS,
    Fbank,
    InputTooShortError,
    SincConv1d,
    SincNet,
    SincTDNN,
    XVector,
    build_model,
)
from voxmetric.models.pooling import StatsPooling, mean_std

SR = 16000

# Narrow versions of every model: same architecture, a fraction of the compute.
SMALL = {
    "sincnet_tdnn": dict(tdnn_channels=64, tdnn_stats_channels=96, embedding_dim=32),
    "xvector": dict(channels=64, stats_channels=96, embedding_dim=32),
    "ecapa_tdnn": dict(channels=64, se_channels=16, attention_channels=16, mfa_channels=96, embedding_dim=32),
}


def small(name: str):
    torch.manual_seed(0)
    return build_model(name, **SMALL[name]).eval()


def waveforms(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, round(seconds * SR), generator=generator)


# --- SincNet ----------------------------------------------------------------------------


def test_sincnet_frame_count_of_3s_matches_documented_formula():
    sincnet = SincNet()
    n = 3 * SR
    expected = n
    for kernel, stride in [(251, 5), (3, 3), (5, 1), (3, 3), (5, 1), (3, 3)]:
        expected = (expected - kernel) // stride + 1
    assert expected == 351
    assert sincnet.num_frames(n) == 351
    assert sincnet(waveforms(2, 3.0)).shape == (2, 60, 351)
    assert (sincnet.frame_hop_samples, sincnet.receptive_field_samples) == (135, 621)
    assert sincnet.num_frames(620) == 0 and sincnet.num_frames(621) == 1


def test_sincnet_receptive_field_is_exact_when_frames_are_local():
    # Without instance norm (utterance statistics) a frame sees only its receptive field.
    sincnet = SincNet(waveform_normalize=False, instance_normalize=False).eval()
    assert sincnet.frames_are_local
    x = waveforms(1, 0.1)
    reference = sincnet(x)[0, :, 0]
    outside, inside = x.clone(), x.clone()
    outside[0, sincnet.receptive_field_samples] += 1.0
    inside[0, sincnet.receptive_field_samples - 1] += 1.0
    assert torch.equal(sincnet(outside)[0, :, 0], reference)
    assert not torch.equal(sincnet(inside)[0, :, 0], reference)


def _gain(kernels: torch.Tensor, n_fft: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.fft.rfftfreq(n_fft, 1 / SR), torch.fft.rfft(kernels, n=n_fft).abs()


@pytest.mark.parametrize("normalization", ["pyannote", "ideal_bandpass"])
def test_sinc_filters_pass_their_band_and_stop_elsewhere(normalization):
    sinc = SincConv1d(kernel_normalization=normalization)
    with torch.no_grad():
        kernels = sinc.filters()[:, 0]
        low, high = sinc.cutoffs_hz()
    assert kernels.shape == (80, 251)
    assert torch.allclose(kernels, kernels.flip(dims=[1]))  # symmetric (linear phase)
    freqs, gain = _gain(kernels)
    # pyannote's kernels are fs / (2 band) times the ideal band-pass taps (window aside).
    scale = SR / (2 * (high - low)) if normalization == "pyannote" else torch.ones(80)
    for k in range(80):
        centre = gain[k, (freqs - (low[k] + high[k]) / 2).abs().argmin()] / scale[k]
        far = gain[k, (freqs < low[k] - 300) | (freqs > high[k] + 300)].max() / scale[k]
        assert centre > 0.5 and far < 0.01, (k, low[k], high[k], centre, far)


def test_ideal_bandpass_kernels_have_unit_gain_in_a_wide_band_only():
    sinc = SincConv1d(kernel_normalization="ideal_bandpass")
    with torch.no_grad():
        freqs, gain = _gain(sinc.filters()[:1, 0])
        assert gain.max().item() == pytest.approx(0.56, abs=0.01)  # filter 0, 80-130 Hz: not unit
        sinc.low_hz_[0] = 1000.0 - sinc.min_low_hz
        sinc.band_hz_[0] = 1000.0 - sinc.min_band_hz
        freqs, gain = _gain(sinc.filters()[:1, 0])
    at = lambda hz: gain[0, (freqs - hz).abs().argmin()].item()  # noqa: E731
    assert at(1500) == pytest.approx(1.0, abs=0.02)
    assert at(500) < 0.01 and at(2500) < 0.01


def test_sinc_cutoffs_respect_minima_after_negative_parameters():
    sinc = SincConv1d()
    with torch.no_grad():
        sinc.low_hz_.copy_(-torch.linspace(0, 40, 80).unsqueeze(1))
        sinc.band_hz_.copy_(-torch.linspace(0, 30, 80).unsqueeze(1))
    low, high = sinc.cutoffs_hz()
    assert low.min() >= sinc.min_low_hz == 50
    assert (high - low).min() >= sinc.min_band_hz - 1e-4
    assert torch.isfinite(sinc.filters()).all()


def test_sinc_initialisation_is_mel_spaced_from_30hz_to_nyquist():
    low, high = SincConv1d().cutoffs_hz()
    assert low[0].item() == pytest.approx(30 + 50, abs=1e-3)
    assert high[-1].item() == pytest.approx(SR / 2, abs=1e-2)
    assert (low.diff() > 0).all() and ((high - low).diff() > 0).all()  # wider bands higher up


# --- TDNN, SincTDNN, XVector ------------------------------------------------------------


@pytest.mark.parametrize("seconds", [1.0, 3.0, 10.0])
def test_sinctdnn_embedding_shape_for_several_durations(seconds):
    model = small("sincnet_tdnn")
    n = round(seconds * SR)
    frames = model.frames(waveforms(2, seconds))
    assert frames.shape == (2, 96, model.num_frames(n))
    assert model.embed_frames(frames).shape == (2, 32)


def test_default_sinctdnn_shapes_and_size():
    torch.manual_seed(0)
    model = SincTDNN().eval()
    assert (model.frame_hop_samples, model.receptive_field_samples, model.min_samples) == (135, 2511, 2511)
    assert model.num_frames(3 * SR) == 337
    with torch.no_grad():
        assert model(waveforms(1, 3.0)).shape == (1, 512)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.35e6, rel=0.01)


@pytest.mark.parametrize("seconds", [1.0, 3.0, 10.0])
def test_xvector_embedding_shape_for_several_durations(seconds):
    model = small("xvector")
    assert model(waveforms(2, seconds)).shape == (2, 32)
    assert model.frames(waveforms(1, seconds)).shape[2] == model.num_frames(round(seconds * SR))


def test_default_xvector_shape_and_fbank_variant():
    torch.manual_seed(0)
    with torch.no_grad():
        assert XVector().eval()(waveforms(1, 1.0)).shape == (1, 512)
        assert XVector(features="fbank", n_mels=40, **SMALL["xvector"]).eval()(waveforms(1, 1.0)).shape == (1, 32)


def test_embedding_options_batch_norm_and_unit_norm():
    model = build_model("sinctdnn", embedding_unit_norm=True, embedding_batch_norm=True, **SMALL["sincnet_tdnn"])
    embeddings = model(waveforms(3, 0.5))  # training mode: batch norm uses batch statistics
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_variable_length_and_minimum_input(name):
    model = small(name)
    for n in [model.min_samples, model.min_samples + 1, model.min_samples + 3 * model.frame_hop_samples + 7]:
        out = model(torch.randn(1, n))
        assert out.shape == (1, 32) and torch.isfinite(out).all()
        assert model.frames(torch.randn(1, n)).shape[2] == model.num_frames(n) >= 1
    with pytest.raises(InputTooShortError, match=rf"at least {model.min_samples} samples .* got {model.min_samples - 1}"):
        model(torch.randn(1, model.min_samples - 1))
    with pytest.raises(ValueError, match=r"\(batch, samples\).*\(16000,\)"):
        model(torch.randn(SR))


@pytest.mark.parametrize("name", list(MODELS))
def test_frames_then_embed_frames_equals_forward(name):
    model = small(name)
    x = waveforms(2, 1.5)
    with torch.no_grad():
        assert torch.allclose(model.embed_frames(model.frames(x)), model(x), atol=1e-6)


# --- pooling -----------------------------------------------------------------------------


def test_stats_pooling_constant_input_gives_finite_values_and_gradients():
    frames = torch.full((2, 5, 20), 3.0, requires_grad=True)
    pooled = StatsPooling()(frames)
    assert pooled.shape == (2, 10) and torch.isfinite(pooled).all()
    assert torch.allclose(pooled[:, :5], torch.full((2, 5), 3.0))
    pooled.sum().backward()
    assert torch.isfinite(frames.grad).all()
    # Weighted (attentive) statistics too, and a single frame.
    one = torch.ones(1, 4, 1, requires_grad=True)
    mean, std = mean_std(one, torch.ones(1, 4, 1))
    (mean.sum() + std.sum()).backward()
    assert torch.isfinite(std).all() and torch.isfinite(one.grad).all()


def test_stats_pooling_matches_population_mean_and_std():
    frames = torch.randn(3, 4, 50)
    pooled = StatsPooling()(frames)
    assert torch.allclose(pooled, torch.cat([frames.mean(2), frames.std(2, unbiased=False)], 1), atol=1e-5)


def test_tdnn_embedding_finite_on_silence():
    model = small("sincnet_tdnn")
    silence = torch.zeros(2, SR)
    embeddings = build_model("xvector", **SMALL["xvector"]).eval()(silence)
    assert torch.isfinite(model(silence)).all() and torch.isfinite(embeddings).all()


# --- features ------------------------------------------------------------------------------


def test_fbank_frames_peak_at_a_tone_and_are_mean_normalised():
    fbank = Fbank(n_mels=40, cmn=False)
    t = torch.arange(SR) / SR
    tone = torch.sin(2 * torch.pi * 1000 * t).unsqueeze(0)
    features = fbank(tone)
    assert features.shape == (1, 40, fbank.num_frames(SR)) == (1, 40, 98)
    peak_band = features[0].mean(dim=1).argmax().item()
    centres = fbank.mel_weights.argmax(dim=0) * SR / 512  # frequency of each filter's top bin
    assert abs(centres[peak_band].item() - 1000) < 100
    normalised = Fbank(n_mels=40)(tone)
    assert normalised.mean(dim=2).abs().max() < 1e-4


def test_features_stay_float32_under_autocast():
    x = waveforms(2, 0.5)
    for features in (Fbank(), MFCC()):
        reference = features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = features(x)
        assert out.dtype == torch.float32 and torch.allclose(out, reference, atol=1e-4)
    assert MFCC(n_mfcc=20, n_mels=40)(x).shape == (2, 20, 48)


def test_feature_arguments_are_checked():
    with pytest.raises(ConfigError, match="n_mfcc=40 exceeds n_mels=30"):
        MFCC(n_mfcc=40)
    with pytest.raises(ConfigError, match=r"n_mels=400 is too many"):
        Fbank(n_mels=400)
    with pytest.raises(ConfigError, match=r"n_mfcc=20 only applies to features='mfcc'"):
        XVector(features="fbank", n_mfcc=20)


# --- ECAPA ---------------------------------------------------------------------------------


def test_ecapa_default_shape_and_parameter_count():
    torch.manual_seed(0)
    model = ECAPA_TDNN().eval()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(6.2e6, rel=0.02)  # paper: 6.2 M
    with torch.no_grad():
        assert model(waveforms(2, 1.0)).shape == (2, 192)
        assert model.frames(waveforms(1, 1.0)).shape == (1, 1536, 98)
    wide = ECAPA_TDNN(channels=1024)
    assert sum(p.numel() for p in wide.parameters()) == pytest.approx(14.7e6, rel=0.02)  # paper: 14.7 M


# --- precision and export --------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_autocast_bfloat16_on_cpu_is_close_to_float32(name):
    model = small(name)
    x = waveforms(2, 1.0)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert torch.isfinite(low).all()
    assert F.cosine_similarity(low.float(), reference).min() > 0.99


@pytest.mark.parametrize("name", ["xvector", "ecapa_tdnn"])
def test_export_with_dynamic_length_matches_eager(name):
    model = small(name)
    # Example batch >= 2 and bounds giving >= 2 frames: export specialises sizes 0 and 1.
    dims = {0: Dim("batch", min=1, max=256), 1: Dim("samples", min=model.min_samples + 160, max=60 * SR)}
    program = export(model, (waveforms(2, 1.0),), dynamic_shapes={"waveforms": dims})
    for batch, seconds in [(2, 1.0), (3, 2.3)]:
        x = waveforms(batch, seconds, seed=1)
        with torch.no_grad():
            assert torch.allclose(program.module()(x), model(x), atol=1e-4)


@pytest.mark.parametrize("name", list(MODELS))
def test_autocast_mixed_precision_is_close_to_float32(name):
    # float16 on a GPU where there is one (training's AMP), else bfloat16 on the CPU: the
    # networks stay finite and their embeddings keep their direction under reduced precision.
    device, dtype = ("cuda", torch.float16) if torch.cuda.is_available() else ("cpu", torch.bfloat16)
    model = small(name).to(device)
    x = waveforms(2, 1.0).to(device)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast(device, dtype=dtype):
            low = model(x)
    assert low.dtype in (torch.float32, dtype) and torch.isfinite(low).all()
    assert F.cosine_similarity(low.float(), reference).min() > 0.99


def test_sinctdnn_exports_for_a_fixed_window_length():
    # Max-pooling makes torch.export specialise on the frame count, so SincTDNN exports
    # one program per window length (the 3 s sliding window of inference).
    model = small("sincnet_tdnn")
    x = waveforms(2, 3.0)
    program = export(model, (x,))
    y = waveforms(2, 3.0, seed=1)
    with torch.no_grad():
        assert torch.allclose(program.module()(y), model(y), atol=1e-4)


# --- registry ----------------------------------------------------------------------------


def test_registry_aliases_and_config_round_trip():
    model = build_model("sinctdnn", strides=[5, 1, 1], **SMALL["sincnet_tdnn"])
    assert isinstance(model, SincTDNN) and model.config["name"] == "sincnet_tdnn"
    assert model.config["strides"] == [5, 1, 1] and model.config["tdnn_channels"] == 64
    again = build_model(**model.config)
    assert again.config == model.config
    assert isinstance(build_model("ecapa", **SMALL["ecapa_tdnn"]), ECAPA_TDNN)


def test_registry_errors_name_the_bad_name_or_parameter():
    with pytest.raises(ConfigError, match=r"unknown model 'resnet'; allowed:.*sincnet_tdnn.*xvector.*ecapa_tdnn"):
        build_model("resnet")
    with pytest.raises(ConfigError, match=r"unknown parameter 'tdnn_chanels'.*allowed:.*tdnn_channels"):
        build_model("sinctdnn", tdnn_chanels=128)
    with pytest.raises(ConfigError, match=r"model 'sinctdnn': SincNet: strides must be a list of 3 integers, got \[5, 1\]"):
        build_model("sinctdnn", strides=[5, 1])
    with pytest.raises(ConfigError, match=r"model 'sinctdnn': SincTDNN: tdnn_channels must be an integer >= 1, got 'big'"):
        build_model("sinctdnn", tdnn_channels="big")
    with pytest.raises(ConfigError, match=r"sinc_kernel_samples must be odd, got 250"):
        build_model("sinctdnn", sinc_kernel_samples=250)
    with pytest.raises(ConfigError, match=r"waveform_normalize must be true or false, got 'yes'"):
        build_model("sinctdnn", waveform_normalize="yes")
    with pytest.raises(ConfigError, match=r"features must be one of 'mfcc', 'fbank', got 'plp'"):
        build_model("xvector", features="plp")
    with pytest.raises(ConfigError, match=r"res2_scale=3 must divide channels=512"):
        build_model("ecapa", res2_scale=3)


# --- docstrings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["__init__", "pooling", "sincnet", "features", "tdnn", "sinctdnn", "ecapa"]
)
def test_docstring_examples(module):
    name = "voxmetric.models" if module == "__init__" else f"voxmetric.models.{module}"
    torch.manual_seed(0)
    result = doctest.testmod(importlib.import_module(name), extraglobs={"torch": torch})
    assert result.failed == 0


# --- level invariance of the filterbank features (Kaldi's log floor) --------------------------


@pytest.mark.parametrize("cls", ["Fbank", "MFCC"])
def test_a_quieter_copy_gives_the_same_features_minus_a_constant(cls, shared_data):
    """-40 dB is a constant shift of log-mel energies (2 ln 0.01 = -9.21 nats); with MFCCs only c0 moves."""
    import voxmetric.models as models
    from voxmetric import audio

    waveform = torch.from_numpy(audio.read(shared_data / "real" / "ls-1998" / sorted(
        p.name for p in (shared_data / "real" / "ls-1998").iterdir())[0]))[None]
    features = getattr(models, cls)(cmn=False)
    loud = features(waveform)
    quiet = features(waveform * 0.01)
    if cls == "Fbank":
        torch.testing.assert_close(quiet, loud + 2 * math.log(0.01), atol=2e-3, rtol=0)
    else:
        shift = quiet - loud
        torch.testing.assert_close(shift[:, 1:], torch.zeros_like(shift[:, 1:]), atol=2e-3, rtol=0)
        assert torch.allclose(shift[:, 0], shift[0, 0, 0].expand_as(shift[:, 0]), atol=2e-3)
