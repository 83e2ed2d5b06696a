#!/usr/bin/env python
"""Prepare the training data of the bundled models (sinctdnn-aam, ecapa-aam).

Everything the bundled models learn from is generated here or taken from
``../shared/data/librispeech-1utt`` (251 LibriSpeech speakers, one utterance
each, CC BY 4.0) and ``../shared/data/speechocean-train`` (125 speechocean762
speakers x 12 utterances, CC BY 4.0). The 9 speakers of ``../shared/data/real``
are the test set: nothing here reads them.

Writes into OUT (default ``data/bundled``, git-ignored):

- ``synth/``: the built-in synthetic corpus, 300 speakers x 16 utterances (seed 1);
- ``librispeech-train/``: a Kaldi data dir of 220 LibriSpeech speakers (training);
- ``ls-val/``: the other 31 speakers' utterances cut into thirds, with a trial
  list (same-speaker trials: thirds of one utterance);
- ``speechocean-train/``: a Kaldi data dir of the 101 speechocean speakers kept
  for training; ``speechocean-val.tsv`` names the other 24 (stratified: children
  under 13 and older speakers, girls/women and boys/men, in the corpus' proportions);
- ``val/``: the validation set for model selection, threshold and calibration:
  ``wav/clean/{so,ls}/...`` (8 utterances of each validation speechocean speaker,
  the LibriSpeech thirds), ``wav/degraded/...`` (the same files, each degraded
  independently by ``voxmetric.data.degrade.degrade``: reverberation, noise,
  telephone band, tilt, gain, with noise seed 2000, shared neither with the
  training noise (seed 0) nor with ``scripts/make_degraded_trials.py`` (1000)),
  per-condition trial lists ``{so,ls}-{clean,degraded}.txt`` (both sides in that
  condition, as in the test) and ``mixed.txt``: all those trials, each put at
  random in clean/clean, degraded/degraded or clean/degraded (channels cross);
- ``noise/`` and ``rirs/``: generated noises (coloured, hum, babble) and
  synthetic room impulse responses for augmentation.

    python recipes/bundled/prepare.py [--shared ../shared/data] [--out data/bundled]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from pathlib import Path

import numpy as np

from voxmetric import audio
from voxmetric.data.corpus import Utterance
from voxmetric.data.degrade import degrade, make_noise, write_noise_folder, write_rir_folder
from voxmetric.data.readers import read_speaker_folders
from voxmetric.data.synth import synthesize
from voxmetric.data.trials import Trial, make_trials, write_trials

VAL_SPEAKERS = 31
MIN_VAL_DURATION_S = 6.0
SO_VAL_SPEAKERS = 24
SO_VAL_UTTERANCES = 8
SO_VAL_TRIALS = 500  # target and non-target each
CHILD_AGE = 13
VAL_NOISE_SEED = 2000


def split_librispeech(shared: Path, out: Path, seed: int = 0) -> tuple[list[Utterance], list[Utterance]]:
    corpus = read_speaker_folders(shared / "librispeech-1utt", progress=False)
    long_enough = sorted(s for s, d in corpus.speaker_durations_s().items() if d >= MIN_VAL_DURATION_S)
    rng = np.random.default_rng(seed)
    val = set(rng.choice(long_enough, VAL_SPEAKERS, replace=False).tolist())
    train = [u for u in corpus if u.speaker not in val]
    return train, [u for u in corpus if u.speaker in val]


def split_speechocean(shared: Path, seed: int = 0) -> tuple[list[Utterance], list[Utterance], list[dict]]:
    """Speaker-disjoint train / validation split, stratified by (child, gender)."""
    folder = shared / "speechocean-train"
    with open(folder / "speakers.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    strata: dict[tuple[bool, str], list[str]] = {}
    for row in rows:
        strata.setdefault((int(row["age"]) < CHILD_AGE, row["gender"]), []).append(row["speaker_id"])
    rng = np.random.default_rng(seed)
    val: set[str] = set()
    # Largest-remainder allocation of SO_VAL_SPEAKERS over the strata, in proportion to their sizes.
    keys = sorted(strata)
    quotas = {k: SO_VAL_SPEAKERS * len(strata[k]) / len(rows) for k in keys}
    counts = {k: int(quotas[k]) for k in keys}
    for k in sorted(keys, key=lambda k: quotas[k] - counts[k], reverse=True)[:SO_VAL_SPEAKERS - sum(counts.values())]:
        counts[k] += 1
    for k in keys:
        val.update(rng.choice(sorted(strata[k]), counts[k], replace=False).tolist())
    corpus = read_speaker_folders(folder, progress=False)
    train = [u for u in corpus if u.speaker not in val]
    held = [u for u in corpus if u.speaker in val]
    return train, held, [r for r in rows if r["speaker_id"] in val]


def file_seed(seed: int, relative_path: str) -> list[int]:
    digest = hashlib.sha256(relative_path.encode()).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def write_validation_set(so_val: list[Utterance], ls_pieces: list[Utterance], out: Path, seed: int = 0) -> dict:
    """Clean and degraded copies of the validation files and the trial lists (see the module doc)."""
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[Utterance]] = {}
    for u in so_val:
        by_speaker.setdefault(u.speaker, []).append(u)
    so_files = []
    for speaker in sorted(by_speaker):
        utts = sorted(by_speaker[speaker], key=lambda u: u.uid)
        for u in sorted(rng.choice(len(utts), SO_VAL_UTTERANCES, replace=False).tolist()):
            so_files.append(utts[u])
    bank = [make_noise(i, 10.0, VAL_NOISE_SEED)[1] for i in range(12)]
    groups = {"so": [], "ls": []}
    for corpus, files in (("so", so_files), ("ls", ls_pieces)):
        for u in files:
            key = f"{corpus}/{u.speaker}/{Path(u.path).name}"
            clean = audio.read(u.path)
            audio.write(out / "wav" / "clean" / key, clean)
            degraded, _ = degrade(clean, np.random.default_rng(file_seed(seed, key)), bank)
            audio.write(out / "wav" / "degraded" / key, degraded)
            groups[corpus].append(Utterance(key, str(out / "wav" / "clean" / key), u.speaker, u.duration_s))
    lists = {}
    n = {"so": SO_VAL_TRIALS, "ls": 3 * len(ls_pieces) // 3}
    mixed = []
    for corpus, utts in groups.items():
        trials = make_trials(utts, n_target=n[corpus], n_nontarget=n[corpus], seed=seed)
        for condition in ("clean", "degraded"):
            lists[f"{corpus}-{condition}"] = [Trial(t.label, f"{condition}/{t.enrol}", f"{condition}/{t.test}")
                                              for t in trials]
        for t in trials:
            enrol, test = [("clean", "clean"), ("degraded", "degraded"), ("clean", "degraded"),
                           ("degraded", "clean")][rng.choice(4, p=[1 / 3, 1 / 3, 1 / 6, 1 / 6])]
            mixed.append(Trial(t.label, f"{enrol}/{t.enrol}", f"{test}/{t.test}"))
    lists["mixed"] = [mixed[i] for i in rng.permutation(len(mixed))]
    for name, trials in lists.items():
        write_trials(out / f"{name}.txt", trials)
    return {name: len(trials) for name, trials in lists.items()}


def write_kaldi(utterances: list[Utterance], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wav.scp").write_text("".join(f"{u.uid} {u.path}\n" for u in utterances))
    (folder / "utt2spk").write_text("".join(f"{u.uid} {u.speaker}\n" for u in utterances))
    (folder / "utt2dur").write_text("".join(f"{u.uid} {u.duration_s!r}\n" for u in utterances))


def write_validation(utterances: list[Utterance], folder: Path, seed: int = 0) -> tuple[int, list[Utterance]]:
    """Thirds of each held-out utterance as files, and a balanced trial list over them."""
    pieces = []
    for u in utterances:
        waveform = audio.read(u.path)
        third = len(waveform) // 3
        for k in range(3):
            uid = f"{u.speaker}/{k}.flac"
            audio.write(folder / "wav" / uid, waveform[k * third:(k + 1) * third])
            pieces.append(Utterance(uid, str(folder / "wav" / uid), u.speaker, third / audio.SAMPLE_RATE_HZ))
    trials = make_trials(pieces, n_target=3 * len(utterances), n_nontarget=3 * len(utterances), seed=seed)
    write_trials(folder / "trials.txt", trials)
    return len(trials), pieces


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared/data",
                        help="folder holding librispeech-1utt and speechocean-train")
    parser.add_argument("--out", default="data/bundled")
    args = parser.parse_args(argv)
    shared, out = Path(args.shared), Path(args.out)
    for name in ("librispeech-1utt", "speechocean-train"):
        if not (shared / name).is_dir():
            print(f"error: {shared / name} not found (pass --shared)", file=sys.stderr)
            return 1
    if not (out / "synth").is_dir():
        print(synthesize(out / "synth", speakers=300, utterances=16, seed=1))
    train, val = split_librispeech(shared, out)
    write_kaldi(train, out / "librispeech-train")
    count, pieces = write_validation(val, out / "ls-val")
    print(f"LibriSpeech: {len({u.speaker for u in train})} training speakers, "
          f"{len(val)} validation speakers ({count} trials)")
    so_train, so_val, so_rows = split_speechocean(shared)
    write_kaldi(so_train, out / "speechocean-train")
    (out / "speechocean-val.tsv").write_text(
        "speaker_id\tage\tgender\n" + "".join(f"{r['speaker_id']}\t{r['age']}\t{r['gender']}\n" for r in so_rows))
    children = sum(int(r["age"]) < CHILD_AGE for r in so_rows)
    print(f"speechocean: {len({u.speaker for u in so_train})} training speakers, {len(so_rows)} validation "
          f"speakers ({children} under {CHILD_AGE})")
    counts = write_validation_set(so_val, pieces, out / "val")
    print(f"validation trials in {out / 'val'}: {counts}")
    write_noise_folder(out / "noise", files=48, seed=0)
    write_rir_folder(out / "rirs", files=64, seed=0)
    print(f"noise and RIRs in {out / 'noise'}, {out / 'rirs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
