#!/usr/bin/env bash
# msgpack-RPC against the OpenAI HTTP API on one server: `gantry bench serve
# --api rpc` and `--api openai` interleaved over ROUNDS rounds, the same
# load each time (all requests at once, CONC connections, streaming).
#   bench/run_api.sh [MODEL]      ROUNDS=3 N=24 CONC=4 OUT=32
set -euo pipefail
cd "$(dirname "$0")/.."
G=build/tools/gantry
M=${1:-$HOME/.cache/gantry/models/SmolLM2-135M-Instruct.Q4_1.gguf}
ROUNDS=${ROUNDS:-3}
N=${N:-24}
CONC=${CONC:-4}
OUT=${OUT:-32}
log=$(mktemp)
$G serve -m "$M" --port 0 --http-port 0 --seqs "$CONC" 2>"$log" &
srv=$!
trap 'kill $srv 2>/dev/null; wait $srv 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  grep -q "http-port" "$log" && grep -q "listening on" "$log" && break
  sleep 0.2
done
rpc_port=$(sed -n 's/.*listening on [^ ]* port \([0-9]*\).*/\1/p' "$log" | head -1)
http_port=$(sed -n 's/.*http-port \([0-9]*\).*/\1/p' "$log" | head -1)
[ -n "$rpc_port" ] && [ -n "$http_port" ] || { cat "$log"; exit 1; }
for r in $(seq 1 "$ROUNDS"); do
  for api in rpc openai; do
    port=$rpc_port
    [ "$api" = openai ] && port=$http_port
    echo "== round $r --api $api"
    $G bench serve --api "$api" --port "$port" --num-prompts "$N" --concurrency "$CONC" --output-len "$OUT"
  done
done
