#!/usr/bin/env bash
# Fine-tuning with rehearsal, measured (README "Fine-tuning a bundled model", recipes/finetune/README.md).
#
# The model: the first bundled ecapa-aam (v1, git 254684d), trained on the built-in synthetic
# corpus and 220 LibriSpeech speakers, which never heard a speechocean speaker: a pretrained
# model meeting "your own speakers" for the first time. It is fine-tuned with the shipped
# defaults (configs/finetune/ecapa_aam.yml) on N speechocean-train speakers while rehearsing
# its own training data (the same synthetic corpus and LibriSpeech speakers, in the same
# batches), with the bundled recipe's validation set (held-out speechocean and LibriSpeech
# speakers, clean / degraded / crossed: data/bundled/val/mixed.txt) choosing the checkpoint.
# Then: EER before / after on ../shared/data/real and its degraded copy (never used above), and
# validation EER against N (the model card's "quality against real training speakers" plot).
#
#   recipes/finetune/rehearsal.sh                      # N = 101: the before / after figures
#   SPEAKERS="25 50 101" recipes/finetune/rehearsal.sh # and the plot over N
#   recipes/finetune/rehearsal.sh --set training.epochs=2   # further arguments go to `voxmetric train`
#
# Run from the repository root with ../shared/data beside it. PY picks the Python, EXP the
# output folder (default exp/finetune-rehearsal). Each N is one run (~35 min on one CPU core at
# the default budget); a stopped run continues (--resume) when the script is started again.
set -euo pipefail
SHARED=${SHARED:-../shared/data}
EXP=${EXP:-exp/finetune-rehearsal}
PY=${PY:-python}
SPEAKERS=${SPEAKERS:-101}
[[ -f "$SHARED/real/trials.txt" ]] || { echo "no $SHARED/real/trials.txt: run from the repository root beside ../shared" >&2; exit 1; }

# 1. The bundled models' data (synthetic corpus, LibriSpeech and speechocean splits, validation set).
[[ -f data/bundled/val/mixed.txt ]] || $PY recipes/bundled/prepare.py --shared "$SHARED" --out data/bundled
# 2. The starting model: the first bundled ecapa-aam, from git.
mkdir -p "$EXP"
V1="$EXP/ecapa-aam-v1.safetensors"
[[ -f "$V1" ]] || git show 254684d:voxmetric/pretrained/ecapa-aam.safetensors > "$V1"
# 3. Nested subsets of the 101 speechocean training speakers (voxmetric.data.corpus.nested_speakers).
$PY - "$EXP" $SPEAKERS <<'PY'
import sys
from pathlib import Path
from voxmetric.data.corpus import nested_speakers
exp, counts = Path(sys.argv[1]), [int(n) for n in sys.argv[2:]]
src = Path("data/bundled/speechocean-train")
rows = [line.split() for line in (src / "utt2spk").read_text().splitlines()]
wav = dict(line.split(maxsplit=1) for line in (src / "wav.scp").read_text().splitlines())
dur = dict(line.split(maxsplit=1) for line in (src / "utt2dur").read_text().splitlines())
for n in counts:
    keep = set(nested_speakers(sorted({s for _, s in rows}), n))
    out = exp / f"speechocean-{n}"
    out.mkdir(parents=True, exist_ok=True)
    kept = [(u, s) for u, s in rows if s in keep]
    (out / "wav.scp").write_text("".join(f"{u} {wav[u]}\n" for u, _ in kept))
    (out / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in kept))
    (out / "utt2dur").write_text("".join(f"{u} {dur[u]}\n" for u, _ in kept))
PY
# 4. Fine-tune, one run per N (epoch 0 validates v1 itself). The v1 front-end: whole-file embeddings.
B=$(cd data/bundled && pwd); E=$(cd "$EXP" && pwd)
for N in $SPEAKERS; do
  RUN="$EXP/speakers-$N"
  [[ -f "$RUN/train_result.json" ]] && continue
  RESUME=(); [[ -f "$RUN/checkpoints/last.pt" ]] && RESUME=(--resume)
  $PY -m voxmetric.cli train -q configs/finetune/ecapa_aam.yml --out "$RUN" "${RESUME[@]}" \
    --set init_from="$E/ecapa-aam-v1.safetensors" \
    --set "data.corpus=[$B/synth, $B/librispeech-train, $E/speechocean-$N]" --set data.format=auto \
    --set data.augmentation.noise_dir="$B/noise" --set data.augmentation.rir_dir="$B/rirs" \
    --set validation.trials="$B/val/mixed.txt" --set validation.root="$B/val/wav" \
    --set frontend.window_s=null "$@"
done
# 5. Before / after on the test sets, for the largest N.
LAST=${SPEAKERS##* }
$PY benchmarks/verification_eer.py --systems "$V1,$EXP/speakers-$LAST/checkpoints/best.pt" --sets real,degraded \
  | tee "$EXP/before_after.md"
# 6. Validation EER against N (per condition, best checkpoint of each run; N = 0: v1 itself).
$PY recipes/finetune/plot_speakers.py "$EXP" --val data/bundled/val $SPEAKERS
