#!/usr/bin/python3
"""End to end: `gantry bench --json` writes valid JSON whatever the model path.

A tiny synthetic model is written under a folder whose name holds a double
quote, a backslash and a tab; a short bench (--prompt 8 --gen 2 --rounds 1)
writes its results with --json, and Python's json module must parse them and
give back the exact model path, with the fields the benchmark pages read.
Without escaping, the quote ends the string early and the parse fails.

With --trace, each layer's attention span holds exactly one span of the
attention over the KV cache (bench/decode_account.py reads them); the
issue-time binary, which has none, fails this.

Then a tiny qwen3moe model (8 experts, 2 per token): with one sequence every
decode step runs exactly 2 experts per layer, so the expert bytes the engine
counted as it ran them must equal 2/8 of the experts it holds, and the bytes
per step the roofline divides by must be the dense weights plus those
experts, not every expert; with 4 sequences a step runs between 2 and 8 of
them.

Exit 77 (skip) only when the gantry binary does not exist.
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd!r} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p.stdout


def main():
    if not os.path.exists(GANTRY):
        print(f"{GANTRY} not built; skipping")
        return 77
    folder = os.path.join(TMP, 'bench "json" \\ dir\twith tab')
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    model = os.path.join(folder, 'tiny "q" \\ b.gguf')
    out = os.path.join(folder, "bench.json")
    run([GANTRY, "synth", "-o", model, "--arch", "llama", "--layers", "1", "--hidden", "64",
         "--heads", "2", "--kv-heads", "1", "--ffn", "128", "--vocab", "256", "--ctx", "64"])
    run([GANTRY, "bench", "-m", model, "--prompt", "8", "--gen", "2", "--rounds", "1",
         "--bw-mib", "16", "--json", out])
    with open(out, "r", encoding="utf-8") as f:
        text = f.read()
    try:
        r = json.loads(text)
    except ValueError as e:
        print(f"FAIL: bench --json is not JSON ({e}):\n{text}")
        return 1
    bad = []
    if r.get("model") != model:
        bad.append(f"model {r.get('model')!r} != {model!r}")
    if r.get("arch") != "llama":
        bad.append(f"arch {r.get('arch')!r}")
    for key, want in (("n_prompt", 8), ("n_gen", 2), ("rounds", 1), ("batch", 1)):
        if r.get(key) != want:
            bad.append(f"{key} {r.get(key)!r} != {want}")
    for key in ("prefill_tps", "decode_tps", "bandwidth_gbs"):
        if not isinstance(r.get(key), dict) or r[key].get("best", 0) <= 0:
            bad.append(f"{key} {r.get(key)!r}")
    bad += trace_spans(folder, model)
    bad += moe_bytes(folder)
    shutil.rmtree(folder, ignore_errors=True)
    for b in bad:
        print("FAIL: " + b)
    if bad:
        return 1
    print("bench --json parses and names the model path exactly")
    return 0


def trace_spans(folder, model):
    """--trace: every layer's attention span holds exactly one span of the
    attention over the KV cache (category "kernel"), which decode_account.py
    sets against the K and V bytes."""
    prefix = os.path.join(folder, "tr")
    run([GANTRY, "synth", "-o", model + "2", "--arch", "llama", "--layers", "2", "--hidden", "64",
         "--heads", "2", "--kv-heads", "1", "--ffn", "128", "--vocab", "256", "--ctx", "64"])
    run([GANTRY, "bench", "-m", model + "2", "--prompt", "8", "--gen", "3", "--rounds", "1",
         "--bw-mib", "16", "--trace", prefix])
    with open(prefix + ".rank0.json", "r", encoding="utf-8") as f:
        ev = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
    layers = [e for e in ev if e.get("cat") == "layer" and e["name"].endswith(" attention")]
    kern = [e for e in ev if e.get("cat") == "kernel"]
    bad = []
    if len(layers) < 2 * 3 or len(kern) != len(layers):
        bad.append(f"trace: {len(layers)} attention spans and {len(kern)} kernel spans "
                   f"(expected as many, at least 2 layers x 3 steps)")
    for L in layers:
        name = L["name"].replace(" attention", " kv attention")
        inside = [k for k in kern if k["name"] == name and L["ts"] <= k["ts"] and
                  k["ts"] + k["dur"] <= L["ts"] + L["dur"] + 1e-3]
        if len(inside) != 1:
            bad.append(f"trace: {L['name']} at {L['ts']} holds {len(inside)} '{name}' spans")
            break
    return bad


def moe_bytes(folder):
    model = os.path.join(folder, "moe.gguf")
    run([GANTRY, "synth", "-o", model, "--arch", "qwen3moe", "--layers", "2", "--hidden", "64",
         "--heads", "2", "--kv-heads", "1", "--ffn", "128", "--experts", "8", "--experts-used", "2",
         "--expert-ffn", "64", "--vocab", "256", "--ctx", "64"])
    bad = []
    for batch in (1, 4):
        out = os.path.join(folder, f"moe{batch}.json")
        text = run([GANTRY, "bench", "-m", model, "--prompt", "8", "--gen", "3", "--rounds", "1",
                    "--bw-mib", "16", "--batch", str(batch), "--json", out])
        with open(out, "r", encoding="utf-8") as f:
            r = json.load(f)
        dense, held = r["moe_dense_bytes"], r["moe_expert_bytes_held"]
        step = r["moe_expert_bytes_per_decode_step"]
        # 2 layers x 8 experts of gate + up [64 x 64] and down [64 x 64], f32
        if held != 2 * 8 * 3 * 64 * 64 * 4:
            bad.append(f"moe: {held} expert bytes held, expected {2 * 8 * 3 * 64 * 64 * 4}")
        if r["weight_bytes"] != dense + held * 2 // 8:
            bad.append(f"moe: weight_bytes {r['weight_bytes']} != dense {dense} + 2/8 of {held}")
        lo, hi = held * 2 / 8, held * min(8, 2 * batch) / 8
        if batch == 1 and step != lo:
            bad.append(f"moe batch 1: {step} expert bytes per step, expected exactly {lo}")
        if not lo <= step <= hi:
            bad.append(f"moe batch {batch}: {step} expert bytes per step outside {lo}..{hi}")
        # K and V: 2 layers x 1 kv head x 32 f16 values, over 8 + 3/2 positions per sequence
        kv = 2 * 2 * (1 * 32 * 2) * (8 + 3 / 2) * batch
        if abs(r["bytes_per_decode_step"] - (dense + step + kv)) > 1:
            bad.append(f"moe batch {batch}: {r['bytes_per_decode_step']} bytes per step is not the "
                       f"dense {dense} + experts run {step} + KV {kv} (all experts: {held})")
        if "MoE: 2 of 8 experts per token" not in text:
            bad.append(f"moe: bench output does not name the routed experts:\n{text}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
