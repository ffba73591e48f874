#!/usr/bin/env python3
"""Expert offload on a grid: `mpirun -np 2 gantry run --tp 2 --device-mem B`.

Each rank holds column slices of every expert and its own expert cache. On
a tiny qwen2moe (q8_0, 8 experts top-2, 2 layers) with a budget at the
grid's minimum (each rank 2 of 8 experts per layer on the device, read
from the refusal of a 1-byte budget), the greedy tokens must equal the
one-rank resident run, and both ranks must log cache misses."""
import os
import re
import subprocess
import sys
import tempfile

GANTRY = os.environ.get("GANTRY_BIN", "")
MPIEXEC = os.environ.get("GANTRY_MPIEXEC", "mpirun")
TMP = os.environ.get("GANTRY_TEST_TMP", tempfile.gettempdir())
MPI_ARGS = ["--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader"]
PROMPT = "1,17,250,3,99,640,12,7,801,44,5,300"
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def main():
    if not GANTRY or not os.path.exists(GANTRY):
        print("gantry binary not found (GANTRY_BIN); skipping")
        sys.exit(77)
    env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    model = os.path.join(TMP, "offload_grid_qwen2moe.gguf")
    p = run([GANTRY, "synth", "-o", model, "--arch", "qwen2moe", "--layers", "2", "--hidden", "256",
             "--experts", "8", "--experts-used", "2", "--expert-ffn", "256", "--shared-ffn", "256",
             "--vocab", "4096", "--type", "q8_0", "--seed", "9"])
    if p.returncode != 0:
        sys.exit(f"synth failed: {p.stderr}")
    args = ["run", "-m", model, "--tokens", PROMPT, "-n", "8", "--print-ids", "--ignore-eos", "--ctx", "64"]
    one = run([GANTRY, *args])
    check(one.returncode == 0, f"one rank, resident ({one.stderr.strip()[-200:]})")
    grid = [MPIEXEC, "-np", "2", *MPI_ARGS, GANTRY, *args, "--tp", "2"]
    tiny = run(grid + ["--device-mem", "1"], env)
    m = re.search(r"needs at least (\d+) bytes", tiny.stderr)
    check(tiny.returncode != 0 and m is not None, f"tp 2: a 1-byte budget is refused with the bytes needed")
    if m:
        off = run(grid + ["--device-mem", m.group(1)], {**env, "GANTRY_LOG": "info"})
        check(off.returncode == 0, f"tp 2 offloaded run ({off.stderr.strip()[-300:]})")
        check(off.stdout.split() == one.stdout.split() and len(one.stdout.split()) == 8,
              f"tp 2 offloaded tokens {off.stdout.split()} equal one rank's {one.stdout.split()}")
        slots = re.findall(r"expert offload: 2 of 8 experts per layer", off.stderr)
        misses = [int(x) for x in re.findall(r"expert cache total: \d+ hits, (\d+) misses", off.stderr)]
        check(len(slots) == 2 and len(misses) == 2 and all(x > 0 for x in misses),
              f"both ranks hold 2 of 8 experts per layer and miss: {misses}")
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("all passed")


main()
