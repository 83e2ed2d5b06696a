"""train / compare / demo on the command line: bad values and unwritable outputs refused before
the corpus is read or anything is written; resuming a finished run trains nothing."""

import pytest

from voxmetric.cli import main
from voxmetric.inference.checkpoint import load_checkpoint
from voxmetric.training import trainer as trainer_module

from .test_compare import _compare_config
from .test_trainer import _config, tiny_corpus  # noqa: F401  (fixture)
from ..helpers import exit_status



@pytest.fixture
def no_corpus(monkeypatch):
    """Fail the test if a run reads its training corpus (the checks must come before it)."""

    def refuse(config):
        raise AssertionError("the corpus was read before the check")

    monkeypatch.setattr(trainer_module, "build_corpus", refuse)


@pytest.mark.parametrize("override, message", [
    ("seed=-1", "seed must be >= 0, got -1"),
    ("optimizer.lr=nan", "optimizer.lr must be a finite number, got nan"),
])
def test_train_refuses_bad_values_before_the_corpus_and_writes_nothing(tmp_path, tiny_corpus, no_corpus,  # noqa: F811
                                                                      capsys, override, message):
    config = _config(tmp_path, tiny_corpus)
    exp = tmp_path / "exp"
    assert main(["train", str(config), "--out", str(exp), "--set", override]) == 1
    assert capsys.readouterr().err == f"voxmetric: error: --set {override}: {message}\n"
    assert not exp.exists()


def test_train_into_a_file_or_from_a_binary_config_is_one_line(tmp_path, tiny_corpus, no_corpus, capsys):  # noqa: F811
    config = _config(tmp_path, tiny_corpus)
    a_file = tmp_path / "x.wav"
    a_file.write_bytes(bytes(range(256)) * 4)
    assert main(["train", str(config), "--out", str(a_file)]) == 1
    assert capsys.readouterr().err == f"voxmetric: error: {a_file}: cannot write (it is a file, not a folder)\n"
    assert main(["train", str(a_file)]) == 1
    assert capsys.readouterr().err == f"voxmetric: error: {a_file}: not a UTF-8 text YAML config (a binary file?)\n"
    broken = tmp_path / "broken.yml"
    broken.write_text("a: [\n")
    assert main(["train", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"voxmetric: error: {broken}, line 2, column 1: invalid YAML: ") and err.count("\n") == 1


def test_resuming_a_finished_run_trains_nothing_and_says_so(tmp_path, tiny_corpus, capsys):  # noqa: F811
    config = _config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=2)
    exp = tmp_path / "exp"
    base = ["train", str(config), "--out", str(exp), "-q", "--set", "validation.trials=null"]
    assert main(base) == 0
    last = exp / "checkpoints" / "last.pt"
    saved, saved_config = last.read_bytes(), (exp / "config.yml").read_text()
    capsys.readouterr()
    assert main(base + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert out == (f"nothing to train: the run in {exp} is finished (1 epochs done, training.epochs is 1: raise it "
                   f"to train more); checkpoints in {exp}/checkpoints\n")
    assert last.read_bytes() == saved and (exp / "config.yml").read_text() == saved_config
    assert main(base + ["--resume", "--set", "training.epochs=2"]) == 0  # more epochs: it goes on, exactly
    out = capsys.readouterr().out
    assert "resuming at epoch 2, batch 1 (2 batches done)" in out and "initialised from" not in out
    assert "training done: 2 epochs, 4 batches" in out and load_checkpoint(last)["batches_done"] == 4


@pytest.mark.parametrize("options, message", [
    (["--losses", ""], "--losses: no loss named"),
    (["--losses", ","], "--losses: no loss named"),
    (["--budget", "0"], "--budget '0' must be positive"),
    (["--budget", "0min"], "--budget '0min' must be positive"),
    (["--seeds", "0"], "argument --seeds: must be at least 1, got 0"),
    (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
])
def test_compare_option_values_are_usage_errors(tmp_path, tiny_corpus, no_corpus, capsys,  # noqa: F811
                                                options, message):
    config = _compare_config(tmp_path, tiny_corpus)
    out = tmp_path / "cmp"
    assert exit_status(["compare", str(config), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: voxmetric compare ") and f"voxmetric compare: error: {message}" in err
    assert not out.exists()


def test_compare_and_demo_into_a_file_fail_before_any_work(tmp_path, tiny_corpus, no_corpus, monkeypatch,  # noqa: F811
                                                          capsys):
    from voxmetric.training import demo

    config = _compare_config(tmp_path, tiny_corpus)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["compare", str(config), "--losses", "aam", "--out", str(a_file / "cmp")]) == 1
    assert capsys.readouterr().err == (f"voxmetric: error: {a_file}/cmp: cannot write ({a_file} is a "
                                       f"file, not a folder)\n")
    assert main(["compare", str(config), "--losses", "aam", "--out", str(a_file)]) == 1
    assert capsys.readouterr().err == f"voxmetric: error: {a_file}: cannot write (it is a file, not a folder)\n"
    monkeypatch.setattr(demo, "run_demo", lambda *args, **kwargs: pytest.fail("the demo started"))
    assert main(["demo", "--out", str(a_file), "-q"]) == 1
    assert capsys.readouterr().err == f"voxmetric: error: {a_file}: cannot write (it is a file, not a folder)\n"
    assert a_file.read_text() == "x"


def test_compare_help_names_the_option_jobs_needs(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads is required with N > 1" in text
