#!/usr/bin/env python3
"""Speculative decoding on a grid: the verification is a step plan of K + 1
rows with full logits gathered to rank 0, and the rejected rows are dropped
by a truncation every rank executes with the next step. Under
`mpirun -np 2` at --tp 2 and at --pp 2 (micro-batches), greedy speculation
with prompt lookup (K 1, 3, 8), a draft model and a self-draft must print the
single-rank plain decode's token ids."""
import os
import re
import subprocess
import sys
import tempfile

GANTRY = os.environ.get("GANTRY_BIN", "")
MPIEXEC = os.environ.get("GANTRY_MPIEXEC", "mpirun")
TMP = os.environ.get("GANTRY_TEST_TMP", tempfile.gettempdir())
MPI_ARGS = ["--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader"]
ENV = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)


def main():
    if not GANTRY or not os.path.exists(GANTRY):
        print("gantry binary not found (GANTRY_BIN); skipping")
        sys.exit(77)
    target = os.path.join(TMP, "spec_grid_target.gguf")
    draft = os.path.join(TMP, "spec_grid_draft.gguf")
    for path, args in ((target, ["--layers", "4", "--hidden", "128", "--ffn", "256", "--seed", "5"]),
                       (draft, ["--layers", "1", "--hidden", "64", "--heads", "2", "--kv-heads", "1", "--seed", "6"])):
        p = run([GANTRY, "synth", "-o", path, "--arch", "llama", "--vocab", "512", "--type", "q8_0", *args])
        if p.returncode != 0:
            sys.exit(f"synth failed: {p.stderr}")
    base = ["run", "-m", target, "--tokens", "1,5,9,33,2,7,5,9,33,2,7", "-n", "24", "--print-ids", "--threads", "1"]
    plain = run([GANTRY, *base])
    if plain.returncode != 0:
        sys.exit(f"plain run failed: {plain.stderr}")
    for grid in (["--tp", "2"], ["--tp", "1", "--pp", "2"]):
        for extra in (["--lookup", "3", "--draft-tokens", "1"], ["--lookup", "3", "--draft-tokens", "3"],
                      ["--lookup", "3", "--draft-tokens", "8"], ["--draft", draft, "--draft-tokens", "3"],
                      ["--self-draft", "2", "--draft-tokens", "4"]):
            p = run([MPIEXEC, "-np", "2", *MPI_ARGS, GANTRY, *base, *grid, *extra])
            m = re.search(r"(\d+) of (\d+) drafted tokens accepted", p.stderr)
            check(p.returncode == 0 and p.stdout == plain.stdout and m is not None,
                  f"{' '.join(grid)} {' '.join(extra[::2])} {extra[-1]}: ids equal one rank's plain decode "
                  f"({m.group(0) if m else p.stderr.strip()[-300:]})")
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)


if __name__ == "__main__":
    main()
