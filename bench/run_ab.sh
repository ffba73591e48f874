#!/usr/bin/env bash
# Interleaved A/B of two gantry binaries on the 1B synthetic models of
# bench/run_1b.sh: per round, per type and thread count, BASE then NEW, each
# `gantry bench` measuring the bandwidth in its own round. Then
# bench/ab_summary.py prints roofline medians, rounds higher and the pairwise
# decode ratio.
#   BASE=/path/to/main/gantry NEW=build/tools/gantry bench/run_ab.sh OUT_DIR
# MODELS (default models/), ROUNDS (4), TYPES ("q4_0 q8_0 f16"), THREADS
# ("1 2"), PROMPT (32), GEN (24).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: BASE=... NEW=... bench/run_ab.sh OUT_DIR}
: "${BASE:?BASE=path to the baseline gantry}"
NEW=${NEW:-build/tools/gantry}
MODELS=${MODELS:-models}
ROUNDS=${ROUNDS:-4}
TYPES=${TYPES:-"q4_0 q8_0 f16"}
THREADS=${THREADS:-"1 2"}
mkdir -p "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for t in $TYPES; do
    for th in $THREADS; do
      for side in base new; do
        g=$BASE; [ "$side" = new ] && g=$NEW
        "$g" bench -m "$MODELS/synth-1b-$t.gguf" --threads "$th" --prompt "${PROMPT:-32}" \
          --gen "${GEN:-24}" --rounds 1 --json "$OUT/$side-$t-t$th-r$r.json" > "$OUT/$side-$t-t$th-r$r.log" 2>&1
      done
    done
  done
  echo "round $r done"
done
/usr/bin/python3 bench/ab_summary.py "$OUT"
