#!/usr/bin/env bash
# Issue 14: fp16 against fp32 products of F16 weights, interleaved in one
# run (the host is shared): bench_matmul GOP/s (2048x8192 and 8192x2048,
# n_tok 512; 1 thread in thread CPU time, then 1 and 2 threads in wall
# time) and `gantry bench` prefill tok/s of each MODEL at 1 and 2 threads.
#   bench/fp16_speed.sh MODEL.gguf...   (ROUNDS, PROMPT, MODES)
set -euo pipefail
cd "$(dirname "$0")/.."
G=build/tools/gantry
OUT=${OUT:-bench/results/fp16}
ROUNDS=${ROUNDS:-2}
PROMPT=${PROMPT:-512}
MODES=${MODES:-"off fp16"}
mkdir -p "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    echo "== round $r: bench_matmul, $mode (1 thread, CPU time)"
    GANTRY_BF16_MATMUL=$mode build/bench/bench_matmul --types f16 --prefill-only --rounds 1 \
      --cpu-time | grep '^F16'
    echo "== round $r: bench_matmul, $mode (wall time)"
    GANTRY_BF16_MATMUL=$mode build/bench/bench_matmul --types f16 --prefill-only --rounds 1 \
      | grep '^F16'
  done
  for m in "$@"; do
    for th in 1 2; do
      for mode in $MODES; do
        j=$OUT/bench-$(basename "$m" .gguf)-$mode-t$th-r$r.json
        $G bench -m "$m" --threads "$th" --prompt "$PROMPT" --gen 4 --rounds 1 \
          --half-matmul "$mode" --json "$j" >/dev/null
        /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('round $r $(basename "$m") t$th $mode prefill tok/s', j['prefill_tps']['best'], 'decode tok/s', j['decode_tps']['best'])" "$j" 2>/dev/null \
          || echo "round $r $(basename "$m") t$th $mode: see $j"
      done
    done
  done
done
