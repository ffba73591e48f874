#!/usr/bin/python3
"""End to end: `gantry bench --json` writes valid JSON whatever the model path.

A tiny synthetic model is written under a folder whose name holds a double
quote, a backslash and a tab; a short bench (--prompt 8 --gen 2 --rounds 1)
writes its results with --json, and Python's json module must parse them and
give back the exact model path, with the fields the benchmark pages read.
Without escaping, the quote ends the string early and the parse fails.

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
    shutil.rmtree(folder, ignore_errors=True)
    for b in bad:
        print("FAIL: " + b)
    if bad:
        return 1
    print("bench --json parses and names the model path exactly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
