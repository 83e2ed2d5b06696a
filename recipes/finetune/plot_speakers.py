#!/usr/bin/env python
"""Validation EER against the number of speechocean training speakers (``rehearsal.sh``, step 6).

    python recipes/finetune/plot_speakers.py EXP --val data/bundled/val 25 50 101

For the starting model (``EXP/ecapa-aam-v1.safetensors``, plotted at 0 speakers) and the best
checkpoint of each run ``EXP/speakers-N``: EER with its 95% interval on each validation
condition of the bundled recipe (``so-clean``, ``so-degraded``: the 24 held-out speechocean
speakers; ``ls-clean``, ``ls-degraded``: the 31 held-out LibriSpeech speakers), each model
with its own front-end. Writes ``EXP/speakers.md`` (table), ``EXP/speakers.json`` and
``EXP/speakers.png``. Validation data only: the test sets are not read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONDITIONS = ("so-clean", "so-degraded", "ls-clean", "ls-degraded")


def measure(model_path: Path, val: Path) -> dict[str, tuple[float, float, float]]:
    """``{condition: (EER, low, high)}`` (fractions) of one model on the validation lists."""
    from voxmetric import load_model
    from voxmetric.evaluate.pipeline import evaluate_trials

    frontend = load_model(str(model_path)).frontend
    out = {}
    for condition in CONDITIONS:
        metrics = evaluate_trials(frontend, val / f"{condition}.txt", val / "wav", n_bootstrap=1000, progress=False)
        low, high = metrics["cosine"]["eer_ci"]
        out[condition] = (metrics["cosine"]["eer"], low, high)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exp", type=Path, help="the rehearsal.sh output folder")
    parser.add_argument("counts", type=int, nargs="+", help="speechocean training speakers of the runs")
    parser.add_argument("--val", type=Path, default=Path("data/bundled/val"), help="the bundled validation folder")
    args = parser.parse_args(argv)
    from voxmetric.evaluate.plots import plot_scale
    from voxmetric.fileio import atomic_open, write_json

    models = {0: args.exp / "ecapa-aam-v1.safetensors"}
    models.update({n: args.exp / f"speakers-{n}" / "checkpoints" / "best.pt" for n in args.counts})
    missing = [str(p) for p in models.values() if not p.is_file()]
    if missing:
        print(f"error: no model file {missing[0]} (run rehearsal.sh first)", file=sys.stderr)
        return 1
    results = {n: measure(path, args.val) for n, path in models.items()}
    lines = ["| speechocean training speakers | model | " + " | ".join(CONDITIONS) + " |",
             "|---|---|" + "---|" * len(CONDITIONS)]
    for n, path in models.items():
        cells = [f"{100 * e:.2f} ({100 * lo:.2f}-{100 * hi:.2f})" for e, lo, hi in (results[n][c] for c in CONDITIONS)]
        lines.append(f"| {n} | `{path}` | " + " | ".join(cells) + " |")
    with atomic_open(args.exp / "speakers.md") as f:
        f.write("Validation EER % (95% CI) per condition; 0 speakers: the starting model (ecapa-aam v1).\n\n"
                + "\n".join(lines) + "\n")
    write_json(args.exp / "speakers.json", {str(n): {c: list(results[n][c]) for c in CONDITIONS} for n in models})
    # The x axis is logarithmic: the starting model (0 speakers) is in the table, not on the plot.
    points = {c: [(n, *results[n][c]) for n in args.counts] for c in CONDITIONS}
    plot_scale(points, args.exp / "speakers.png", title="ecapa-aam v1 fine-tuned with rehearsal: validation EER",
               xlabel="speechocean training speakers (+ 300 synthetic, 220 LibriSpeech rehearsed)",
               ylabel="validation EER (%)")
    print("\n".join(lines))
    print(f"wrote {args.exp / 'speakers.md'}, {args.exp / 'speakers.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
