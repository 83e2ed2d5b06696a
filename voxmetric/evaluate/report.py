"""Results files: the metrics as JSON and as a Markdown table.

Input is the dict of :func:`voxmetric.evaluate.metrics.evaluate_scores`, or a mapping
``{system name: that dict}`` (e.g. ``{"cosine": ..., "s-norm": ...}``) for one row per
system. Rates in the JSON stay fractions; the table shows percentages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..fileio import atomic_open, write_json
from .metrics import DEFAULT_P_TARGETS


def _systems(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{name: metrics}``; a single result (it has an ``"eer"``) becomes one unnamed row."""
    if "eer" in metrics:
        return {"scores": metrics}
    return dict(metrics)


def _min_dcf(result: Mapping[str, Any], p_target: float) -> float | None:
    """minDCF at ``p_target``; keys may be floats or, after a JSON round trip, strings."""
    table = result.get("min_dcf", {})
    entry = table.get(p_target, table.get(f"{p_target:g}", table.get(str(p_target))))
    if isinstance(entry, Mapping):
        entry = entry.get("min_dcf")
    return entry


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}"


def markdown_table(metrics: Mapping[str, Any], p_targets=DEFAULT_P_TARGETS) -> str:
    """Markdown table: EER % with its CI, normalised minDCF per P_target, trial counts."""
    header = ["system", "EER %", "EER 95% CI %"] + [f"minDCF {p:g}" for p in p_targets]
    header += ["target trials", "non-target trials"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in _systems(metrics).items():
        interval = result.get("eer_ci")
        ci = f"{_pct(interval[0])}-{_pct(interval[1])}" if interval else "-"
        dcfs = [_min_dcf(result, p) for p in p_targets]
        cells = [name, _pct(result["eer"]), ci] + ["-" if d is None else f"{d:.4f}" for d in dcfs]
        cells += [str(result.get("n_target", "-")), str(result.get("n_nontarget", "-"))]
        lines.append("| " + " | ".join(cells) + " |")
    confidence = next(iter(_systems(metrics).values())).get("confidence", 0.95)
    note = (f"\nEER confidence interval: {confidence:.0%} stratified bootstrap over trials. "
            f"minDCF: normalised, C_miss = C_fa = 1.\n")
    return "\n".join(lines) + "\n" + note


def write_results(metrics: Mapping[str, Any], json_path: str | os.PathLike,
                  md_path: str | os.PathLike) -> None:
    """Write ``metrics`` as JSON and as a Markdown table, both atomically.

    Args:
        metrics: one :func:`~voxmetric.evaluate.metrics.evaluate_scores` result, or
            ``{system name: result}``.
        json_path: JSON output (the dict as given, rates as fractions).
        md_path: Markdown output (see :func:`markdown_table`).
    """
    write_json(json_path, metrics)
    with atomic_open(md_path) as f:
        f.write(markdown_table(metrics))
