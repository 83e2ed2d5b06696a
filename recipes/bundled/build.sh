#!/usr/bin/env bash
# Reproduce a bundled model: bash recipes/bundled/build.sh sinctdnn-aam|ecapa-aam
# (see recipes/bundled/README.md for the stages, the CPU budget and how to continue a run).
#
#   stage 1  prepare.py: synthetic corpus, LibriSpeech and speechocean762 splits (speaker-
#            disjoint validation speakers), mixed clean/degraded validation trials, noise, RIRs
#   stage 2  warm start: ecapa-aam starts from the previous bundled ecapa-aam (init_from in its
#            config); sinctdnn-aam from the previous bundled sinctdnn-aam converted to pyannote's
#            sinc kernels (convert_sinc_init.py)
#   stage 3  train: up to training.max_time_s (9000 s = 150 min of training, validation not
#            counted) with 1 thread; a run that stopped (time budget, SIGTERM) continues exactly
#            from EXP/checkpoints/last.pt with --resume: this script resumes when it finds one
#   stage 4  export.py: best-validation checkpoint -> voxmetric/inference/bundled/NAME.safetensors with
#            calibration and threshold fitted on data/bundled/val/mixed.txt
#   stage 5  evaluate: benchmarks/verification_eer.py on ../shared/data/real, its degraded copy and
#            the speechocean validation speakers (reporting only: nothing is selected on real)
#
# Environment: PYTHON (default .venv/bin/python), EXP (default data/bundled/exp/NAME),
# STAGES (default "1 2 3 4 5"), extra train options in TRAIN_ARGS (e.g. "--set training.epochs=12").
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: build.sh sinctdnn-aam|ecapa-aam}
config=configs/bundled/${name/-/_}.yml
[ -f "$config" ] || { echo "no config $config" >&2; exit 1; }
PY=${PYTHON:-.venv/bin/python}
exp=${EXP:-data/bundled/exp/$name}
stages=${STAGES:-1 2 3 4 5}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
has() { [[ " $stages " == *" $1 "* ]]; }

if has 1 && [ ! -f data/bundled/val/mixed.txt ]; then
  "$PY" recipes/bundled/prepare.py --shared ../shared/data --out data/bundled
fi
# The first bundled weights, as committed in $INIT_COMMIT (before the retrained ones replaced them).
INIT_COMMIT=254684d
if has 2 && [ ! -f "data/bundled/init/$name-v1.safetensors" ]; then
  mkdir -p data/bundled/init
  git show "$INIT_COMMIT:voxmetric/inference/bundled/$name.safetensors" > "data/bundled/init/$name-v1.safetensors"
fi
if has 2 && [ "$name" = sinctdnn-aam ] && [ ! -f data/bundled/init/sinctdnn-aam-pyannote.safetensors ]; then
  "$PY" recipes/bundled/convert_sinc_init.py data/bundled/init/sinctdnn-aam-v1.safetensors \
    data/bundled/init/sinctdnn-aam-pyannote.safetensors
fi
if has 3; then
  resume=()
  [ -f "$exp/checkpoints/last.pt" ] && resume=(--resume)
  # shellcheck disable=SC2086
  "$PY" -m voxmetric.cli train "$config" --out "$exp" "${resume[@]}" ${TRAIN_ARGS:-}
fi
if has 4; then
  "$PY" recipes/bundled/export.py "$name" "$exp"
fi
if has 5; then
  "$PY" benchmarks/verification_eer.py --systems "mfcc,$name" \
    --sets "real,degraded,so-val-clean=data/bundled/val/so-clean.txt,so-val-degraded=data/bundled/val/so-degraded.txt"
fi
