"""ChunkBatches: the P x K contract, determinism across workers/resume/ranks, bad files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from voxmetric import audio
from voxmetric.data.corpus import Corpus, Utterance
from voxmetric.data.sampler import ChunkBatches, fit_length, make_loader
from voxmetric.errors import ConfigError, CorpusError

SR = audio.SAMPLE_RATE_HZ
LEVEL_STEP = 0.1
"""Speaker s's audio sits around the constant level (s + 1) * LEVEL_STEP: chunks tell their speaker."""


def _write(path, duration_s, level, rng) -> Utterance:
    samples = int(duration_s * SR)
    audio.write(path, level + 0.01 * rng.standard_normal(samples))
    return Utterance(path.name, str(path), path.parent.name, samples / SR)


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    """6 speakers x 2 files of 1.0 and 1.5 s."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(6):
        folder = tmp_path / f"spk{s}"
        folder.mkdir()
        for f, duration_s in enumerate((1.0, 1.5)):
            rows.append(_write(folder / f"u{s}_{f}.wav", duration_s, (s + 1) * LEVEL_STEP, rng))
    return Corpus(rows, str(tmp_path))


def _take(dataset, n, num_workers=0):
    loader = make_loader(dataset, num_workers=num_workers)
    return list(itertools.islice(iter(loader), n))


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for (wa, la), (wb, lb) in zip(batches_a, batches_b):
        assert torch.equal(la, lb)
        assert torch.equal(wa, wb)


def test_batch_is_p_speakers_by_k_chunks(corpus):
    dataset = ChunkBatches(corpus, speakers_per_batch=3, chunks_per_speaker=2, chunk_duration_s=0.5)
    for waveforms, labels in _take(dataset, 4):
        assert waveforms.shape == (6, int(0.5 * SR)) and waveforms.dtype == torch.float32
        assert labels.shape == (6,) and labels.dtype == torch.int64
        per_speaker = labels.view(3, 2)
        assert (per_speaker == per_speaker[:, :1]).all(), "speaker-major rows"
        assert len(set(per_speaker[:, 0].tolist())) == 3, "P distinct speakers"
        # Every chunk comes from the labelled speaker's audio.
        levels = waveforms.mean(dim=1).numpy()
        np.testing.assert_allclose(levels, (labels.numpy() + 1) * LEVEL_STEP, atol=0.01)


def test_labels_follow_corpus_speaker_index(corpus):
    dataset = ChunkBatches(corpus, 6, 1, 0.5)
    assert dataset.speakers == corpus.speakers and dataset.num_speakers == 6
    _, labels = dataset.batch(0)
    assert sorted(labels.tolist()) == list(range(6))


def test_chunk_length_is_exact_for_awkward_durations(corpus):
    dataset = ChunkBatches(corpus, 2, 3, chunk_duration_s=0.3337)
    waveforms, _ = dataset.batch(5)
    assert waveforms.shape[1] == round(0.3337 * SR)


def test_same_seed_same_batches_other_seed_differs(corpus):
    make = lambda seed: _take(ChunkBatches(corpus, 3, 2, 0.5, seed=seed), 3)  # noqa: E731
    _assert_same(make(1), make(1))
    other = make(2)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(make(1), other))


def test_stream_is_identical_with_two_workers(corpus):
    dataset = ChunkBatches(corpus, 3, 2, 0.5, seed=3)
    _assert_same(_take(dataset, 5, num_workers=0), _take(dataset, 5, num_workers=2))


def test_start_batch_resumes_exactly(corpus):
    full = _take(ChunkBatches(corpus, 3, 2, 0.5, seed=4), 6)
    resumed = _take(ChunkBatches(corpus, 3, 2, 0.5, seed=4, start_batch=4), 2)
    _assert_same(full[4:], resumed)


def test_ranks_draw_different_streams(corpus):
    rank0 = _take(ChunkBatches(corpus, 3, 2, 0.5, rank=0, world_size=2), 3)
    rank1 = _take(ChunkBatches(corpus, 3, 2, 0.5, rank=1, world_size=2), 3)
    assert all(not torch.equal(a[0], b[0]) for a, b in zip(rank0, rank1))


def test_min_speaker_duration_leaves_out_short_speakers(corpus, tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "short").mkdir()
    short = _write(tmp_path / "short" / "s.wav", 1.0, 0.9, rng)
    larger = Corpus(list(corpus) + [short])
    dataset = ChunkBatches(larger, 6, 1, 0.5, min_speaker_duration_s=2.0)
    assert "short" not in dataset.speakers and dataset.num_speakers == 6
    assert ChunkBatches(larger, 7, 1, 0.5).num_speakers == 7


def test_too_many_speakers_per_batch_is_a_config_error(corpus):
    with pytest.raises(ConfigError, match=r"speakers_per_batch=7.*6 speakers"):
        ChunkBatches(corpus, 7, 1, 0.5)


def test_chunk_longer_than_every_file_is_a_config_error(corpus):
    with pytest.raises(ConfigError, match="chunk_duration_s"):
        ChunkBatches(corpus, 2, 1, 2.0)


@pytest.mark.parametrize("field, kwargs", [
    ("chunk_duration_s", dict(chunk_duration_s=0.0)),
    ("chunks_per_speaker", dict(chunks_per_speaker=0)),
    ("rank", dict(rank=2, world_size=2)),
])
def test_bad_numbers_are_config_errors(corpus, field, kwargs):
    args = dict(speakers_per_batch=2, chunks_per_speaker=1, chunk_duration_s=0.5) | kwargs
    with pytest.raises(ConfigError, match=field):
        ChunkBatches(corpus, **args)


def test_short_utterance_is_tiled(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    rows = [_write(tmp_path / "a" / "long.wav", 1.0, 0.1, rng), _write(tmp_path / "b" / "short.wav", 0.2, 0.2, rng)]
    dataset = ChunkBatches(Corpus(rows), 2, 1, 0.5)
    waveforms, labels = dataset.batch(0)
    tiled = waveforms[labels.tolist().index(1)].numpy()
    short = audio.read(rows[1].path)
    np.testing.assert_array_equal(tiled[: len(short)], short)
    np.testing.assert_array_equal(tiled[len(short): 2 * len(short)], short)


def test_fit_length_pads_rounding_and_trims():
    assert fit_length(np.arange(10.0), 12).tolist() == list(range(10)) + [9, 9]
    assert len(fit_length(np.arange(10.0), 7)) == 7


def test_corrupt_file_is_skipped_with_a_warning(corpus, tmp_path):
    bad = tmp_path / "spk0" / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    # A long claimed duration makes the bad file the likely draw for spk0.
    rows = list(corpus) + [Utterance("bad", str(bad), "spk0", 100.0)]
    dataset = ChunkBatches(Corpus(rows), 6, 2, 0.5)
    with pytest.warns(UserWarning, match="bad.wav"):
        batches = [dataset.batch(i) for i in range(3)]
    assert dataset.skipped_reads >= 1
    for waveforms, labels in batches:
        assert waveforms.shape == (12, SR // 2)
        np.testing.assert_allclose(waveforms.mean(dim=1).numpy(), (labels.numpy() + 1) * LEVEL_STEP, atol=0.01)


def test_speaker_without_readable_file_is_named(corpus, tmp_path):
    (tmp_path / "ghost").mkdir()
    bad = tmp_path / "ghost" / "bad.wav"
    bad.write_bytes(b"garbage")
    rows = list(corpus) + [Utterance("ghost", str(bad), "ghost", 3.0)]
    dataset = ChunkBatches(Corpus(rows), 7, 1, 0.5)
    with pytest.warns(UserWarning), pytest.raises(CorpusError, match="ghost"):
        dataset.batch(0)


def test_augmentation_gets_the_batch_and_its_generator(corpus):
    calls = []

    def augment(waveforms, rng):
        calls.append(waveforms.shape)
        return waveforms + rng.uniform(1.0, 2.0)

    plain = ChunkBatches(corpus, 3, 2, 0.5, seed=5).batch(0)[0]
    augmented = ChunkBatches(corpus, 3, 2, 0.5, seed=5, augmentation=augment)
    first, again = augmented.batch(0)[0], augmented.batch(0)[0]
    assert calls == [(6, SR // 2)] * 2
    assert torch.equal(first, again)
    shift = (first - plain).numpy()
    assert 1.0 <= shift.min() and np.ptp(shift) < 1e-6


def _tone_corpus(tmp_path, frequencies_hz, duration_s=3.0) -> Corpus:
    t = np.arange(int(duration_s * 16000)) / 16000
    utterances = []
    for i, frequency in enumerate(frequencies_hz):
        path = tmp_path / f"tone{i}" / "a.wav"
        audio.write(path, (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32))
        utterances.append(Utterance(f"tone{i}/a.wav", str(path), f"tone{i}", duration_s))
    return Corpus(utterances, root=str(tmp_path))


def _peak_hz(chunk: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk))))
    return float(np.fft.rfftfreq(len(chunk), 1 / 16000)[spectrum.argmax()])


def test_speed_perturbed_copies_are_new_speakers_at_scaled_frequencies(tmp_path):
    tones = _tone_corpus(tmp_path, [500.0, 800.0])
    dataset = ChunkBatches(tones, speakers_per_batch=6, chunks_per_speaker=1, chunk_duration_s=1.0,
                           speed_factors=(0.9, 1.1))
    assert dataset.speakers == ["tone0", "tone1", "tone0@speed0.9", "tone1@speed0.9", "tone0@speed1.1",
                                "tone1@speed1.1"]
    waveforms, labels = dataset.batch(0)
    assert waveforms.shape == (6, 16000) and sorted(labels.tolist()) == list(range(6))
    base = {"tone0": 500.0, "tone1": 800.0}
    for row, label in enumerate(labels.tolist()):
        name = dataset.speakers[label]
        speaker, _, factor = name.partition("@speed")
        expected = base[speaker] * (float(factor) if factor else 1.0)
        assert _peak_hz(waveforms[row].numpy()) == pytest.approx(expected, abs=2.0), name
    again = ChunkBatches(tones, speakers_per_batch=6, chunks_per_speaker=1, chunk_duration_s=1.0,
                         speed_factors=(0.9, 1.1))
    _assert_same([dataset.batch(3)], [again.batch(3)])  # deterministic: resume stays exact


@pytest.mark.parametrize("factors", [(1.0,), (0.9, 0.9), (3.0,), (0.0,)])
def test_bad_speed_factors_are_config_errors(tmp_path, factors):
    tones = _tone_corpus(tmp_path, [500.0, 800.0])
    with pytest.raises(ConfigError, match="speed_perturb"):
        ChunkBatches(tones, speakers_per_batch=2, chunks_per_speaker=1, chunk_duration_s=1.0, speed_factors=factors)
