"""`compare` with seeds, significance and convergence; the deterministic demo."""

import json

import numpy as np
import pytest
import yaml

from voxmetric.cli import main
from voxmetric.data.corpus import nested_speakers
from voxmetric.errors import ConfigError
from voxmetric.training.compare import TIME_SECTION, last_third_change, parse_train_speakers
from voxmetric.training.compare_report import convergence_table
from voxmetric.training.compare_runs import eer_standard_error, plateau_verdict

from .test_trainer import TINY_MODEL, _config, tiny_corpus  # noqa: F401 (fixture)


def _compare_config(tmp_path, corpus, **training):
    config = _config(tmp_path, corpus, **training)
    data = yaml.safe_load(config.read_text())
    data["evaluation"] = {"trials": str(corpus / "trials.txt"), "root": str(corpus / "wav"),
                          "snorm_top_n": 3, "cohort_utterances_per_speaker": 2, "n_bootstrap": 50}
    data["frontend"]["vad"] = False  # the fixture's steady harmonic 'voices' have no speech/pause contrast
    config.write_text(yaml.safe_dump(data))
    return config


def test_compare_two_seeds_writes_tables_tests_and_curves(tmp_path, tiny_corpus, capsys):
    config = _compare_config(tmp_path, tiny_corpus, epochs=2, batches_per_epoch=2)
    out = tmp_path / "compare"
    assert main(["compare", str(config), "--losses", "aam,triplet", "--seeds", "2", "--threads", "1",
                 "--out", str(out), "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == 2
    rows = results["results"]
    assert [r["loss"] for r in rows] == ["aam", "triplet"]
    for row in rows:
        assert len(row["cosine"]["eer"]) == 2 and len(row["cosine"]["min_dcf"]) == 2
        assert row["cosine"]["mean_eer"] == pytest.approx(np.mean(row["cosine"]["eer"]))
        assert row["cosine"]["eer_ci"] is not None and row["snorm"] is not None
        assert [run["seed"] for run in row["runs"]] == [3, 4]  # config seed 3, then 4: same for both losses
        assert all(run["batches"] == 4 and run["epochs"] == 2 for run in row["runs"])
        assert all(run["val_change_last_third"] is not None for run in row["runs"])
    assert len(results["pairwise"]) == 1 and 0 < results["pairwise"][0]["p_holm"] <= 1
    scores = np.load(out / "scores.npz")
    assert {"labels", "aam/seed3/cosine", "aam/seed4/cosine", "triplet/seed3/snorm"} <= set(scores.files)
    # Same seed, same batches, same initial network for both losses: the runs' configs differ only in the loss.
    a = yaml.safe_load((out / "aam" / "seed3" / "config.yml").read_text())
    t = yaml.safe_load((out / "triplet" / "seed3" / "config.yml").read_text())
    a.pop("loss"), t.pop("loss")
    assert a == t
    md = (out / "results.md").read_text()
    for heading in ("## Results", "## Pairwise tests", "## Ranking, as far as the tests support it",
                    "## Convergence", TIME_SECTION):
        assert heading in md
    for name in ("det.png", "training_curves.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "| loss | EER % per seed" in capsys.readouterr().out
    assert main(["compare", str(config), "--losses", "aam,nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown loss 'nope'" in capsys.readouterr().err


def _figures(out) -> str:
    md = (out / "results.md").read_text()
    return md[:md.index(TIME_SECTION)]


def test_an_earlier_comparison_is_refused_resumed_or_replaced(tmp_path, tiny_corpus, capsys):
    config = _compare_config(tmp_path, tiny_corpus, epochs=2, batches_per_epoch=2)
    out = tmp_path / "c"
    run = ["compare", str(config), "--seeds", "1", "--threads", "1", "--out", str(out), "-q"]
    assert main(run + ["--losses", "aam,triplet"]) == 0
    figures = _figures(out)
    aam_last = out / "aam" / "seed3" / "checkpoints" / "last.pt"
    trained = aam_last.stat().st_mtime_ns
    capsys.readouterr()

    # Again into the same folder: refused before any work, the earlier runs untouched.
    assert main(run + ["--losses", "aam,triplet"]) == 1
    err = capsys.readouterr().err
    assert f"{out} already holds a comparison (aam/seed3): continue it with --resume" in err and "--overwrite" in err
    assert aam_last.stat().st_mtime_ns == trained and (out / "results.md").exists()

    # --resume after a run was lost (as if the comparison stopped before it): only that run
    # trains, the finished one trains nothing, and the figures are the uninterrupted ones.
    import shutil
    shutil.rmtree(out / "triplet")
    (out / "results.md").unlink()
    assert main(run + ["--losses", "aam,triplet", "--resume"]) == 0
    assert aam_last.stat().st_mtime_ns == trained
    assert _figures(out) == figures

    # --resume with fewer losses than the folder holds: refused, naming the run outside the plan.
    assert main(run + ["--losses", "aam", "--resume"]) == 1
    assert "holds runs this comparison does not plan (triplet/seed3)" in capsys.readouterr().err
    # --overwrite: the run outside the plan is removed, the report lists the new plan only.
    assert main(run + ["--losses", "aam", "--overwrite"]) == 0
    assert not (out / "triplet").exists() and aam_last.stat().st_mtime_ns != trained
    assert [r["loss"] for r in json.loads((out / "results.json").read_text())["results"]] == ["aam"]
    with pytest.raises(SystemExit) as caught:
        main(run + ["--losses", "aam", "--resume", "--overwrite"])
    assert caught.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_nested_speaker_subsets_and_parsing():
    speakers = [f"s{i:03d}" for i in range(200)]
    small, large = nested_speakers(speakers, 25), nested_speakers(list(reversed(speakers)), 100)
    assert len(small) == 25 and set(small) <= set(large)
    assert nested_speakers(speakers, 25) == small  # fixed seed
    with pytest.raises(ConfigError, match="num_speakers"):
        nested_speakers(speakers, 201)
    assert parse_train_speakers("50,25, 100") == [25, 50, 100]
    for bad in ("0,5", "a,b", "5,5", ""):
        with pytest.raises(ConfigError, match="--train-speakers"):
            parse_train_speakers(bad)


def test_last_third_change():
    history = [{"epoch": e, "val_eer": v} for e, v in enumerate([30.0, 20.0, 15.0, 12.0, 11.5, 11.0, 11.2, 11.1, 11.0], 1)]
    change = last_third_change(history)
    assert (change["from_epoch"], change["to_epoch"]) == (6, 9) and change["change"] == pytest.approx(0.0)
    assert last_third_change(history[:3])["from_epoch"] == 2  # 3 epochs: epoch 3 against epoch 2
    assert last_third_change([{"epoch": 1, "val_eer": None}]) is None


def test_plateau_verdict_against_hand_computed_noise():
    # EER 10% on 100 + 100 trials: SE = 100 * sqrt(0.1 * 0.9 / 4 * (1/100 + 1/100)) = 2.1213 points
    assert eer_standard_error(10.0, 100, 100) == pytest.approx(2.12132, abs=1e-4)
    noise = 1.96 * 2 ** 0.5 * 2.12132
    flat = {"from_epoch": 6, "to_epoch": 9, "from_eer": 11.0, "to_eer": 9.0, "change": -2.0}
    assert plateau_verdict(flat, 100, 100) == {"verdict": "plateau", "noise": pytest.approx(noise, abs=1e-3)}
    falling = {"from_epoch": 6, "to_epoch": 9, "from_eer": 14.0, "to_eer": 6.0, "change": -8.0}
    assert plateau_verdict(falling, 100, 100)["verdict"] == "improving"
    assert plateau_verdict({**falling, "from_eer": 6.0, "to_eer": 14.0, "change": 8.0}, 100, 100)["verdict"] == "rising"
    # 10,000 trials a side: the same 2-point fall is no longer noise
    assert plateau_verdict(flat, 10_000, 10_000)["verdict"] == "improving"
    runs = {"ce": [{"seed": 0, "tested_checkpoint": "best", "val_eer": [20.0, 11.0, 9.0],
                    "val_change_last_third": flat}]}
    table = convergence_table(runs, (100, 100))
    assert "plateau (noise +-5.88)" in table and "1 of 1 runs on a plateau" in table
    assert "verdict" in convergence_table(runs) and "runs on a plateau" not in convergence_table(runs)


TINY_DEMO = {
    "seed": 0,
    "data": {"corpus": "corpus", "format": "voxceleb", "split": "train", "chunk_duration_s": 0.5,
             "speakers_per_batch": 4, "chunks_per_speaker": 2, "min_speaker_duration_s": 4.0, "num_workers": 0},
    "model": TINY_MODEL,
    "optimizer": {"name": "adam", "lr": 0.005},
    "training": {"epochs": 2, "batches_per_epoch": 2, "log_every_batches": 1},
    "frontend": {"window_s": 1.0, "step_s": 0.5},
    "validation": {"trials": "corpus/val_trials.txt", "root": "corpus/wav"},
    "evaluation": {"trials": "corpus/test_trials.txt", "root": "corpus/wav", "snorm_top_n": 2,
                   "cohort_utterances_per_speaker": 1, "n_bootstrap": 50},
}


@pytest.mark.slow
def test_demo_twice_gives_byte_identical_tables_whatever_the_number_of_jobs(tmp_path, capsys):
    from voxmetric.training.demo import run_demo

    def once(jobs: int) -> tuple[str, str]:
        out = tmp_path / f"demo{jobs}"  # a demo in an existing folder continues it: two folders
        assert run_demo(str(out), seeds=2, progress=False, losses=("aam", "triplet"), speakers=10,
                        utterances=4, config_text=yaml.safe_dump(TINY_DEMO), threads=1, jobs=jobs) == 0
        md = (out / "compare" / "results.md").read_text().replace(str(out), "OUT")
        printed = capsys.readouterr().out.replace(str(out), "OUT")
        return md[:md.index(TIME_SECTION)], printed[printed.index("| loss"):printed.index("Computed now")]

    # The demo's way (2 runs at once, in worker processes), then one run at a time in this process.
    first, second = once(jobs=2), once(jobs=1)
    assert first[0] == second[0] and first[1] == second[1]
    # Run again into a folder that holds a demo: it continues it (nothing left to train), same tables.
    last = tmp_path / "demo1" / "compare" / "aam" / "seed0" / "checkpoints" / "last.pt"
    trained = last.stat().st_mtime_ns
    assert once(jobs=1) == second and last.stat().st_mtime_ns == trained
    assert "## Pairwise tests" in first[0]


def test_compare_jobs_needs_a_fixed_thread_count_and_a_batch_budget(tmp_path, tiny_corpus, capsys):
    config = _compare_config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=1)
    out = str(tmp_path / "c")
    assert main(["compare", str(config), "--losses", "aam", "--jobs", "2", "--out", out]) == 1
    assert "--jobs N needs --threads T" in capsys.readouterr().err
    assert main(["compare", str(config), "--losses", "aam", "--jobs", "2", "--threads", "1", "--budget", "1min",
                 "--out", out]) == 1
    assert "give the budget in batches" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["compare", str(config), "--losses", "aam", "--jobs", "0", "--threads", "1", "--out", out])
    assert caught.value.code == 2 and "argument --jobs: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_scale_plots_eer_against_training_speakers(tmp_path, tiny_corpus, capsys):
    config = _compare_config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=2)
    out = tmp_path / "scale"
    assert main(["compare", str(config), "--losses", "aam,ce", "--train-speakers", "2,4", "--seeds", "1",
                 "--set", "data.speakers_per_batch=2", "--out", str(out), "-q"]) == 0
    assert (out / "scale.png").read_bytes()[:4] == b"\x89PNG"
    assert "| aam |" in (out / "scale.md").read_text()
    first = yaml.safe_load((out / "speakers-2" / "aam" / "seed3" / "config.yml").read_text())
    assert first["data"]["num_speakers"] == 2
    # An earlier comparison in the folder: refused before any work without --resume / --overwrite.
    assert main(["compare", str(config), "--losses", "aam,ce", "--train-speakers", "2,4", "--out", str(out)]) == 1
    assert f"{out} already holds a comparison (speakers-2)" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_stops_a_parallel_compare_with_checkpoints_and_exit_143(tmp_path, tiny_corpus):
    import os
    import signal
    import subprocess
    import sys
    import time

    from voxmetric.inference.checkpoint import load_checkpoint

    config = _compare_config(tmp_path, tiny_corpus, epochs=1, batches_per_epoch=400)
    out = tmp_path / "c"
    process = subprocess.Popen([sys.executable, "-m", "voxmetric.cli", "compare", str(config), "--losses", "aam,triplet",
                                "--seeds", "2", "--jobs", "2", "--threads", "1", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    started = [out / "aam" / "seed3" / "metrics.jsonl", out / "aam" / "seed4" / "metrics.jsonl"]
    deadline = time.monotonic() + 240
    while not all(p.exists() for p in started):  # both runs are training
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)  # to the parent only, as a scheduler would
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "comparison interrupted" in err
    for seed in (3, 4):  # each running run saved where it was; nothing else started
        state = load_checkpoint(out / "aam" / f"seed{seed}" / "checkpoints" / "last.pt")
        assert 0 < state["batches_done"] < 400
    assert not (out / "triplet").exists() and not (out / "results.json").exists()


def test_a_workers_stderr_lines_are_whole_and_name_the_run():
    import contextlib
    import io
    import sys

    from voxmetric.training.compare import LinePrefixer

    sink = io.StringIO()
    errors = LinePrefixer(sink, "[aam, seed 1] ")
    errors.write("first ha")
    assert sink.getvalue() == ""  # a partial line waits
    errors.write("lf\nsecond\nthi")
    assert sink.getvalue() == "[aam, seed 1] first half\n[aam, seed 1] second\n"
    errors.flush()  # the end of the run: the rest comes out as a line
    assert sink.getvalue().endswith("[aam, seed 1] thi\n")
    with contextlib.redirect_stderr(errors):  # what the worker's code prints on stderr
        print("warning: x.wav: short file", file=sys.stderr)
    assert sink.getvalue().splitlines()[-1] == "[aam, seed 1] warning: x.wav: short file"
    assert all(line.startswith("[aam, seed 1] ") for line in sink.getvalue().splitlines())
