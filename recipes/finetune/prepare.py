#!/usr/bin/env python
"""Lay out a fine-tuning run on a folder of speaker sub-folders: a speaker-disjoint split,
validation trials (clean and degraded) and augmentation noises.

    python recipes/finetune/prepare.py SPEAKERS OUT [--val-speakers 24 | --val-list FILE] [--seed 0]
                                      [--rehearsal-speakers 300]

``SPEAKERS`` holds one sub-folder of recordings per speaker (your own data, or
``../shared/data/speechocean-train``). Writes into ``OUT`` (symbolic links to your
folders, generated files; no recording is copied):

- ``train/<speaker>``: links to the training speakers' folders;
- ``val/clean/<speaker>``: links to the validation speakers' folders (``--val-list``
  names them, else ``--val-speakers`` are drawn with ``--seed``) and
  ``val/clean/trials.txt``: every same-speaker pair (up to ``--max-trials``) and as many
  different-speaker pairs;
- ``val/degraded/``: each validation file degraded independently
  (``scripts/make_degraded_trials.py``: reverberation, noise, telephone band, tilt, gain;
  noise family seed 2000, shared neither with the training noise (0) nor with the test
  copy of ``real/`` (1000));
- ``val/trials.txt``: the trials in both conditions (``clean/...`` and ``degraded/...``,
  relative to ``val/``): the model kept is the one that holds up in both;
- ``noise/`` and ``rirs/``: generated noises and room impulse responses for training
  augmentation (seed 0, as for the bundled models);
- ``rehearsal/synth/``: the rehearsal corpus the fine-tuning configs train on beside your
  speakers: the built-in synthetic corpus the bundled models learnt from (300 speakers x 16
  utterances, seed 1, as ``recipes/bundled/prepare.py`` makes it; ``--rehearsal-speakers 0``
  skips it, and the configs' ``data.corpus`` must then name your speakers only).

Everything is a function of the inputs and the seeds: running it again gives the same files.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np

from voxmetric.data.degrade import write_noise_folder, write_rir_folder
from voxmetric.data.readers import read_speaker_folders
from voxmetric.data.synth import synthesize
from voxmetric.data.trials import Trial, make_trials, read_trials, write_trials

VAL_NOISE_SEED = 2000
REHEARSAL_SEED = 1  # the bundled models' synthetic corpus (recipes/bundled/prepare.py)
REHEARSAL_UTTERANCES = 16
REPO = Path(__file__).resolve().parent.parent.parent


@functools.cache
def _script(relative: str):
    """A script of this repository (``scripts/``, another recipe) loaded as a module, to reuse its code."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem.replace("-", "_"), REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _link(source: Path, target: Path) -> None:
    """``target`` a link to the folder ``source`` (again: nothing to do; anything else: an error)."""
    _script("recipes/compare-real/prepare.py")._link(source, target)


def read_speaker_list(path: Path, speakers: list[str]) -> list[str]:
    """Speaker ids of ``path`` (one a line, ``#`` comments), each checked against ``speakers``."""
    names = [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [name for name in names if name]
    unknown = sorted(set(names) - set(speakers))
    if unknown:
        raise SystemExit(f"{path}: speakers not in the corpus: {', '.join(unknown[:5])}")
    return sorted(set(names))


def choose_validation(speakers: list[str], count: int | None, listed: Path | None, seed: int) -> list[str]:
    """The validation speakers: those listed, else ``count`` drawn with ``seed``; at least 2,
    and at least 2 left for training."""
    chosen = read_speaker_list(listed, speakers) if listed else None
    if chosen is None:
        if count is None or not 2 <= count <= len(speakers) - 2:
            raise SystemExit(f"--val-speakers must be in [2, {len(speakers) - 2}] for {len(speakers)} speakers")
        picks = np.random.default_rng(seed).choice(len(speakers), count, replace=False)
        chosen = sorted(speakers[i] for i in picks)
    if not 2 <= len(chosen) <= len(speakers) - 2:
        raise SystemExit(f"{len(chosen)} validation speakers of {len(speakers)}: need at least 2 on each side")
    return chosen


def _degrade(clean: Path, degraded: Path) -> None:
    """``scripts/make_degraded_trials.py clean degraded`` with the validation noise family."""
    arguments = [str(clean), str(degraded), "--noise-seed", str(VAL_NOISE_SEED)]
    if _script("scripts/make_degraded_trials.py").main(arguments) != 0:
        raise SystemExit(f"could not degrade {clean}")


def prepare(speakers_dir: Path, out: Path, val_speakers: int | None, val_list: Path | None, seed: int,
            max_trials: int, rehearsal_speakers: int = 300) -> dict[str, int]:
    """Write the layout of the module doc into ``out``; returns counts for the summary line."""
    folders = sorted(p for p in speakers_dir.iterdir() if p.is_dir() and not p.name.startswith("."))  # not caches
    if len(folders) < 4:
        raise SystemExit(f"{speakers_dir}: {len(folders)} speaker sub-folders; fine-tuning needs at least 4")
    names = [p.name for p in folders]
    held_out = set(choose_validation(names, val_speakers, val_list, seed))
    for folder in folders:
        _link(folder, out / ("val/clean" if folder.name in held_out else "train") / folder.name)
    clean = out / "val" / "clean"
    if not (clean / "trials.txt").exists():
        utterances = list(read_speaker_folders(clean, progress=False))  # ids: paths relative to val/clean
        counts: dict[str, int] = {}
        for u in utterances:
            counts[u.speaker] = counts.get(u.speaker, 0) + 1
        n_target = min(max_trials, sum(n * (n - 1) // 2 for n in counts.values()))
        write_trials(clean / "trials.txt", make_trials(utterances, n_target, n_target, seed))
    if not (out / "val" / "degraded" / "trials.txt").exists():
        _degrade(clean, out / "val" / "degraded")
    trials = read_trials(clean / "trials.txt")
    both = [Trial(t.label, f"{condition}/{t.enrol}", f"{condition}/{t.test}")
            for condition in ("clean", "degraded") for t in trials]
    write_trials(out / "val" / "trials.txt", both)
    if not (out / "noise").is_dir():
        write_noise_folder(out / "noise", files=48, seed=0)
    if not (out / "rirs").is_dir():
        write_rir_folder(out / "rirs", files=64, seed=0)
    if rehearsal_speakers and not (out / "rehearsal" / "synth").is_dir():
        synthesize(out / "rehearsal" / "synth", speakers=rehearsal_speakers, utterances=REHEARSAL_UTTERANCES,
                   seed=REHEARSAL_SEED, progress=False)
    return {"train": len(folders) - len(held_out), "val": len(held_out), "trials": len(both)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("speakers", type=Path, help="folder of speaker sub-folders (your recordings)")
    parser.add_argument("out", type=Path, help="folder to lay the run out in (links and generated files)")
    parser.add_argument("--val-speakers", type=int, default=24, help="speakers drawn for validation")
    parser.add_argument("--val-list", type=Path, help="file naming the validation speakers, one a line")
    parser.add_argument("--seed", type=int, default=0, help="seed of the speaker draw and the trials")
    parser.add_argument("--max-trials", type=int, default=5000, help="same-speaker trials at most (per condition)")
    parser.add_argument("--rehearsal-speakers", type=int, default=300,
                        help="speakers of the generated rehearsal corpus (the bundled models' synthetic corpus: "
                             "300; 0: none)")
    args = parser.parse_args(argv)
    if args.rehearsal_speakers < 0:
        parser.error("--rehearsal-speakers must be 0 or more")
    counts = prepare(args.speakers, args.out, args.val_speakers, args.val_list, args.seed, args.max_trials,
                     args.rehearsal_speakers)
    print(f"{args.out}: {counts['train']} training speakers, {counts['val']} validation speakers, "
          f"{counts['trials']} validation trials (clean and degraded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
