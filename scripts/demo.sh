#!/usr/bin/env bash
# Sets up, builds and runs the demo: writes a small synthetic llama model with
# a real 32000-token vocabulary and generates from it with `gantry run`.
# (Synthetic weights produce arbitrary text; the point is the whole path:
# GGUF writer, reader, tokenizer, kernels, KV cache, sampler.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build >/dev/null

mkdir -p models
MODEL=models/demo-llama-q4_0.gguf
if [ ! -f "$MODEL" ]; then
  build/tools/gantry synth -o "$MODEL" --arch llama --layers 4 --hidden 512 --heads 8 --kv-heads 4 \
    --ffn 1536 --type q4_0 --seed 7 --vocab-from ../shared/vocab/ggml-vocab-llama-spm.gguf
fi
build/tools/gantry inspect "$MODEL" --no-tensors | head -20
echo
echo "== gantry run (greedy, 2 threads) =="
build/tools/gantry run -m "$MODEL" -p "The capital of France is" -n 24 --threads 2
