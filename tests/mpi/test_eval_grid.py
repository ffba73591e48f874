#!/usr/bin/env python3
"""`gantry eval` on a grid against one rank.

A small synthetic llama (2 layers, hidden 64, 4 query and 2 kv heads, the
llama-spm vocabulary) in F32 is the base and its Q4_0 sibling (same seed)
the model; scalar kernels (--isa ref) keep activations in fp32, so a grid
changes only the order of partial sums (tests/mpi/test_coordinator.py).
- tp 2 and pp 2 (both models loaded one after the other on the same grid):
  perplexities and KL mean/median/p99/max within 1e-3 relative of one rank
  (pp 2: identical, a pipeline changes no sum), top-1 agreement within one
  position, the same position count;
- base logits saved by a tp 2 run and read by a one-rank run give that
  one-rank run's model numbers and the tp 2 run's base perplexity;
- refusals end every rank with one sentence: a base of another vocabulary
  (before anything is loaded), and a logits file over --max-bytes (inside
  the base run, so the other ranks must learn rank 0's verdict).
Skips (77) without the gantry binary."""
import json
import os
import subprocess
import sys

GANTRY = os.environ.get("GANTRY_BIN", "")
MPIEXEC = os.environ.get("GANTRY_MPIEXEC", "mpirun")
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
TEXT = os.path.join(SRC, "tests", "data", "public_domain.txt")
TMP = os.environ.get("GANTRY_TEST_TMP", "/tmp")
MPI_ARGS = ["--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader"]
SHAPE = ["--arch", "llama", "--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2",
         "--ffn", "128", "--seed", "9"]
EVAL = ["-f", TEXT, "--ctx", "32", "--chunks", "2", "--isa", "ref"]
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def gantry(args, tp=1, pp=1):
    cmd = [GANTRY, *args]
    if tp * pp > 1:
        cmd = [MPIEXEC, "-np", str(tp * pp), *MPI_ARGS, *cmd, "--tp", str(tp), "--pp", str(pp)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def evaluate(args, tp=1, pp=1, tag="x"):
    out = os.path.join(TMP, f"evalgrid_{tag}.json")
    if os.path.exists(out):
        os.remove(out)
    p = gantry(["eval", *args, *EVAL, "--json", out], tp, pp)
    if p.returncode != 0:
        return None, p.stderr[-600:]
    with open(out) as f:
        return json.load(f), ""


def close(a, b, rel):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def compare(label, got, ref, rel):
    check(got["positions"] == ref["positions"], f"{label}: {got['positions']} positions")
    for sec, keys in (("perplexity", ("model", "base")), ("kl", ("mean", "median", "p99", "max"))):
        for k in keys:
            g, r = got[sec][k], ref[sec][k]
            check(close(g, r, rel), f"{label}: {sec}.{k} {g:.9g} vs one rank {r:.9g} (rel {rel})")
    d = abs(got["top1_same"] - ref["top1_same"])
    check(d <= (1 if rel else 0), f"{label}: top-1 {got['top1_same']} vs one rank {ref['top1_same']} positions")


def refused_once(p, *words):
    lines = [l for l in p.stderr.strip().splitlines() if l.startswith("gantry eval")]
    return p.returncode != 0 and len(lines) == 1 and all(w in lines[0] for w in words), lines


def main():
    if not GANTRY or not os.path.exists(GANTRY):
        print("gantry binary missing; skipping")
        return 77
    models = {}
    for t in ("f32", "q4_0"):
        models[t] = os.path.join(TMP, f"evalgrid_{t}.gguf")
        p = gantry(["synth", "-o", models[t], *SHAPE, "--type", t])
        if p.returncode != 0:
            sys.exit(p.stderr)
    pair = ["-m", models["q4_0"], "--base", models["f32"]]
    ref, err = evaluate(pair, tag="one")
    check(ref is not None and ref["kl"]["mean"] > 0, f"one rank: {err}")
    if ref is None:
        return 1
    for tp, pp, rel in ((2, 1, 1e-3), (1, 2, 0.0)):
        saved = os.path.join(TMP, f"evalgrid_tp{tp}_pp{pp}.logits")
        got, err = evaluate(pair + ["--save-base", saved], tp, pp, f"tp{tp}pp{pp}")
        check(got is not None, f"tp {tp} pp {pp}: ran {err}")
        if got is None:
            continue
        check(got["ranks"] == 2 and got["tp"] == tp and got["pp"] == pp, f"tp {tp} pp {pp}: the JSON names the grid")
        compare(f"tp {tp} pp {pp}", got, ref, rel)
        again, err = evaluate(["-m", models["q4_0"], "--base-logits", saved], tag=f"reuse{tp}{pp}")
        check(again is not None and again["perplexity"]["base"] == got["perplexity"]["base"]
              and close(again["perplexity"]["model"], ref["perplexity"]["model"], 1e-12),
              f"tp {tp} pp {pp}: its saved base logits read on one rank {err}")
    vg = os.path.join(TMP, "evalgrid_gpt2.gguf")
    gpt2 = os.path.join(SRC, "tests", "data", "vocab", "ggml-vocab-gpt-2.gguf")
    gantry(["synth", "-o", vg, *SHAPE, "--vocab-from", gpt2])
    p = gantry(["eval", "-m", vg, "--base", models["f32"], *EVAL], 2, 1)
    ok, lines = refused_once(p, "vocabulary")
    check(ok, f"tp 2: a base of another vocabulary is refused once: {lines}")
    p = gantry(["eval", *pair, *EVAL, "--max-bytes", "1K"], 2, 1)
    ok, lines = refused_once(p, "--max-bytes")
    check(ok, f"tp 2: a base logits file over --max-bytes is refused once, every rank stops: {lines}")
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("all passed")
    return 0


sys.exit(main())
