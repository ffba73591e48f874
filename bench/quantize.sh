#!/bin/bash
# Quantize throughput and imatrix time on SmolLM2-135M for docs/benchmarks.md
# ("Quantization"). The cached Q4_1 checkpoint is first converted to F16 (the
# usual source of a quantization), then converted to q4_0, q8_0 and q4_k_m
# at 1 and 2 threads, interleaved, ROUNDS times; outputs go to /dev/shm so
# that the disk is not measured. Prints wall time, CPU time (user + sys) and
# MB/s of input for each. Usage: bench/quantize.sh [ROUNDS]
set -euo pipefail
ROUNDS=${1:-2}
G=${GANTRY_BIN:-$(dirname "$0")/../build/tools/gantry}
M=${GANTRY_MODELS:-$HOME/.cache/gantry/models}/SmolLM2-135M-Instruct.Q4_1.gguf
TEXT=$(dirname "$0")/../tests/data/public_domain.txt
TMP=${TMPDIR_SHM:-/dev/shm}/gantry-quant-bench
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT
"$G" quantize "$M" "$TMP/f16.gguf" --type f16 2>/dev/null
IN_BYTES=$(stat -c %s "$TMP/f16.gguf")
for round in $(seq "$ROUNDS"); do
  for t in q4_0 q8_0 q4_k_m; do
    for th in 1 2; do
      /usr/bin/time -f "%e %U %S" -o "$TMP/time" "$G" quantize "$TMP/f16.gguf" "$TMP/out.gguf" \
        --type "$t" --threads "$th" 2>/dev/null
      read -r wall user sys < "$TMP/time"
      echo "round $round $t threads $th: wall $wall s, cpu $(echo "$user + $sys" | bc) s," \
        "$(echo "scale=1; $IN_BYTES / 1000000 / $wall" | bc) MB/s wall," \
        "$(echo "scale=1; $IN_BYTES / 1000000 / ($user + $sys)" | bc) MB/s per cpu-second"
    done
  done
done
for th in 1 2; do
  /usr/bin/time -f "%e %U %S" -o "$TMP/time" "$G" imatrix -m "$M" -f "$TEXT" -o "$TMP/im.gguf" \
    --threads "$th" 2>/dev/null | tail -1
  read -r wall user sys < "$TMP/time"
  echo "imatrix threads $th: wall $wall s, cpu $(echo "$user + $sys" | bc) s"
done
uptime
