#!/usr/bin/env bash
# Fine-tune a bundled model on speechocean-train's speakers (one of "your own" speaker sets) and
# measure EER before and after on ../shared/data/real and its degraded copy. README.md beside
# this file. Not run in CI.
#
#   recipes/finetune/run.sh ecapa-aam             # full: up to 300 batches, then before/after figures
#   recipes/finetune/run.sh sinctdnn-aam
#   SMOKE=1 QUIET=1 recipes/finetune/run.sh ecapa-aam  # every step in minutes: 3 batches, tiny sets
#   recipes/finetune/run.sh ecapa-aam --set training.epochs=3   # further arguments go to `voxmetric train`
#
# Run from the repository root; ../shared/data must exist beside it. PY picks the Python, WORK
# the data layout (default data/finetune-speechocean), EXP the run (default exp/finetune-MODEL).
set -euo pipefail
MODEL=${1:-ecapa-aam}
shift || true
SHARED=${SHARED:-../shared/data}
WORK=${WORK:-data/finetune-speechocean}
EXP=${EXP:-exp/finetune-$MODEL}
PY=${PY:-python}
case "$MODEL" in
  ecapa-aam) CONFIG=configs/finetune/ecapa_aam.yml ;;
  sinctdnn-aam) CONFIG=configs/finetune/sinctdnn_aam.yml ;;
  *) echo "unknown model '$MODEL': ecapa-aam or sinctdnn-aam" >&2; exit 2 ;;
esac
# Validation: the 24 speakers the bundled models' own recipe holds out (neither the shipped
# models nor their retrained versions heard them); training: the other 101.
SPLIT=(--val-list recipes/finetune/speechocean-val.txt)
EXTRA=()
if [[ "${SMOKE:-0}" == 1 ]]; then
  # 3 validation speakers (20 trials a condition), 8 training speakers, 3 batches of which 2
  # frozen, the test on the first 40 trials of each set: every step runs, nothing is measured.
  SPLIT=(--val-speakers 3 --max-trials 20 --rehearsal-speakers 12)
  EXTRA=(--set training.epochs=1 --set training.batches_per_epoch=3 --set training.freeze_network_batches=2
         --set data.speakers_per_batch=4 --set data.num_speakers=8 --set data.num_workers=0
         --set schedule.warmup_batches=1 --set training.log_every_batches=1)
  WORK=${WORK}-smoke; EXP=${EXP}-smoke
fi
[[ -f "$SHARED/real/trials.txt" ]] || { echo "no $SHARED/real/trials.txt: run from the repository root beside ../shared" >&2; exit 1; }

# 1. Layout: links to the speaker folders, validation trials (clean + degraded), noises and RIRs,
#    the rehearsal corpus (the bundled models' synthetic training speakers).
[[ -f "$WORK/val/trials.txt" ]] || $PY recipes/finetune/prepare.py "$SHARED/speechocean-train" "$WORK" "${SPLIT[@]}" --seed 0
# 2. The degraded copy of the test set (deterministic; the one benchmarks/verification_eer.py uses).
[[ -f data/real-degraded/trials.txt ]] || $PY scripts/make_degraded_trials.py "$SHARED/real" data/real-degraded

# 3. Fine-tune (epoch 0 validates the bundled model itself). A stopped run continues.
ABS_WORK=$(cd "$WORK" && pwd)
PATHS=(--set "data.corpus=[$ABS_WORK/train, $ABS_WORK/rehearsal/synth]" --set validation.trials="$ABS_WORK/val/trials.txt"
       --set validation.root="$ABS_WORK/val" --set data.augmentation.noise_dir="$ABS_WORK/noise"
       --set data.augmentation.rir_dir="$ABS_WORK/rirs")
if [[ ! -f "$EXP/train_result.json" ]]; then
  RESUME=(); [[ -f "$EXP/checkpoints/last.pt" ]] && RESUME=(--resume)
  $PY -m voxmetric.cli train ${QUIET:+-q} "$CONFIG" --out "$EXP" "${RESUME[@]}" "${PATHS[@]}" "${EXTRA[@]}" "$@"
fi

# 4. Before / after on the test sets (never used above): the bundled model and best.pt, which
#    is the bundled network itself when no epoch beat it.
SETS=real="$SHARED/real/trials.txt",degraded=data/real-degraded/trials.txt
if [[ "${SMOKE:-0}" == 1 ]]; then
  ABS_SHARED=$(cd "$SHARED" && pwd); ABS_DEGRADED=$(cd data/real-degraded && pwd)
  head -n 40 "$SHARED/real/trials.txt" | awk -v r="$ABS_SHARED/real" '{print $1, r "/" $2, r "/" $3}' > "$EXP/smoke-real.txt"
  head -n 40 data/real-degraded/trials.txt | awk -v r="$ABS_DEGRADED" '{print $1, r "/" $2, r "/" $3}' > "$EXP/smoke-degraded.txt"
  SETS=real="$EXP/smoke-real.txt",degraded="$EXP/smoke-degraded.txt"
fi
$PY benchmarks/verification_eer.py --systems "$MODEL,$EXP/checkpoints/best.pt" --sets "$SETS" | tee "$EXP/before_after.md"
echo "validation per epoch (epoch 0: the bundled model): $EXP/metrics.jsonl; figures: $EXP/before_after.md"
