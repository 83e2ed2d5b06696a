#!/usr/bin/env python
"""Turn a bundled model's training run into the shipped weights file.

1. Takes the run's best-validation checkpoint (``EXP/checkpoints/best.pt``).
2. Picks the extraction settings (whole file, or 3 s windows every ``step``) with the
   lower EER on the real-speech validation trials (``data/bundled/ls-val``: held-out
   LibriSpeech speakers, never the test speakers of ``../shared/data/real``).
3. Scores those trials exactly as ``load_model(...).verify`` does (VAD, level
   normalisation), fits the logistic calibration (cosine -> LLR) and takes the EER
   threshold, then writes ``voxmetric/inference/bundled/<name>.safetensors`` (float16) and
   updates the manifest.

    python recipes/bundled/export.py sinctdnn-aam data/bundled/exp/sinctdnn-aam
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from voxmetric.data.trials import read_trials
from voxmetric.evaluate.calibration import fit_calibration, threshold_at
from voxmetric.evaluate.metrics import eer
from voxmetric.inference.export import export_pretrained, update_manifest
from voxmetric.inference.speaker_model import BUNDLED_DIR, load_model

CANDIDATE_SETTINGS = (
    {"window_s": None, "step_s": 0.1, "rms_dbfs": -26.0},
    {"window_s": 3.0, "step_s": 0.1, "rms_dbfs": -26.0},
    {"window_s": 3.0, "step_s": 0.5, "rms_dbfs": -26.0},
)


def validation_scores(weights: Path, trials_path: Path, root: Path) -> tuple[np.ndarray, np.ndarray]:
    model = load_model(weights)
    trials = read_trials(trials_path)
    keys = sorted({k for t in trials for k in (t.enrol, t.test)})
    table = dict(zip(keys, model.embed_batch([root / k for k in keys])))
    scores = np.array([model.cosine(table[t.enrol], table[t.test]) for t in trials])
    return scores, np.array([t.label for t in trials])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=["sinctdnn-aam", "ecapa-aam"])
    parser.add_argument("exp", help="the training run's folder")
    parser.add_argument("--val", default="data/bundled/ls-val", help="folder with trials.txt and wav/")
    parser.add_argument("--checkpoint", help="default: EXP/checkpoints/best.pt (else last.pt)")
    args = parser.parse_args(argv)
    exp, val = Path(args.exp), Path(args.val)
    checkpoint = Path(args.checkpoint) if args.checkpoint else exp / "checkpoints" / "best.pt"
    if not checkpoint.exists():
        checkpoint = exp / "checkpoints" / "last.pt"
    common = {"description": "", "training_info": {}}
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for settings in CANDIDATE_SETTINGS:
            draft = Path(tmp) / "draft.safetensors"
            export_pretrained(checkpoint, draft, calibration=None, threshold=None, embedding_settings=settings,
                              **common)
            scores, labels = validation_scores(draft, val / "trials.txt", val / "wav")
            value = eer(scores, labels)[0]
            print(f"{settings}: validation EER {value * 100:.2f}%")
            if best is None or value < best[0]:
                best = (value, settings, scores, labels)
    value, settings, scores, labels = best
    calibration = fit_calibration(scores, labels)
    threshold = threshold_at(scores, labels)
    config_text = (exp / "config.yml").read_text()
    info = {
        "recipe": f"recipes/bundled/build.sh {args.name}",
        "data": "built-in synthetic corpus (300 speakers, seed 1) + 220 LibriSpeech train-clean-100 speakers "
                "(one utterance each, CC BY 4.0); augmented with generated noise, reverberation, telephone band, "
                "tilt and gain. Not VoxCeleb.",
        "validation": f"{len(labels)} trials of 31 held-out LibriSpeech speakers: EER {value * 100:.2f}%",
        "checkpoint": str(checkpoint),
        "config": config_text,
    }
    description = (f"{args.name}: trained on CPU on synthetic speakers and 220 LibriSpeech speakers "
                   f"(not VoxCeleb); see voxmetric/inference/bundled/{args.name}.md")
    out = BUNDLED_DIR / f"{args.name}.safetensors"
    report = export_pretrained(checkpoint, out, calibration=calibration, threshold=threshold,
                               embedding_settings=settings, description=description, training_info=info)
    update_manifest(BUNDLED_DIR)
    print(f"wrote {out} ({report['bytes'] / 1e6:.1f} MB, float16 cosine vs float32 "
          f"{report['min_cosine_vs_float32']:.7f}); settings {settings}; calibration {calibration}; "
          f"threshold {threshold:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
