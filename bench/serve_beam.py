#!/usr/bin/python3
"""Beam search's cost in `gantry serve`: one request of 32 tokens with
beams 1 and with beams 4 on SmolLM2 (one thread), alternating, in one
session; and the same with `gantry run --beams W --ignore-eos`. Reports
each configuration's median time per request and the W=4 / W=1 ratio (the
server batches the 4 beams' rows in one step; `run` evaluates forks one by
one), measured in the same session so machine load moves both sides alike.

Usage: bench/serve_beam.py [GANTRY] [MODEL] [ROUNDS]"""
import os
import re
import statistics
import subprocess
import sys

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests", "mpi"))
GANTRY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build", "tools", "gantry")
MODEL = sys.argv[2] if len(sys.argv) > 2 else os.path.expanduser(
    "~/.cache/gantry/models/SmolLM2-135M-Instruct.Q4_1.gguf")
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
PROMPT = "The history of the printing press begins"
N = 32

import test_serve as ts  # noqa: E402  (its Server and Client)

ts.GANTRY = GANTRY


def main():
    serve, run = {1: [], 4: []}, {1: [], 4: []}
    srv = ts.Server(MODEL, ["--isa", "auto", "--threads", "1", "--max-batch-tokens", "64"])
    try:
        c = ts.Client(srv.port)
        for r in range(ROUNDS):
            for w in (1, 4):
                x = c.call(10 + 2 * r + (w == 4), "generate", {"prompt": PROMPT, "max_tokens": N, "beams": w})
                serve[w].append(x[3]["timing"]["total_ms"])
                print(f"serve beams {w}: {x[3]['usage']['completion_tokens']} tokens, score "
                      f"{x[3]['beam']['score']:.6f}, {x[3]['timing']['total_ms']:.0f} ms", flush=True)
    finally:
        srv.stop()
    for r in range(ROUNDS):
        for w in (1, 4):
            p = subprocess.run([GANTRY, "run", "-m", MODEL, "-p", PROMPT, "-n", str(N), "--beams", str(w),
                                "--ignore-eos", "--threads", "1"], capture_output=True, text=True, check=True)
            run[w].append(float(re.search(r"in ([\d.]+) s", p.stderr).group(1)) * 1e3)
    for name, d in (("serve", serve), ("run", run)):
        m1, m4 = statistics.median(d[1]), statistics.median(d[4])
        print(f"{name}: beams 1 {m1:.0f} ms, beams 4 {m4:.0f} ms per request (median of {ROUNDS}); "
              f"ratio {m4 / m1:.2f}")


if __name__ == "__main__":
    main()
