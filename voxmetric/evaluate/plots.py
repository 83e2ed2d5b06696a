"""Figures: DET curves, score histograms, training curves (PNG, written atomically).

Figures are drawn with matplotlib's object API on an Agg canvas created inside each
function: no ``pyplot``, no global backend switch, so importing voxmetric never changes
the plotting setup of a notebook or GUI session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np

from ..errors import VoxmetricError
from ..fileio import atomic_path
from .metrics import det_curve, eer

DET_TICKS_PCT = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)
"""Tick marks of the DET axes, in percent."""

DET_LIMITS_PCT = (0.05, 50.0)
"""Visible range of both DET axes, in percent."""


def _figure(width_in: float = 5.5, height_in: float = 5.0):
    """A matplotlib Figure bound to an Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike, dpi: int = 150) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=os.path.splitext(os.fspath(path))[1][1:] or "png")


def _probit(rates: np.ndarray) -> np.ndarray:
    """Normal deviate of rates (fractions), clipped to stay finite."""
    from scipy.stats import norm

    return norm.ppf(np.clip(rates, 1e-6, 1 - 1e-6))


def plot_det(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike,
             title: str = "DET curve") -> None:
    """Detection error trade-off curves of one or more systems, on normal-deviate axes.

    Both axes are scaled by the inverse normal CDF (probit), so Gaussian score
    distributions give straight lines (Martin et al. 1997); ticks are in percent.
    Each system's EER point (where the curve crosses the diagonal) is marked and
    given in the legend.

    Args:
        curves: ``{system name: (scores, labels)}``, each a pair of ``(trials,)`` arrays.
        path: output image (``.png``, or any format matplotlib writes).
        title: figure title.
    """
    if not curves:
        raise VoxmetricError(f"{path}: no DET curve to plot")
    figure = _figure()
    axes = figure.add_subplot()
    for name, (scores, labels) in curves.items():
        far, frr, _ = det_curve(scores, labels)
        value, _ = eer(scores, labels)
        (line,) = axes.plot(_probit(far), _probit(frr), linewidth=1.5, label=f"{name} (EER {value * 100:.2f}%)")
        axes.plot(_probit(value), _probit(value), "o", color=line.get_color(), markersize=5)
    ticks = _probit(np.array(DET_TICKS_PCT) / 100)
    limits = _probit(np.array(DET_LIMITS_PCT) / 100)
    axes.plot(limits, limits, ":", color="grey", linewidth=0.8)
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_ticks(ticks, labels=[f"{t:g}" for t in DET_TICKS_PCT])
    axes.set_xlim(*limits)
    axes.set_ylim(*limits)
    axes.set_xlabel("False acceptance rate (%)")
    axes.set_ylabel("False rejection rate (%)")
    axes.set_title(title)
    axes.grid(True, linewidth=0.4, alpha=0.6)
    axes.legend(loc="upper right", fontsize="small")
    _save(figure, path)


def plot_score_histogram(scores: np.ndarray, labels: np.ndarray, path: str | os.PathLike,
                         bins: int = 100, title: str = "Score distributions") -> None:
    """Density histograms of target and non-target scores, with the EER threshold.

    Args:
        scores: ``(trials,)`` scores.
        labels: ``(trials,)`` 1 for target trials, 0 for non-target trials.
        path: output image.
        bins: histogram bins over the whole score range.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    value, threshold = eer(scores, labels)  # also validates the inputs
    edges = np.histogram_bin_edges(scores, bins=bins)
    figure = _figure(6.0, 4.0)
    axes = figure.add_subplot()
    axes.hist(scores[~labels], bins=edges, density=True, alpha=0.55, label=f"non-target ({(~labels).sum()})")
    axes.hist(scores[labels], bins=edges, density=True, alpha=0.55, label=f"target ({labels.sum()})")
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1,
                 label=f"EER threshold {threshold:.3f} (EER {value * 100:.2f}%)")
    axes.set_xlabel("score")
    axes.set_ylabel("density")
    axes.set_title(title)
    axes.legend(fontsize="small")
    _save(figure, path)


def _read_log(path: str | os.PathLike) -> list[dict]:
    """Records of a ``metrics.jsonl`` training log (one JSON object a line)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VoxmetricError(f"{path}: no such training log")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise VoxmetricError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
    return records


def plot_training_curves(logs: Mapping[str, str | os.PathLike], path: str | os.PathLike) -> None:
    """Training loss against batches and validation EER against epochs, one line per run.

    Args:
        logs: ``{run name: metrics.jsonl}`` as written by :func:`voxmetric.training.trainer.train`
            (step records with ``batch`` and ``loss``; epoch records with ``epoch`` and
            ``val_eer`` in percent). Runs named ``"group/…"`` (``"aam/seed 0"``) share the
            colour and legend entry of their group, so seeds of one loss read as one system.
        path: output image.

    A run trained without validation trials has no validation EER: when no run has one,
    the right panel says so instead of staying empty.
    """
    from matplotlib import rcParams

    figure = _figure(11.0, 4.5)
    loss_axes, eer_axes = figure.subplots(1, 2)
    palette = rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    colours: dict[str, str] = {}
    any_eval = False
    for name, log in logs.items():
        records = _read_log(log)
        group = str(name).split("/")[0]
        first = group not in colours
        colour = colours.setdefault(group, palette[len(colours) % len(palette)])
        label = group if first else None
        steps = [(r["batch"], r["loss"]) for r in records if "loss" in r and "batch" in r]
        evals = [(r["epoch"], r["val_eer"]) for r in records if r.get("val_eer") is not None and "epoch" in r]
        if steps:
            loss_axes.plot(*zip(*steps), linewidth=0.8, color=colour, alpha=0.8, label=label)
        if evals:
            any_eval = True
            eer_axes.plot(*zip(*evals), marker="o", markersize=3, linewidth=1, color=colour, alpha=0.8, label=label)
    loss_axes.set(xlabel="batch", ylabel="training loss", title="Training loss")
    eer_axes.set(xlabel="epoch", ylabel="validation EER (%)", title="Validation EER per epoch")
    if not any_eval:
        eer_axes.text(0.5, 0.5, "no validation EER:\nvalidation.trials is not set", ha="center", va="center",
                      transform=eer_axes.transAxes, color="grey")
    for axes in (loss_axes, eer_axes):
        axes.grid(True, linewidth=0.4, alpha=0.6)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    _save(figure, path)


def plot_scale(points: Mapping[str, list], path: str | os.PathLike,
               title: str = "Test EER against training speakers", xlabel: str = "training speakers",
               ylabel: str = "test EER (%)") -> None:
    """Mean EER (with its interval) against the number of training speakers, one line per system.

    Args:
        points: ``{system: [(training speakers, mean EER, low, high), ...]}`` with EER and
            bounds as fractions (bounds may be None: no interval drawn).
        path: output image.
    """
    if not points or not any(points.values()):
        raise VoxmetricError(f"{path}: no point to plot")
    figure = _figure(6.0, 4.5)
    axes = figure.add_subplot()
    for name, rows in points.items():
        rows = sorted(rows)
        x = np.array([r[0] for r in rows], dtype=float)
        y = np.array([r[1] for r in rows]) * 100
        if all(r[2] is not None for r in rows):
            low = y - np.array([r[2] for r in rows]) * 100
            high = np.array([r[3] for r in rows]) * 100 - y
            axes.errorbar(x, y, yerr=[low, high], marker="o", markersize=4, capsize=3, linewidth=1.2, label=name)
        else:
            axes.plot(x, y, marker="o", markersize=4, linewidth=1.2, label=name)
    axes.set_xscale("log")
    ticks = sorted({r[0] for rows in points.values() for r in rows})
    axes.set_xticks(ticks, labels=[str(t) for t in ticks])
    axes.set_xticks([], minor=True)  # the log axis's minor ticks would be labelled 3x10^1 etc.
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(True, linewidth=0.4, alpha=0.6)
    axes.legend(fontsize="small")
    _save(figure, path)
