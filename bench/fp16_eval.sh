#!/usr/bin/env bash
# Issue 14: the accuracy of the fp16 products (--half-matmul fp16, each
# chunk length) and of the bf16 dot products against the fp32 path, with
# `gantry eval` on F16 models: the fp32 run saves its logits, every other
# mode is compared with them (KL, top-1, perplexity). One JSON per row in
# OUT, then a table.
#   bench/fp16_eval.sh MODEL.gguf... (default: SmolLM2 and Gemma 3 from
#   ~/.cache/gantry/models, dequantized to F16 into models/)
set -euo pipefail
cd "$(dirname "$0")/.."
G=build/tools/gantry
OUT=${OUT:-bench/results/fp16}
TEXT=${TEXT:-tests/data/public_domain.txt}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-4}
THREADS=${THREADS:-2}
MODES=${MODES:-"fp16:16 fp16:32 fp16:64 bf16"}
MODELS_DIR=${MODELS:-$HOME/.cache/gantry/models}
mkdir -p "$OUT" models
if [ $# -eq 0 ]; then
  for q in "$MODELS_DIR"/SmolLM2-135M-Instruct.Q4_1.gguf "$MODELS_DIR"/gemma-3-270m-q4_k_m.gguf; do
    f=models/$(basename "$q" .gguf)-f16.gguf
    [ -f "$f" ] || $G quantize "$q" "$f" --type f16 --threads "$THREADS" >/dev/null
    set -- "$@" "$f"
  done
fi
EVAL=(-f "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" --threads "$THREADS")
for m in "$@"; do
  b=$(basename "$m" .gguf)
  logits=$OUT/$b.fp32.logits
  $G eval -m "$m" --base "$m" "${EVAL[@]}" --half-matmul off --save-base "$logits" --force \
    --json "$OUT/$b@fp32.json" >/dev/null
  for mode in $MODES; do
    chunk=${mode#*:}; [ "$chunk" = "$mode" ] && chunk=
    GANTRY_FP16_CHUNK=$chunk $G eval -m "$m" --base-logits "$logits" "${EVAL[@]}" \
      --half-matmul "${mode%%:*}" --json "$OUT/$b@${mode/:/-}.json" >/dev/null
  done
  rm -f "$logits"
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, glob, os, sys
print("| model | mode | KL mean | KL p99 | KL max | top-1 | ppl fp32 | ppl mode | max abs dlogit |")
print("|---|---|---|---|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*@*.json"))):
    j = json.load(open(f))
    model, mode = os.path.basename(f)[:-5].split("@")
    if mode == "fp32": continue
    print(f"| {model} | {mode} | {j['kl']['mean']:.2e} | {j['kl']['p99']:.2e} | {j['kl']['max']:.2e} | "
          f"{j['top1_agreement']:.4f} | {j['perplexity']['base']:.4f} | {j['perplexity']['model']:.4f} | "
          f"{j['max_abs_dlogit']['max']:.3f} |")
PY
