#!/usr/bin/env python
"""Prepare the training data of the bundled models (sinctdnn-aam, ecapa-aam).

Everything the bundled models learn from is generated here or taken from
``../shared/data/librispeech-1utt`` (251 LibriSpeech speakers, one utterance
each, CC BY 4.0). The 9 speakers of ``../shared/data/real`` are the test set:
nothing here reads them.

Writes into OUT (default ``data/bundled``, git-ignored):

- ``synth/``: the built-in synthetic corpus, 300 speakers x 16 utterances (seed 1);
- ``librispeech-train/``: a Kaldi data dir of 220 LibriSpeech speakers (training);
- ``ls-val/``: the other 31 speakers' utterances cut into thirds, with a trial
  list (same-speaker trials: thirds of one utterance): real-speech validation
  for model selection and score calibration;
- ``noise/`` and ``rirs/``: generated noises (coloured, hum, babble) and
  synthetic room impulse responses for augmentation.

    python recipes/bundled/prepare.py [--shared ../shared/data] [--out data/bundled]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from voxmetric import audio
from voxmetric.data.corpus import Utterance
from voxmetric.data.degrade import write_noise_folder, write_rir_folder
from voxmetric.data.readers import read_speaker_folders
from voxmetric.data.synth.corpus import synthesize
from voxmetric.data.trials import make_trials, write_trials

VAL_SPEAKERS = 31
MIN_VAL_DURATION_S = 6.0


def split_librispeech(shared: Path, out: Path, seed: int = 0) -> tuple[list[Utterance], list[Utterance]]:
    corpus = read_speaker_folders(shared / "librispeech-1utt", progress=False)
    long_enough = sorted(s for s, d in corpus.speaker_durations_s().items() if d >= MIN_VAL_DURATION_S)
    rng = np.random.default_rng(seed)
    val = set(rng.choice(long_enough, VAL_SPEAKERS, replace=False).tolist())
    train = [u for u in corpus if u.speaker not in val]
    return train, [u for u in corpus if u.speaker in val]


def write_kaldi(utterances: list[Utterance], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wav.scp").write_text("".join(f"{u.uid} {u.path}\n" for u in utterances))
    (folder / "utt2spk").write_text("".join(f"{u.uid} {u.speaker}\n" for u in utterances))
    (folder / "utt2dur").write_text("".join(f"{u.uid} {u.duration_s!r}\n" for u in utterances))


def write_validation(utterances: list[Utterance], folder: Path, seed: int = 0) -> int:
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
    return len(trials)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared/data", help="folder holding librispeech-1utt")
    parser.add_argument("--out", default="data/bundled")
    args = parser.parse_args(argv)
    shared, out = Path(args.shared), Path(args.out)
    if not (shared / "librispeech-1utt").is_dir():
        print(f"error: {shared / 'librispeech-1utt'} not found (pass --shared)", file=sys.stderr)
        return 1
    print(synthesize(out / "synth", speakers=300, utterances=16, seed=1))
    train, val = split_librispeech(shared, out)
    write_kaldi(train, out / "librispeech-train")
    count = write_validation(val, out / "ls-val")
    print(f"LibriSpeech: {len({u.speaker for u in train})} training speakers, "
          f"{len(val)} validation speakers ({count} trials)")
    write_noise_folder(out / "noise", files=48, seed=0)
    write_rir_folder(out / "rirs", files=64, seed=0)
    print(f"noise and RIRs in {out / 'noise'}, {out / 'rirs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
