"""Sliding-window embedding extraction."""

import numpy as np
import pytest
import torch

from voxmetric import audio
from voxmetric.errors import AudioError
from voxmetric.evaluate.extract import embed_waveform, embed_waveform_each, extract_embeddings, window_starts


class WindowMean(torch.nn.Module):
    """(batch, samples) -> (batch, 2): the mean of each window and its length."""

    def forward(self, x):
        return torch.stack([x.mean(dim=1), torch.full((x.shape[0],), float(x.shape[1]))], dim=1)


# ---------------------------------------------------------------- window_starts


def test_window_starts_short_signal_is_one_window():
    assert window_starts(3, 4, 2).tolist() == [0]
    assert window_starts(4, 4, 2).tolist() == [0]  # exactly one window


def test_window_starts_exact_multiple():
    # 10 samples, windows of 4 every 2: 0-3, 2-5, 4-7, 6-9 reach the end exactly
    assert window_starts(10, 4, 2).tolist() == [0, 2, 4, 6]


def test_window_starts_tail_window_aligned_to_end():
    # 11 samples: 0, 2, 4, 6 stop at sample 9; one more window 7-10 covers the tail
    assert window_starts(11, 4, 2).tolist() == [0, 2, 4, 6, 7]


@pytest.mark.parametrize("num_samples", [48_000, 48_001, 50_000, 160_000, 160_799])
def test_window_starts_cover_everything_with_full_windows(num_samples):
    starts = window_starts(num_samples, 48_000, 1_600)
    assert starts[0] == 0 and starts[-1] + 48_000 == num_samples
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= 1_600)


def test_window_starts_rejects_nonsense():
    with pytest.raises(ValueError, match="step_samples"):
        window_starts(10, 4, 0)


# ---------------------------------------------------------------- embed_waveform


def test_embed_waveform_averages_window_embeddings():
    # 11 samples 0..10 at 10 Hz, 0.4 s windows (4 samples) every 0.2 s (2 samples):
    # windows start at 0, 2, 4, 6 and 7 (tail); window mean = start + 1.5
    # -> 1.5, 3.5, 5.5, 7.5, 8.5 -> average 26.5 / 5 = 5.3; every window is 4 samples.
    waveform = np.arange(11, dtype=np.float32)
    for batch_size in (1, 2, 64):
        embedding = embed_waveform(WindowMean(), waveform, window_s=0.4, step_s=0.2,
                                   batch_size=batch_size, sample_rate_hz=10)
        assert embedding.dtype == np.float32 and embedding.shape == (2,)
        assert embedding == pytest.approx([5.3, 4.0])


def test_embed_waveform_short_file_and_whole_file():
    waveform = np.arange(3, dtype=np.float32)  # shorter than one 4-sample window: embedded whole
    assert embed_waveform(WindowMean(), waveform, 0.4, 0.2, sample_rate_hz=10) == pytest.approx([1.0, 3.0])
    waveform = np.arange(11, dtype=np.float32)  # window_s None: one pass over all 11 samples
    assert embed_waveform(WindowMean(), waveform, None, sample_rate_hz=10) == pytest.approx([5.0, 11.0])


def test_embed_waveform_uses_eval_mode_and_restores_it():
    class ModeSpy(torch.nn.Module):
        def forward(self, x):
            assert not self.training and torch.is_inference_mode_enabled()
            return x[:, :3]

    model = ModeSpy().train()
    embed_waveform(model, np.ones(16_000 * 4, dtype=np.float32))
    assert model.training


def test_embed_waveform_checks_model_output():
    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=1)

    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        embed_waveform(Flat(), np.ones(100, dtype=np.float32))


# ---------------------------------------------------------------- files


def test_extract_embeddings_from_files(tmp_path, rng):
    paths, expected = [], []
    for k, duration_s in enumerate([1.0, 3.0, 4.25]):
        path = str(tmp_path / f"utt{k}.wav")
        audio.write(path, 0.1 * rng.standard_normal(int(duration_s * 16_000)))
        paths.append(path)
        expected.append(embed_waveform(WindowMean(), audio.read(path)))
    ids, matrix = extract_embeddings(WindowMean(), paths, progress=False)
    assert ids == paths
    assert matrix.shape == (3, 2) and matrix.dtype == np.float32
    assert np.allclose(matrix, np.stack(expected))
    assert matrix[:, 1].tolist() == [16_000, 48_000, 48_000]  # short file whole, others 3 s windows
    ids, _ = extract_embeddings(WindowMean(), paths[:1], ids=["first"], progress=False)
    assert ids == ["first"]
    with pytest.raises(AudioError, match="missing.wav"):
        extract_embeddings(WindowMean(), [str(tmp_path / "missing.wav")], progress=False)


def test_extract_progress_bar_stays_out_of_a_redirected_stderr(tmp_path, rng, capsys):
    path = str(tmp_path / "utt.wav")
    audio.write(path, 0.1 * rng.standard_normal(16_000))
    extract_embeddings(WindowMean(), [path, path], progress=True)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: no carriage-return redraws


def test_naive_windows_go_through_the_model_in_cpu_sized_batches(rng):
    from voxmetric.evaluate.extract import CPU_WINDOW_BATCH

    batches = []

    class Recording(WindowMean):
        def forward(self, x):
            batches.append(x.shape[0])
            return super().forward(x)

    waveform = (0.1 * rng.standard_normal(5 * 16_000)).astype(np.float32)  # 21 windows
    default = embed_waveform(Recording(), waveform, method="naive")
    assert max(batches) == CPU_WINDOW_BATCH and sum(batches) == 21
    assert np.allclose(default, embed_waveform(WindowMean(), waveform, batch_size=64, method="naive"))


def _local_sinctdnn():
    from voxmetric.models import build_model

    torch.manual_seed(0)
    model = build_model("sinctdnn", tdnn_channels=32, tdnn_stats_channels=64, embedding_dim=16,
                        waveform_normalize=False, instance_normalize=False).eval()
    for norm in model.modules():  # non-trivial eval-mode batch-norm statistics
        if isinstance(norm, torch.nn.BatchNorm1d):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
    return model


def test_whole_input_of_a_frame_local_model_is_pooled_blockwise_exactly(rng):
    model = _local_sinctdnn()
    waveform = (0.1 * rng.standard_normal(16000 * 13 + 777)).astype(np.float32)
    with torch.inference_mode():
        one_pass = model(torch.from_numpy(waveform)[None])[0].numpy()
    blockwise = embed_waveform(model, waveform, window_s=None, block_s=2.0)  # 7 blocks
    np.testing.assert_allclose(blockwise, one_pass, rtol=0, atol=1e-4 * max(1.0, np.abs(one_pass).max()))


def test_whole_input_of_a_global_model_is_cut_into_equal_segments(rng):
    from voxmetric.models import build_model

    torch.manual_seed(0)
    model = build_model("ecapa", channels=32, embedding_dim=16).eval()
    waveform = (0.1 * rng.standard_normal(16000 * 6)).astype(np.float32)
    segmented = embed_waveform(model, waveform, window_s=None, max_whole_s=2.5)  # 3 segments of 2 s
    with torch.inference_mode():
        thirds = model(torch.from_numpy(waveform.reshape(3, -1)).contiguous())
    np.testing.assert_allclose(segmented, thirds.mean(0).numpy(), atol=1e-5)
    unlimited = embed_waveform(model, waveform, window_s=None, max_whole_s=None)
    with torch.inference_mode():
        np.testing.assert_allclose(unlimited, model(torch.from_numpy(waveform)[None])[0].numpy(), atol=1e-5)


WINDOWS = [(None, 0.1), (1.0, 0.5), (2.0, 0.3), (1.3, 0.25), (9.0, 1.0)]  # the last longer than the input: whole


def test_embed_waveform_each_shares_the_frames_of_a_frame_local_model(rng, monkeypatch):
    model = _local_sinctdnn()
    n = 16000 * 4 + 333  # a tone, then noise: windows see different halves, the whole input both
    waveform = np.where(np.arange(n) < n // 2, 0.3 * np.sin(np.arange(n) * 0.05), 0.1 * rng.standard_normal(n))
    waveform = waveform.astype(np.float32)
    expected = [embed_waveform(model, waveform, window_s, step_s) for window_s, step_s in WINDOWS]
    passes = []
    frames = model.frames
    monkeypatch.setattr(model, "frames", lambda waveforms: passes.append(waveforms.shape) or frames(waveforms))
    each = embed_waveform_each(model, waveform, WINDOWS)
    assert len(passes) == 1  # the frame layers ran once for the five settings
    atol = 1e-7 * max(1.0, np.abs(expected[0]).max())  # float rounding (equal here, but block edges may move)
    for got, want in zip(each, expected):
        assert got.dtype == np.float32 and got.shape == (16,)
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    for other in expected[1:4]:  # the settings do differ, by far more than the tolerance
        assert np.abs(other - expected[0]).max() > 20 * atol
    np.testing.assert_array_equal(each[4], each[0])  # a window longer than the input: the whole input


def test_embed_waveform_each_is_embed_waveform_where_frames_cannot_be_shared(rng):
    from voxmetric.models import build_model

    torch.manual_seed(0)
    instance_norm = build_model("sinctdnn", tdnn_channels=32, tdnn_stats_channels=64, embedding_dim=16).eval()
    waveform = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    for model, block_s in ((instance_norm, 15.0), (_local_sinctdnn(), 1.0)):  # non-local; longer than a block
        each = embed_waveform_each(model, waveform, WINDOWS[:3], block_s=block_s)
        for got, (window_s, step_s) in zip(each, WINDOWS[:3]):
            np.testing.assert_array_equal(got, embed_waveform(model, waveform, window_s, step_s, block_s=block_s))
