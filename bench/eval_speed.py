#!/usr/bin/python3
"""Decode speed of the accuracy table's rows, relative to their base.

  bench/eval_speed.py [--gantry G] [--threads T] [--rounds R] [--prompt P] [--gen N]
                      --out SPEED.json BASE_ROW.json ROW.json ...

Each ROW.json is a `gantry eval --json` row (its "model" is the file);
BASE_ROW.json is the row of the base (the F16 file). Every round runs
`gantry bench --rounds 1` once on every file of the group, the base
included, in an order that rotates from round to round, so the files share
the host's state of that round (the machine is shared and its load moves);
a file's speed relative to the base is the median over rounds of
(its tok/s / the base's tok/s in the same round). SPEED.json maps each row
file's name to {"model", "decode_tps": [per round], "vs_base": [per round],
"threads", "rounds", "prompt", "gen"}; entries of other groups already in it
are kept. Uses only the standard library."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def bench(a, model, tmp):
    out = os.path.join(tmp, "bench.json")
    cmd = [a.gantry, "bench", "-m", model, "--prompt", str(a.prompt), "--gen", str(a.gen),
           "--rounds", "1", "--bw-mib", "64", "--threads", str(a.threads), "--json", out]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"gantry bench of {model} failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    with open(out) as f:
        return json.load(f)["decode_tps"]["median"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gantry", default="build/tools/gantry")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--out", required=True)
    ap.add_argument("rows", nargs="+", help="the base's row first, then the others")
    a = ap.parse_args()
    for name, v in (("--threads", a.threads), ("--rounds", a.rounds), ("--prompt", a.prompt),
                    ("--gen", a.gen)):
        if v < 1:
            ap.error(f"{name} must be at least 1, not {v}")
    rows = list(dict.fromkeys(a.rows))  # the base once, even if a glob repeats it
    models = []
    for r in rows:
        with open(r) as f:
            models.append(json.load(f)["model"])
    tps = [[] for _ in rows]
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(a.rounds):
            k = rnd % len(rows)
            for i in list(range(k, len(rows))) + list(range(k)):
                tps[i].append(bench(a, models[i], tmp))
                print(f"round {rnd + 1}/{a.rounds} {os.path.basename(models[i])}: "
                      f"{tps[i][-1]:.2f} tok/s", flush=True)
    res = {}
    if os.path.exists(a.out):
        with open(a.out) as f:
            res = json.load(f)
    for i, r in enumerate(rows):
        vs = [t / b for t, b in zip(tps[i], tps[0])]
        res[os.path.basename(r)] = {"model": models[i], "decode_tps": tps[i], "vs_base": vs,
                                    "threads": a.threads, "rounds": a.rounds, "prompt": a.prompt,
                                    "gen": a.gen}
        print(f"{os.path.basename(models[i])}: median {statistics.median(tps[i]):.2f} tok/s, "
              f"{statistics.median(vs):.3f} x base")
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
