#!/usr/bin/env bash
# Same-run comparison with llama.cpp's llama-bench on the 1B synthetic models
# (they load unchanged in llama.cpp). Interleaves llama-bench and gantry bench
# per type over ROUNDS rounds, one thread each; bring your own llama-bench:
#   LLAMA_BENCH=/path/to/llama-bench bench/compare_llamacpp.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}"
ROUNDS=${ROUNDS:-2}
TYPES=${TYPES:-"q4_0 q8_0 f16"}
T=${THREADS:-1}
for r in $(seq 1 "$ROUNDS"); do
  for t in $TYPES; do
    m=models/synth-1b-$t.gguf
    echo "== round $r $t llama.cpp"
    "$LLAMA_BENCH" -m "$m" -t "$T" -p 512 -n 32 -r 1 -o md 2>/dev/null | grep -E "pp512|tg32"
    echo "== round $r $t gantry"
    build/tools/gantry bench -m "$m" --threads "$T" --prompt 512 --gen 32 --rounds 1 --bw-mib 512 | tail -1
  done
done
