#!/usr/bin/env python
"""Make a degraded copy of a trial list's recordings, deterministically.

Each file is degraded independently (reverberation, noise at 5-20 dB SNR,
telephone band through 8 kHz, spectral tilt, gain: see
``voxmetric.data.degrade.degrade``), so the two sides of a same-speaker trial
cross channels. The noises come from a seeded family (seed 1000 by default)
that the bundled models' training noise (seed 0) does not share.

    python scripts/make_degraded_trials.py ../shared/data/real data/real-degraded

writes OUT/<same relative paths>.flac, OUT/trials.txt (the same trials) and
OUT/degradations.tsv (what was done to each file).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

from voxmetric import audio
from voxmetric.data.degrade import degrade, make_noise
from voxmetric.data.trials import read_trials
from voxmetric.errors import VoxmetricError


def file_seed(seed: int, relative_path: str) -> list[int]:
    """Per-file generator seed: independent of the order files are processed in."""
    digest = hashlib.sha256(relative_path.encode()).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="folder holding trials.txt and the audio it names")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-seed", type=int, default=1000)
    args = parser.parse_args(argv)
    source, out = Path(args.source), Path(args.out)
    try:
        trials = read_trials(source / "trials.txt")
    except VoxmetricError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    keys = sorted({k for t in trials for k in (t.enrol, t.test)})
    bank = [make_noise(i, 10.0, args.noise_seed)[1] for i in range(12)]
    rows = []
    for key in keys:
        clean = audio.read(source / key)
        degraded, what = degrade(clean, np.random.default_rng(file_seed(args.seed, key)), bank)
        audio.write(out / key, degraded)
        rows.append(f"{key}\t{what.describe()}")
    shutil.copyfile(source / "trials.txt", out / "trials.txt")
    (out / "degradations.tsv").write_text("path\tdegradation\n" + "\n".join(rows) + "\n")
    print(f"wrote {len(keys)} degraded files and {len(trials)} trials to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
