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


def test_score_then_eval(tmp_path, capsys):
    trials, matrix = _trial_files(tmp_path)
    scores = tmp_path / "scores.txt"
    assert main(["score", "--trials", str(trials), "--embeddings", str(tmp_path / "emb.npz"),
                 "--out", str(scores)]) == 0
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
