"""Training faults: non-finite steps, full disks, corrupt checkpoints, mid-epoch resume."""

import errno
import json
import os
import shutil

import pytest
import torch

from voxmetric.cli import main
from voxmetric.errors import CheckpointError, ConfigError, TrainingError
from voxmetric.inference.checkpoint import load_checkpoint
from voxmetric.training import trainer as trainer_module
from voxmetric.training.config import load_config
from voxmetric.training.trainer import Trainer, TrainStep, train

from .test_trainer import _config, tiny_corpus  # noqa: F401  (fixture)


def _load(tmp_path, corpus, overrides=(), **training):
    return load_config(_config(tmp_path, corpus, **training), ["validation.trials=null", *overrides])


def _records(exp):
    return [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()]


def _poison(monkeypatch, bad_calls, how="loss"):
    """Make the training step's loss (or its gradient) non-finite on the given forward calls (1-based)."""
    original, calls = TrainStep.forward, [0]

    def forward(self, waveforms, labels):
        calls[0] += 1
        loss, embeddings = original(self, waveforms, labels)
        if calls[0] in bad_calls:
            if how == "loss":
                loss = loss * float("nan")
            else:  # finite loss, infinite gradient
                embeddings.register_hook(lambda grad: grad * float("inf"))
        return loss, embeddings

    monkeypatch.setattr(TrainStep, "forward", forward)


@pytest.mark.parametrize("how", ["loss", "grad"])
def test_non_finite_steps_are_skipped_and_counted(tmp_path, tiny_corpus, monkeypatch, how):  # noqa: F811
    _poison(monkeypatch, {2, 3}, how)
    result = train(_load(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=5), tmp_path / "exp", progress=False)
    assert result.batches_done == 5 and result.skipped_nonfinite == 2
    records = _records(tmp_path / "exp")
    assert [r["skipped_nonfinite"] for r in records if "loss" in r] == [0, 1, 2, 2, 2]
    assert records[-1]["skipped_nonfinite"] == 2
    weights = load_checkpoint(result.last_checkpoint)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_too_many_non_finite_steps_in_a_row_stop_without_touching_the_weights(tmp_path, tiny_corpus,  # noqa: F811
                                                                             monkeypatch):
    _poison(monkeypatch, set(range(1, 100)))
    config = _load(tmp_path, tiny_corpus, ["training.max_nonfinite_steps=3"], epochs=1, batches_per_epoch=10)
    run = Trainer(config, tmp_path / "exp", progress=False)
    before = {k: v.clone() for k, v in run.step.state_dict().items()}
    with pytest.raises(TrainingError, match=r"3 batches in a row .*\(training.max_nonfinite_steps=3\)"):
        run.run()
    for key, value in run.step.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


def test_nonfinite_and_checkpoint_keys_are_validated(tmp_path, tiny_corpus):  # noqa: F811
    for override in ("training.max_nonfinite_steps=0", "training.checkpoint_every_batches=0",
                     "training.checkpoint_every_s=-1"):
        with pytest.raises(ConfigError, match=override.split("=")[0]):
            _load(tmp_path, tiny_corpus, [override])
    config = _load(tmp_path, tiny_corpus, ["training.checkpoint_every_s=null"])
    assert config.training.checkpoint_every_s is None and config.training.checkpoint_every_batches == 100
    assert config.training.max_nonfinite_steps == 20


@pytest.mark.parametrize("where", ["torch.save", "os.replace"])
def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, tiny_corpus, monkeypatch,  # noqa: F811
                                                                     where):
    config = _load(tmp_path, tiny_corpus, ["training.checkpoint_every_batches=null"], epochs=2)
    exp = tmp_path / "exp"
    original_save, original_replace, saves = torch.save, os.replace, [0]

    def full_save(obj, f, *args, **kwargs):
        saves[0] += 1
        if saves[0] >= 2:
            with open(f, "wb") as out:
                out.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original_save(obj, f, *args, **kwargs)

    def full_replace(src, dst):
        if str(dst).endswith("last.pt") and os.path.exists(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original_replace(src, dst)

    if where == "torch.save":
        monkeypatch.setattr(torch, "save", full_save)
    else:
        monkeypatch.setattr(os, "replace", full_replace)
    last = exp / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match=rf"{last}: cannot write checkpoint \(No space left on device\)"):
        train(config, exp, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(last)["batches_done"] == 3  # the epoch-1 checkpoint, intact
    assert [p.name for p in last.parent.iterdir() if p.name.startswith(".")] == []  # no temporary left
    resumed = train(config, exp, resume=True, progress=False)
    assert resumed.batches_done == 6


def test_corrupt_last_checkpoint_names_the_previous_one(tmp_path, tiny_corpus, capsys):  # noqa: F811
    path = _config(tmp_path, tiny_corpus, epochs=2)
    exp = tmp_path / "exp"
    assert main(["train", str(path), "--out", str(exp), "-q", "--set", "validation.trials=null"]) == 0
    last, previous = exp / "checkpoints" / "last.pt", exp / "checkpoints" / "last.prev.pt"
    assert load_checkpoint(previous)["batches_done"] == 3
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(["train", str(path), "--out", str(exp), "-q", "--resume", "--set", "validation.trials=null"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{last}: unreadable or corrupt checkpoint" in err
    assert f"the previous checkpoint {previous} (epoch 1, batch 3) is intact" in err
    shutil.copy(previous, last)
    assert main(["train", str(path), "--out", str(exp), "-q", "--resume", "--set", "validation.trials=null"]) == 0
    out = capsys.readouterr().out
    assert "resuming at epoch 2, batch 1 (3 batches done)" in out
    assert "initialised from" not in out  # the weights come from the checkpoint
    assert [r["batch"] for r in _records(exp) if "loss" in r] == [1, 2, 3, 4, 5, 6]  # no duplicates


class _Crash(Exception):
    pass


def test_mid_epoch_checkpoints_resume_exactly_and_log_once(tmp_path, tiny_corpus, monkeypatch, capsys):  # noqa: F811
    settings = {"epochs": 2, "batches_per_epoch": 5}
    overrides = ["training.checkpoint_every_batches=2"]
    straight = train(_load(tmp_path / "a", tiny_corpus, overrides, **settings), tmp_path / "a" / "exp",
                     progress=False)
    out = capsys.readouterr().out
    assert "corpus: 4 speakers, 12 utterances, 0.01 hours" in out
    assert "initialised from scratch" in out

    config = _load(tmp_path / "b", tiny_corpus, overrides, **settings)
    exp = tmp_path / "b" / "exp"
    original_log = Trainer._log

    def crash_after_logging_batch_8(self, record):
        original_log(self, record)
        if record.get("batch") == 8 and "loss" in record:
            raise _Crash  # a power cut: the log has batch 8, the last checkpoint batch 6

    monkeypatch.setattr(Trainer, "_log", crash_after_logging_batch_8)
    with pytest.raises(_Crash):
        train(config, exp, progress=False)
    monkeypatch.undo()
    assert load_checkpoint(exp / "checkpoints" / "last.pt")["batches_done"] == 6
    assert load_checkpoint(exp / "checkpoints" / "last.prev.pt")["batches_done"] == 5
    capsys.readouterr()
    resumed = train(config, exp, resume=True, progress=False)
    assert "resuming at epoch 2, batch 2 (6 batches done)" in capsys.readouterr().out
    assert resumed.batches_done == 10
    a = load_checkpoint(straight.last_checkpoint)["model"]
    b = load_checkpoint(resumed.last_checkpoint)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    records = _records(exp)
    assert [r["batch"] for r in records if "loss" in r] == list(range(1, 11))
    assert [r["epoch"] for r in records if "epoch" in r] == [1, 2]
    reference = _records(tmp_path / "a" / "exp")
    assert [r["train_loss"] for r in records if "epoch" in r] == [r["train_loss"] for r in reference if "epoch" in r]


def test_time_based_checkpoints(tmp_path, tiny_corpus, monkeypatch):  # noqa: F811
    config = _load(tmp_path, tiny_corpus, ["training.checkpoint_every_batches=null", "training.checkpoint_every_s=1"],
                   epochs=1, batches_per_epoch=4)
    clock = iter(range(0, 1000, 1))  # every call to time.monotonic advances a second
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: float(next(clock)))
    saved = []
    original = Trainer._save
    monkeypatch.setattr(Trainer, "_save", lambda self, best=False: (saved.append(self.batches_done),
                                                                    original(self, best))[1])
    train(config, tmp_path / "exp", progress=False)
    assert saved == [1, 2, 3, 4]  # three mid-epoch, one at the end of the epoch


@pytest.mark.slow
def test_an_error_in_a_data_worker_is_one_line_and_the_run_ends(tmp_path, tiny_corpus):  # noqa: F811
    """A speaker whose files all fail to decode, read in a DataLoader worker: exit 1 with the
    worker's own message, not torch's wrapped traceback, and no process left waiting for a
    worker that ignores SIGTERM (it used to hang for ever)."""
    import subprocess
    import sys

    from voxmetric import audio

    corpus = tmp_path / "corpus"
    for speaker in range(4):
        for utterance in range(3):
            path = corpus / f"spk{speaker}" / f"{utterance}.flac"
            audio.write(path, audio.read(tiny_corpus / "wav" / f"spk{speaker}" / "v0" / f"{utterance}.wav"))
            if speaker == 0:  # header intact (the scan keeps it), frames cut off
                path.write_bytes(path.read_bytes()[:3000])
    config = _config(tmp_path, tiny_corpus)
    done = subprocess.run([sys.executable, "-m", "voxmetric.cli", "train", str(config), "--out", str(tmp_path / "exp"),
                           "--set", f"data.corpus={corpus}", "--set", "data.num_workers=1",
                           "--set", "validation.trials=null"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"voxmetric: error: speaker 'spk0': none of its 3 files could be read (first: {corpus}/spk0/")
    assert "Caught" not in done.stderr and "Traceback" not in done.stderr
    assert last.count(f"{corpus}/spk0/") == 1


def test_validation_inputs_are_checked_before_any_training(tmp_path, tiny_corpus, capsys):  # noqa: F811
    config = _config(tmp_path, tiny_corpus)
    bad = tmp_path / "bad_trials.txt"
    bad.write_text("1 spk4/v0/0.wav spk4/v0/missing.wav\n")
    for override, message in ((f"validation.trials={tmp_path / 'none.txt'}", "none.txt"),
                              (f"validation.trials={bad}", "1 trial file(s) not found under"),
                              (f"data.augmentation.noise_dir={tmp_path / 'noises'}",
                               "data.augmentation.noise_dir: no such folder")):
        exp = tmp_path / "exp"
        assert main(["train", str(config), "--out", str(exp), "--set", override, "-q"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("voxmetric: error: ") and message in err and err.count("\n") == 1
        assert not exp.exists()  # nothing trained, nothing to refuse or resume afterwards


def test_unusable_validation_audio_keeps_the_epoch_and_resume_validates_it(tmp_path, tiny_corpus, monkeypatch):  # noqa: F811
    from voxmetric.errors import NoSpeechError

    config = load_config(_config(tmp_path, tiny_corpus, epochs=2, batches_per_epoch=2))
    original = trainer_module.validate

    def silent_file(*args, **kwargs):
        raise NoSpeechError("spk4/v0/0.wav: no speech found")

    monkeypatch.setattr(trainer_module, "validate", silent_file)
    with pytest.raises(NoSpeechError):
        train(config, tmp_path / "exp", progress=False)
    state = load_checkpoint(tmp_path / "exp" / "checkpoints" / "last.pt")
    assert (state["batches_done"], state["epochs_done"]) == (2, 0)  # the epoch's batches, not yet validated
    monkeypatch.setattr(trainer_module, "validate", original)
    result = train(config, tmp_path / "exp", resume=True, progress=False)
    assert result.batches_done == 4 and [r["epoch"] for r in result.history] == [1, 2]
    assert all(r["val_eer"] is not None for r in result.history)


def test_a_stop_during_validation_ends_the_run_without_front_end_selection(tmp_path, tiny_corpus, monkeypatch):  # noqa: F811
    import signal

    config = load_config(_config(tmp_path, tiny_corpus, epochs=2, batches_per_epoch=2))
    original = trainer_module.validate

    def interrupted_validation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the validation files are embedded
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "validate", interrupted_validation)
    monkeypatch.setattr(trainer_module, "after_training", lambda *a, **k: pytest.fail("front-end selection ran"))
    result = train(config, tmp_path / "exp", progress=False)
    assert result.interrupted and result.stop_signal == signal.SIGINT
    assert (result.epochs_done, result.batches_done) == (1, 2)  # the second epoch never started
    assert load_checkpoint(tmp_path / "exp" / "checkpoints" / "last.pt")["epochs_done"] == 1


def test_validation_files_that_are_training_files_are_warned_about(tmp_path, tiny_corpus, capsys):  # noqa: F811
    config = _config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=1)
    leaky = tmp_path / "leak.txt"  # pairs drawn from the training speakers (spk0-3 are in train/)
    leaky.write_text("1 spk0/0.wav spk0/1.wav\n0 spk0/0.wav spk1/0.wav\n")
    assert main(["train", str(config), "--out", str(tmp_path / "exp"), "--set", f"validation.trials={leaky}",
                 "--set", f"validation.root={tiny_corpus / 'train'}", "-q"]) == 0
    err = capsys.readouterr().err
    assert "voxmetric: warning: validation: 3 of its 3 files are training files too (e.g. " in err
    assert main(["train", str(config), "--out", str(tmp_path / "exp2"), "-q"]) == 0  # held-out speakers: quiet
    assert "training files too" not in capsys.readouterr().err


def test_a_missing_corpus_says_where_relative_paths_start(tmp_path, tiny_corpus, capsys):  # noqa: F811
    config = _config(tmp_path, tiny_corpus)
    assert main(["train", str(config), "--out", str(tmp_path / "exp"), "--set", "data.corpus=mine/train", "-q"]) == 1
    assert capsys.readouterr().err == (f"voxmetric: error: {tmp_path / 'mine' / 'train'}: no such directory "
                                       f"(data.corpus; relative paths in the config, and in --set, are relative to "
                                       f"the config file's folder)\n")
