"""Trial lists: formats, errors with line numbers, sampling, resolving against a corpus."""

import warnings

from pathlib import Path

import pytest

from voxmetric.data.corpus import Utterance
from voxmetric.data.trials import Trial, key_paths, make_trials, read_trials, trial_keys, trial_root, write_trials
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
    with warnings.catch_warnings():  # no dense pair enumeration: that would not fit in memory
        warnings.simplefilter("error")
        trials = make_trials(utts, 5000, 5000, seed=0)
    assert len({frozenset((t.enrol, t.test)) for t in trials}) == 10000


def test_make_trials_nontargets_cover_speaker_pairs_evenly():
    # One big speaker: a naive "draw two utterances, reject same speaker" sampler
    # would mostly stall; ours draws every cross pair with equal probability.
    utts = _utterances(1, 200) + [Utterance(f"x{i}", f"/x{i}", f"small{i}", 1.0) for i in range(4)]
    trials = make_trials(utts, 0, 400, seed=0)
    involving = [sum(f"x{i}" in (t.enrol, t.test) for t in trials) for i in range(4)]
    assert min(involving) > 60  # ~100 each: 203 of the 806 cross pairs involve each small speaker


# ---------------------------------------------------------------- resolving


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_key_paths_are_relative_to_the_root_and_missing_files_are_named(tmp_path):
    _touch(tmp_path / "spk0" / "a.wav")
    assert key_paths(["spk0/a.wav"], tmp_path) == [tmp_path / "spk0" / "a.wav"]
    with pytest.raises(TrialsError, match=r"lst: 1 trial file\(s\) not found under .*'spk0/b.wav'"):
        key_paths(["spk0/a.wav", "spk0/b.wav"], tmp_path, "lst")


def test_trial_root_finds_the_wav_folder_beside_a_voxceleb_list(tmp_path):
    _touch(tmp_path / "wav" / "id1" / "x.wav")
    assert trial_root(tmp_path / "trials.txt", None, "id1/x.wav") == tmp_path / "wav"
    assert trial_root(tmp_path / "trials.txt", "/elsewhere", "id1/x.wav") == Path("/elsewhere")
    assert trial_keys([Trial(1, "a", "b"), Trial(0, "b", "c")]) == ["a", "b", "c"]


def test_kaldi_relative_paths_resolve_from_the_current_directory_as_in_kaldi(tmp_path, monkeypatch):
    # s5/data/test/wav.scp holds wav/x.wav, meaning s5/wav/x.wav: the recipe runs from s5/
    s5 = tmp_path / "s5"
    _touch(s5 / "wav" / "x.wav")
    data = s5 / "data" / "test"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("utt1 wav/x.wav\n")
    monkeypatch.chdir(s5)
    assert key_paths(["utt1"], data) == [s5 / "wav" / "x.wav"]


def test_kaldi_paths_relative_to_the_data_dir_still_work_and_are_announced_once(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    _touch(data / "audio" / "x.wav")
    (data / "wav.scp").write_text("utt1 audio/x.wav\nutt2 audio/x.wav\n")
    monkeypatch.chdir(tmp_path / "data" / "audio")
    assert key_paths(["utt1", "utt2"], data) == [data / "audio" / "x.wav"] * 2
    assert capsys.readouterr().err.count("relative to") == 1


def test_a_trial_key_missing_from_wav_scp_is_an_error_naming_wav_scp_and_the_key(tmp_path):
    _touch(tmp_path / "x.wav")
    (tmp_path / "wav.scp").write_text(f"utt1 {tmp_path / 'x.wav'}\n")
    with pytest.raises(TrialsError, match=r"trials.txt: trial key 'utt9' is not an utterance id of .*wav.scp"):
        key_paths(["utt1", "utt9"], tmp_path, "trials.txt")
