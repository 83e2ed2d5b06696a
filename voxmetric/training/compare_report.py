"""The loss comparison's report: per-seed tables, intervals, pairwise tests and ranking
(``results.md``, ``results.json``), scores (``scores.npz``) and plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_open, atomic_path, write_json
from .compare_runs import plateau_verdict
from .config import Config

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


def _stored_dir(run_dir: str, out: Path) -> str:
    """A run folder as results.json keeps it: relative to ``out`` when inside it (the folder
    can move), else absolute (a reused run of an earlier comparison)."""
    path, base = Path(run_dir).resolve(), out.resolve()
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


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


def convergence_table(runs: dict[str, list[dict[str, Any]]], val_counts: tuple[int, int] | None = None) -> str:
    """The per-run validation curves and their change over the last third; with the validation
    list's (target, non-target) counts, a verdict per run (:func:`plateau_verdict`) and a summary."""
    lines = ["| loss | seed | tested checkpoint | validation EER % per epoch | change over the last third (points) "
             "| verdict |", "|---|---|---|---|---|---|"]
    verdicts = []
    for name, seed_runs in runs.items():
        for run in seed_runs:
            change = run["val_change_last_third"]
            curve = " ".join(f"{v:.1f}" for v in run["val_eer"] if v is not None) or "-"
            text = "-" if change is None else (f"{change['change']:+.2f} (epoch {change['from_epoch']} "
                                               f"{change['from_eer']:.2f} -> {change['to_epoch']} {change['to_eer']:.2f})")
            verdict = "-"
            if change is not None and val_counts is not None:
                judged = plateau_verdict(change, *val_counts)
                verdicts.append(judged["verdict"])
                verdict = f"{judged['verdict']} (noise +-{judged['noise']:.2f})"
            lines.append(f"| {name} | {run['seed']} | {run['tested_checkpoint']} | {curve} | {text} | {verdict} |")
    if verdicts:
        counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("plateau", "improving", "rising") if v in verdicts)
        lines += ["", f"{verdicts.count('plateau')} of {len(verdicts)} runs on a plateau ({counts}). Noise: 1.96 x "
                  f"sqrt(2) x the standard error of an EER on the {val_counts[0]} target and {val_counts[1]} "
                  "non-target validation trials (sqrt(p (1 - p) / 4 (1/N_target + 1/N_nontarget)), "
                  "voxmetric/training/compare_runs.py): a smaller change cannot be told from the validation "
                  "set's sampling noise."]
    return "\n".join(lines)


def validation_counts(config: Config) -> tuple[int, int] | None:
    """(target, non-target) trials of the config's validation list; None without one."""
    from ..data.trials import read_trials

    if not config.validation.trials:
        return None
    trials = read_trials(config.validation.trials)
    targets = sum(1 for t in trials if t.label)
    return targets, len(trials) - targets


def _write_report(out: Path, runs: dict[str, list[dict[str, Any]]], config: Config, seeds: int, timed: bool,
                  threads: int | None, budget: str | None = None, reused_from: Path | None = None) -> CompareReport:
    """Write results.md, results.json, scores.npz, det.png and training_curves.png into ``out``.

    ``runs``: per loss, one result per seed (:func:`voxmetric.training.compare_runs.run_summary`
    plus scores); ``reused_from``: the earlier comparison whose trained runs were tested
    (``compare --reuse-runs``), said in results.md and recorded in results.json.
    """
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
        row["runs"] = [{**{k: v for k, v in r.items() if not k.endswith("scores") and k not in ("labels", "cohort")},
                        "run_dir": _stored_dir(r["run_dir"], out)} for r in seed_runs]
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
    ]
    if reused_from is not None:
        parts += [f"Networks: the trained runs of `{reused_from}` (`compare --reuse-runs`), tested here without "
                  f"retraining; each run's folder is `run_dir` in results.json, and the training curves and "
                  f"times below are those runs'.", ""]
    parts += [
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
              convergence_table(runs, validation_counts(config)), ""]
    deterministic = "\n".join(parts)
    timing = [TIME_SECTION + " (reported, never used to decide anything)", "",
              "| loss | seed | batches | train time" + (" (earlier run)" if reused_from is not None else "")
              + " | test time |", "|---|---|---|---|---|"]
    for name, seed_runs in runs.items():
        for run in seed_runs:
            timing.append(f"| {name} | {run['seed']} | {run['batches']} | {run['train_time_s']:.0f} s | "
                          f"{run['eval_time_s']:.0f} s |")
    with atomic_open(out / "results.md") as f:
        f.write(deterministic + "\n" + "\n".join(timing) + "\n")
    write_json(out / "results.json", {"config": config.to_dict(), "seeds": seeds, "budget": budget,
                                      "threads": threads, "reused_from": str(reused_from) if reused_from else None,
                                      "results": rows, "pairwise": tests, "ranking": ranking, "best_group": best})
    arrays = {"labels": np.asarray(labels)}
    for name, seed_runs in runs.items():
        for run in seed_runs:
            arrays[f"{name}/seed{run['seed']}/cosine"] = run["cosine_scores"]
            if run["snorm_scores"] is not None:
                arrays[f"{name}/seed{run['seed']}/snorm"] = run["snorm_scores"]
            if run.get("cohort") is not None:  # speaker means: a later --reuse-runs test need not embed them again
                arrays[f"{name}/seed{run['seed']}/cohort"] = run["cohort"]
    with atomic_path(out / "scores.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    det = out / "det.png"
    plot_det({name: (seed_runs[0]["cosine_scores"], labels) for name, seed_runs in runs.items()}, det,
             title="DET curves (first seed of each loss)")
    curves_plot = out / "training_curves.png"
    plot_training_curves({f"{name}/seed {run['seed']}": Path(run["run_dir"]) / "metrics.jsonl"
                          for name, seed_runs in runs.items() for run in seed_runs}, curves_plot)
    summary_table = table + ("\n\n" + "\n".join(ranking) if ranking else "")
    return CompareReport(str(out), rows, summary_table, str(out / "results.md"), str(out / "results.json"),
                         str(det), str(curves_plot), tests, ranking)
