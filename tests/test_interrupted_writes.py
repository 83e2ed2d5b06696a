"""SIGKILL during a command that writes a file: the output is the old file or the complete new one.

Each command (``embed --out``, ``score --out``, ``calibrate --out``, ``export``, ``enroll``)
first writes an output in-process, then runs again as a CLI subprocess over it and is
SIGKILLed at a seeded random moment of its write: a random 0-30 ms after its temporary
output file (or SQLite journal) appears. (Starting Python and torch dominates each run:
one kill per command keeps the test short.)
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from voxmetric import audio
from voxmetric.deploy.calibrate import CalibrationResult
from voxmetric.cli import main
from voxmetric.evaluate.embeddings import load_embeddings

from .inference.test_speaker_model import _voice, make_weights

RNG = np.random.default_rng(20261202)


def _run(args, kill_when=None, timeout_s=180):
    """Run ``voxmetric ARGS``; ``kill_when`` (``("temp", folder)`` or ``("after", seconds)``)
    SIGKILLs it at that moment. Returns the exit status (``-9`` when killed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "voxmetric.cli", *map(str, args), "-q"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + timeout_s
    if kill_when is not None:
        kind, value = kill_when
        started = time.monotonic()
        while process.poll() is None and time.monotonic() < deadline:
            if kind == "temp" and any(_is_temporary(p.name) for p in Path(value).iterdir()):
                time.sleep(float(RNG.uniform(0.0, 0.03)))
                break
            if kind == "after" and time.monotonic() - started >= value:
                break
            time.sleep(0.0005)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
    assert process.returncode in (0, -signal.SIGKILL), err.decode()
    return process.returncode


def _is_temporary(name: str) -> bool:
    """fileio.atomic_path's temporary file, or an SQLite transaction's journal."""
    return (name.startswith(".") and ".tmp-" in name) or name.endswith(("-journal", "-wal"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("writes")
    model = make_weights(tmp)
    files = []
    for speaker in range(2):
        for take in range(3):
            path = tmp / f"s{speaker}_{take}.wav"
            audio.write(path, _voice(1.5, f0=110.0 + 60 * speaker, seed=take))
            files.append(path)
    lines = [f"{int(a.name[:2] == b.name[:2])} {a.name} {b.name}" for i, a in enumerate(files) for b in files[i + 1:]]
    (tmp / "trials.txt").write_text("\n".join(lines) + "\n")
    return tmp, model, files, len(lines)


def _check_old_or_new(name, folder, old_args, new_args, old_check, new_check):
    """Write an old output in-process, kill a rewrite during its write: old or complete new."""
    out = folder / name
    assert main([str(a) for a in old_args(out)] + ["-q"]) == 0 and old_check(out)
    old_bytes = out.read_bytes()
    status = _run(new_args(out), kill_when=("temp", folder))
    assert out.exists()
    if status == 0:
        assert new_check(out), f"{name}: the command finished but the file is not the complete new one"
    else:
        assert out.read_bytes() == old_bytes or new_check(out), f"{name}: neither the old nor a complete new file"
    leftovers = [p for p in folder.iterdir() if p.name.startswith(".")]
    assert len(leftovers) <= 1  # at most the temporary file the kill interrupted
    return status


@pytest.mark.slow
def test_outputs_are_old_or_complete_after_sigkill(setup, tmp_path):
    import torch

    tmp, model, files, n_trials = setup
    full = tmp_path / "all.npz"
    assert main(["embed", str(model), *[f.name for f in files], "--root", str(tmp), "--out", str(full), "-q"]) == 0
    (tmp_path / "few.txt").write_text("".join(line + "\n" for line in (tmp / "trials.txt").read_text().splitlines()[:3]))

    def count(out):
        return len(load_embeddings(out)[0])

    statuses = [_check_old_or_new("emb.npz", tmp_path, lambda out: ["embed", model, *files[:2], "--out", out],
                                  lambda out: ["embed", model, *files, "--out", out],
                                  lambda out: count(out) == 2, lambda out: count(out) == len(files))]

    def scores_complete(out, expected):
        lines = out.read_text().splitlines()
        return len(lines) == expected and all(len(line.split()) == 3 for line in lines)

    statuses.append(_check_old_or_new(
        "scores.txt", tmp_path, lambda out: ["score", "--trials", tmp_path / "few.txt", "--embeddings", full, "--out", out],
        lambda out: ["score", "--trials", tmp / "trials.txt", "--embeddings", full, "--out", out],
        lambda out: scores_complete(out, 3), lambda out: scores_complete(out, n_trials)))

    def calibrate(rounds):
        return lambda out: ["calibrate", model, "--trials", tmp / "trials.txt", "--out", out, "--no-vad",
                            "--bootstrap", rounds]

    statuses.append(_check_old_or_new("cal.json", tmp_path, calibrate(10), calibrate(200),
                                      lambda out: CalibrationResult.load(out).n_bootstrap == 10,
                                      lambda out: CalibrationResult.load(out).n_bootstrap == 200))

    from .training.test_trainer import TINY_MODEL

    smaller = {"name": TINY_MODEL["name"], "params": {**TINY_MODEL["params"], "embedding_dim": 8}}
    other = make_weights(tmp_path, name="other", model=smaller)

    def dim(out):
        return torch.jit.load(str(out))(torch.zeros(1, 16000)).shape[-1]

    statuses.append(_check_old_or_new("net.pt", tmp_path, lambda out: ["export", model, "--format", "torchscript", out],
                                      lambda out: ["export", other, "--format", "torchscript", out],
                                      lambda out: dim(out) == 16, lambda out: dim(out) == 8))

    db = tmp_path / "db" / "speakers.db"
    db.parent.mkdir()
    assert main(["enroll", str(model), "--name", "alice", *map(str, files[:3]), "--db", str(db), "-q"]) == 0
    statuses.append(_run(["enroll", model, "--name", "bob", *files[3:], "--db", db], kill_when=("temp", db.parent)))
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert main(["enroll", str(model), "--name", "bob", *map(str, files[3:]), "--db", str(db), "--replace", "-q"]) == 0
    assert main(["speakers", str(model), "--db", str(db)]) == 0
    assert -signal.SIGKILL in statuses  # the kills landed (a command may finish first on a fast machine)
