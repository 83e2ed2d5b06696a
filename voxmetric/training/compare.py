"""Compare loss functions: the experiment of Coria et al. (2020), with seeds and significance.

Every loss is trained ``seeds`` times with everything else identical; seed ``s``
(``config.seed + s``) sets the initialisation and the batch stream, and it is the
same for every loss: loss L with seed s sees exactly the batches loss L' with seed s
sees (the stream is a function of (seed, rank, batch number), see
:mod:`voxmetric.data.sampler`), and the network starts from the same weights. Each
run trains for a fixed number of batches (the config's ``training.epochs`` x
``training.batches_per_epoch``, or ``budget``): time is measured and reported,
never used to decide anything, unless a ``budget`` in minutes is asked for
explicitly (then the amount of training depends on the machine and its load, and
results.md says so). When validation trials are configured, each epoch ends with a
validation EER and the checkpoint with the best one is the one tested (model
selection on validation speakers, never on test trials).

Each model is evaluated on the same test trials with cosine scoring and with
adaptive s-norm. Written into ``out_dir``:

- ``<loss>/seed<s>/``: each run's experiment folder (config, checkpoints, metrics.jsonl);
- ``results.md``: per loss the per-seed EER and minDCF, their means and 95% intervals
  over seeds and trials (two-level bootstrap, :mod:`voxmetric.evaluate.significance`);
  the pairwise paired tests (Holm-corrected) and the ranking as far as they support
  it; each run's validation-EER change over its last third of epochs; then the
  times (reported only). ``results.json`` holds every figure; ``scores.npz`` every
  run's test scores (``<loss>/seed<s>/cosine`` and ``.../snorm``) and the labels.
- ``det.png``: DET curves (first seed of each loss); ``training_curves.png``:
  training loss per batch and validation EER per epoch, every run.

:func:`compare_scale` repeats the comparison at growing numbers of training speakers
(nested subsets, :func:`voxmetric.data.corpus.nested_speakers`) and plots EER against
training speakers (``scale.png``).

Fairness: pair and triplet losses need K >= 2 chunks per speaker, so every loss
gets the same P x K batches (K from the config, raised to 2 if it is 1).
"""

from __future__ import annotations

import copy
import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from ..errors import ConfigError
from ..fileio import atomic_open

PAPER_LOSSES = ("ce", "center", "coco", "aam", "contrastive", "triplet")

TIME_SECTION = "## Time"
"""Heading of results.md's last section: the only part that changes from run to run."""


@dataclass
class CompareReport:
    out_dir: str
    rows: list[dict[str, Any]]  # one per loss: {"loss", "cosine": summary, "snorm": summary | None, "runs": [...]}
    table: str  # the deterministic Markdown tables (no times)
    results_md: str
    results_json: str
    det_plot: str
    curves_plot: str
    pairwise: list[dict[str, Any]] = field(default_factory=list)
    ranking: list[str] = field(default_factory=list)


def parse_budget(budget: str | int | None) -> tuple[int | None, float | None]:
    """``"300"`` -> (300 batches, None); ``"2min"`` / ``"2.5 min"`` -> (None, 150 s)."""
    if budget is None:
        return None, None
    text = str(budget).strip().lower()
    try:
        if text.endswith("min"):
            minutes = float(text[:-3].strip())
            if minutes > 0:
                return None, minutes * 60
        else:
            batches = int(text)
            if batches > 0:
                return batches, None
    except ValueError:
        pass
    raise ConfigError(f"--budget '{budget}' is neither a number of batches (e.g. 300) nor minutes (e.g. 2min)")


def parse_train_speakers(text: str | None) -> list[int] | None:
    """``"25,50,100"`` -> [25, 50, 100] (ascending, positive, distinct)."""
    if text is None:
        return None
    try:
        counts = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(c < 1 for c in counts) or len(set(counts)) != len(counts):
        raise ConfigError(f"--train-speakers '{text}': give distinct positive numbers, e.g. 25,50,100,200")
    return sorted(counts)


def run_config(config: Config, loss_name: str, budget_batches: int | None, budget_s: float | None,
               seed_offset: int = 0) -> Config:
    """The config of one run: the loss swapped, batches fit for pairs, budget and seed applied."""
    run = copy.deepcopy(config)
    if run.loss.name != loss_name:
        run.loss.name, run.loss.params = loss_name, {}
    run.data.chunks_per_speaker = max(2, run.data.chunks_per_speaker)
    run.seed = config.seed + seed_offset
    if budget_batches is not None:
        # As many epochs as the config's epoch length needs, then equal epochs that add up
        # to the budget (or overshoot it by less than one batch per epoch).
        epochs = max(1, math.ceil(budget_batches / run.training.batches_per_epoch))
        run.training.epochs = epochs
        run.training.batches_per_epoch = math.ceil(budget_batches / epochs)
    if budget_s is not None:
        run.training.max_time_s = budget_s
        run.training.epochs = max(run.training.epochs, 10**6)
    return run


def _check(config: Config, losses: list[str], seeds: int) -> None:
    from ..losses import LOSSES

    if not losses:
        raise ConfigError("--losses: give at least one loss name")
    unknown = [name for name in losses if name not in LOSSES]
    if unknown:
        raise ConfigError(f"--losses: unknown loss '{unknown[0]}'; allowed: {', '.join(sorted(LOSSES))}")
    if len(set(losses)) != len(losses):
        raise ConfigError(f"--losses: a loss is named twice in {', '.join(losses)}")
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds must be a positive number of training seeds, got {seeds!r}")
    if not config.evaluation.trials:
        raise ConfigError("evaluation.trials is required to compare losses: the test trial list")


@contextmanager
def torch_threads(threads: int | None):
    """Run with exactly ``threads`` intra-op threads (None: leave torch's setting).

    CPU reductions (matrix products, sums) split work by thread, so float results
    can depend on the thread count: a fixed count makes a run reproducible whatever
    the machine's load.
    """
    import torch

    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError(f"--threads must be positive, got {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def last_third_change(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Validation EER change (percentage points) over a run's last third of epochs.

    With ``E`` epochs validated, it compares epoch ``E`` with epoch ``E - ceil(E / 3)``
    (9 epochs: epoch 9 against epoch 6). None without validation or with one epoch.
    """
    evals = [(r["epoch"], r["val_eer"]) for r in history if r.get("val_eer") is not None]
    if len(evals) < 2:
        return None
    k = len(evals) - math.ceil(len(evals) / 3) - 1
    (start_epoch, start), (end_epoch, end) = evals[max(0, k)], evals[-1]
    return {"from_epoch": start_epoch, "to_epoch": end_epoch, "from_eer": start, "to_eer": end,
            "change": end - start}


def _train_and_score(run: Config, run_dir: Path, corpus, progress: bool) -> dict[str, Any]:
    """Train one run, test its best (else last) checkpoint; scores and timings."""
    from ..evaluate.pipeline import cohort_embeddings, evaluate_trials
    from ..inference.frontend import Frontend
    from ..inference.loading import load_network
    from .trainer import resolve_device, train

    result = train(run, run_dir, progress=progress, overwrite=True)
    if result.interrupted:  # Ctrl-C / SIGTERM: the run saved its checkpoint; stop the comparison too
        raise KeyboardInterrupt(f"{run_dir}: training interrupted (checkpoint saved)")
    # The checkpoint's network behind the front-end it was validated with: the same
    # path (and so the same scores) as `embed` + `score` + `eval` and `calibrate` of it.
    network, source = load_network(result.best_checkpoint or result.last_checkpoint)
    frontend = Frontend(network, source.frontend, resolve_device(run.training.device))
    started = time.perf_counter()
    e = run.evaluation
    cohort = cohort_embeddings(frontend, corpus, e.cohort_utterances_per_speaker, seed=run.seed, progress=progress)
    metrics = evaluate_trials(frontend, e.trials, e.root, n_bootstrap=0, cohort=cohort, top_n=e.snorm_top_n,
                              progress=progress, seed=run.seed)
    return {
        "seed": run.seed, "batches": result.batches_done, "epochs": result.epochs_done,
        "best_val_eer": result.best_eer, "tested_checkpoint": "best" if result.best_checkpoint else "last",
        "val_eer": [r.get("val_eer") for r in result.history],
        "val_change_last_third": last_third_change(result.history),
        "cosine_scores": metrics["scores"], "snorm_scores": metrics["snorm_scores"], "labels": metrics["labels"],
        "train_time_s": result.train_time_s, "eval_time_s": time.perf_counter() - started,
    }


def compare(config: Config, losses: list[str], out_dir: str, budget: str | None = None, seeds: int = 1,
            threads: int | None = None, progress: bool = True) -> CompareReport:
    """Train and evaluate every loss ``seeds`` times; write the tables and plots (module docstring)."""
    from .trainer import build_corpus

    _check(config, losses, seeds)
    budget_batches, budget_s = parse_budget(budget)
    out = Path(out_dir)
    with torch_threads(threads):
        corpus = build_corpus(config)
        runs: dict[str, list[dict[str, Any]]] = {}
        for name in losses:
            for s in range(seeds):
                run = run_config(config, name, budget_batches, budget_s, seed_offset=s)
                if progress:
                    print(f"== {name}, seed {run.seed} ({s + 1}/{seeds}): training ({_budget_text(run)}), "
                          f"then testing on {config.evaluation.trials}", flush=True)
                runs.setdefault(name, []).append(_train_and_score(run, out / name / f"seed{run.seed}", corpus,
                                                                  progress))
        return _write_report(out, runs, config, seeds, budget_s is not None, threads)


def compare_scale(config: Config, losses: list[str], out_dir: str, train_speakers: list[int],
                  budget: str | None = None, seeds: int = 1, threads: int | None = None,
                  progress: bool = True) -> tuple[list[CompareReport], str]:
    """:func:`compare` at each number of training speakers (nested subsets), then ``scale.png``
    (mean EER with its 95% interval against training speakers, one line per loss),
    ``scale.md`` and ``scale.json`` in ``out_dir``. Returns the reports and the plot's path."""
    from ..evaluate.plots import plot_scale

    out = Path(out_dir)
    reports = []
    for count in train_speakers:
        scaled = copy.deepcopy(config)
        scaled.data.num_speakers = count
        if progress:
            print(f"=== {count} training speakers", flush=True)
        reports.append(compare(scaled, losses, str(out / f"speakers-{count}"), budget, seeds, threads, progress))
    points = {name: [] for name in losses}
    for count, report in zip(train_speakers, reports):
        for row in report.rows:
            summary = row["cosine"]
            points[row["loss"]].append((count, summary["mean_eer"], *(summary["eer_ci"] or [None, None])))
    plot = out / "scale.png"
    plot_scale(points, plot)
    lines = ["# Loss comparison against training speakers", "",
             f"Mean test EER % over {seeds} seed(s), 95% interval over seeds and trials (two-level bootstrap). "
             "Speaker subsets are nested (voxmetric.data.corpus.nested_speakers).", "",
             "| loss | " + " | ".join(f"{c} speakers" for c in train_speakers) + " |",
             "|---|" + "---|" * len(train_speakers)]
    for name in losses:
        cells = [f"{_pct(m)} ({_interval(lo, hi)})" for _, m, lo, hi in points[name]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    with atomic_open(out / "scale.md") as f:
        f.write("\n".join(lines) + "\n")
    with atomic_open(out / "scale.json") as f:
        json.dump({"train_speakers": train_speakers, "points": points}, f, indent=2)
    return reports, str(plot)


def _budget_text(run: Config) -> str:
    t = run.training
    if t.max_time_s is not None:
        return f"{t.max_time_s / 60:.1f} min"
    return f"{t.epochs} epochs x {t.batches_per_epoch} batches"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}"


def _interval(low: float | None, high: float | None) -> str:
    return "-" if low is None else f"{low * 100:.2f}-{high * 100:.2f}"


def _ci(summary: dict[str, Any], key: str = "eer_ci", scale: float = 100.0, digits: int = 2) -> str:
    ci = summary.get(key)
    return "-" if ci is None else f"{ci[0] * scale:.{digits}f}-{ci[1] * scale:.{digits}f}"


def results_table(rows: list[dict[str, Any]]) -> str:
    """The multi-seed Markdown tables (EER in %; intervals over seeds and trials): no times."""
    lines = [
        "| loss | EER % per seed | mean EER % | 95% CI | minDCF 0.01 per seed | mean minDCF 0.01 | 95% CI "
        "| mean EER % s-norm | 95% CI s-norm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        raw, norm = row["cosine"], row.get("snorm")
        cells = [row["loss"], " / ".join(_pct(v) for v in raw["eer"]), _pct(raw["mean_eer"]), _ci(raw),
                 " / ".join(f"{v:.3f}" for v in raw["min_dcf"]), f"{raw['mean_min_dcf']:.3f}",
                 _ci(raw, "min_dcf_ci", 1.0, 3)]
        cells += [_pct(norm["mean_eer"]), _ci(norm)] if norm else ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairwise_table(tests: list[dict[str, Any]], n_bootstrap: int) -> str:
    from ..evaluate.significance import _p_text

    def _p_cell(p: float) -> str:  # "0.78" or "<= 0.002" (the bootstrap's resolution)
        text = _p_text(p, n_bootstrap)
        return text[4:] if text.startswith("p = ") else text[2:]

    lines = ["| A | B | mean EER A - B (points) | 95% CI | p | p Holm | significant at 5% |",
             "|---|---|---|---|---|---|---|"]
    for t in tests:
        lines.append(f"| {t['a']} | {t['b']} | {t['difference'] * 100:+.2f} | {t['ci'][0] * 100:+.2f} to "
                     f"{t['ci'][1] * 100:+.2f} | {_p_cell(t['p_value'])} | {_p_cell(t['p_holm'])} | "
                     f"{'yes' if t['significant'] else 'no'} |")
    return "\n".join(lines)


def convergence_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| loss | seed | tested checkpoint | validation EER % per epoch | change over the last third (points) |",
             "|---|---|---|---|---|"]
    for name, seed_runs in runs.items():
        for run in seed_runs:
            change = run["val_change_last_third"]
            curve = " ".join(f"{v:.1f}" for v in run["val_eer"] if v is not None) or "-"
            text = "-" if change is None else (f"{change['change']:+.2f} (epoch {change['from_epoch']} "
                                               f"{change['from_eer']:.2f} -> {change['to_epoch']} {change['to_eer']:.2f})")
            lines.append(f"| {name} | {run['seed']} | {run['tested_checkpoint']} | {curve} | {text} |")
    return "\n".join(lines)


def _write_report(out: Path, runs: dict[str, list[dict[str, Any]]], config: Config, seeds: int, timed: bool,
                  threads: int | None) -> CompareReport:
    from ..evaluate.plots import plot_det, plot_training_curves
    from ..evaluate.significance import (DEFAULT_ALPHA, best_group, multi_seed_summary, pairwise_tests,
                                         ranking_statements)

    e = config.evaluation
    n_bootstrap = e.n_bootstrap
    labels = next(iter(runs.values()))[0]["labels"]
    rows = []
    for name, seed_runs in runs.items():
        row = {"loss": name, "cosine": multi_seed_summary([r["cosine_scores"] for r in seed_runs], labels,
                                                          n_bootstrap, seed=config.seed)}
        row["snorm"] = None
        if all(r["snorm_scores"] is not None for r in seed_runs):
            row["snorm"] = multi_seed_summary([r["snorm_scores"] for r in seed_runs], labels, n_bootstrap,
                                              seed=config.seed)
        row["runs"] = [{k: v for k, v in r.items() if not k.endswith("scores") and k != "labels"} for r in seed_runs]
        rows.append(row)
    means = {row["loss"]: row["cosine"]["mean_eer"] for row in rows}
    tests, ranking, best = [], [], []
    if len(runs) > 1 and n_bootstrap > 0:
        tests = pairwise_tests({name: [r["cosine_scores"] for r in seed_runs] for name, seed_runs in runs.items()},
                               labels, n_bootstrap, seed=config.seed)
        ranking = ranking_statements(tests, means, n_bootstrap)
        best = best_group(tests, means)

    table = results_table(rows)
    first = next(iter(runs.values()))[0]
    t = config.training
    budget_text = (f"{first['epochs']} epochs, {first['batches']} batches of {config.data.speakers_per_batch} "
                   f"speakers x {max(2, config.data.chunks_per_speaker)} chunks")
    if timed:
        budget_text = (f"a time budget of {t.max_time_s / 60:.1f} min per run (--budget Nmin): the amount of "
                       f"training depends on this machine and its load, so these results are NOT reproducible")
    validation = (f"validation EER on `{config.validation.trials}` after every epoch; the checkpoint with the best "
                  f"validation EER is tested" if config.validation.trials else
                  "no validation trials: the last checkpoint is tested")
    parts = [
        "# Loss comparison", "",
        f"Test trials: `{e.trials}` ({first['labels'].sum()} target, {(~first['labels'].astype(bool)).sum()} "
        f"non-target). Model: `{config.model.name}`. Training: {budget_text} per run; {seeds} seed(s) per loss "
        f"(seeds {config.seed}..{config.seed + seeds - 1}: seed s sets the initialisation and the batch stream, "
        f"identically for every loss); {validation}."
        + (f" Torch threads fixed at {threads}." if threads else ""), "",
        f"Intervals: 95%, two-level bootstrap ({n_bootstrap} replicates): resample seeds with replacement, then "
        f"target and non-target trials with replacement (one trial resample shared by the drawn seeds), recompute "
        f"the mean over seeds (voxmetric/evaluate/significance.py). minDCF normalised, P_target 0.01, "
        f"C_miss = C_fa = 1.", "",
        "## Results (cosine scoring; s-norm: adaptive s-norm)", "", table, "",
    ]
    if tests:
        parts += ["## Pairwise tests (cosine scoring)", "",
                  f"Paired bootstrap over seeds and trials ({n_bootstrap} replicates; A and B share every seed and "
                  f"trial draw), two-sided; p-values Holm-corrected over {len(tests)} pair(s); significant when "
                  f"p Holm <= {DEFAULT_ALPHA}.", "", pairwise_table(tests, n_bootstrap), "",
                  "## Ranking, as far as the tests support it", "",
                  f"Lowest mean EER: {best[0]}" + (f"; not significantly different from it: {', '.join(best[1:])}"
                                                    if len(best) > 1 else "; significantly better than every other loss")
                  + ".", ""] + [f"- {line}" for line in ranking] + [""]
    parts += ["## Convergence: validation EER over the last third of training", "",
              "Negative change: still improving when training stopped; near 0: a plateau.", "",
              convergence_table(runs), ""]
    deterministic = "\n".join(parts)
    timing = [TIME_SECTION + " (reported, never used to decide anything)", "",
              "| loss | seed | batches | train time | test time |", "|---|---|---|---|---|"]
    for name, seed_runs in runs.items():
        for run in seed_runs:
            timing.append(f"| {name} | {run['seed']} | {run['batches']} | {run['train_time_s']:.0f} s | "
                          f"{run['eval_time_s']:.0f} s |")
    with atomic_open(out / "results.md") as f:
        f.write(deterministic + "\n" + "\n".join(timing) + "\n")
    with atomic_open(out / "results.json") as f:
        json.dump({"config": config.to_dict(), "seeds": seeds, "results": rows, "pairwise": tests,
                   "ranking": ranking, "best_group": best}, f, indent=2, default=_json_default)
    arrays = {"labels": np.asarray(labels)}
    for name, seed_runs in runs.items():
        for run in seed_runs:
            arrays[f"{name}/seed{run['seed']}/cosine"] = run["cosine_scores"]
            if run["snorm_scores"] is not None:
                arrays[f"{name}/seed{run['seed']}/snorm"] = run["snorm_scores"]
    np.savez_compressed(out / "scores.npz", **arrays)
    det = out / "det.png"
    plot_det({name: (seed_runs[0]["cosine_scores"], labels) for name, seed_runs in runs.items()}, det,
             title="DET curves (first seed of each loss)")
    curves_plot = out / "training_curves.png"
    plot_training_curves({f"{name}/seed {run['seed']}": out / name / f"seed{run['seed']}" / "metrics.jsonl"
                          for name, seed_runs in runs.items() for run in seed_runs}, curves_plot)
    summary_table = table + ("\n\n" + "\n".join(ranking) if ranking else "")
    return CompareReport(str(out), rows, summary_table, str(out / "results.md"), str(out / "results.json"),
                         str(det), str(curves_plot), tests, ranking)


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
