#!/usr/bin/env bash
# Loss comparison against the number of training speakers (not run in CI).
# Generates a built-in synthetic corpus large enough for 200 training speakers (300 speakers:
# 210 train / 30 val / 60 test), then runs the demo's comparison (voxmetric/configs/demo.yml)
# with 25, 50, 100 and 200 nested training speakers, SEEDS seeds per loss, and plots scale.png
# (mean test EER with its 95% interval over seeds and trials, one line per loss).
#
#   recipes/compare-scale/run.sh                    # full: 6 losses x 3 seeds x 4 sizes = 72 trainings
#   SPEAKERS=25,50 LOSSES=ce,aam SEEDS=2 recipes/compare-scale/run.sh   # reduced
#   CORPUS_SPEAKERS=40 SPEAKERS=10,20 LOSSES=ce,aam SEEDS=2 recipes/compare-scale/run.sh \
#     --set training.epochs=1 --set training.batches_per_epoch=3 --set data.speakers_per_batch=8  # ~1 min
#
# Extra arguments go to `voxmetric compare` (--set overrides, -q). A size below the config's
# data.speakers_per_batch (16) is refused. THREADS (default 1) torch threads per run, JOBS
# (default 2) runs at once, as in `voxmetric demo`: the figures depend on THREADS, not on JOBS.
# Cost: the demo's 560 batches per run (about 75 s with one thread) plus a test on 3,360 trials;
# the full run (72 trainings) took 95 min on 2 cores (partly shared with a CI run).
# The README's table is this recipe's full run of 2026-12-02.
#
# Run again, it continues (compare --resume); OVERWRITE=1 trains everything again.
# Run from the repository root.
set -euo pipefail
WORK=${WORK:-work/compare-scale}
SEEDS=${SEEDS:-3}
LOSSES=${LOSSES:-ce,center,coco,aam,contrastive,triplet}
SPEAKERS=${SPEAKERS:-25,50,100,200}
CORPUS_SPEAKERS=${CORPUS_SPEAKERS:-300}
PY=${PY:-python}
mkdir -p "$WORK"
$PY -m voxmetric.cli synth "$WORK/corpus" --speakers "$CORPUS_SPEAKERS" --utterances 8 --seed 0
$PY - "$WORK" <<'PY'
import sys
from importlib import resources
from pathlib import Path
out = Path(sys.argv[1])
(out / "demo.yml").write_text(resources.files("voxmetric.configs").joinpath("demo.yml").read_text())
PY
if [[ "${OVERWRITE:-0}" == 1 ]]; then AGAIN=--overwrite; else AGAIN=--resume; fi
$PY -m voxmetric.cli compare "$WORK/demo.yml" --losses "$LOSSES" --seeds "$SEEDS" --threads "${THREADS:-1}" \
  --jobs "${JOBS:-2}" --train-speakers "$SPEAKERS" --out "$WORK/compare" "$AGAIN" "$@"
echo "results: $WORK/compare/scale.md, plot: $WORK/compare/scale.png"
