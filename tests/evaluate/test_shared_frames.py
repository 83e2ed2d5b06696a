"""Shared-frame sliding-window extraction equals the window-by-window computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxmetric.evaluate.extract import choose_method, embed_waveform, naive_window_embeddings, window_starts
from voxmetric.evaluate.shared_frames import (
    _window_moments,
    frame_aligned_starts,
    shared_frame_embeddings,
    shares_frames_exactly,
)
from voxmetric.models import build_model

SR = 16000
WINDOW_S, STEP_S = 3.0, 0.1
WINDOW = round(WINDOW_S * SR)

# Small widths for speed; batch norm / no CMN so that frames are local.
LOCAL = {
    "sinctdnn": dict(waveform_normalize=False, instance_normalize=False,
                     tdnn_channels=48, tdnn_stats_channels=64, embedding_dim=24),
    "xvector": dict(cmn=False, channels=48, stats_channels=64, embedding_dim=24),
}


def random_model(name: str, **params):
    """Random weights and random batch-norm statistics, eval mode."""
    torch.manual_seed(0)
    model = build_model(name, **params)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d) and module.running_mean is not None:
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def speechlike(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise with a slowly varying level, so that window statistics differ along the file."""
    rng = np.random.default_rng(seed)
    level = 0.05 + 0.1 * np.abs(np.sin(np.arange(num_samples) / 7000.0))
    return (level * rng.standard_normal(num_samples)).astype(np.float32)


def naive_on_aligned_starts(model, waveform: np.ndarray) -> np.ndarray:
    """Reference: every frame-aligned window through the whole model, embeddings averaged."""
    if waveform.size <= WINDOW:
        with torch.inference_mode():
            return model(torch.from_numpy(waveform)[None])[0].double().numpy()
    starts = frame_aligned_starts(window_starts(waveform.size, WINDOW, round(STEP_S * SR)),
                                  model.frame_hop_samples, waveform.size, WINDOW)
    with torch.inference_mode():
        windows = torch.cat(list(naive_window_embeddings(model, torch.from_numpy(waveform), starts, WINDOW, 16)))
    return windows.mean(0).numpy()


@pytest.mark.parametrize("name", sorted(LOCAL))
@pytest.mark.parametrize(
    "num_samples",
    [
        2 * SR,                # shorter than one window: embedded whole
        WINDOW,                # exactly one window
        WINDOW + 1_000,        # two windows: 0 and the end-aligned tail, moved onto the frame grid
        round(13.7 * SR),      # several blocks of 4 s
    ],
)
def test_shared_frames_equal_naive_windows(name, num_samples):
    model = random_model(name, **LOCAL[name])
    assert shares_frames_exactly(model) and choose_method(model) == "shared"
    waveform = speechlike(num_samples)
    shared = embed_waveform(model, waveform, WINDOW_S, STEP_S, method="shared", block_s=4.0)
    assert np.abs(shared - naive_on_aligned_starts(model, waveform)).max() < 1e-4


@pytest.mark.parametrize("name", sorted(LOCAL))
def test_every_block_size_gives_the_same_windows(name):
    model = random_model(name, **LOCAL[name])
    waveform = torch.from_numpy(speechlike(round(9.3 * SR), seed=1))
    starts = frame_aligned_starts(window_starts(waveform.numel(), WINDOW, 1600), model.frame_hop_samples,
                                  waveform.numel(), WINDOW)
    with torch.inference_mode():
        whole = torch.cat(list(shared_frame_embeddings(model, waveform, starts, WINDOW, block_s=60.0)))
        blocks = list(shared_frame_embeddings(model, waveform, starts, WINDOW, block_s=3.5))
        naive = torch.cat(list(naive_window_embeddings(model, waveform, starts, WINDOW)))
    assert len(blocks) > 3  # block boundaries exercised
    blocks = torch.cat(blocks)
    assert blocks.shape == (len(starts), model.embedding_dim)
    assert (blocks - whole).abs().max() < 1e-5
    assert (blocks.double() - naive).abs().max() < 1e-4


def test_blocks_bound_the_input_of_the_frame_layers(monkeypatch):
    model = random_model("sinctdnn", **LOCAL["sinctdnn"])
    lengths = []
    frames = model.frames
    monkeypatch.setattr(model, "frames", lambda x: lengths.append(x.shape[1]) or frames(x))
    embed_waveform(model, speechlike(40 * SR), method="shared", block_s=5.0)
    # Each block: about block_s of windows plus one window of overlap, never the whole file.
    assert len(lengths) >= 8 and max(lengths) <= (5.0 + WINDOW_S) * SR + model.receptive_field_samples


@pytest.mark.parametrize("step_s", [STEP_S, 1.7, 4.0])  # dense windows, sparse ones, gaps between windows
def test_local_frames_of_overlapping_blocks_are_computed_once(monkeypatch, step_s):
    model = random_model("sinctdnn", **LOCAL["sinctdnn"])
    waveform = torch.from_numpy(speechlike(round(21.3 * SR), seed=2))
    starts = frame_aligned_starts(window_starts(waveform.numel(), WINDOW, round(step_s * SR)),
                                  model.frame_hop_samples, waveform.numel(), WINDOW)
    with torch.inference_mode():
        naive = torch.cat(list(naive_window_embeddings(model, waveform, starts, WINDOW)))
        computed = []
        frames = model.frames

        def counted(waveforms):
            out = frames(waveforms)
            computed.append(out.shape[2])
            return out

        monkeypatch.setattr(model, "frames", counted)
        shared = torch.cat(list(shared_frame_embeddings(model, waveform, starts, WINDOW, block_s=3.5)))
    assert len(computed) > 3  # block boundaries exercised
    assert (shared.double() - naive).abs().max() < 1e-4
    window_frames = model.num_frames(WINDOW)
    needed = np.unique((starts // model.frame_hop_samples)[:, None] + np.arange(window_frames)).size
    assert sum(computed) == needed  # every frame a window needs, each once


def test_window_moments_keep_their_digits_with_a_large_mean():
    # Frames far from zero with a small spread: E[x^2] - E[x]^2 of raw sums would lose it all.
    generator = torch.Generator().manual_seed(0)
    frames = 300.0 + 0.01 * torch.randn(5, 400, generator=generator)
    offsets = torch.tensor([0, 7, 100, 250])
    mean, variance = _window_moments(frames, offsets, 150)
    for row, offset in enumerate(offsets.tolist()):
        window = frames[:, offset : offset + 150].double()  # two-pass reference in float64
        expected_mean = window.mean(dim=1)
        expected_variance = (window - expected_mean[:, None]).square().mean(dim=1)
        assert torch.allclose(mean[row], expected_mean, rtol=0, atol=1e-10)
        assert torch.allclose(variance[row], expected_variance, rtol=1e-9, atol=0)


def test_frame_aligned_starts_stay_on_the_grid_and_inside():
    num_samples = 16000 * 7 + 123
    starts = window_starts(num_samples, WINDOW, 1600)
    aligned = frame_aligned_starts(starts, 135, num_samples, WINDOW)
    assert len(aligned) == len(starts)
    assert np.all(aligned % 135 == 0) and aligned[0] == 0 and aligned[-1] + WINDOW <= num_samples
    assert np.all(np.diff(aligned) >= 0)
    assert np.abs(aligned - starts).max() <= 135  # half a hop, or less than a hop where clamped at the end
    assert np.abs(aligned[:-1] - starts[:-1]).max() <= 67


def test_auto_keeps_naive_windows_for_non_local_models():
    seed_sinctdnn = random_model("sinctdnn", tdnn_channels=48, tdnn_stats_channels=64, embedding_dim=24)
    xvector_cmn = random_model("xvector", channels=48, stats_channels=64, embedding_dim=24)
    ecapa = random_model("ecapa", channels=32, se_channels=8, attention_channels=8, mfa_channels=48, embedding_dim=16)
    for model in (seed_sinctdnn, xvector_cmn, ecapa):
        assert not shares_frames_exactly(model)
        assert choose_method(model, "auto") == "naive"
    # An explicit request gives the (approximate) shared path where the interface exists...
    assert choose_method(seed_sinctdnn, "shared") == "shared"
    # ... and a clear error where it does not.
    with pytest.raises(ValueError, match="ECAPA_TDNN"):
        choose_method(ecapa, "shared")
    with pytest.raises(ValueError, match="method must be one of"):
        choose_method(seed_sinctdnn, "fast")


def test_auto_on_non_local_model_is_the_naive_result():
    model = random_model("xvector", channels=48, stats_channels=64, embedding_dim=24)  # cmn=True
    waveform = speechlike(round(4.2 * SR))
    auto = embed_waveform(model, waveform, method="auto")
    naive = embed_waveform(model, waveform, method="naive")
    assert np.array_equal(auto, naive)


@pytest.mark.parametrize("name", sorted(LOCAL))
def test_embed_moments_equals_embed_frames(name):
    model = random_model(name, **LOCAL[name])
    frames = torch.randn(3, model.tdnn.out_channels, 40)
    mean = frames.mean(dim=2)
    variance = frames.var(dim=2, unbiased=False)
    with torch.inference_mode():
        assert torch.allclose(model.embed_moments(mean, variance), model.embed_frames(frames), atol=1e-5)
