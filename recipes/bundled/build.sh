#!/usr/bin/env bash
# Reproduce a bundled model from scratch: bash recipes/bundled/build.sh sinctdnn-aam|ecapa-aam
# Prepares the data (once), trains on CPU (~25 min budget), exports weights + calibration.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: build.sh sinctdnn-aam|ecapa-aam}
config=configs/bundled/${name/-/_}.yml
[ -f "$config" ] || { echo "no config $config" >&2; exit 1; }
PY=${PYTHON:-.venv/bin/python}
[ -d data/bundled/ls-val ] || "$PY" recipes/bundled/prepare.py
"$PY" -m voxmetric.cli train "$config" --out "data/bundled/exp/$name"
"$PY" recipes/bundled/export.py "$name" "data/bundled/exp/$name"
