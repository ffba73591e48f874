#!/usr/bin/python3
"""Summarizes an interleaved A/B of two gantry binaries (bench/run_ab.sh).

  bench/ab_summary.py DIR

DIR holds `gantry bench --json` files named {base,new}-TYPE-tTHREADS-rROUND.json.
For each type and thread count it prints the decode roofline fraction of
every round (each against the bandwidth measured in that same round), the
medians, in how many rounds the new binary was higher, and the median of
the per-round decode tok/s ratios new/base."""
import collections
import glob
import json
import os
import re
import statistics
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/ab_summary.py DIR")
    runs = collections.defaultdict(dict)  # (type, threads) -> {(side, round): json}
    for f in glob.glob(os.path.join(sys.argv[1], "*.json")):
        m = re.match(r"(base|new)-(.+)-t(\d+)-r(\d+)\.json$", os.path.basename(f))
        if not m:
            continue
        with open(f) as fh:
            runs[(m.group(2), int(m.group(3)))][(m.group(1), int(m.group(4)))] = json.load(fh)
    print("| type, threads | base: roofline median (per round) | new: median (per round) "
          "| rounds higher | decode tok/s, pairwise ratio median | bw GB/s median |")
    print("|---|---|---|---|---|---|")
    for (typ, th), d in sorted(runs.items()):
        rounds = sorted({r for (s, r) in d if ("base", r) in d and ("new", r) in d})
        if not rounds:
            continue
        rf = {s: [d[(s, r)]["decode_roofline_fraction"]["median"] * 100 for r in rounds]
              for s in ("base", "new")}
        tps = {s: [d[(s, r)]["decode_tps"]["median"] for r in rounds] for s in ("base", "new")}
        bw = [d[(s, r)]["bandwidth_gbs"]["median"] for s in ("base", "new") for r in rounds]
        higher = sum(1 for a, b in zip(rf["base"], rf["new"]) if b > a)
        ratio = statistics.median(b / a for a, b in zip(tps["base"], tps["new"]))
        fmt = lambda v: "%.0f%% (%s)" % (statistics.median(v), ", ".join("%.0f" % x for x in v))
        print("| %s, %d | %s | %s | %d of %d | %.2f× | %.1f |" % (
            typ.upper(), th, fmt(rf["base"]), fmt(rf["new"]), higher, len(rounds), ratio,
            statistics.median(bw)))


if __name__ == "__main__":
    main()
