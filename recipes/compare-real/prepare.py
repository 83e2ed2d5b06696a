#!/usr/bin/env python
"""Lay out the real-speech loss comparison: training and validation speakers, validation trials.

    python recipes/compare-real/prepare.py ../shared/data work/compare-real [--val-speakers 20] [--val-utterances 6]

Writes (symbolic links only, no audio copied):

- ``OUT/train/<speaker>``: the speakers of ``speechocean-train`` not held out, and every
  speaker of ``librispeech-1utt`` (one utterance each);
- ``OUT/val/<speaker>``: ``--val-speakers`` speakers of ``speechocean-train`` held out
  for validation (drawn with ``--seed``), and ``OUT/val/trials.txt`` over the first
  ``--val-utterances`` files of each (every same-speaker pair, as many different-speaker
  pairs, VoxCeleb format, paths relative to ``OUT/val``). Validation runs after every
  epoch of every run and embeds every file its trials name: fewer files per speaker
  (not fewer speakers) make it cheaper while keeping the speaker variability.

Run again on the same OUT it keeps the links and rewrites the trials (deterministic);
another ``--val-speakers`` or ``--seed`` needs a fresh OUT.

The test trials (``real/trials.txt`` and its degraded copy) are never touched here:
their speakers are disjoint from both training folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from voxmetric.data.readers import read_speaker_folders
from voxmetric.data.trials import make_trials, write_trials


def _link(source: Path, target: Path) -> None:
    if target.is_symlink() or target.exists():
        if target.resolve() == source.resolve():
            return
        raise SystemExit(f"{target} exists and is not a link to {source}: use a fresh OUT")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source.resolve(), target_is_directory=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shared_data", help="the ../shared/data folder")
    parser.add_argument("out", help="work folder to create")
    parser.add_argument("--val-speakers", type=int, default=20)
    parser.add_argument("--val-utterances", type=int, default=None,
                        help="files per validation speaker in the trials (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data, out = Path(args.shared_data), Path(args.out)
    ocean = sorted(p for p in (data / "speechocean-train").iterdir() if p.is_dir())
    libri = sorted(p for p in (data / "librispeech-1utt").iterdir() if p.is_dir())
    if not 2 <= args.val_speakers < len(ocean):
        raise SystemExit(f"--val-speakers must be in [2, {len(ocean) - 1}]")
    held_out = set(np.random.default_rng(args.seed).choice(len(ocean), args.val_speakers, replace=False).tolist())
    for i, speaker in enumerate(ocean):
        _link(speaker, out / ("val" if i in held_out else "train") / speaker.name)
    for speaker in libri:
        _link(speaker, out / "train" / speaker.name)
    val = read_speaker_folders(out / "val", progress=False)
    if args.val_utterances is not None and args.val_utterances < 2:
        raise SystemExit("--val-utterances must be at least 2 (a same-speaker trial needs two files)")
    per_speaker, utterances = {}, []
    for u in val:  # in reading order (sorted paths); ids are paths relative to OUT/val: the trial keys
        if args.val_utterances is None or per_speaker.get(u.speaker, 0) < args.val_utterances:
            per_speaker[u.speaker] = per_speaker.get(u.speaker, 0) + 1
            utterances.append(u)
    n_target = sum(n * (n - 1) // 2 for n in per_speaker.values())
    trials = make_trials(utterances, n_target, n_target, args.seed)
    write_trials(out / "val" / "trials.txt", trials)
    print(f"{out}: {len(ocean) - args.val_speakers} + {len(libri)} training speakers, {args.val_speakers} "
          f"validation speakers, {len(trials)} validation trials over {len(utterances)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
