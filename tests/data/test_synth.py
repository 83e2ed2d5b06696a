"""The built-in synthetic corpus: determinism, layout, splits, trials, difficulty, reuse."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from voxmetric import audio
from voxmetric.data.synth.corpus import split_sizes, synthesize
from voxmetric.data.trials import read_trials
from voxmetric.errors import ConfigError, CorpusError
from voxmetric.evaluate.baseline import mean_mfcc_embedding, mfcc


def equal_error_rate(scores, labels):
    """EER by sorting: where the miss and false-alarm rates cross."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    labels = np.asarray(labels)[order]
    false_alarm = np.cumsum(1 - labels) / (1 - labels).sum()
    miss = 1.0 - np.cumsum(labels) / labels.sum()
    i = np.argmin(np.abs(miss - false_alarm))
    return (miss[i] + false_alarm[i]) / 2


def _wavs(root):
    return sorted(p.relative_to(root / "wav").as_posix() for p in (root / "wav").rglob("*.wav"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "corpus"
    summary = synthesize(out, speakers=4, utterances=2, seed=5, workers=1, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """24 speakers x 8 utterances: test 5, val 2, train 17 speakers."""
    out = tmp_path_factory.mktemp("small") / "corpus"
    summary = synthesize(out, speakers=24, utterances=8, seed=0, workers=2, progress=False)
    return out, summary


def test_same_seed_same_bytes_whatever_the_workers(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    synthesize(again, speakers=4, utterances=2, seed=5, workers=2, progress=False)
    assert _wavs(out) == _wavs(again) and len(_wavs(out)) == 8
    for name in _wavs(out) + ["../test_trials.txt", "../speakers.tsv"]:
        assert (out / "wav" / name).read_bytes() == (again / "wav" / name).read_bytes(), name


def test_other_seed_other_audio(tiny, tmp_path):
    out, _ = tiny
    other = tmp_path / "other"
    synthesize(other, speakers=4, utterances=2, seed=6, workers=1, progress=False)
    first = _wavs(out)[0]
    assert (out / "wav" / first).read_bytes() != (other / "wav" / first).read_bytes()


def test_layout_and_audio_format(small):
    out, summary = small
    names = _wavs(out)
    assert len(names) == 24 * 8 == summary.n_utterances
    speakers = {n.split("/")[0] for n in names}
    assert speakers == {f"syn{i:04d}" for i in range(1, 25)}
    assert all(len(n.split("/")) == 3 and n.split("/")[1].startswith("s") for n in names)
    # Several sessions per speaker, so same- and cross-session pairs exist.
    sessions = {}
    for n in names:
        sessions.setdefault(n.split("/")[0], set()).add(n.split("/")[1])
    assert all(2 <= len(s) <= 4 for s in sessions.values())
    durations = []
    for n in names[:: 7]:
        info = sf.info(out / "wav" / n)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        durations.append(info.duration)
    assert 2.0 <= min(durations) and max(durations) <= 8.0
    assert abs(summary.total_duration_s - sum(audio.duration_s(out / "wav" / n) for n in names)) < 0.01


def test_audio_is_not_silent_or_clipped(tiny):
    out, _ = tiny
    for name in _wavs(out):
        x = audio.read(out / "wav" / name)
        rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)))
        assert -36 < rms_db < -16 and np.max(np.abs(x)) < 1.0


def test_splits_disjoint_and_documented(small):
    out, summary = small
    splits = json.loads((out / "splits.json").read_text())
    assert {k: len(v) for k, v in splits.items()} == split_sizes(24) == {"train": 17, "val": 2, "test": 5}
    assert summary.split_speakers == split_sizes(24)
    everyone = [s for members in splits.values() for s in members]
    assert len(everyone) == len(set(everyone)) == 24
    rows = [line.split("\t") for line in (out / "speakers.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert header[:3] == ["speaker", "split", "sessions"] and {"sex", "f0_hz", "vtl_factor"} <= set(header)
    assert {r[0]: r[1] for r in rows} == {s: name for name, members in splits.items() for s in members}
    assert "24 speakers x 8 utterances, seed 0" in (out / "README.md").read_text()


def test_split_sizes_rule():
    assert split_sizes(40) == {"train": 28, "val": 4, "test": 8}
    assert split_sizes(200) == {"train": 140, "val": 20, "test": 40}
    assert split_sizes(4) == {"train": 0, "val": 0, "test": 4}


def test_trial_lists_hold_their_split_only(small):
    out, summary = small
    splits = json.loads((out / "splits.json").read_text())
    for split in ("test", "val"):
        trials = read_trials(out / f"{split}_trials.txt")
        assert summary.trial_files[split] == str(out / f"{split}_trials.txt")
        assert len(trials) == summary.n_trials[split]
        assert sum(t.label for t in trials) == len(trials) // 2
        keys = {k for t in trials for k in (t.enrol, t.test)}
        assert {k.split("/")[0] for k in keys} <= set(splits[split])
        assert all((out / "wav" / k).exists() for k in keys)
        assert all(t.label == (t.enrol.split("/")[0] == t.test.split("/")[0]) for t in trials)
    # 5 test speakers x C(8, 2) target pairs, all used.
    assert summary.n_trials["test"] == 2 * 5 * 28


def _scores(out, trials):
    keys = sorted({k for t in trials for k in (t.enrol, t.test)})
    unit = {}
    for k in keys:
        e = mean_mfcc_embedding(audio.read(out / "wav" / k))
        unit[k] = e / np.linalg.norm(e)
    return np.array([unit[t.enrol] @ unit[t.test] for t in trials]), np.array([t.label for t in trials])


def test_baseline_finds_it_hard_but_not_hopeless(small):
    out, _ = small
    scores, labels = _scores(out, read_trials(out / "test_trials.txt"))
    assert scores[labels == 1].mean() > scores[labels == 0].mean() + 0.05
    assert 0.10 < equal_error_rate(scores, labels) < 0.40
    # All pairs of all 24 speakers: a steadier figure than 5 test speakers give.
    names = _wavs(out)
    embeddings = np.array([mean_mfcc_embedding(audio.read(out / "wav" / n)) for n in names])
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    speaker = np.array([n.split("/")[0] for n in names])
    upper = np.triu_indices(len(names), 1)
    all_scores = (embeddings @ embeddings.T)[upper]
    all_labels = (speaker[:, None] == speaker[None, :])[upper].astype(int)
    assert 0.15 < equal_error_rate(all_scores, all_labels) < 0.35


def test_complete_corpus_is_not_written_twice(tiny):
    out, first = tiny
    stamps = {n: os.stat(out / "wav" / n).st_mtime_ns for n in _wavs(out)}
    again = synthesize(out, speakers=4, utterances=2, seed=5, workers=1, progress=False)
    assert again.skipped and not first.skipped
    assert (again.n_utterances, again.total_duration_s, again.trial_files) == (
        first.n_utterances, first.total_duration_s, first.trial_files)
    assert stamps == {n: os.stat(out / "wav" / n).st_mtime_ns for n in _wavs(out)}
    assert "already complete" in str(again) and "4 speakers (train 0, val 0, test 4)" in str(again)


def test_interrupted_corpus_is_completed_identically(tiny, tmp_path):
    out, _ = tiny
    copy = tmp_path / "copy"
    synthesize(copy, speakers=4, utterances=2, seed=5, workers=1, progress=False)
    victim = _wavs(copy)[3]
    (copy / "wav" / victim).unlink()
    summary = synthesize(copy, speakers=4, utterances=2, seed=5, workers=1, progress=False)
    assert not summary.skipped
    assert (copy / "wav" / victim).read_bytes() == (out / "wav" / victim).read_bytes()


def test_refuses_other_parameters_unless_overwrite(tmp_path):
    out = tmp_path / "c"
    synthesize(out, speakers=4, utterances=2, seed=1, workers=1, progress=False)
    with pytest.raises(CorpusError, match="replace it with --overwrite or choose another directory$") as caught:
        synthesize(out, speakers=4, utterances=3, seed=1, workers=1, progress=False)
    assert "overwrite=True" not in str(caught.value)  # the command line's words
    summary = synthesize(out, speakers=4, utterances=3, seed=1, workers=1, progress=False, overwrite=True)
    assert summary.n_utterances == 12 and len(_wavs(out)) == 12
    assert json.loads((out / "synth.json").read_text())["params"]["utterances"] == 3


def test_refuses_foreign_directory_and_bad_parameters(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(CorpusError, match="no synth.json"):
        synthesize(tmp_path, speakers=4, utterances=2, progress=False, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    for kwargs, name in [({"speakers": 3}, "speakers"), ({"utterances": 1}, "utterances"),
                         ({"seed": -1}, "seed"), ({"workers": 0}, "workers"), ({"speakers": 4.5}, "speakers")]:
        with pytest.raises(ConfigError, match=name):
            synthesize(tmp_path / "new", **{"progress": False, **kwargs})


def test_mfcc_baseline_shapes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32)
    assert mfcc(x).shape == (98, 20)
    assert mean_mfcc_embedding(x[:100]).shape == (20,)  # shorter than a frame: one padded frame
    # c0 is dropped, so the level does not change the embedding.
    np.testing.assert_allclose(mean_mfcc_embedding(x), mean_mfcc_embedding(0.1 * x), atol=1e-6)


def test_utterances_without_detectable_speech_are_drawn_again():
    """Seed 0 at 300 speakers: the first draws of these three utterances (syn0144/s01/00007,
    syn0127/s01/00001, syn0127/s02/00008) held no speech the VAD could find, so every command
    refused them; the corpus now draws them again."""
    from voxmetric.audio.vad import speech_segments
    from voxmetric.data.synth.corpus import render_utterance

    for speaker, session, utterance in [(143, 1, 6), (126, 1, 0), (126, 2, 7)]:
        assert speech_segments(render_utterance(0, speaker, session, utterance), 16000)


def test_the_command_refuses_sizes_without_training_speakers(tmp_path, capsys):
    from voxmetric.cli import main
    from voxmetric.data.synth.corpus import MIN_SPEAKERS_TO_TRAIN

    assert MIN_SPEAKERS_TO_TRAIN == 7 and split_sizes(7)["train"] == 1 and split_sizes(6)["train"] == 0
    out = tmp_path / "syn"
    for speakers in ("6", "0"):
        assert main(["synth", str(out), "--speakers", speakers, "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: voxmetric synth ")
        assert f"voxmetric synth: error: --speakers must be at least 7 (test 4, validation 2, then the training " \
               f"speakers), got {speakers}" in err
    for option, value, minimum in (("--utterances", "1", 2), ("--seed", "-1", 0)):
        with pytest.raises(SystemExit) as caught:
            main(["synth", str(out), f"{option}={value}", "-q"])
        assert caught.value.code == 2
        assert f"argument {option}: must be at least {minimum}, got {value}" in capsys.readouterr().err
    assert not out.exists()


def test_a_corpus_under_a_file_is_one_line_before_rendering(tmp_path):
    from voxmetric.errors import WriteError

    a_file = tmp_path / "x.wav"
    a_file.write_text("x")
    with pytest.raises(WriteError, match=rf"^{a_file}/syn: cannot write \({a_file} is a file, not a "
                                         rf"folder\)$"):
        synthesize(a_file / "syn", speakers=4, utterances=2, workers=1, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["x.wav"]
