"""Scoring speed: cosine and adaptive s-norm on a VoxCeleb-sized synthetic problem.

Random float32 embeddings (D = 512): ``--unique`` distinct recordings, ``--trials``
trials drawn uniformly among them, a cohort of ``--cohort`` speaker means, top
``--top`` cohort scores. Prints the wall-clock seconds of each stage.

    .venv/bin/python benchmarks/score.py                       # 40k unique, 1M trials
    .venv/bin/python benchmarks/score.py --unique 5000 --trials 100000
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from voxmetric.evaluate.scoring import adaptive_snorm_indexed, cohort_statistics, cosine_scores_indexed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unique", type=int, default=40_000, help="distinct embeddings")
    parser.add_argument("--trials", type=int, default=1_000_000)
    parser.add_argument("--cohort", type=int, default=6_000, help="cohort speakers")
    parser.add_argument("--top", type=int, default=400, help="top-N cohort scores")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    embeddings = rng.standard_normal((args.unique, args.dim), dtype=np.float32)
    cohort = rng.standard_normal((args.cohort, args.dim), dtype=np.float32)
    enrol_rows = rng.integers(0, args.unique, args.trials)
    test_rows = rng.integers(0, args.unique, args.trials)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.trials:,} trials over {args.unique:,} embeddings (D={args.dim}), "
          f"cohort {args.cohort:,}, top {args.top}, {cores} CPU cores")

    started = time.perf_counter()
    raw = cosine_scores_indexed(embeddings, enrol_rows, test_rows)
    cosine_s = time.perf_counter() - started
    print(f"cosine:                 {cosine_s:6.2f} s")

    started = time.perf_counter()
    adaptive_snorm_indexed(embeddings, enrol_rows, test_rows, cohort, args.top)
    snorm_s = time.perf_counter() - started
    print(f"s-norm (with cosine):   {snorm_s:6.2f} s")

    started = time.perf_counter()
    cohort_statistics(embeddings, cohort, args.top)
    print(f"  of which cohort stats: {time.perf_counter() - started:5.2f} s")

if __name__ == "__main__":
    main()
