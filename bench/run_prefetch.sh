#!/usr/bin/env bash
# Predicted expert prefetch on and off (issue 10): a synthetic llama-moe
# (8 layers, hidden 1024, 16 experts top-2, Q8_0) with --device-mem holding
# 4 of the 16 experts per layer, `gantry bench` with and without
# --no-expert-prefetch, interleaved over ROUNDS rounds (the host is noisy);
# prints decode tok/s, the time waited for copies and the cache counters of
# every call, then the medians (PROMPT, GEN: bench sizes, default 64 and 64).
#   bench/run_prefetch.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results-prefetch}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT" models
G=build/tools/gantry
M=models/synth-moe-prefetch-q8_0.gguf
[ -f "$M" ] || $G synth -o "$M" --arch llama-moe --layers 8 --hidden 1024 --experts 16 --experts-used 2 \
    --type q8_0 --seed 1 >/dev/null
B="--prompt ${PROMPT:-64} --gen ${GEN:-64} --rounds 1 --bw-mib 256"
# The smallest budget holds 2 experts per layer; 2 more per layer make 4 of 16.
msg=$($G bench -m "$M" $B --device-mem 1 2>&1 || true)
need=$(sed -n 's/.*needs at least \([0-9]*\) bytes.*/\1/p' <<<"$msg")
two=$(sed -n 's/.*2 experts per layer in \([0-9.]*\) MiB.*/\1/p' <<<"$msg")
DM=$(python3 -c "print($need + int($two * 2**20) + 2**20)")
echo "device budget: $DM bytes"
for r in $(seq 1 "$ROUNDS"); do
  $G bench -m "$M" $B --device-mem "$DM" --json "$OUT/r$r-on.json" >/dev/null
  $G bench -m "$M" $B --device-mem "$DM" --no-expert-prefetch --json "$OUT/r$r-off.json" >/dev/null
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = {"on": [], "off": []}
for r in range(1, rounds + 1):
    for k in rows:
        j = json.load(open(f"{out}/r{r}-{k}.json"))
        x = j["expert_cache"]
        rows[k].append((j["decode_tps"]["best"], x["wait_s"], x["hits"], x["misses"], x["prefetched"],
                        x["prefetch_useful"], x["bytes_copied"] / 2**20, x["slots"]))
        print(f"round {r} prefetch {k:3}: decode {rows[k][-1][0]:6.2f} tok/s, waited {x['wait_s']:.3f} s, "
              f"{x['hits']} hits, {x['misses']} misses, {x['prefetched']} prefetched "
              f"({x['prefetch_useful']} routed to), {rows[k][-1][6]:.0f} MiB copied, {x['slots']} slots")
for k in rows:
    print(f"median prefetch {k:3}: decode {statistics.median(v[0] for v in rows[k]):6.2f} tok/s, "
          f"waited {statistics.median(v[1] for v in rows[k]):.3f} s")
PY
