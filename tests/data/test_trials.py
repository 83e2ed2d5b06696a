"""Trial lists: formats, errors with line numbers, sampling, resolving against a corpus."""

import time
import warnings

import pytest

from voxmetric.data.corpus import Corpus, Utterance
from voxmetric.data.trials import Trial, make_trials, read_trials, resolve_trials, write_trials
from voxmetric.errors import TrialsError

TRIALS = [Trial(1, "id1/a/00001.wav", "id1/b/00002.wav"), Trial(0, "id1/a/00001.wav", "id2/c/00001.wav")]


def _utterances(n_speakers, per_speaker):
    return [
        Utterance(f"spk{s}/{u:05d}.wav", f"/data/wav/spk{s}/{u:05d}.wav", f"spk{s}", 3.0)
        for s in range(n_speakers)
        for u in range(per_speaker)
    ]


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["voxceleb", "kaldi"])
def test_round_trip(tmp_path, fmt):
    path = tmp_path / "trials.txt"
    write_trials(path, TRIALS, format=fmt)
    assert read_trials(path) == TRIALS


def test_formats_on_disk(tmp_path):
    write_trials(tmp_path / "vox", TRIALS)
    write_trials(tmp_path / "kaldi", TRIALS, format="kaldi")
    assert (tmp_path / "vox").read_text().splitlines()[0] == "1 id1/a/00001.wav id1/b/00002.wav"
    assert (tmp_path / "kaldi").read_text().splitlines()[1] == "id1/a/00001.wav id2/c/00001.wav nontarget"


@pytest.mark.parametrize(
    "text",
    [
        "1 a b\n0 a c\n",
        "a b target\na c nontarget\n",
        "target a b\nnontarget a c\n",  # word labels in the first column
        "a b 1\na c 0\n",  # digit labels in the last column
        "\n1 a b\n\n   \n0 a c\n\n",  # blank lines
    ],
)
def test_autodetects_format(tmp_path, text):
    path = tmp_path / "t.txt"
    path.write_text(text)
    assert read_trials(path) == [Trial(1, "a", "b"), Trial(0, "a", "c")]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("1 a b\n0 a\n", 2, "expected 3 fields"),
        ("1 a b\n\n1 a b c\n", 3, "found 4"),
        ("1 a b\n2 a c\n", 2, "label '2'"),
        ("a b target\na c maybe\n", 2, "label 'maybe'"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(TrialsError) as error:
        read_trials(path)
    assert str(path) in str(error.value) and f"line {line}" in str(error.value) and words in str(error.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(TrialsError, match="no such trial list"):
        read_trials(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(TrialsError, match="holds no trials"):
        read_trials(tmp_path / "empty.txt")


def test_write_refuses_bad_format_and_keys(tmp_path):
    with pytest.raises(TrialsError, match="voxceleb, kaldi"):
        write_trials(tmp_path / "t", TRIALS, format="nist")
    with pytest.raises(TrialsError, match="white space"):
        write_trials(tmp_path / "t", [Trial(1, "a b", "c")])
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------- sampling


def _check_trials(trials, utterances):
    speaker = {u.uid: u.speaker for u in utterances}
    pairs = [frozenset((t.enrol, t.test)) for t in trials]
    assert all(t.enrol != t.test for t in trials)
    assert len(set(pairs)) == len(pairs)
    assert all(t.label == int(speaker[t.enrol] == speaker[t.test]) for t in trials)


def test_make_trials_balanced_distinct_and_labelled():
    utts = _utterances(10, 6)
    trials = make_trials(utts, 100, 100, seed=3)
    assert len(trials) == 200 and sum(t.label for t in trials) == 100
    _check_trials(trials, utts)
    # Shuffled together, not all targets first.
    assert 0 < sum(t.label for t in trials[:100]) < 100


def test_make_trials_is_seeded():
    utts = _utterances(8, 5)
    assert make_trials(utts, 40, 40, seed=1) == make_trials(utts, 40, 40, seed=1)
    assert make_trials(utts, 40, 40, seed=1) != make_trials(utts, 40, 40, seed=2)


def test_make_trials_dense_request_enumerates():
    utts = _utterances(3, 4)  # 18 target pairs, 48 non-target pairs
    trials = make_trials(utts, 18, 48, seed=0)
    _check_trials(trials, utts)
    assert sum(t.label for t in trials) == 18 and len(trials) == 66


def test_make_trials_caps_and_keeps_balance():
    utts = _utterances(3, 3)  # 9 target pairs
    with pytest.warns(UserWarning, match="only 9 / 27"):
        trials = make_trials(utts, 20, 20, seed=0)
    assert sum(t.label for t in trials) == 9 and len(trials) == 18
    _check_trials(trials, utts)


def test_make_trials_impossible():
    with pytest.raises(TrialsError, match="no speaker has 2 utterances"):
        make_trials(_utterances(5, 1), 1, 1, seed=0)
    with pytest.raises(TrialsError, match="need 2"):
        make_trials(_utterances(1, 5), 1, 1, seed=0)
    with pytest.raises(TrialsError, match=">= 0"):
        make_trials(_utterances(2, 2), -1, 1, seed=0)
    duplicate = _utterances(2, 2)
    with pytest.raises(TrialsError, match="share the same trial key"):
        make_trials(duplicate, 1, 1, seed=0, key=lambda u: u.speaker)


def test_make_trials_custom_key_and_input_order():
    utts = _utterances(4, 3)[::-1]
    trials = make_trials(utts, 5, 5, seed=0, key=lambda u: u.path)
    position = {u.path: i for i, u in enumerate(utts)}
    assert all(position[t.enrol] < position[t.test] for t in trials)


def test_make_trials_scales_to_many_utterances():
    utts = _utterances(2000, 50)  # 1e5 utterances, ~5e9 pairs
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trials = make_trials(utts, 5000, 5000, seed=0)
    assert time.perf_counter() - start < 10
    assert len({frozenset((t.enrol, t.test)) for t in trials}) == 10000


def test_make_trials_nontargets_cover_speaker_pairs_evenly():
    # One big speaker: a naive "draw two utterances, reject same speaker" sampler
    # would mostly stall; ours draws every cross pair with equal probability.
    utts = _utterances(1, 200) + [Utterance(f"x{i}", f"/x{i}", f"small{i}", 1.0) for i in range(4)]
    trials = make_trials(utts, 0, 400, seed=0)
    involving = [sum(f"x{i}" in (t.enrol, t.test) for t in trials) for i in range(4)]
    assert min(involving) > 60  # ~100 each: 203 of the 806 cross pairs involve each small speaker


# ---------------------------------------------------------------- resolving


def test_resolve_trials_by_uid_and_relative_path():
    utts = [Utterance(f"u{i}", f"/data/wav/spk{i % 2}/{i}.wav", f"spk{i % 2}", 1.0) for i in range(4)]
    corpus = Corpus(utts, root="/data")
    trials = [Trial(1, "u0", "wav/spk0/2.wav"), Trial(0, "spk0/2.wav", "u1"), Trial(0, "u2", "u3")]
    resolved = resolve_trials(trials, corpus)
    names = [u.uid for u in resolved.utterances]
    assert names == ["u0", "u2", "u1", "u3"]  # u2 spelled two ways, embedded once
    assert resolved.enrol_index.tolist() == [0, 1, 1] and resolved.test_index.tolist() == [1, 2, 3]
    assert resolved.labels.tolist() == [1, 0, 0]


def test_resolve_trials_reports_missing_keys():
    corpus = Corpus([Utterance("u0", "/d/u0.wav", "a", 1.0)], root="/d")
    with pytest.raises(TrialsError, match=r"'nope1' matches no utterance \(2 of 3 distinct keys missing\)"):
        resolve_trials([Trial(0, "u0", "nope1"), Trial(0, "nope2", "u0")], corpus)
