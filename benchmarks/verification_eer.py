#!/usr/bin/env python
"""EER and minDCF of speaker-verification systems on trial lists: the model-card figures.

Systems (``--systems``, comma-separated):

- ``mfcc``: mean MFCC vector + cosine (``voxmetric.evaluate.baseline``), the naive reference;
- ``resemblyzer``: Resemblyzer's pretrained GE2E encoder (PyPI ``resemblyzer``; not a
  voxmetric dependency: install it beside voxmetric, with ``setuptools<81`` for its
  ``webrtcvad``, to get this row; skipped with a note otherwise);
- any bundled voxmetric model name (``sinctdnn-aam``, ``ecapa-aam``) or model file.

Trial sets (``--sets``): ``real`` (../shared/data/real/trials.txt), ``degraded`` (the copy
made by scripts/make_degraded_trials.py, generated into data/real-degraded when absent),
``synth`` (the test trials of the default built-in corpus, generated into data/synth-default
when absent), or ``NAME=TRIALS_FILE`` (paths relative to the file's folder).

    python benchmarks/verification_eer.py --systems mfcc,resemblyzer,sinctdnn-aam,ecapa-aam

prints a Markdown table (EER %, 95% CI, minDCF 0.01 / 0.05) per trial set and system; for a
voxmetric model with a shipped calibration and threshold also Cllr (bits) of its LLRs and the
miss / false-alarm rates at its threshold (the model card's operating-point figures).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def trial_sets(names: list[str]) -> dict[str, Path]:
    sets = {}
    for name in names:
        if "=" in name:
            label, path = name.split("=", 1)
            sets[label] = Path(path)
        elif name == "real":
            sets[name] = SHARED / "real" / "trials.txt"
        elif name == "degraded":
            out = REPO / "data" / "real-degraded"
            if not (out / "trials.txt").exists():
                subprocess.run([sys.executable, str(REPO / "scripts" / "make_degraded_trials.py"),
                                str(SHARED / "real"), str(out)], check=True)
            sets[name] = out / "trials.txt"
        elif name == "synth":
            from voxmetric.data.synth.corpus import synthesize

            sets[name] = Path(synthesize(REPO / "data" / "synth-default", progress=False).out_dir) / "test_trials.txt"
        else:
            raise SystemExit(f"unknown trial set '{name}' (real, degraded, synth or NAME=FILE)")
    return sets


def embedder(system: str):
    """A function path -> embedding, or None when the system is not available here."""
    from voxmetric import audio

    if system == "mfcc":
        from voxmetric.evaluate.baseline import mean_mfcc_embedding

        return lambda path: mean_mfcc_embedding(audio.read(path))
    if system == "resemblyzer":
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as error:
            print(f"note: resemblyzer row skipped ({error})", file=sys.stderr)
            return None
        encoder = VoiceEncoder("cpu", verbose=False)
        return lambda path: encoder.embed_utterance(preprocess_wav(path))
    from voxmetric.inference.speaker_model import load_model

    model = load_model(system)
    def embed(path):
        return model.embed(path)

    embed.calibration, embed.threshold = model.calibration, model.threshold
    return embed


def evaluate(system: str, embed, trials_path: Path) -> dict:
    from voxmetric.data.trials import read_trials
    from voxmetric.evaluate.embeddings import EmbeddingTable
    from voxmetric.evaluate.metrics import evaluate_scores
    from voxmetric.evaluate.pipeline import trial_keys, trial_root
    from voxmetric.evaluate.scoring import score_trials

    trials = read_trials(trials_path)
    keys = trial_keys(trials)
    root = trial_root(trials_path, None, keys[0])
    started = time.perf_counter()
    matrix = np.stack([np.asarray(embed(str(root / key)), dtype=np.float32) for key in keys])
    seconds = time.perf_counter() - started
    scores = score_trials(trials, EmbeddingTable(keys, matrix, system))
    labels = np.array([t.label for t in trials])
    result = {**evaluate_scores(scores, labels, n_bootstrap=1000, seed=0), "embed_s": seconds}
    calibration, threshold = getattr(embed, "calibration", None), getattr(embed, "threshold", None)
    if calibration is not None:
        from voxmetric.evaluate.calibration import cllr

        result["cllr"] = cllr(calibration.llr(scores), labels)
    if threshold is not None:
        accepted = scores >= threshold
        result["miss"] = float((~accepted[labels == 1]).mean())
        result["false_alarm"] = float(accepted[labels == 0].mean())
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default="mfcc,resemblyzer,sinctdnn-aam,ecapa-aam")
    parser.add_argument("--sets", default="real,degraded,synth")
    args = parser.parse_args(argv)
    sets = trial_sets(args.sets.split(","))
    print("| trials | system | EER % | 95% CI | minDCF 0.01 | minDCF 0.05 | Cllr | miss % | FA % | embed time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for system in args.systems.split(","):
        embed = embedder(system)
        if embed is None:
            continue
        for name, path in sets.items():
            m = evaluate(system, embed, path)
            low, high = m["eer_ci"]
            operating = " | ".join(
                "-" if key not in m else f"{m[key]:.3f}" if key == "cllr" else f"{m[key] * 100:.2f}"
                for key in ("cllr", "miss", "false_alarm"))
            print(f"| {name} | {system} | {m['eer'] * 100:.2f} | {low * 100:.2f}-{high * 100:.2f} | "
                  f"{m['min_dcf'][0.01]['min_dcf']:.3f} | {m['min_dcf'][0.05]['min_dcf']:.3f} | {operating} | "
                  f"{m['embed_s']:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
