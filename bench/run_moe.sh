#!/usr/bin/env bash
# Issue 10's MoE benchmark, interleaved rounds on one machine:
#   llama.cpp's llama-bench (when LLAMA_BENCH is set), Gantry on one rank,
#   Gantry with --ep 2 on two ranks (one thread each), and Gantry on one
#   rank with half of the experts offloaded (--device-mem), at 1 and 2
#   threads, 512-token prefill and 32 decode steps.
# The model (about 2.5B parameters, Q8_0, 8 experts top-2) is synthesized
# when absent:
#   bench/run_moe.sh [MODEL]        ROUNDS=2 LLAMA_BENCH=/path/to/llama-bench
set -euo pipefail
cd "$(dirname "$0")/.."
G=build/tools/gantry
M=${1:-models/synth-moe2b-q8_0.gguf}
ROUNDS=${ROUNDS:-2}
PROMPT=${PROMPT:-512}
GEN=${GEN:-32}
MPI=(mpirun --oversubscribe --mca pml ob1 --mca btl self,vader)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ ! -f "$M" ]; then
  mkdir -p "$(dirname "$M")"
  $G synth -o "$M" --arch llama-moe --layers 16 --hidden 2048 --heads 32 --kv-heads 8 --ffn 2816 \
    --experts 8 --experts-used 2 --expert-ffn 2816 --vocab 32000 --ctx 4096 --type q8_0 --seed 1
fi
B=(bench -m "$M" --prompt "$PROMPT" --gen "$GEN" --rounds 1 --bw-mib 512)

# Half of the experts on the device: the minimum (n_expert_used slots per
# layer, from the refusal of a 1-byte budget) plus two more slots.
half_budget() { # threads
  local msg min used slot
  msg=$($G "${B[@]}" --threads "$1" --device-mem 1 2>&1 || true)
  min=$(sed -n 's/.*needs at least \([0-9]*\) bytes.*/\1/p' <<<"$msg")
  used=$(sed -n 's/.*and \([0-9]*\) experts per layer in \([0-9.]*\) MiB.*/\1 \2/p' <<<"$msg")
  [ -n "$min" ] && [ -n "$used" ] || { echo "cannot read the minimum from: $msg" >&2; exit 1; }
  read -r k mib <<<"$used"
  slot=$(python3 -c "print(int($mib * 1048576 / $k))")
  # 8 experts: 4 slots = the minimum's 2 + 2 more, with 1 MiB of slack below a fifth.
  python3 -c "print($min + 2 * $slot + 1048576)"
}

for r in $(seq 1 "$ROUNDS"); do
  for t in 1 2; do
    if [ -n "${LLAMA_BENCH:-}" ]; then
      echo "== round $r threads $t llama.cpp"
      "$LLAMA_BENCH" -m "$M" -t "$t" -p "$PROMPT" -n "$GEN" -r 1 -o md 2>/dev/null | grep -E "pp$PROMPT|tg$GEN"
    fi
    echo "== round $r threads $t gantry 1 rank"
    $G "${B[@]}" --threads "$t" | grep -E "^MoE|best/median"
    hb=$(half_budget "$t")
    echo "== round $r threads $t gantry 1 rank, half of the experts offloaded (--device-mem $hb)"
    GANTRY_LOG=info $G "${B[@]}" --threads "$t" --device-mem "$hb" 2>&1 |
      grep -E "best/median|expert offload:|expert cache total|^expert"
    if [ "$t" = 2 ]; then
      echo "== round $r gantry --ep 2 on 2 ranks x 1 thread"
      "${MPI[@]}" -np 2 $G "${B[@]}" --threads 1 --ep 2 |
        awk '/^expert parallelism/ {on = 1} /^bytes read/ {on = 0} on || /best\/median/' 
    fi
  done
done
