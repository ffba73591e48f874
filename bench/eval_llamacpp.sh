#!/usr/bin/env bash
# llama.cpp's own KL divergence beside `gantry eval`'s: for each real
# checkpoint's F16 base (made by bench/run_eval.sh: the shipped file
# dequantized by `gantry quantize --type f16`), llama-quantize makes TYPES
# from that same base, llama-perplexity saves the base's logits over the same
# text, --ctx and --chunks (--kl-divergence-base), then reads them back for
# each type (--kl-divergence). Its "Mean KLD" and "Same top p" stand beside
# our mean KL and top-1 of the same rows; both tools score the second half of
# each chunk. Logs and a summary go to OUT.
#
#   LLAMACPP=/path/to/llama.cpp/build/bin bench/eval_llamacpp.sh [OUT]
# Environment: TYPES (Q8_0 Q4_K_M), CTX (512), CHUNKS (2), THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMACPP:?set LLAMACPP to a folder with llama-perplexity and llama-quantize}"
OUT=${1:-bench/results/llamacpp}
TEXT=tests/data/public_domain.txt
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-2}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
for base in models/SmolLM2-135M-Instruct.Q4_1-f16.gguf models/gemma-3-270m-q4_k_m-f16.gguf; do
  [ -f "$base" ] || { echo "$base missing (run bench/run_eval.sh first); no rows"; continue; }
  b=$(basename "$base" -f16.gguf)
  kld=$OUT/$b-f16.kld
  [ -f "$kld" ] || "$LLAMACPP"/llama-perplexity -m "$base" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" \
    -t "$THREADS" --kl-divergence-base "$kld" > "$OUT/$b-f16.log" 2>&1
  for t in ${TYPES:-Q8_0 Q4_K_M}; do
    q=models/llamacpp-$b-$t.gguf
    [ -f "$q" ] || "$LLAMACPP"/llama-quantize "$base" "$q" "$t" "$THREADS" > "$OUT/quantize-$b-$t.log" 2>&1
    [ -f "$OUT/$b-$t.log" ] || "$LLAMACPP"/llama-perplexity -m "$q" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" \
      -t "$THREADS" --kl-divergence-base "$kld" --kl-divergence > "$OUT/$b-$t.log" 2>&1
    echo "| $b | llama.cpp $t | $(grep -m1 'Mean PPL(Q)  ' "$OUT/$b-$t.log" | awk '{print $4}') |" \
      "$(grep -m1 'Mean    KLD' "$OUT/$b-$t.log" | awk '{print $3}') |" \
      "$(grep -m1 'Median  KLD' "$OUT/$b-$t.log" | awk '{print $3}') |" \
      "$(grep -m1 'Same top p:' "$OUT/$b-$t.log" | awk '{print $4}')% |"
  done
done | tee "$OUT/summary.md"
