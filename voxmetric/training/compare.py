"""Compare loss functions under one budget: the experiment of Coria et al. (2020) as one call.

One model per loss is trained with everything else identical (config, seed,
batch stream, budget), then each is evaluated on the same test trials with
cosine scoring and with adaptive s-norm. Written into ``out_dir``:

- ``<loss>/``: each run's experiment folder (config, checkpoints, metrics.jsonl);
- ``results.md``: the paper-style table (loss, EER with 95% CI, minDCF, with and
  without s-norm, training time) and ``results.json`` with every figure;
- ``det.png``: DET curves, one per loss; ``training_curves.png``: loss per batch.

Fairness: pair and triplet losses need K >= 2 chunks per speaker, so every loss
gets the same P x K batches (K from the config, raised to 2 if it is 1).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Config
from ..errors import ConfigError
from ..fileio import atomic_open, write_json

PAPER_LOSSES = ("ce", "center", "coco", "aam", "contrastive", "triplet")


@dataclass
class CompareReport:
    out_dir: str
    rows: list[dict[str, Any]]
    table: str
    results_md: str
    results_json: str
    det_plot: str
    curves_plot: str


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


def run_config(config: Config, loss_name: str, budget_batches: int | None, budget_s: float | None) -> Config:
    """The config of one run: the loss swapped, batches fit for pairs, budget applied."""
    run = copy.deepcopy(config)
    if run.loss.name != loss_name:
        run.loss.name, run.loss.params = loss_name, {}
    run.data.chunks_per_speaker = max(2, run.data.chunks_per_speaker)
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


def _check(config: Config, losses: list[str]) -> None:
    from ..losses import LOSSES

    if not losses:
        raise ConfigError("--losses: give at least one loss name")
    unknown = [name for name in losses if name not in LOSSES]
    if unknown:
        raise ConfigError(f"--losses: unknown loss '{unknown[0]}'; allowed: {', '.join(sorted(LOSSES))}")
    if not config.evaluation.trials:
        raise ConfigError("evaluation.trials is required to compare losses: the test trial list")


def parse_losses(text: str) -> list[str]:
    """``"ce, aam,triplet"`` -> ``["ce", "aam", "triplet"]`` (the ``--losses`` option)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def compare(config: Config, losses: list[str], out_dir: str, budget: str | None = None,
            progress: bool = True) -> CompareReport:
    """Train and evaluate one model per loss; write the table and plots (see module docstring)."""
    from ..evaluate.pipeline import cohort_embeddings, evaluate_trials
    from ..inference.frontend import Frontend
    from ..inference.loading import load_network
    from .trainer import build_corpus, resolve_device, train

    _check(config, losses)
    budget_batches, budget_s = parse_budget(budget)
    out = Path(out_dir)
    device = resolve_device(config.training.device)
    corpus = build_corpus(config)
    rows, curves = [], {}
    for name in losses:
        run = run_config(config, name, budget_batches, budget_s)
        if progress:
            print(f"== {name}: training ({_budget_text(run)})", flush=True)
        result = train(run, out / name, progress=progress, overwrite=True)
        # The checkpoint's network behind the front-end it was validated with: the same
        # path (and so the same scores) as `embed` + `score` + `eval` and `calibrate` of it.
        network, source = load_network(result.best_checkpoint or result.last_checkpoint)
        frontend = Frontend(network, source.frontend, device)
        if progress:
            print(f"== {name}: evaluating on {config.evaluation.trials}", flush=True)
        started = time.perf_counter()
        e = config.evaluation
        cohort = cohort_embeddings(frontend, corpus, e.cohort_utterances_per_speaker, seed=config.seed,
                                   progress=progress)
        metrics = evaluate_trials(frontend, e.trials, e.root, n_bootstrap=e.n_bootstrap, cohort=cohort,
                                  top_n=e.snorm_top_n, progress=progress, seed=config.seed)
        curves[name] = (metrics.pop("scores"), metrics.pop("labels"))
        metrics.pop("snorm_scores", None)
        rows.append({"loss": name, "train_time_s": result.train_time_s, "batches": result.batches_done,
                     "eval_time_s": time.perf_counter() - started, **metrics})
    return _write_report(out, rows, curves, config)


def _budget_text(run: Config) -> str:
    t = run.training
    if t.max_time_s is not None:
        return f"{t.max_time_s / 60:.1f} min"
    return f"{t.epochs * t.batches_per_epoch} batches"


def _pct(value: float) -> str:
    return f"{value * 100:.2f}"


def _ci(metrics: dict[str, Any]) -> str:
    ci = metrics.get("eer_ci")
    return "-" if ci is None else f"{_pct(ci[0])}-{_pct(ci[1])}"


def results_table(rows: list[dict[str, Any]]) -> str:
    """The paper-style Markdown table (EER in %, 95% CI by bootstrap over trials)."""
    lines = [
        "| loss | EER % | 95% CI | minDCF 0.01 | minDCF 0.05 | EER % s-norm | 95% CI s-norm "
        "| minDCF 0.01 s-norm | train time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        raw, norm = row["cosine"], row.get("snorm")
        cells = [row["loss"], _pct(raw["eer"]), _ci(raw),
                 f"{raw['min_dcf'][0.01]['min_dcf']:.3f}", f"{raw['min_dcf'][0.05]['min_dcf']:.3f}"]
        if norm:
            cells += [_pct(norm["eer"]), _ci(norm),
                      f"{norm['min_dcf'][0.01]['min_dcf']:.3f}"]
        else:
            cells += ["-", "-", "-"]
        cells.append(f"{row['train_time_s']:.0f} s / {row['batches']} batches")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _write_report(out: Path, rows, curves, config: Config) -> CompareReport:
    from ..evaluate.plots import plot_det, plot_training_curves

    table = results_table(rows)
    trials = config.evaluation.trials
    header = (f"# Loss comparison\n\nTest trials: `{trials}`. Model: `{config.model.name}`. "
              f"Same seed ({config.seed}), batches and budget for every loss. EER 95% CI by bootstrap "
              f"over trials; minDCF normalised (C_miss = C_fa = 1).\n\n")
    with atomic_open(out / "results.md") as f:
        f.write(header + table + "\n")
    write_json(out / "results.json", {"config": config.to_dict(), "results": rows})
    det = out / "det.png"
    plot_det(curves, det)
    curves_plot = out / "training_curves.png"
    plot_training_curves({row["loss"]: out / row["loss"] / "metrics.jsonl" for row in rows}, curves_plot)
    return CompareReport(str(out), rows, table, str(out / "results.md"), str(out / "results.json"),
                         str(det), str(curves_plot))

