#!/usr/bin/env bash
# The paper's loss comparison on real speech: 6 losses x SEEDS seeds (default 3), trained on
# speechocean-train (minus 20 validation speakers) + librispeech-1utt, tested on
# ../shared/data/real/trials.txt and on its degraded copy (scripts/make_degraded_trials.py).
# Not run in CI. Full run: 18 trainings of 4000 batches; plan on a GPU or a long CPU night.
#
#   recipes/compare-real/run.sh                 # the full comparison
#   SMOKE=1 QUIET=1 recipes/compare-real/run.sh # a tiny smoke run (2 losses x 2 seeds, 2 batches each)
#
# Run from the repository root; ../shared/data must exist beside it.
set -euo pipefail
SHARED=${SHARED:-../shared/data}
WORK=${WORK:-work/compare-real}
SEEDS=${SEEDS:-3}
LOSSES=${LOSSES:-ce,center,coco,aam,contrastive,triplet}
VAL_SPEAKERS=${VAL_SPEAKERS:-20}
PY=${PY:-python}
CONFIG=recipes/compare-real/config.yml
EXTRA=()
if [[ "${SMOKE:-0}" == 1 ]]; then
  # 2 losses x 2 seeds, 1 epoch of 2 batches, 16 training speakers (and so a 16-speaker s-norm
  # cohort), 3 validation speakers: every step of the recipe runs, in minutes.
  SEEDS=2; LOSSES=aam,triplet; VAL_SPEAKERS=3
  EXTRA=(--set training.epochs=1 --set training.batches_per_epoch=2 --set data.speakers_per_batch=8
         --set data.num_speakers=16 --set data.num_workers=0 --set evaluation.n_bootstrap=100
         --set evaluation.cohort_utterances_per_speaker=1 --set schedule.warmup_batches=0 --set evaluation.snorm_top_n=8)
  WORK=${WORK}-smoke
fi
[[ -f "$SHARED/real/trials.txt" ]] || { echo "no $SHARED/real/trials.txt: run from the repository root beside ../shared" >&2; exit 1; }

# 1. Training / validation layout (links only). Validation speakers come from speechocean-train.
[[ -f "$WORK/val/trials.txt" ]] || $PY recipes/compare-real/prepare.py "$SHARED" "$WORK" --val-speakers "$VAL_SPEAKERS" --seed 0
# 2. The degraded copy of the test set (deterministic).
[[ -f "$WORK/real-degraded/trials.txt" ]] || $PY scripts/make_degraded_trials.py "$SHARED/real" "$WORK/real-degraded"

# The config's paths point at work/compare-real; a different WORK is passed as overrides.
ABS_WORK=$(cd "$WORK" && pwd); ABS_SHARED=$(cd "$SHARED" && pwd)
PATHS=(--set data.corpus="$ABS_WORK/train" --set validation.trials="$ABS_WORK/val/trials.txt"
       --set validation.root="$ABS_WORK/val")

# 3. Clean test set.
$PY -m voxmetric.cli compare ${QUIET:+-q} "$CONFIG" --losses "$LOSSES" --seeds "$SEEDS" --threads "${THREADS:-2}" \
  --out "$WORK/compare-clean" "${PATHS[@]}" "${EXTRA[@]}" \
  --set evaluation.trials="$ABS_SHARED/real/trials.txt" --set evaluation.root="$ABS_SHARED/real"
# 4. Degraded test set: the same training (same seeds, same batches) tested on the degraded copy.
#    (Retrains: compare has no test-only mode yet; identical seeds give identical networks.)
$PY -m voxmetric.cli compare ${QUIET:+-q} "$CONFIG" --losses "$LOSSES" --seeds "$SEEDS" --threads "${THREADS:-2}" \
  --out "$WORK/compare-degraded" "${PATHS[@]}" "${EXTRA[@]}" \
  --set evaluation.trials="$ABS_WORK/real-degraded/trials.txt" --set evaluation.root="$ABS_WORK/real-degraded"
echo "results: $WORK/compare-clean/results.md and $WORK/compare-degraded/results.md"
