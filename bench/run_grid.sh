#!/usr/bin/env bash
# The multi-rank benchmark: the ~1B synthetic llama (Q4_0 by default) on this
# machine as 1 rank x 1 thread, 1 rank x 2 threads, tp=2 and pp=2 (2 ranks x
# 1 thread each), plus a long prompt with and without sequence parallelism.
# Configurations are interleaved over ROUNDS rounds (the host is noisy);
# every call measures bandwidth in the same run and prints the per-rank time
# in collectives.   bench/run_grid.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results-grid}
ROUNDS=${ROUNDS:-3}
TYPE=${TYPE:-q4_0}
mkdir -p "$OUT" models
G=build/tools/gantry
M=models/synth-1b-$TYPE.gguf
[ -f "$M" ] || $G synth -o "$M" --arch llama --layers 16 --hidden 2048 --heads 32 --kv-heads 8 \
    --ffn 8192 --vocab 32000 --ctx 4096 --type "$TYPE" --seed 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI="mpirun --oversubscribe -np 2 --bind-to core --mca pml ob1 --mca btl self,vader"
B="--prompt 512 --gen 32 --rounds 1 --bw-mib 512"
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r"
  $G bench -m "$M" --threads 1 $B --json "$OUT/r$r-1rank-1t.json" | tail -1
  $G bench -m "$M" --threads 2 $B --json "$OUT/r$r-1rank-2t.json" | tail -1
  $MPI $G bench -m "$M" --tp 2 $B --json "$OUT/r$r-tp2.json" | tail -5
  $MPI $G bench -m "$M" --pp 2 $B --json "$OUT/r$r-pp2.json" | tail -5
  # A long prompt: 2048 tokens in one batch, tp=2 with and without SP.
  L="--prompt 2048 --gen 4 --rounds 1 --bw-mib 512"
  $G bench -m "$M" --threads 2 $L --json "$OUT/r$r-long-1rank-2t.json" | tail -1
  $MPI $G bench -m "$M" --tp 2 $L --json "$OUT/r$r-long-tp2.json" | tail -1
  $MPI $G bench -m "$M" --tp 2 --sp-min-tokens 256 $L --json "$OUT/r$r-long-tp2-sp.json" | tail -1
done
