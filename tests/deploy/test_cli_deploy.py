"""The deployment commands' options: bad values and unwritable outputs refused before any work,
one result written like a batch row, the same recording not enrolled twice, help texts."""

import json
import shutil
import types

import pytest

from voxmetric import audio
from voxmetric.cli import deployment, main
from voxmetric.deploy.enroll import IDENTIFY_COLUMNS, VERIFY_LIST_COLUMNS, VERIFY_PAIR_COLUMNS
from voxmetric.deploy.speakerdb import SpeakerDB

from .test_enroll import _voice
from ..helpers import exit_status



@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command loads its model (the check must come before it)."""
    from voxmetric.inference import speaker_model

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(deployment, "_load", refuse)
    monkeypatch.setattr(speaker_model, "load_model", refuse)


@pytest.mark.parametrize("args, option", [
    (["identify", "sinctdnn-aam", "a.wav", "--db", "s.db", "--top", "0"], "--top"),
    (["calibrate", "sinctdnn-aam", "--trials", "t.txt", "--target-far", "0"], "--target-far"),
    (["calibrate", "sinctdnn-aam", "--trials", "t.txt", "--target-far", "1.5"], "--target-far"),
    (["calibrate", "sinctdnn-aam", "--trials", "t.txt", "--target-far", "nan"], "--target-far"),
    (["calibrate", "sinctdnn-aam", "--trials", "t.txt", "--bootstrap", "0"], "--bootstrap"),
    (["serve", "sinctdnn-aam", "--open-verify", "--port", "-1"], "--port"),
    (["serve", "sinctdnn-aam", "--open-verify", "--port", "70000"], "--port"),
    (["serve", "sinctdnn-aam", "--open-verify", "--max-upload-mb", "nan"], "--max-upload-mb"),
    (["serve", "sinctdnn-aam", "--open-verify", "--max-upload-mb", "inf"], "--max-upload-mb"),
    (["serve", "sinctdnn-aam", "--open-verify", "--max-audio-minutes", "-1"], "--max-audio-minutes"),
    (["serve", "sinctdnn-aam", "--open-verify", "--upload-timeout-s", "inf"], "--upload-timeout-s"),
    (["serve", "sinctdnn-aam", "--open-verify", "--workers", "0"], "--workers"),
])
def test_bad_option_values_are_usage_errors_before_any_work(args, option, no_model, capsys):
    assert exit_status(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: voxmetric {args[0]} ")
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"voxmetric {args[0]}: error: ") and option in last
    assert "Traceback" not in err


def test_unwritable_outputs_are_one_line_before_the_model_loads(tmp_path, no_model, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    under_a_file = a_file / "out.jsonl"
    cases = [
        (["verify", "sinctdnn-aam", "a.wav", "b.wav", "--out", str(under_a_file)], under_a_file),
        (["verify", "sinctdnn-aam", "a.wav", "b.wav", "--out", str(folder)], folder),
        (["verify", "sinctdnn-aam", "--trials", "t.txt", "--out", str(under_a_file)], under_a_file),
        (["identify", "sinctdnn-aam", "a.wav", "--db", "s.db", "--out", str(folder)], folder),
        (["identify", "sinctdnn-aam", "--list", "l.txt", "--db", "s.db", "--out", str(under_a_file)], under_a_file),
        (["calibrate", "sinctdnn-aam", "--trials", "t.txt", "--out", str(folder)], folder),
        (["enroll", "sinctdnn-aam", "--name", "n", "a.wav", "--db", str(a_file / "s.db")], a_file / "s.db"),
    ]
    for args, path in cases:
        assert main(args) == 1, args
        err = capsys.readouterr().err
        assert err.startswith(f"voxmetric: error: {path}: cannot write (") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.txt"]
    assert list(folder.iterdir()) == []


def test_one_pair_and_one_recording_are_written_like_batch_rows(tmp_path, capsys):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    audio.write(a, _voice())
    audio.write(b, _voice(f0=210.0))
    out = tmp_path / "pair.jsonl"
    assert main(["verify", "sinctdnn-aam", str(a), str(b), "--out", str(out), "-q"]) == 0
    assert capsys.readouterr().out == ""  # the result went to the file
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert list(row) == list(VERIFY_PAIR_COLUMNS) and (row["enrol"], row["test"]) == (str(a), str(b))

    assert main(["verify", "sinctdnn-aam", str(a), str(b), "--format", "tsv", "-q"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split("\t") == list(VERIFY_PAIR_COLUMNS)
    assert float(line.split("\t")[2]) == pytest.approx(row["score"], abs=1e-6)

    db = str(tmp_path / "speakers.db")
    assert main(["enroll", "sinctdnn-aam", "--name", "alice", str(a), "--db", db, "-q"]) == 0
    who = tmp_path / "who.tsv"
    assert main(["identify", "sinctdnn-aam", str(b), "--db", db, "--out", str(who), "-q"]) == 0
    header, line = who.read_text().splitlines()
    assert header.split("\t") == list(IDENTIFY_COLUMNS) and line.split("\t")[:3] == [str(b), "1", "alice"]
    claim = tmp_path / "claim.tsv"
    assert main(["verify", "sinctdnn-aam", "--db", db, "--name", "alice", str(b), "--out", str(claim), "-q"]) == 0
    header, line = claim.read_text().splitlines()
    assert header.split("\t") == list(VERIFY_LIST_COLUMNS) and line.split("\t")[:2] == ["alice", str(b)]

    capsys.readouterr()
    assert main(["verify", "sinctdnn-aam", str(a), str(b), "--json", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--json" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()


def test_the_same_recording_is_not_enrolled_twice(tmp_path, capsys):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    audio.write(a, _voice())
    audio.write(b, _voice(f0=210.0))
    copy = tmp_path / "renamed-copy.wav"
    shutil.copy(a, copy)
    db = str(tmp_path / "speakers.db")
    assert main(["enroll", "sinctdnn-aam", "--name", "alice", str(a), "--db", db, "-q"]) == 0
    capsys.readouterr()
    assert main(["enroll", "sinctdnn-aam", "--name", "alice", str(copy), str(b), "--db", db]) == 0
    out, err = capsys.readouterr()
    assert out == (f"enrolled 'alice' in {db}: 2 recording(s) in all (1 of the given recording(s) enrolled "
                   f"already: not added again)\n")
    assert f"{copy}: the same recording as 'a.wav', which 'alice' has already: not added again" in err
    with SpeakerDB.open(db, SpeakerDB.model_of(db), create=False) as speakers:
        assert speakers.get("alice").sources == ["a.wav", "b.wav"]


def test_an_empty_file_given_as_db_is_refused_untouched(tmp_path, capsys):
    voice, notes = tmp_path / "v.wav", tmp_path / "notes.txt"
    audio.write(voice, _voice())
    notes.touch()
    assert main(["enroll", "sinctdnn-aam", "--name", "n", str(voice), "--db", str(notes), "-q"]) == 1
    assert capsys.readouterr().err == (f"voxmetric: error: {notes}: exists and is not a speaker database (an empty "
                                       f"file); left unchanged, choose another file\n")
    assert notes.read_bytes() == b"" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "v.wav"]


def test_calibrate_prints_the_llr_map_with_its_sign(tmp_path, monkeypatch, capsys):
    from voxmetric.deploy import calibrate

    saved = []
    for offset, shown in ((-3.2494, "LLR = 6.586 * score - 3.249"), (1.5, "LLR = 6.586 * score + 1.500")):
        result = types.SimpleNamespace(warnings=[], save=saved.append, eer=0.1, eer_ci=(0.0, 0.445), n_target=10,
                                       n_nontarget=10, threshold=0.6, threshold_ci=(0.4, 0.8), scale=6.5859,
                                       offset=offset)
        monkeypatch.setattr(calibrate, "calibrate_pairs", lambda *args, **kwargs: (result, []))
        monkeypatch.setattr(deployment, "_load", lambda args: None)
        assert main(["calibrate", "sinctdnn-aam", "--trials", "t.txt", "--out", str(tmp_path / "c.json")]) == 0
        assert shown in capsys.readouterr().out
    assert saved == [str(tmp_path / "c.json")] * 2


def test_help_texts(capsys):
    for command in ("serve", "speakers", "calibrate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    serve, speakers, calibrate = capsys.readouterr().out.split("usage: voxmetric ")[1:]
    log_level = serve[serve.index("--log-level {"):]
    assert "server log on stderr" in log_level and "(default info)" in log_level
    assert "exit status: 0 success" in serve
    assert "--device" not in speakers and "--no-vad" not in speakers and "--db DB" in speakers
    assert "Clopper-Pearson" in " ".join(calibrate.split())


def test_serve_on_its_own_gives_usage_errors_too(no_model, capsys):
    from voxmetric.deploy.serve import cli as serve_cli

    assert serve_cli.main(["sinctdnn-aam", "--open-verify", "--max-upload-mb", "inf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: voxmetric serve ") and err.endswith(
        "voxmetric serve: error: --max-upload-mb must be a positive number, got inf\n")
