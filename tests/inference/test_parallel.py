"""Embedding in worker processes (``jobs``): the serial results, in order; deaths, warnings and
interrupts handled; ``--jobs`` on the command line."""

import json
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

from voxmetric import audio
from voxmetric.cli import main
from voxmetric.errors import ArgumentError, AudioError, VoxmetricError
from voxmetric.evaluate.embeddings import load_embeddings_with_metadata
from voxmetric.inference.batch import embed_each
from voxmetric.inference.parallel import available_cpus, embed_in_workers, resolve_jobs
from voxmetric.inference.speaker_model import load_model

from .test_speaker_model import _voice, make_weights


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Four voices, a corrupt file and one without speech, in that order (bad ones in the middle)."""
    folder = tmp_path_factory.mktemp("rec")
    paths = []
    for i, f0 in enumerate((110.0, 140.0, 190.0, 230.0)):
        path = folder / f"v{i}.wav"
        audio.write(path, _voice(2.0 + 0.3 * i, f0=f0, seed=i))
        paths.append(str(path))
    (folder / "bad.wav").write_bytes(b"RIFF not really audio" * 4)
    audio.write(folder / "quiet.wav", np.random.default_rng(0).normal(0, 0.01, 32000).astype(np.float32))
    return paths[:2] + [str(folder / "bad.wav"), str(folder / "quiet.wav")] + paths[2:]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(make_weights(tmp_path_factory.mktemp("w")))


def test_workers_give_the_serial_results_in_input_order(model, recordings):
    serial = embed_each(model, recordings, skip_errors=True, progress=False)
    parallel = embed_each(model, recordings, skip_errors=True, progress=False, jobs=2)
    assert list(parallel.embeddings) == list(serial.embeddings) and len(serial.embeddings) == 4
    for path, embedding in serial.embeddings.items():
        np.testing.assert_allclose(parallel.embeddings[path], embedding, atol=1e-6)
    assert parallel.failures == serial.failures and [f.item for f in serial.failures] == recordings[2:4]
    assert parallel.warnings == serial.warnings
    # without skip_errors: the first bad file in input order, the same error
    with pytest.raises(VoxmetricError) as first:
        embed_each(model, recordings, progress=False)
    with pytest.raises(VoxmetricError) as again:
        embed_each(model, recordings, progress=False, jobs=3)
    assert type(again.value) is type(first.value) and str(again.value) == str(first.value)
    assert "bad.wav" in str(first.value)
    assert not multiprocessing.active_children()


@dataclass
class _Report:
    warnings: list = field(default_factory=list)


class _Scripted:
    """A picklable stand-in model: ``die`` in a name kills its worker, ``warn`` raises a library
    warning and reports a quality warning."""

    device = None

    def embed_with_quality(self, item, sample_rate=None):
        if "die" in item:
            os._exit(7)
        if "slow" in item:
            time.sleep(1.0)
        if "bad" in item:
            raise AudioError(f"{item}: bad audio")
        if "crash" in item:
            return 1 / 0
        if "warn" in item:
            warnings.warn(f"library note on {item}", UserWarning)
            return np.ones(3, dtype=np.float32), _Report([f"{item}: quality note"])
        return np.zeros(3, dtype=np.float32), _Report()


class _DiesOnArrival(_Scripted):
    """Its worker exits while unpickling it."""

    def __getstate__(self):
        return {"arrives": True}

    def __setstate__(self, state):
        os._exit(5)


def test_a_worker_that_dies_is_an_error_naming_its_file():
    with pytest.raises(VoxmetricError, match=r"^b-die\.wav: the embedding worker process stopped \(exit code 7"):
        embed_each(_Scripted(), ["a.wav", "b-die.wav", "c.wav"], progress=False, jobs=2)
    with pytest.raises(VoxmetricError, match=r"the embedding worker process stopped \(exit code 5"):
        embed_each(_DiesOnArrival(), ["a.wav", "b.wav"], progress=False, jobs=2)
    assert not multiprocessing.active_children()


def test_errors_and_crashes_come_in_input_order():
    # the slow bad file is first in input order: its error wins over the crash that finishes sooner
    with pytest.raises(AudioError, match="a-slow-bad.wav: bad audio"):
        embed_each(_Scripted(), ["a-slow-bad.wav", "b-crash.wav", "c.wav"], progress=False, jobs=2)
    with pytest.raises(RuntimeError, match="embedding worker failed on b-crash.wav:(.|\n)*ZeroDivisionError"):
        embed_each(_Scripted(), ["a-slow-bad.wav", "b-crash.wav"], progress=False, jobs=2, skip_errors=True)
    # library warnings come in input order too, and only for items reached
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        embed_each(_Scripted(), ["a-slow-warn.wav", "b-warn.wav"], progress=False, jobs=2)
    assert [str(w.message) for w in caught] == ["library note on a-slow-warn.wav", "library note on b-warn.wav"]
    assert not multiprocessing.active_children()


def test_warnings_of_workers_reach_the_caller_and_an_interrupt_stops_them():
    seen = []
    with pytest.warns(UserWarning, match="library note on x-warn.wav"):
        done = embed_each(_Scripted(), ["a.wav", "x-warn.wav", "c.wav"], progress=False, jobs=2,
                          on_warning=seen.append)
    assert seen == done.warnings == ["x-warn.wav: quality note"]

    def interrupt(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        embed_each(_Scripted(), [f"{i}-warn.wav" for i in range(50)], progress=False, jobs=2, on_warning=interrupt)
    assert not multiprocessing.active_children()


def test_jobs_are_checked():
    assert resolve_jobs(0) == available_cpus() >= 1 and resolve_jobs(3) == 3
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ArgumentError, match="jobs must be a whole number"):
            resolve_jobs(bad)

    class OnGpu:
        device = "cuda:0"

    with pytest.raises(ArgumentError, match="needs a model on the CPU"):
        next(embed_in_workers(OnGpu(), ["a.wav"], jobs=2))
    assert list(embed_in_workers(_Scripted(), [], jobs=2)) == []


def test_cli_jobs(tmp_path, recordings, capsys):
    weights = make_weights(tmp_path)
    good = [p for p in recordings if os.path.basename(p).startswith("v")]
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    assert main(["embed", str(weights), *good, "-o", str(one), "-q"]) == 0
    assert main(["embed", str(weights), *good, "-o", str(two), "-q", "--jobs", "2"]) == 0
    (ids1, m1, meta1), (ids2, m2, meta2) = load_embeddings_with_metadata(one), load_embeddings_with_metadata(two)
    assert list(ids1) == list(ids2) == good and meta1 == meta2
    np.testing.assert_allclose(m2, m1, atol=1e-6)
    capsys.readouterr()
    assert main(["embed", str(weights), *good, "-o", str(two), "--jobs", "2", "--device", "cuda"]) == 2
    assert "--jobs runs worker processes on the CPU" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["identify", str(weights), "--db", str(tmp_path / "db"), "--list", "x", "--jobs", "-1"])
    assert caught.value.code == 2
    assert "argument --jobs: must be at least 0" in capsys.readouterr().err


def test_python_api_embed_files_with_jobs(model, recordings):
    items = [recordings[0], _voice(2.5, f0=170.0, seed=9), recordings[4]]
    np.testing.assert_allclose(model.embed_files(items, jobs=2), model.embed_files(items), atol=1e-6)
    with pytest.raises(VoxmetricError, match="bad.wav"):
        model.embed_files(recordings, jobs=2)
    assert not multiprocessing.active_children()


def test_every_command_with_skip_errors_takes_jobs():
    from voxmetric.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    batch = {name for name, parser in commands.items()
             if any("--skip-errors" in a.option_strings for a in parser._actions)}
    assert batch == {"embed", "verify", "identify", "enroll", "calibrate"}
    for name in batch:
        assert any("--jobs" in a.option_strings for a in commands[name]._actions), name


def test_cli_verify_trials_and_calibrate_with_jobs(tmp_path, recordings, capsys):
    weights = make_weights(tmp_path)
    v = [os.path.basename(p) for p in recordings if os.path.basename(p).startswith("v")]
    trials = tmp_path / "trials.txt"
    trials.write_text(f"1 {v[0]} {v[1]}\n0 {v[0]} {v[2]}\n1 {v[2]} {v[3]}\n0 {v[1]} {v[3]}\n")
    root = os.path.dirname(recordings[0])
    outputs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"d{jobs}.tsv"
        assert main(["verify", str(weights), "--trials", str(trials), "--root", root, "-o", str(out), "-q",
                     "--jobs", jobs]) == 0
        cal = tmp_path / f"cal{jobs}.json"
        assert main(["calibrate", str(weights), "--trials", str(trials), "--root", root, "-o", str(cal), "-q",
                     "--bootstrap", "20", "--jobs", jobs]) == 0
        outputs.append((out.read_text(), json.loads(cal.read_text())))
    (rows1, cal1), (rows2, cal2) = outputs
    assert rows1 == rows2 and len(rows1.splitlines()) == 5
    assert cal2["calibration"] == pytest.approx(cal1["calibration"], rel=1e-3)
    assert cal2["threshold"] == pytest.approx(cal1["threshold"], abs=1e-6) and cal1["eer"] == cal2["eer"]
