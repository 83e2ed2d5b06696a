#!/usr/bin/env bash
# The paper's loss comparison on real speech: 6 losses x SEEDS seeds (default 3), trained on
# speechocean-train (minus 20 validation speakers) + librispeech-1utt, tested on
# ../shared/data/real/trials.txt, then the SAME networks tested on its degraded copy
# (scripts/make_degraded_trials.py) with `compare --reuse-runs`: every network is trained once.
# Not run in CI. README.md beside this file says what each step costs.
#
#   recipes/compare-real/run.sh                  # config.yml, CPU size: 18 trainings of 200 batches,
#                                                # ~25 min on 2 quiet cores, ~40 min beside 2 training jobs
#   CONFIG=full recipes/compare-real/run.sh      # config-full.yml: 18 trainings of 4,000 batches (GPU)
#   SMOKE=1 QUIET=1 recipes/compare-real/run.sh  # smoke: 2 losses x 2 seeds x 2 batches, 16 speakers
#
# Run from the repository root; ../shared/data must exist beside it. Environment: CONFIG (cpu,
# full, or a config file), SEEDS, LOSSES, JOBS (runs at once, default 1; 2 on 2 idle cores), THREADS (torch threads, default 1: on a 2-core machine
# shared with other jobs, 2 threads ran 4x slower, each waiting for the other to be scheduled),
# VAL_SPEAKERS (default 20), VAL_UTTERANCES (files per validation speaker, default 6), PY (the
# Python), SHARED (the data folder), WORK (the work folder, default work/compare-real).
# Results depend on THREADS (float sums split by thread): compare runs made with the same value.
# Run again, it continues (compare --resume: finished runs train nothing, an interrupted one
# resumes from its checkpoint); OVERWRITE=1 trains everything again.
set -euo pipefail
SHARED=${SHARED:-../shared/data}
WORK=${WORK:-work/compare-real}
SEEDS=${SEEDS:-3}
LOSSES=${LOSSES:-ce,center,coco,aam,contrastive,triplet}
VAL_SPEAKERS=${VAL_SPEAKERS:-20}
VAL_UTTERANCES=${VAL_UTTERANCES:-6}
PY=${PY:-python}
case "${CONFIG:-cpu}" in
  cpu) CONFIG=recipes/compare-real/config.yml; NAME=cpu ;;
  full) CONFIG=recipes/compare-real/config-full.yml; NAME=full ;;
  *) NAME=$(basename "$CONFIG" .yml) ;;
esac
[[ -f "$CONFIG" ]] || { echo "CONFIG: no such config file $CONFIG (cpu, full, or a file)" >&2; exit 1; }
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

# 1. Training / validation layout (links only; run again it keeps them and rewrites the trials).
#    Validation speakers come from speechocean-train: never from the test set.
$PY recipes/compare-real/prepare.py "$SHARED" "$WORK" --val-speakers "$VAL_SPEAKERS" --val-utterances "$VAL_UTTERANCES" --seed 0
# 2. The degraded copy of the test set (deterministic).
[[ -f "$WORK/real-degraded/trials.txt" ]] || $PY scripts/make_degraded_trials.py "$SHARED/real" "$WORK/real-degraded"

# The config's paths point at work/compare-real; a different WORK is passed as overrides.
ABS_WORK=$(cd "$WORK" && pwd); ABS_SHARED=$(cd "$SHARED" && pwd)
PATHS=(--set data.corpus="$ABS_WORK/train" --set validation.trials="$ABS_WORK/val/trials.txt"
       --set validation.root="$ABS_WORK/val")
OUT=$WORK/$NAME
if [[ "${OVERWRITE:-0}" == 1 ]]; then AGAIN=--overwrite; else AGAIN=--resume; fi

# 3. Train every loss SEEDS times; test each best-validation checkpoint on the clean test set.
$PY -m voxmetric.cli compare ${QUIET:+-q} "$CONFIG" --losses "$LOSSES" --seeds "$SEEDS" --threads "${THREADS:-1}" \
  --jobs "${JOBS:-1}" --out "$OUT/compare-clean" "$AGAIN" "${PATHS[@]}" "${EXTRA[@]}" \
  --set evaluation.trials="$ABS_SHARED/real/trials.txt" --set evaluation.root="$ABS_SHARED/real"
# 4. Degraded test set: no training. --reuse-runs takes step 3's networks (refused unless their
#    training config equals this one; losses, seeds and threads are step 3's), tests the same
#    checkpoints on the degraded copy and reuses step 3's s-norm cohorts; its earlier results
#    (test only) are replaced.
$PY -m voxmetric.cli compare ${QUIET:+-q} "$CONFIG" --reuse-runs "$OUT/compare-clean" \
  --out "$OUT/compare-degraded" --overwrite "${PATHS[@]}" "${EXTRA[@]}" \
  --set evaluation.trials="$ABS_WORK/real-degraded/trials.txt" --set evaluation.root="$ABS_WORK/real-degraded"
echo "results: $OUT/compare-clean/results.md and $OUT/compare-degraded/results.md"
