"""`compare --reuse-runs`: an earlier comparison's trained runs tested again, never retrained."""

import json

import numpy as np
import pytest

from voxmetric.cli import main

from .test_compare import _compare_config
from .test_trainer import tiny_corpus  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def source(tmp_path_factory, tiny_corpus):  # noqa: F811
    """A finished two-loss, two-seed comparison (2 epochs x 2 batches per run) and its config."""
    tmp = tmp_path_factory.mktemp("source")
    config = _compare_config(tmp, tiny_corpus, epochs=2, batches_per_epoch=2)
    out = tmp / "compare"
    assert main(["compare", str(config), "--losses", "aam,triplet", "--seeds", "2", "--threads", "1",
                 "--out", str(out), "-q"]) == 0
    return config, out


def _results(folder):
    return json.loads((folder / "results.json").read_text())


def test_same_trials_give_the_same_figures_without_training(source, tmp_path, monkeypatch):
    config, trained = source
    out = tmp_path / "again"

    def embed_cohort_again(*args, **kwargs):
        raise AssertionError("the earlier test's s-norm cohort should be reused")

    monkeypatch.setattr("voxmetric.evaluate.pipeline.cohort_embeddings", embed_cohort_again)
    mtimes = {p: p.stat().st_mtime_ns for p in trained.glob("*/seed*/checkpoints/*.pt")}
    assert main(["compare", str(config), "--reuse-runs", str(trained), "--out", str(out), "-q"]) == 0
    before, after = _results(trained), _results(out)
    assert (after["seeds"], after["threads"], after["reused_from"]) == (2, 1, str(trained))
    for key in ("results", "pairwise", "ranking", "best_group"):  # per-seed EERs, intervals, tests, ranking
        if key == "results":
            for row in before[key] + after[key]:
                row["runs"] = [{k: v for k, v in run.items() if k not in ("eval_time_s", "run_dir")}
                               for run in row["runs"]]
        assert after[key] == before[key], key
    old, new = np.load(trained / "scores.npz"), np.load(out / "scores.npz")
    assert sorted(old.files) == sorted(new.files) and all(np.array_equal(old[k], new[k]) for k in old.files)
    assert "aam/seed3/cohort" in new.files  # the s-norm cohort is passed on to a later reuse
    assert {p: p.stat().st_mtime_ns for p in trained.glob("*/seed*/checkpoints/*.pt")} == mtimes  # not retrained
    assert not (out / "aam").exists()
    assert _results(out)["results"][0]["runs"][0]["run_dir"] == str((trained / "aam" / "seed3").resolve())
    md = (out / "results.md").read_text()
    assert f"the trained runs of `{trained}`" in md and "## Pairwise tests" in md
    for name in ("det.png", "training_curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_other_trials_give_new_results(source, tmp_path, tiny_corpus):  # noqa: F811
    config, trained = source
    # Every speaker's first two files, training speakers included: 12 files, 66 trials.
    files = [f"spk{s}/v0/{u}.wav" for s in range(6) for u in range(2)]
    trials = tmp_path / "other_trials.txt"
    trials.write_text("".join(f"{int(a[:4] == b[:4])} {a} {b}\n"
                              for i, a in enumerate(files) for b in files[i + 1:]))
    out = tmp_path / "other"
    assert main(["compare", str(config), "--reuse-runs", str(trained), "--losses", "triplet", "--out", str(out),
                 "--set", f"evaluation.trials={trials}", "--set", "evaluation.cohort_utterances_per_speaker=1",
                 "-q"]) == 0
    results = _results(out)
    assert [row["loss"] for row in results["results"]] == ["triplet"] and results["pairwise"] == []
    scores, earlier = np.load(out / "scores.npz"), np.load(trained / "scores.npz")
    assert len(scores["labels"]) == 66
    # A cohort drawn with another number of utterances per speaker is embedded again, not reused.
    assert not np.allclose(scores["triplet/seed3/cohort"], earlier["triplet/seed3/cohort"])
    before = next(row for row in _results(trained)["results"] if row["loss"] == "triplet")
    assert results["results"][0]["cosine"]["eer"] != before["cosine"]["eer"]
    assert f"Test trials: `{trials}` (6 target, 60 non-target)" in (out / "results.md").read_text()


def test_a_different_training_config_or_a_missing_run_is_refused(source, tmp_path, capsys):
    config, trained = source
    out = tmp_path / "refused"
    base = ["compare", str(config), "--reuse-runs", str(trained), "--out", str(out), "-q"]
    assert main(base + ["--set", "training.batches_per_epoch=3", "--set", "optimizer.lr=0.01"]) == 1
    err = capsys.readouterr().err.strip()
    assert "aam/seed3/config.yml" in err and "optimizer.lr, training.batches_per_epoch" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(base + ["--seeds", "3"]) == 1  # seed 5 was never trained
    assert "seed5/config.yml: missing" in capsys.readouterr().err
    assert main(base + ["--budget", "10"]) == 1
    assert "--budget with --reuse-runs" in capsys.readouterr().err
    assert main(base[:3] + [str(tmp_path), "--out", str(out)]) == 1
    assert "results.json: not found" in capsys.readouterr().err
    assert not out.exists()  # refused before any testing


def test_runs_record_their_loss_parameters_and_other_values_are_refused(source, tmp_path, capsys):
    import yaml

    config, trained = source
    saved = yaml.safe_load((trained / "triplet" / "seed3" / "config.yml").read_text())
    # written out in full: a later change of a default cannot pass for this run
    assert saved["loss"]["params"] == {"mining": "all", "margin": 0.4, "distance": "cosine", "normalize": True,
                                       "reduction": "all_triplets"}
    assert main(["compare", str(config), "--reuse-runs", str(trained), "--out", str(tmp_path / "x"), "-q",
                 "--set", "loss.name=triplet", "--set", "loss.params={margin: 0.2}"]) == 1
    err = capsys.readouterr().err
    assert "triplet/seed3/config.yml" in err and "different loss.params than" in err


def test_a_missing_checkpoint_is_named(source, tmp_path, capsys):
    config, trained = source
    best = trained / "triplet" / "seed4" / "checkpoints" / "best.pt"
    kept = best.read_bytes()
    best.unlink()
    try:
        assert main(["compare", str(config), "--reuse-runs", str(trained), "--out", str(tmp_path / "x"), "-q"]) == 1
    finally:
        best.write_bytes(kept)
    err = capsys.readouterr().err
    assert f"{best}: missing" in err and "loss triplet, seed 4" in err
