#!/usr/bin/env bash
# The issue-3 benchmark: a ~1B llama-shaped synthetic model (16 layers,
# hidden 2048, 32 heads, 8 kv heads, ffn 8192, 32000-token vocabulary) in
# F16, Q8_0 and Q4_0, at 1 and 2 threads. Configurations are interleaved
# (A, B, A, B ...) over ROUNDS rounds because the host is shared and noisy;
# each `gantry bench` call measures the memory bandwidth in the same rounds.
#   bench/run_1b.sh [OUT_DIR] (default bench/results)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
ROUNDS=${ROUNDS:-3}
TYPES=${TYPES:-"q4_0 q8_0 f16"}
THREADS=${THREADS:-"1 2"}
mkdir -p "$OUT" models
G=build/tools/gantry
for t in $TYPES; do
  m=models/synth-1b-$t.gguf
  [ -f "$m" ] || $G synth -o "$m" --arch llama --layers 16 --hidden 2048 --heads 32 --kv-heads 8 \
      --ffn 8192 --vocab 32000 --ctx 4096 --type "$t" --seed 1
done
for r in $(seq 1 "$ROUNDS"); do
  for t in $TYPES; do
    for th in $THREADS; do
      echo "== round $r: $t, $th thread(s)"
      $G bench -m models/synth-1b-$t.gguf --threads "$th" --prompt 512 --gen 32 --rounds 1 \
        --json "$OUT/1b-$t-t$th-r$r.json"
    done
  done
done
/usr/bin/python3 bench/summarize.py "$OUT"
