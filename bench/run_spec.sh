#!/usr/bin/env bash
# Speculative decoding (issue 14): `gantry bench` with a proposer times plain
# greedy decode and speculative decode of the same prompt in every round
# (their outputs must be equal) and reports the acceptance rate, tokens per
# verification step and the speed-up measured in the same run.
#   - SmolLM2-135M (fetched by scripts/fetch-models.sh), prompt lookup on a
#     prompt that asks it to copy a text (bench/spec_prompt.txt);
#   - the ~1B synthetic llama of bench/run_1b.sh in Q4_0 with a small random
#     draft of the same vocabulary (random weights: expect no acceptance),
#     with its own first 4 layers as the draft (--self-draft 4), and, as a
#     draft that agrees with the target, the same seeded weights in Q4_0
#     under a Q8_0 target.
#   bench/run_spec.sh [OUT_DIR] (default bench/results)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
ROUNDS=${ROUNDS:-3}
TH=${THREADS:-2}
GEN=${GEN:-32}
mkdir -p "$OUT" models
G=build/tools/gantry
MODELS=${GANTRY_MODELS:-$HOME/.cache/gantry/models}
SMOL=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
s1b() { [ -f "models/synth-1b-$1.gguf" ] || $G synth -o "models/synth-1b-$1.gguf" --arch llama --layers 16 \
  --hidden 2048 --heads 32 --kv-heads 8 --ffn 8192 --vocab 32000 --ctx 4096 --type "$1" --seed 1; }
s1b q4_0
s1b q8_0
[ -f models/synth-draft-q4_0.gguf ] || $G synth -o models/synth-draft-q4_0.gguf --arch llama --layers 2 \
  --hidden 512 --heads 8 --kv-heads 2 --ffn 1024 --vocab 32000 --ctx 4096 --type q4_0 --seed 2
if [ -f "$SMOL" ]; then
  for k in 4 8; do
    echo "== SmolLM2-135M, prompt lookup, K $k"
    $G bench -m "$SMOL" -f bench/spec_prompt.txt --chat --gen 80 --rounds "$ROUNDS" --threads "$TH" \
      --lookup 3 --draft-tokens "$k" --json "$OUT/spec-smol-lookup-k$k.json"
  done
fi
echo "== 1B Q4_0, random 2-layer draft"
$G bench -m models/synth-1b-q4_0.gguf --prompt 64 --gen "$GEN" --rounds "$ROUNDS" --threads "$TH" \
  --draft models/synth-draft-q4_0.gguf --draft-tokens 4 --json "$OUT/spec-1b-draft.json"
echo "== 1B Q4_0, self-draft 4 layers"
$G bench -m models/synth-1b-q4_0.gguf --prompt 64 --gen "$GEN" --rounds "$ROUNDS" --threads "$TH" \
  --self-draft 4 --draft-tokens 4 --json "$OUT/spec-1b-self4.json"
echo "== 1B Q8_0 target, the same weights in Q4_0 as the draft"
$G bench -m models/synth-1b-q8_0.gguf --prompt 64 --gen "$GEN" --rounds "$ROUNDS" --threads "$TH" \
  --draft models/synth-1b-q4_0.gguf --draft-tokens 4 --json "$OUT/spec-1b-q8-q4draft.json"
