"""The command line: SPEC section 4 names, one-line errors, score/eval files."""

import json
import subprocess
import sys

import numpy as np
import pytest

from voxmetric.cli import build_parser, main
from voxmetric.evaluate.embeddings import save_embeddings
from voxmetric.evaluate.pipeline import read_scores

SPEC_COMMANDS = ["synth", "train", "embed", "score", "eval", "compare", "verify", "export", "demo",
                 "calibrate", "enroll", "identify", "speakers"]


def test_help_lists_the_spec_commands():
    text = build_parser().format_help()
    for command in SPEC_COMMANDS:
        assert command in text


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    assert "usage: voxmetric " + command in capsys.readouterr().out


def _trial_files(tmp_path):
    """4 utterances of 2 speakers; embeddings that separate them perfectly."""
    ids = ["a/1.wav", "a/2.wav", "b/1.wav", "b/2.wav"]
    matrix = np.array([[1, 0.1], [1, -0.1], [0.1, 1], [-0.1, 1]], dtype=np.float32)
    save_embeddings(tmp_path / "emb.npz", ids, matrix)
    trials = tmp_path / "trials.txt"
    trials.write_text("1 a/1.wav a/2.wav\n0 a/1.wav b/1.wav\n1 b/1.wav b/2.wav\n0 a/2.wav b/2.wav\n")
    return trials, matrix


def test_every_out_option_has_the_short_form_o():
    commands = build_parser()._subparsers._group_actions[0].choices
    with_out = {name: [a.option_strings for a in parser._actions if "--out" in a.option_strings]
                for name, parser in commands.items()}
    with_out = {name: strings[0] for name, strings in with_out.items() if strings}
    assert {"embed", "score", "eval", "train", "compare", "demo", "calibrate"} <= set(with_out)
    assert all(strings == ["-o", "--out"] for strings in with_out.values()), with_out


def test_score_then_eval(tmp_path, capsys):
    trials, matrix = _trial_files(tmp_path)
    scores = tmp_path / "scores.txt"
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"),
                 "-o", str(scores)]) == 0
    by_pair = read_scores(str(scores))
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    assert by_pair[("a/1.wav", "a/2.wav")] == pytest.approx(float(unit[0] @ unit[1]), abs=1e-6)
    assert by_pair[("a/1.wav", "b/1.wav")] == pytest.approx(float(unit[0] @ unit[2]), abs=1e-6)

    results = tmp_path / "results.json"
    plot = tmp_path / "det.png"
    assert main(["eval", "--trials", str(trials), "--scores", str(scores), "--plot", str(plot),
                 "--hist", str(tmp_path / "hist.png"), "--out", str(results), "--bootstrap", "50"]) == 0
    assert (tmp_path / "hist.png").read_bytes()[:4] == b"\x89PNG"
    assert "EER 0.00%" in capsys.readouterr().out
    assert json.loads(results.read_text())["eer"] == 0.0
    assert (tmp_path / "results.md").read_text().count("|") > 4
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_score_with_snorm_cohort(tmp_path):
    trials, _ = _trial_files(tmp_path)
    cohort = np.random.default_rng(0).normal(size=(8, 2)).astype(np.float32)
    save_embeddings(tmp_path / "cohort.npz", [f"c{i}" for i in range(8)], cohort)
    out = tmp_path / "snorm.txt"
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"),
                 "--snorm", str(tmp_path / "cohort.npz"), "--top", "4", "--out", str(out)]) == 0
    assert len(read_scores(str(out))) == 4


def test_errors_are_one_line_with_nonzero_exit(tmp_path, capsys):
    trials, _ = _trial_files(tmp_path)
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "missing.npz"),
                 "--out", str(tmp_path / "s.txt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("voxmetric: error:") and "missing.npz" in err and "\n" not in err
    assert not (tmp_path / "s.txt").exists()

    bad_scores = tmp_path / "bad.txt"
    bad_scores.write_text("0.5 a/1.wav a/2.wav\nnot-a-number a/1.wav b/1.wav\n")
    assert main(["eval", "--trials", str(trials), "--scores", str(bad_scores)]) == 1
    assert "bad.txt, line 2" in capsys.readouterr().err

    partial = tmp_path / "partial.txt"
    partial.write_text("0.5 a/1.wav a/2.wav\n")
    assert main(["eval", "--trials", str(trials), "--scores", str(partial)]) == 1
    assert "no score for trial 2" in capsys.readouterr().err


def test_train_with_unknown_config_key_names_it(tmp_path, capsys):
    config = tmp_path / "bad.yml"
    config.write_text("data:\n  corpus: x\n  speakers_per_bach: 4\n")
    assert main(["train", str(config), "--out", str(tmp_path / "exp")]) == 1
    assert "data.speakers_per_bach" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_console_script_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "voxmetric.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("voxmetric ")


# --- scriptable at scale ----------------------------------------------------------------

import shutil  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from voxmetric.cli import EXIT_PARTIAL  # noqa: E402
from voxmetric.evaluate.embeddings import EmbeddingTable, load_embeddings_with_metadata  # noqa: E402
from voxmetric.fileio import dumps_json, progress_bar, to_jsonable  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny weights file (calibrated, threshold 0.5): embedding real files costs milliseconds."""
    from .inference.test_speaker_model import make_weights

    return make_weights(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from .inference.test_speaker_model import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ck") / "best.pt")


def _speech(shared_data: Path, tmp_path: Path) -> dict[str, Path]:
    """Three real recordings (two of one speaker), a corrupt one, in a folder tree."""
    real = shared_data / "real"
    folder = tmp_path / "audio"
    (folder / "slt").mkdir(parents=True)
    (folder / "aew").mkdir()
    files = {"slt1": folder / "slt" / "a0010.flac", "slt2": folder / "slt" / "a0028.flac",
             "aew": folder / "aew" / "a0001.flac", "bad": folder / "bad.wav"}
    shutil.copy(real / "arctic-slt" / "arctic_a0010.flac", files["slt1"])
    shutil.copy(real / "arctic-slt" / "arctic_a0028.flac", files["slt2"])
    shutil.copy(real / "arctic-aew" / "arctic_a0001.flac", files["aew"])
    files["bad"].write_bytes(b"RIFF not really audio" * 4)
    return files


def test_one_json_writer():
    value = {"a": np.float32(0.5), "b": np.arange(2), 0.01: (np.int64(3), Path("x")), "nan": float("nan")}
    assert to_jsonable(value) == {"a": 0.5, "b": [0, 1], "0.01": [3, "x"], "nan": None}
    assert json.loads(dumps_json(value))["nan"] is None
    with pytest.raises(TypeError, match="object"):
        dumps_json({"x": object()})


def test_progress_bars_stay_out_of_log_files():
    # under pytest stderr is captured, not a terminal: no bar even when enabled
    assert progress_bar([1], enabled=True).disable
    assert progress_bar([1], enabled=False).disable


def test_embed_folder_skip_errors_and_model_metadata(shared_data, tiny_model, tmp_path, capsys):
    files = _speech(shared_data, tmp_path)
    out = tmp_path / "emb.npz"
    # without --skip-errors: one line naming the bad file, exit 1, nothing written
    assert main(["embed", str(tiny_model), str(tmp_path / "audio"), "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("voxmetric: error:") and "bad.wav" in err and "\n" not in err
    assert not out.exists() and not Path(f"{out}.errors.tsv").exists()
    # with it: the good files are written, the bad one listed, exit 3
    assert main(["embed", str(tiny_model), str(tmp_path / "audio"), "--out", str(out), "--skip-errors",
                 "-q"]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "bad.wav" in err and "partial" in err
    ids, matrix, meta = load_embeddings_with_metadata(out)
    assert sorted(ids) == sorted(str(files[k]) for k in ("slt1", "slt2", "aew")) and matrix.shape[0] == 3
    assert meta["model"].startswith("tiny:sha256:") and meta["frontend"]["window_s"] == 1.0
    sidecar = Path(f"{out}.errors.tsv").read_text().splitlines()
    assert sidecar[0] == "item\treason" and sidecar[1].startswith(str(files["bad"]))
    # the same files as a safetensors file carry the same metadata
    st = tmp_path / "emb.safetensors"
    assert main(["embed", str(tiny_model), str(files["slt1"]), "--out", str(st), "-q"]) == 0
    assert EmbeddingTable.load(st).fingerprint == meta["model"]


def test_old_embeddings_files_without_metadata_still_load(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, ids=np.array(["a", "b"]), embeddings=np.eye(2, dtype=np.float32))
    table = EmbeddingTable.load(path)
    assert table.fingerprint is None and len(table) == 2


def test_each_file_is_embedded_once_however_many_trials_name_it(tmp_path):
    from voxmetric.audio.quality import QualityReport
    from voxmetric.deploy.enroll import verify_trials

    calls = []

    class Counting:
        calibration = None

        def decision_threshold(self):
            return 0.5

        def embed_with_quality(self, path):
            calls.append(path)
            return np.ones(4, dtype=np.float32), QualityReport(3.0, 30.0, 0.0, 16000, [])

        cosine = staticmethod(lambda a, b: 1.0)

    for name in "abc":
        (tmp_path / f"{name}.wav").write_bytes(b"x")
    trials = tmp_path / "trials.txt"
    trials.write_text("1 a.wav b.wav\n0 a.wav c.wav\n1 b.wav a.wav\n0 c.wav b.wav\n")
    batch = verify_trials(Counting(), trials, progress=False)
    assert len(batch.rows) == 4 and sorted(calls) == sorted(str(tmp_path / f"{n}.wav") for n in "abc")


def test_verify_trials_batch(shared_data, tiny_model, tmp_path, capsys):
    files = _speech(shared_data, tmp_path)
    trials = tmp_path / "trials.txt"
    trials.write_text("1 slt/a0010.flac slt/a0028.flac\n0 slt/a0010.flac aew/a0001.flac\n"
                      "0 aew/a0001.flac bad.wav\n1 slt/a0028.flac slt/missing.flac\n")
    root = str(files["slt1"].parents[1])
    out = tmp_path / "decisions.tsv"
    args = ["verify", str(tiny_model), "--trials", str(trials), "--root", root, "--out", str(out), "-q"]
    assert main(args) == 1
    assert not out.exists()
    capsys.readouterr()
    assert main(args + ["--skip-errors"]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "bad.wav" in err and "missing.flac" in err
    lines = out.read_text().splitlines()
    assert lines[0].split("\t") == ["enrol", "test", "label", "score", "llr", "accepted", "threshold"]
    assert len(lines) == 3 and lines[1].startswith("slt/a0010.flac\tslt/a0028.flac\t1\t")
    assert len(Path(f"{out}.errors.tsv").read_text().splitlines()) == 3
    # JSON Lines on stdout
    assert main(["verify", str(tiny_model), "--trials", str(trials), "--root", root, "--skip-errors",
                 "-q"]) == EXIT_PARTIAL
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == [1, 0] and all(isinstance(r["accepted"], bool) for r in rows)


def test_enroll_identify_list_speakers_without_model(shared_data, tiny_model, tmp_path, capsys):
    files = _speech(shared_data, tmp_path)
    db = tmp_path / "speakers.db"
    enroll = ["enroll", str(tiny_model), "--name", "slt", str(files["slt1"]), str(files["bad"]), "--db", str(db)]
    assert main(enroll + ["-q"]) == 1 and not db.exists()
    assert main(enroll + ["-q", "--skip-errors"]) == EXIT_PARTIAL
    assert main(["enroll", str(tiny_model), "--name", "aew", str(files["aew"]), "--db", str(db), "-q"]) == 0
    capsys.readouterr()
    # speakers: no MODEL needed; says which model the database belongs to
    assert main(["speakers", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("aew\t1 recording(s)") and "tiny:sha256:" in captured.err
    # identify --list: JSON Lines, or TSV one row per candidate
    listing = tmp_path / "list.txt"
    listing.write_text(f"{files['slt2']}\n{files['bad']}\n")
    out = tmp_path / "who.tsv"
    assert main(["identify", str(tiny_model), "--db", str(db), "--list", str(listing), "--out", str(out),
                 "--skip-errors", "-q"]) == EXIT_PARTIAL
    rows = out.read_text().splitlines()
    assert rows[0] == "path\trank\tname\tscore\tllr\taccepted" and len(rows) == 3
    assert main(["identify", str(tiny_model), "--db", str(db), "--list", str(listing), "-q"]) == 1
    # verify --db --list: NAME PATH lines
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"slt {files['slt2']}\naew {files['slt2']}\n")
    capsys.readouterr()
    assert main(["verify", str(tiny_model), "--db", str(db), "--list", str(pairs), "-q"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["slt", "aew"] and rows[0]["path"] == str(files["slt2"])


def test_quality_warnings_once_per_file_and_quiet(shared_data, tiny_model, tmp_path, capsys):
    from voxmetric import audio

    files = _speech(shared_data, tmp_path)
    short = tmp_path / "short.wav"
    audio.write(short, audio.read(files["slt1"])[:16000])
    assert main(["verify", str(tiny_model), str(short), str(files["slt2"]), "--json"]) == 0
    captured = capsys.readouterr()
    assert "short.wav" in json.loads(captured.out)["warnings"][0]
    assert captured.err.count("voxmetric: warning:") == 1 and "short.wav" in captured.err
    assert main(["embed", str(tiny_model), str(short), str(short), "--out", str(tmp_path / "e.npz")]) == 0
    assert capsys.readouterr().err.count("short.wav: only") == 1
    assert main(["embed", str(tiny_model), str(short), "--out", str(tmp_path / "e.npz"), "-q"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_calibrate_skip_errors(shared_data, tiny_model, tmp_path, capsys):
    real = shared_data / "real"
    lines = [line for line in (real / "trials.txt").read_text().splitlines() if line.strip()][:12]
    trials = tmp_path / "pairs.txt"
    trials.write_text("\n".join(lines + ["1 arctic-slt/arctic_a0010.flac arctic-slt/nope.flac"]) + "\n")
    out = tmp_path / "cal.json"
    assert main(["calibrate", str(tiny_model), "--trials", str(trials), "--root", str(real), "--out", str(out),
                 "--bootstrap", "20", "-q"]) == 1
    assert not out.exists()
    assert main(["calibrate", str(tiny_model), "--trials", str(trials), "--root", str(real), "--out", str(out),
                 "--bootstrap", "20", "-q", "--skip-errors"]) == EXIT_PARTIAL
    assert out.exists() and "nope.flac" in Path(f"{out}.errors.tsv").read_text()


def test_score_refuses_embeddings_of_different_models(tmp_path, capsys):
    trials, matrix = _trial_files(tmp_path)
    ids = ["a/1.wav", "a/2.wav", "b/1.wav", "b/2.wav"]
    save_embeddings(tmp_path / "emb.npz", ids, matrix, metadata={"model": "m1:sha256:aaa"})
    save_embeddings(tmp_path / "cohort.safetensors", [f"c{i}" for i in range(8)],
                    np.random.default_rng(0).normal(size=(8, 2)), metadata={"model": "m2:sha256:bbb"})
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"), "--snorm",
                 str(tmp_path / "cohort.safetensors"), "--out", str(tmp_path / "s.txt")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "emb.npz" in err and "cohort.safetensors" in err
    assert "m1:sha256:aaa" in err and "m2:sha256:bbb" in err and not (tmp_path / "s.txt").exists()


def test_score_snorm_announces_the_real_top_n_without_a_python_warning(tmp_path, capsys):
    trials, _ = _trial_files(tmp_path)
    save_embeddings(tmp_path / "cohort.npz", [f"c{i}" for i in range(8)],
                    np.random.default_rng(0).normal(size=(8, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"), "--snorm",
                     str(tmp_path / "cohort.npz"), "--out", str(tmp_path / "s.txt")]) == 0
    captured = capsys.readouterr()
    assert "top 8 of a cohort of 8 embeddings" in captured.out and "Warning" not in captured.err


def test_score_root_matches_absolute_ids(tmp_path):
    trials, matrix = _trial_files(tmp_path)
    ids = [str(tmp_path / "wav" / key) for key in ["a/1.wav", "a/2.wav", "b/1.wav", "b/2.wav"]]
    save_embeddings(tmp_path / "abs.npz", ids, matrix)
    out = tmp_path / "s.txt"
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "abs.npz"),
                 "--root", str(tmp_path / "wav"), "--out", str(out)]) == 0
    assert set(read_scores(str(out))) == {("a/1.wav", "a/2.wav"), ("a/1.wav", "b/1.wav"), ("b/1.wav", "b/2.wav"),
                                          ("a/2.wav", "b/2.wav")}


def test_eval_several_systems(tmp_path, capsys):
    trials, _ = _trial_files(tmp_path)
    for name in ("one", "two"):
        main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"),
              "--out", str(tmp_path / f"{name}.txt")])
    capsys.readouterr()
    plot, results = tmp_path / "det.png", tmp_path / "r.json"
    assert main(["eval", "--trials", str(trials), "--scores", str(tmp_path / "one.txt"), str(tmp_path / "two.txt"),
                 "--plot", str(plot), "--out", str(results), "--bootstrap", "20"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("one: EER") and "\ntwo: EER" in captured.out
    assert str(plot) in captured.err and str(results) in captured.err
    assert set(json.loads(results.read_text())) == {"one", "two"}
    assert (tmp_path / "r.md").read_text().count("\n| ") >= 2 and plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", "--trials", str(trials), "--scores", str(tmp_path / "one.txt"), "--plot", "det.jpg"]) == 2
    assert "usage: voxmetric eval" in capsys.readouterr().err


def test_arguments_in_the_wrong_order_say_which_is_not_a_model(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "a.flac"), str(tmp_path / "b.flac"), "sinctdnn-aam"]) == 2
    err = capsys.readouterr().err
    assert "usage: voxmetric verify" in err and "a.flac is not a model" in err and "weights_only" not in err


def test_usage_errors_show_the_commands_usage(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["identify", "sinctdnn-aam", "x.wav", "y.wav", "--db", "s.db"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: voxmetric identify") and "unrecognized arguments: y.wav" in err
    assert main(["verify", "sinctdnn-aam", "only-one.wav"]) == 2
    assert "usage: voxmetric verify" in capsys.readouterr().err


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_every_command_help_has_an_example_and_defaults(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "example:\n  voxmetric " + command in text and "exit status:" in text and "%%" not in text


def test_calibrate_help_prints_percent_literally(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    text = capsys.readouterr().out
    assert "95% confidence" in " ".join(text.split()) and "(default: 1000)" in text


def test_embed_declares_device_and_vad_once():
    embed = build_parser()._subparsers._group_actions[0].choices["embed"]
    options = [o for action in embed._actions for o in action.option_strings]
    assert options.count("--device") == 1 and options.count("--no-vad") == 1


def test_checkpoint_without_calibration_points_to_calibrate(tiny_checkpoint, shared_data, capsys):
    wav = shared_data / "real" / "arctic-slt" / "arctic_a0010.flac"
    assert main(["verify", str(tiny_checkpoint), str(wav), str(wav)]) == 1
    err = capsys.readouterr().err
    assert "voxmetric calibrate" in err and "--calibration" in err


def test_export_safetensors(tiny_checkpoint, tmp_path, capsys):
    from voxmetric.inference.speaker_model import load_model

    out = tmp_path / "model.safetensors"
    assert main(["export", str(tiny_checkpoint), "--format", "safetensors", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    model = load_model(out)
    assert model.embedding_dim == 16 and model.calibration is None


def test_audio_format_messages(tmp_path):
    from voxmetric import audio
    from voxmetric.audio.io import readable_extensions
    from voxmetric.errors import AudioError

    m4a = tmp_path / "x.m4a"
    m4a.write_bytes(b"\0\0\0 ftypM4A " * 8)
    with pytest.raises(AudioError, match="ffmpeg -i .* -ac 1 -ar 16000"):
        audio.read(m4a)
    odd = tmp_path / "x.xyz"
    odd.write_bytes(b"junk" * 16)
    with pytest.raises(AudioError) as caught:
        audio.read(odd)
    assert ", ".join(readable_extensions()) in str(caught.value)


def test_mp3_is_read_when_libsndfile_supports_it(shared_data, tmp_path):
    import soundfile as sf

    from voxmetric import audio

    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3 support")
    samples, rate = sf.read(shared_data / "real" / "arctic-slt" / "arctic_a0010.flac")
    sf.write(tmp_path / "a.mp3", samples, rate)
    assert audio.read(tmp_path / "a.mp3").size > 16000
    from voxmetric.inference.batch import audio_in_folder

    assert audio_in_folder(tmp_path) == [str(tmp_path / "a.mp3")]


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_every_option_has_help(command):
    parser = build_parser()._subparsers._group_actions[0].choices[command]
    missing = [a.dest for a in parser._actions if not a.help]
    assert not missing, f"{command}: no help for {missing}"


# --- audit: paths, inputs, option values, help --------------------------------------------


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("voxmetric: error: ") and err.count("\n") == 1, err
    return err


def test_options_before_the_command_are_refused(tmp_path, capsys):
    trials, _ = _trial_files(tmp_path)
    score = ["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"), "--out", str(tmp_path / "s")]
    for before in (["--bogus"], ["-q"]):
        with pytest.raises(SystemExit) as caught:
            main(before + score)
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert "unrecognized arguments before the command 'score': " + before[0] in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("command, option, value", [("score", "--top", "-5"), ("score", "--top", "1"),
                                                    ("eval", "--bootstrap", "-3"), ("eval", "--seed", "-1")])
def test_bad_option_values_are_usage_errors(tmp_path, capsys, command, option, value):
    trials, _ = _trial_files(tmp_path)
    inputs = {"score": ["--embeddings", str(tmp_path / "emb.npz"), "--out", str(tmp_path / "s.txt")],
              "eval": ["--scores", str(trials)]}[command]
    with pytest.raises(SystemExit) as caught:
        main([command, "--trials", str(trials), *inputs, option, value])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: voxmetric {command}") and f"argument {option}: " in err
    assert not (tmp_path / "s.txt").exists()


def test_eval_seed_is_checked_by_the_library_too():
    from voxmetric.errors import ScoresError
    from voxmetric.evaluate.metrics import evaluate_scores

    with pytest.raises(ScoresError, match="seed must be a non-negative integer, got -1"):
        evaluate_scores(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 0, 1, 0]), n_bootstrap=5, seed=-1)


def test_eval_json_prints_only_json_on_stdout(tmp_path, capsys):
    trials, _ = _trial_files(tmp_path)
    scores = tmp_path / "scores.txt"
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"), "-o", str(scores)]) == 0
    capsys.readouterr()
    assert main(["eval", "--trials", str(trials), "--scores", str(scores), "--json", "--bootstrap", "10"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["eer"] == 0.0 and "EER 0.00%" in captured.err


def test_binary_trial_lists_and_score_files_are_named(tmp_path, capsys):
    from voxmetric.data.trials import read_trials
    from voxmetric.errors import TrialsError

    trials, _ = _trial_files(tmp_path)
    binary = tmp_path / "x.wav"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["score", "--trials", str(binary), "--embeddings", str(tmp_path / "emb.npz"),
                 "--out", str(tmp_path / "s.txt")]) == 1
    assert f"{binary}: not a UTF-8 text trial list" in _one_error_line(capsys)
    assert main(["eval", "--trials", str(trials), "--scores", str(binary)]) == 1
    assert f"{binary}: not a UTF-8 text score file" in _one_error_line(capsys)
    with pytest.raises(TrialsError, match="not a UTF-8 text trial list"):  # verify --trials, calibrate --trials
        read_trials(binary)


def test_a_directory_is_named_as_one(tmp_path, capsys):
    trials, _ = _trial_files(tmp_path)
    folder = tmp_path / "d.npz"
    folder.mkdir()
    out = ["--out", str(tmp_path / "s.txt")]
    assert main(["score", "--trials", str(folder), "--embeddings", str(tmp_path / "emb.npz"), *out]) == 1
    assert f"{folder}: is a directory, not a trial list" in _one_error_line(capsys)
    assert main(["score", "--trials", str(trials), "--embeddings", str(folder), *out]) == 1
    assert f"{folder}: is a directory, not an embeddings file" in _one_error_line(capsys)
    assert main(["eval", "--trials", str(trials), "--scores", str(folder)]) == 1
    assert f"{folder}: is a directory, not a score file" in _one_error_line(capsys)


def test_corrupt_npz_never_suggests_allow_pickle(tmp_path, capsys):
    trials, _ = _trial_files(tmp_path)
    junk = tmp_path / "x.npz"
    junk.write_bytes(bytes(range(256)) * 4)
    pickled = tmp_path / "p.npz"
    np.savez(pickled, ids=np.array(["a/1.wav"], dtype=object), embeddings=np.zeros((1, 2)))
    for path in (junk, pickled):
        assert main(["score", "--trials", str(trials), "--embeddings", str(path), "--out", str(tmp_path / "s")]) == 1
        err = _one_error_line(capsys)
        assert f"{path}: unreadable or corrupt embeddings file" in err and "allow_pickle" not in err


def test_score_root_matches_ids_already_relative_and_names_a_missing_root(tmp_path, capsys, monkeypatch):
    trials, _ = _trial_files(tmp_path)  # ids stored as the trial keys, as 'embed --root' writes them
    (tmp_path / "wav").mkdir()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "s.txt"
    assert main(["score", "--trials", str(trials), "--embeddings", "emb.npz", "--root", "wav", "--out", str(out)]) == 0
    assert len(read_scores(str(out))) == 4
    capsys.readouterr()
    # a --root that does not exist is named where the ids do not match (--root wav with ids relative to .)
    save_embeddings(tmp_path / "cwd.npz", [f"wav/{key}" for key in ("a/1.wav", "a/2.wav", "b/1.wav", "b/2.wav")],
                    np.eye(4, 2, dtype=np.float32) + 0.1)
    assert main(["score", "--trials", str(trials), "--embeddings", "cwd.npz", "--root", "wav", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["score", "--trials", str(trials), "--embeddings", "cwd.npz", "--root", "nope", "-o", "t.txt"]) == 1
    err = _one_error_line(capsys)
    assert "'a/1.wav' has no embedding in cwd.npz (ids taken relative to --root nope, a folder that does not exist)" \
        in err and not (tmp_path / "t.txt").exists()


def test_unwritable_outputs_fail_before_any_work(tmp_path, capsys):
    trials, _ = _trial_files(tmp_path)
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "out"
    scores = tmp_path / "scores.txt"
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"), "-o", str(scores)]) == 0
    capsys.readouterr()
    # eval: nothing written when the plot cannot be, not the results without it
    results = tmp_path / "r.json"
    for option in ("--plot", "--hist"):
        assert main(["eval", "--trials", str(trials), "--scores", str(scores), "--out", str(results),
                     option, f"{bad}.png"]) == 1
        assert f"{bad}.png: cannot write (" in _one_error_line(capsys)
        assert not results.exists() and not (tmp_path / "r.md").exists()
    assert main(["eval", "--trials", str(trials), "--scores", str(scores), "--out", f"{bad}.json"]) == 1
    assert f"{bad}.json: cannot write (" in _one_error_line(capsys)
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"), "-o", str(bad)]) == 1
    assert f"{bad}: cannot write (" in _one_error_line(capsys)
    # embed: checked before the model is even loaded (this one does not exist), sidecar included
    assert main(["embed", "no-such-model", str(trials), "--out", f"{bad}.npz"]) == 1
    assert f"{bad}.npz: cannot write (" in _one_error_line(capsys)
    (tmp_path / "e.npz.errors.tsv").mkdir()
    assert main(["embed", "no-such-model", str(trials), "--out", str(tmp_path / "e.npz"), "--skip-errors"]) == 1
    assert "e.npz.errors.tsv: cannot write (it is a directory" in _one_error_line(capsys)
    assert main(["embed", "no-such-model", str(trials), "--out", str(tmp_path / "e.txt")]) == 1
    assert "e.txt: unknown embeddings format '.txt'" in _one_error_line(capsys)


def test_outputs_are_probed_where_permission_bits_do_not_tell(tmp_path, capsys, monkeypatch):
    import tempfile

    def refused(*args, **kwargs):  # root writing into /sys: os.access says yes, the file system says no
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    out = tmp_path / "e.npz"
    assert main(["embed", "no-such-model", "a.wav", "--out", str(out)]) == 1
    assert f"{out}: cannot write (Permission denied)" in _one_error_line(capsys)


@pytest.mark.parametrize("command", [None] + SPEC_COMMANDS)
def test_help_wraps_to_the_terminal_width(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    with pytest.raises(SystemExit):
        main(([command] if command else []) + ["--help"])
    text = capsys.readouterr().out
    too_long = [line for line in text.splitlines() if len(line) > 60 and not line.startswith("  voxmetric ")]
    assert not too_long and "exit status: 0 success" in text


def test_help_and_version_do_not_import_torch():
    """Building the command line stays light (about 0.2 s, against 3 s once export's choices
    imported torch): ``--help``, ``--version`` and usage errors answer at once."""
    import subprocess
    import sys

    code = ("import sys\nfrom voxmetric.cli import build_parser\nparser = build_parser()\n"
            "for action in parser._subparsers._group_actions[0].choices.values(): action.format_help()\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
