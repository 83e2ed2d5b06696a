"""Time the synthetic corpus generator and measure how hard its test trials are.

    .venv/bin/python benchmarks/synth.py --speakers 200 --utterances 20 --workers 2

Prints the audio made, wall time, real-time factor (audio seconds per wall
second, all workers together), the machine's load, and the EER of the
mean-MFCC + cosine baseline on the test (and validation) trials.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from voxmetric import audio
from voxmetric.data.synth.corpus import synthesize
from voxmetric.data.trials import read_trials
from voxmetric.evaluate.baseline import mean_mfcc_embedding


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER by sorting: the threshold where miss and false-alarm rates cross."""
    order = np.argsort(-scores, kind="stable")
    labels = labels[order]
    false_alarm = np.cumsum(1 - labels) / max(1, (1 - labels).sum())
    miss = 1.0 - np.cumsum(labels) / max(1, labels.sum())
    i = np.argmin(np.abs(miss - false_alarm))
    return float((miss[i] + false_alarm[i]) / 2)


def baseline_eer(wav_dir: Path, trials_path: str) -> tuple[float, float]:
    """(EER, mean target score - mean non-target score) of mean-MFCC cosine scoring."""
    trials = read_trials(trials_path)
    keys = sorted({k for t in trials for k in (t.enrol, t.test)})
    embeddings = {k: mean_mfcc_embedding(audio.read(wav_dir / k)) for k in keys}
    unit = {k: e / np.linalg.norm(e) for k, e in embeddings.items()}
    scores = np.array([unit[t.enrol] @ unit[t.test] for t in trials])
    labels = np.array([t.label for t in trials])
    return equal_error_rate(scores, labels), float(scores[labels == 1].mean() - scores[labels == 0].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speakers", type=int, default=200)
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--out", help="corpus directory (default: a temporary one, removed after)")
    args = parser.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="voxmetric-synth-"))
    load_before = os.getloadavg()
    try:
        start = time.perf_counter()
        summary = synthesize(out, args.speakers, args.utterances, args.seed, workers=args.workers)
        wall_s = time.perf_counter() - start
        print(summary)
        print(f"audio {summary.total_duration_s:.0f} s, wall {wall_s:.1f} s, "
              f"real-time factor {summary.total_duration_s / wall_s:.0f}x, "
              f"workers {args.workers or os.cpu_count()}, cores {os.cpu_count()}, "
              f"load average before {load_before[0]:.2f} after {os.getloadavg()[0]:.2f}")
        for split, path in summary.trial_files.items():
            eer, gap = baseline_eer(out / "wav", path)
            print(f"baseline mean-MFCC cosine, {split} trials: EER {100 * eer:.1f} %, "
                  f"mean target - non-target score {gap:.3f}")
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
