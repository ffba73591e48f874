#!/usr/bin/env bash
# The issue-14 accuracy table: each weight type of a model against its base
# with `gantry eval` (perplexity, KL(P_base || P_type), top-1 agreement) over
# tests/data/public_domain.txt, and the real checkpoints against themselves
# (dequantized to F16) as the base of their own rows.
#
# The base is a ~1B llama-shaped synthetic model (16 layers, hidden 2048, 32
# heads, 8 kv heads, ffn 8192, the llama-spm vocabulary of 32000 tokens) in
# BASE_TYPE (f16). Each type is made from the base with `gantry quantize`
# when this build has that verb (plus an --imatrix variant of each, with an
# importance matrix from `gantry imatrix` over CALIB, when that verb
# exists); otherwise with `gantry synth --type T` from the same seed, which
# writes the same random weights rounded to nearest (RTN), so the rows are
# still "this type against its F16 original". The base runs once:
# --save-base, then --base-logits for every type.
#
#   bench/run_eval.sh [OUT_DIR]       (default bench/results/eval)
# Environment: TYPES, BASE_TYPE, CTX (512), CHUNKS (2; 0: the whole text),
# THREADS (2), MODELS (~/.cache/gantry/models),
# REAL (1: the real checkpoints: each dequantized to F16 as the base, and
# each of REAL_TYPES made from that base, plain and with --imatrix),
# SPEED (1: the decode tok/s column: per model, all its rows' files and its
# base in SPEED_ROUNDS (3) interleaved rounds of `gantry bench --prompt
# SPEED_PROMPT (16) --gen SPEED_GEN (32) --threads SPEED_THREADS (1: on an
# oversubscribed host a 2-thread pool waits on a descheduled thread: SmolLM2
# F16 at load average 14 decoded 3.2-3.9 tok/s on 1 thread, 0.5-0.6 on 2),
# each row also as its speed over
# the base's in the same round; bench/eval_speed.py, $OUT/speed.json),
# LLAMACPP (a folder holding llama.cpp's llama-perplexity and llama-quantize:
# also run bench/eval_llamacpp.sh, llama.cpp's own KL divergence of its Q8_0
# and Q4_K_M of the same F16 bases over the same text and chunks),
# CALIB (the imatrix text), IMATRIX_CHUNKS (8 chunks of CTX tokens), QUANTIZE_ARGS / IMATRIX_ARGS (the verbs' argument
# templates, {in} {out} {type} {imatrix} {text} substituted; adjust them if
# the verbs' flags differ).
# Rows whose JSON exists are kept (delete one to redo it; FRESH=1 redoes
# all); models/ keeps every file it made.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/eval}
G=build/tools/gantry
TEXT=tests/data/public_domain.txt
TYPES=${TYPES-"q8_0 q6_k q5_k q4_k q4_0 q3_k q2_k"} # k-quant synth takes minutes each on 2 cores
BASE_TYPE=${BASE_TYPE:-f16}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-2}
THREADS=${THREADS:-2}
MODELS=${MODELS:-$HOME/.cache/gantry/models}
REAL=${REAL:-1}
CALIB=${CALIB:-}
QUANTIZE_ARGS=${QUANTIZE_ARGS:-"{in} {out} --type {type}"}
IMATRIX_ARGS=${IMATRIX_ARGS:-"-m {in} -f {text} -o {out} --chunks ${IMATRIX_CHUNKS:-8}"}
SHAPE=(--arch llama --layers 16 --hidden 2048 --heads 32 --kv-heads 8 --ffn 8192 --ctx 4096 --seed 1)
mkdir -p "$OUT" models
EVAL=(-f "$TEXT" --ctx "$CTX" --threads "$THREADS")
[ "$CHUNKS" != 0 ] && EVAL+=(--chunks "$CHUNKS")

fill() { # fill TEMPLATE key=value ...: the template with {key} replaced
  local s=$1; shift
  for kv in "$@"; do s=${s//\{${kv%%=*}\}/${kv#*=}}; done
  echo "$s"
}

base=models/synth-1b-eval-$BASE_TYPE.gguf
[ -f "$base" ] || $G synth -o "$base" "${SHAPE[@]}" --type "$BASE_TYPE"
logits=$OUT/base-$BASE_TYPE.logits
# A row whose JSON exists is kept, and so is the base's logits file (a
# rerun resumes, or adds TYPES, without running the base again); FRESH=1
# redoes all.
[ "${FRESH:-0}" = 1 ] && rm -f "$OUT"/*.json "$logits"
if [ -f "$logits" ] && [ -f "$OUT/1b-$BASE_TYPE.json" ]; then
  echo "== reusing $logits"
else
  echo "== $BASE_TYPE against itself (saves the base logits)"
  $G eval -m "$base" --base "$base" "${EVAL[@]}" --save-base "$logits" --force --json "$OUT/1b-$BASE_TYPE.json"
fi

have_quantize=0
$G quantize --help >/dev/null 2>&1 && have_quantize=1
imatrix=""
if [ $have_quantize = 1 ] && [ -n "$TYPES" ] && $G imatrix --help >/dev/null 2>&1; then
  [ -n "$CALIB" ] || { CALIB=$OUT/calib.txt; cat README.md docs/*.md > "$CALIB"; } # held out from $TEXT
  imatrix=$OUT/base-$BASE_TYPE.imatrix
  [ -f "$imatrix" ] || $G imatrix $(fill "$IMATRIX_ARGS" in="$base" out="$imatrix" text="$CALIB")
fi
[ $have_quantize = 1 ] && echo "== types from gantry quantize" || echo "== types from gantry synth (RTN, same seed)"

for t in $TYPES; do
  variants=("$t")
  [ -n "$imatrix" ] && variants+=("$t-imatrix")
  for v in "${variants[@]}"; do
    m=models/synth-1b-eval-$v.gguf
    [ -f "$OUT/1b-$v.json" ] && { echo "== $v: kept $OUT/1b-$v.json"; continue; }
    if [ ! -f "$m" ]; then
      if [ $have_quantize = 1 ]; then
        extra=""
        [ "$v" != "$t" ] && extra="--imatrix $imatrix"
        $G quantize $(fill "$QUANTIZE_ARGS" in="$base" out="$m" type="$t") $extra
      else
        $G synth -o "$m" "${SHAPE[@]}" --type "$t"
      fi
    fi
    echo "== $v against $BASE_TYPE"
    $G eval -m "$m" --base-logits "$logits" "${EVAL[@]}" --json "$OUT/1b-$v.json"
  done
done

if [ "$REAL" = 1 ]; then
  # The real checkpoints: the base is the shipped file dequantized to F16 by
  # `gantry quantize --type f16` (its own weights, losslessly widened up to
  # F16 rounding of d*q+m); every type is made from that base, plain and
  # with an importance matrix computed from the base over CALIB.
  [ -n "$CALIB" ] || { CALIB=$OUT/calib.txt; cat README.md docs/*.md > "$CALIB"; }
  for m in "$MODELS"/SmolLM2-135M-Instruct.Q4_1.gguf "$MODELS"/gemma-3-270m-q4_k_m.gguf; do
    [ -f "$m" ] || { echo "$m missing (scripts/fetch-models.sh); no rows"; continue; }
    b=$(basename "$m" .gguf)
    f16=models/$b-f16.gguf
    rl=$OUT/real-$b.logits
    [ -f "$f16" ] || $G quantize "$m" "$f16" --type f16
    if [ ! -f "$OUT/real-$b-f16.json" ] || [ ! -f "$rl" ]; then
      echo "== $b f16 against itself (saves its logits)"
      $G eval -m "$f16" --base "$f16" "${EVAL[@]}" --save-base "$rl" --force --json "$OUT/real-$b-f16.json"
    fi
    [ $have_quantize = 1 ] || continue
    im=$OUT/real-$b.imatrix
    [ -f "$im" ] || $G imatrix $(fill "$IMATRIX_ARGS" in="$f16" out="$im" text="$CALIB")
    for t in ${REAL_TYPES:-q8_0 q6_k q5_k_m q4_k_m q4_0 q3_k_m q2_k}; do
      for v in "$t" "$t-imatrix"; do
        q=models/$b-$v.gguf
        [ -f "$OUT/real-$b-$v.json" ] && continue
        extra=""
        [ "$v" != "$t" ] && extra="--imatrix $im"
        [ -f "$q" ] || $G quantize "$f16" "$q" --type "$t" $extra
        echo "== $b $v against its f16"
        $G eval -m "$q" --base-logits "$rl" "${EVAL[@]}" --json "$OUT/real-$b-$v.json"
      done
    done
  done
fi

# Decode speed (SPEED=1): per model, every row's file and its base in
# interleaved rounds (bench/eval_speed.py: SPEED_ROUNDS rounds of `gantry
# bench --rounds 1 --prompt SPEED_PROMPT --gen SPEED_GEN --threads SPEED_THREADS`,
# the order rotating per round), each file's speed relative to its base
# measured in the same round; into $OUT/speed.json.
if [ "${SPEED:-1}" = 1 ]; then
  SP=(--gantry "$G" --threads "${SPEED_THREADS:-1}" --rounds "${SPEED_ROUNDS:-3}" --prompt "${SPEED_PROMPT:-16}"
      --gen "${SPEED_GEN:-32}" --out "$OUT/speed.json")
  groups=("$OUT/1b-$BASE_TYPE.json")
  for j in "$OUT"/real-*-f16.json; do [ -f "$j" ] && groups+=("$j"); done
  for bj in "${groups[@]}"; do
    [ -f "$bj" ] || continue
    pre=${bj%-*.json} # bench/results/eval/1b or .../real-NAME
    echo "== decode speed: $(basename "$pre") rows, ${SPEED_ROUNDS:-3} interleaved rounds"
    /usr/bin/python3 bench/eval_speed.py "${SP[@]}" "$bj" "$pre"-*.json
  done
fi

# llama.cpp's own KL of its Q8_0 and Q4_K_M of the same F16 bases (LLAMACPP set).
[ -n "${LLAMACPP:-}" ] && LLAMACPP=$LLAMACPP CTX=$CTX CHUNKS=$CHUNKS THREADS=$THREADS bench/eval_llamacpp.sh

/usr/bin/python3 - "$OUT" <<'EOF'
import glob, json, os, statistics, sys
rows = []
sf = os.path.join(sys.argv[1], "speed.json")
speed = json.load(open(sf)) if os.path.exists(sf) else {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    if os.path.basename(f) == "speed.json":
        continue
    j = json.load(open(f))
    sp = speed.get(os.path.basename(f), {})
    j["decode_tps"] = statistics.median(sp["decode_tps"]) if sp else float("nan")
    j["vs_base"] = statistics.median(sp["vs_base"]) if sp else float("nan")
    j["vs_range"] = f" ({min(sp['vs_base']):.2f}–{max(sp['vs_base']):.2f})" if sp and len(sp["vs_base"]) > 1 else ""
    j["threads"] = sp.get("threads", 0)
    name = os.path.basename(j["model"]).replace(".gguf", "").replace("synth-1b-eval-", "1B synth ")
    rows.append((j["model_bytes"], name, j))
rows.sort(key=lambda r: (not r[1].startswith("1B"), r[1][:6], -r[0]))
print("| model | file MiB | perplexity | base | ratio | mean KL | median KL | p99 KL | top-1 | p99 max abs dlogit | decode tok/s | vs F16 (range) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for size, name, j in rows:
    p = j["perplexity"]
    print(f"| {name} | {size / 2**20:.0f} | {p['model']:.2f} | {p['base']:.2f} | {p['model'] / p['base']:.4f} | "
          f"{j['kl']['mean']:.5f} | {j['kl']['median']:.5f} | {j['kl']['p99']:.5f} | "
          f"{j['top1_agreement']:.4f} | {j['max_abs_dlogit']['p99']:.3f} | "
          + (f"{j['decode_tps']:.2f} | {j['vs_base']:.2f}{j['vs_range']} |" if j["vs_base"] == j["vs_base"] else "— | — |"))
print(f"\n{rows[0][2]['positions'] if rows else 0} scored positions per row (ctx {rows[0][2]['ctx'] if rows else 0}); "
      f"decode: median of the rounds, {max((r[2]['threads'] for r in rows), default=0)} threads")
EOF
