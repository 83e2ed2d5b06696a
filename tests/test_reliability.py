"""Surviving real life: killed runs, signals, untrusted checkpoints."""

import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from voxmetric.inference.checkpoint import load_checkpoint, save_checkpoint
from voxmetric.errors import CheckpointError

from .training.test_trainer import _config, tiny_corpus  # noqa: F401  (fixture)


class _Exploit:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "voxmetric-checkpoint", "model": _Exploit(marker)}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps(_Exploit(tmp_path / "pwned2"), protocol=2))
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    assert not (tmp_path / "pwned2").exists()


def test_truncated_and_foreign_checkpoints(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a voxmetric checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    assert load_checkpoint(good)["model"]["w"].sum() == 1000


def _start_training(config, exp, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "voxmetric.cli", "train", str(config), "--out", str(exp),
                             "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(path, process, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _reference_weights(tmp_path, corpus, **training):
    from voxmetric.training.config import load_config
    from voxmetric.training.trainer import train

    training = training or {"epochs": 3}
    result = train(load_config(_config(tmp_path / "reference", corpus, **training)), tmp_path / "reference" / "exp",
                   progress=False)
    return load_checkpoint(result.last_checkpoint)["model"]


def _assert_same_weights(a, b):
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(tmp_path, tiny_corpus):  # noqa: F811
    config = _config(tmp_path, tiny_corpus, epochs=3)
    exp = tmp_path / "exp"
    process = _start_training(config, exp)
    _wait_for(exp / "checkpoints" / "last.pt", process)
    process.send_signal(signal.SIGKILL)  # no chance to clean up
    process.wait()
    state = load_checkpoint(exp / "checkpoints" / "last.pt")  # complete, whatever the moment of the kill
    assert state["batches_done"] >= 3
    leftovers = [p.name for p in (exp / "checkpoints").iterdir() if p.name.startswith(".")]
    resumed = _start_training(config, exp, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "3 epochs, 9 batches" in out
    _assert_same_weights(_reference_weights(tmp_path, tiny_corpus),
                         load_checkpoint(exp / "checkpoints" / "last.pt")["model"])
    assert len(leftovers) <= 1  # at most the temporary file the kill interrupted


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path, tiny_corpus):  # noqa: F811
    # One long epoch: the signal lands mid-epoch, long before the run could end by itself.
    length = {"epochs": 1, "batches_per_epoch": 150}
    config = _config(tmp_path, tiny_corpus, **length)
    exp = tmp_path / "exp"
    process = _start_training(config, exp)
    _wait_for(exp / "metrics.jsonl", process)  # training has started
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err  # 143: saved, but the run did not finish
    assert "interrupted, checkpoint saved" in out
    state = load_checkpoint(exp / "checkpoints" / "last.pt")
    assert 0 < state["batches_done"] < 150 and state["epochs_done"] == 0
    resumed = _start_training(config, exp, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "1 epochs, 150 batches" in out
    _assert_same_weights(_reference_weights(tmp_path, tiny_corpus, **length),
                         load_checkpoint(exp / "checkpoints" / "last.pt")["model"])


def test_messy_corpus_scan_reports_bad_files_once_and_training_survives_late_ones(tmp_path, tiny_corpus):  # noqa: F811
    import shutil
    import warnings as python_warnings

    import numpy as np
    import soundfile as sf

    from voxmetric import audio
    from voxmetric.training.config import load_config
    from voxmetric.data.readers import read_speaker_folders
    from voxmetric.training.trainer import train

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus / "train", corpus, symlinks=False)
    good = audio.read(corpus / "spk1" / "0.wav")
    (corpus / "spk0" / "empty.wav").write_bytes(b"")
    (corpus / "spk0" / "text.wav").write_bytes(b"this is not audio, just bytes with a .wav name" * 20)
    truncated = (corpus / "spk1" / "0.wav").read_bytes()[:40]
    (corpus / "spk1" / "truncated.wav").write_bytes(truncated)
    sf.write(corpus / "spk2" / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(corpus / "spk2" / "u8.wav", good, 16000, subtype="PCM_U8")  # fine: 8-bit is read
    stereo_48k = audio.resample(good, 16000, 48000)
    sf.write(corpus / "spk3" / "stereo48k.wav", np.stack([stereo_48k, stereo_48k], 1), 48000)  # fine
    nan = np.tile(good, 4)  # long, so chunks are often drawn from it
    nan[::1000] = np.nan  # the header is fine: only reading the samples finds this
    sf.write(corpus / "spk3" / "nan.wav", nan, 16000, subtype="FLOAT")

    with python_warnings.catch_warnings(record=True) as caught:
        python_warnings.simplefilter("always")
        scanned = read_speaker_folders(corpus, progress=False)
    reports = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert len(reports) == 1  # one summary
    bad = dict(scanned.scan_report.bad)
    assert {p.split("/")[-1] for p in bad} == {"empty.wav", "text.wav", "truncated.wav", "zero.wav"}
    assert {"u8.wav", "stereo48k.wav", "nan.wav"} <= {u.path.split("/")[-1] for u in scanned}

    config = load_config(_config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=6),
                         [f"data.corpus={corpus}", "validation.trials=null"])
    with python_warnings.catch_warnings(record=True) as caught:
        python_warnings.simplefilter("always")
        result = train(config, tmp_path / "exp", progress=False)
    assert result.batches_done == 6  # no crash mid-epoch
    skipped = [str(w.message) for w in caught if "skipping unreadable training file" in str(w.message)]
    assert skipped and all("nan.wav" in message and "NaN" in message for message in skipped)


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_loader_workers_saves_cleanly(tmp_path, tiny_corpus):  # noqa: F811
    import os

    config = _config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=150)
    text = config.read_text().replace("num_workers: 0", "num_workers: 2")
    config.write_text(text)
    exp = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "voxmetric.cli", "train", str(config), "--out", str(exp), "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    _wait_for(exp / "metrics.jsonl", process)
    os.killpg(process.pid, signal.SIGTERM)  # the trainer and its DataLoader workers alike
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err  # 143: saved, but the run did not finish
    assert "interrupted, checkpoint saved" in out
    assert 0 < load_checkpoint(exp / "checkpoints" / "last.pt")["batches_done"] < 150


@pytest.mark.parametrize("content, message", [
    (b"hello\n", "not a voxmetric checkpoint or weights file (not a PyTorch file)"),
    (b"abc", "not a voxmetric checkpoint or weights file"),
    (bytes(range(256)) * 40, "not a voxmetric checkpoint or weights file"),
    (b"\x80\x02" + bytes(range(256)) * 4, "unreadable or corrupt checkpoint"),
])
def test_junk_model_files_are_one_clear_line(tmp_path, content, message):
    """Junk given as a model is named as such; torch's advice to load with weights_only=False is never passed on."""
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text
    assert "weights_only" not in text and "\n" not in text


def test_a_torchscript_export_given_as_a_checkpoint_is_named(tmp_path):
    path = tmp_path / "script.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointError, match=r"a TorchScript program .* give the model's \.safetensors file") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value)


def test_unwritable_outputs_are_one_clear_line(tmp_path):
    from voxmetric.errors import WriteError
    from voxmetric.fileio import atomic_open, check_writable

    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    for path, reason in ((a_file / "out.json", f"{a_file} is a file, not a folder"),
                         (a_file / "deeper" / "out.json", f"{a_file} is a file, not a folder")):
        with pytest.raises(WriteError, match=f"{path}: cannot write \\({reason}\\)"):
            check_writable(path)
        with pytest.raises(WriteError):
            with atomic_open(path) as f:
                f.write("never")
    with pytest.raises(WriteError, match="is a directory"):
        check_writable(tmp_path)
    check_writable(tmp_path / "new" / "folder" / "out.json")  # creatable: fine, nothing made yet
    assert not (tmp_path / "new").exists()


def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno
    import os

    from voxmetric.errors import WriteError
    from voxmetric.fileio import atomic_open

    out = tmp_path / "out.txt"
    out.write_text("old")

    def full_disk(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(WriteError, match=rf"{out}: cannot write \(No space left on device\)"):
        with atomic_open(out) as f:
            f.write("new")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_an_snr_just_below_zero_is_never_printed_as_minus_zero():
    from voxmetric.audio.quality import _warnings

    for snr_db, shown in ((-0.04, "estimated SNR 0.0 dB"), (-0.06, "estimated SNR -0.1 dB"),
                          (0.04, "estimated SNR 0.0 dB")):
        (warning,) = _warnings(speech_s=10.0, snr_db=snr_db, clipped=0.0, original_hz=16000)
        assert shown in warning and "-0.0" not in warning
