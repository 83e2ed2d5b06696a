#!/usr/bin/env python
"""Turn a bundled model's training run into the shipped weights file.

1. Takes the run's best-validation checkpoint (``EXP/checkpoints/best.pt``).
2. Picks the extraction settings (whole file, or 3 s windows every ``step``; on a tie the
   fewer windows) with the lowest EER on the validation trials ``data/bundled/val/mixed.txt`` (held-out speechocean
   and LibriSpeech speakers, clean, degraded and crossed; never the test speakers of
   ``../shared/data/real``).
3. Scores those trials exactly as ``load_model(...).verify`` does (VAD, level
   normalisation), fits the logistic calibration (cosine -> LLR) and takes the EER
   threshold on them (so both transfer across clean and degraded channels and the two
   corpora), then writes ``voxmetric/inference/bundled/<name>.safetensors`` (float16) and
   updates the manifest.
4. Prints, per validation condition (``{so,ls}-{clean,degraded}.txt``), the EER, Cllr
   and the miss / false-alarm rates at the shipped threshold.

    python recipes/bundled/export.py sinctdnn-aam /work/bundled-exp/sinctdnn-aam
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from voxmetric.evaluate.calibration import cllr, fit_calibration
from voxmetric.evaluate.operating_point import threshold_at
from voxmetric.evaluate.metrics import eer
from voxmetric.evaluate.pipeline import trial_scores
from voxmetric.inference.export import export_pretrained, update_manifest
from voxmetric.inference.frontend import FrontendSettings
from voxmetric.inference.speaker_model import BUNDLED_DIR, load_model
from voxmetric.training.frontend_select import describe, windows_per_minute

CANDIDATES = ((None, 0.1), (3.0, 1.5), (3.0, 0.5), (3.0, 0.1))
"""(window_s, step_s) tried; window None: the whole file."""
LEVEL_DBFS = -26.0


def candidate_settings() -> list[dict]:
    """The candidates as weights-file settings, cheapest first (windows per minute of audio,
    as training's selection counts them), so that a tie goes to the fewer windows."""
    settings = sorted((FrontendSettings(window_s=w, step_s=s, rms_dbfs=LEVEL_DBFS) for w, s in CANDIDATES),
                      key=windows_per_minute)
    return [{"window_s": x.window_s, "step_s": x.step_s, "rms_dbfs": x.rms_dbfs} for x in settings]


def validation_scores(weights: Path, trials_path: Path, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Scores of a trial list through the model's front-end, as ``verify`` and ``calibrate`` make them."""
    return trial_scores(load_model(weights), trials_path, root, progress=False)


_DRAFTS: dict = {}


def out_draft(checkpoint: Path, settings: dict, calibration, threshold: float) -> Path:
    """A draft weights file with the chosen settings (made once, kept until exit)."""
    if "path" not in _DRAFTS:
        _DRAFTS["dir"] = tempfile.TemporaryDirectory()
        _DRAFTS["path"] = Path(_DRAFTS["dir"].name) / "chosen.safetensors"
        export_pretrained(checkpoint, _DRAFTS["path"], calibration=calibration, threshold=threshold,
                          embedding_settings=settings, description="", training_info={})
    return _DRAFTS["path"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=["sinctdnn-aam", "ecapa-aam"])
    parser.add_argument("exp", help="the training run's folder")
    parser.add_argument("--val", default="data/bundled/val", help="folder with the trial lists and wav/")
    parser.add_argument("--trials", default="mixed.txt", help="trial list in --val for selection and calibration")
    parser.add_argument("--checkpoint", help="default: EXP/checkpoints/best.pt (else last.pt)")
    parser.add_argument("--recipe", help="how the run was made, for the file's metadata "
                                         "(default: 'recipes/bundled/build.sh NAME')")
    args = parser.parse_args(argv)
    exp, val = Path(args.exp), Path(args.val)
    checkpoint = Path(args.checkpoint) if args.checkpoint else exp / "checkpoints" / "best.pt"
    if not checkpoint.exists():
        checkpoint = exp / "checkpoints" / "last.pt"
    common = {"description": "", "training_info": {}}
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        for settings in candidate_settings():
            draft = Path(tmp) / "draft.safetensors"
            export_pretrained(checkpoint, draft, calibration=None, threshold=None, embedding_settings=settings,
                              **common)
            scores, labels = validation_scores(draft, val / args.trials, val / "wav")
            value = eer(scores, labels)[0]
            print(f"{describe(FrontendSettings(**settings))}: validation EER {value * 100:.2f}%")
            if best is None or value < best[0]:
                best = (value, settings, scores, labels)
    value, settings, scores, labels = best
    calibration = fit_calibration(scores, labels)
    threshold = threshold_at(scores, labels)
    config_text = (exp / "config.yml").read_text()
    per_condition = {}
    for path in sorted(val.glob("*-*.txt")):
        cond_scores, cond_labels = validation_scores(out_draft(checkpoint, settings, calibration, threshold),
                                                     path, val / "wav")
        llr = calibration.llr(cond_scores)
        accept = cond_scores >= threshold
        per_condition[path.stem] = {
            "trials": len(cond_labels), "eer_pct": round(100 * eer(cond_scores, cond_labels)[0], 2),
            "cllr": round(cllr(llr, cond_labels), 3),
            "miss_pct": round(100 * float((~accept[cond_labels == 1]).mean()), 2),
            "false_alarm_pct": round(100 * float(accept[cond_labels == 0].mean()), 2),
        }
        print(f"validation {path.stem}: {per_condition[path.stem]}")
    info = {
        "recipe": args.recipe or f"recipes/bundled/build.sh {args.name}",
        "data": "built-in synthetic corpus (300 speakers, seed 1) + 220 LibriSpeech train-clean-100 speakers "
                "(one utterance each, CC BY 4.0) + 101 speechocean762 speakers (12 utterances each, CC BY 4.0); "
                "augmented with generated noise, reverberation, telephone band, codec-like band limits, "
                "tilt and gain. Not VoxCeleb.",
        "validation": f"{len(labels)} trials ({args.trials}) of 24 held-out speechocean762 and 31 held-out "
                      f"LibriSpeech speakers, clean / degraded / crossed: EER {value * 100:.2f}%",
        "validation_conditions": per_condition,
        "checkpoint": str(checkpoint),
        "config": config_text,
    }
    description = (f"{args.name}: trained on CPU on synthetic speakers, 220 LibriSpeech and 101 speechocean762 "
                   f"speakers (not VoxCeleb); see voxmetric/inference/bundled/{args.name}.md")
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
