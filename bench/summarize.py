#!/usr/bin/env python3
"""Summarises `gantry bench` JSON files: best and median per (type, threads)
over rounds, with the bandwidth measured in the same runs. Prints a
Markdown table for docs/benchmarks.md."""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(folder):
    runs = defaultdict(list)
    for f in sorted(Path(folder).glob("*.json")):
        r = json.loads(f.read_text())
        runs[(r["type"], r["threads"])].append(r)
    print("| type | threads | decode tok/s best (median) | roofline fraction best (median) "
          "| prefill 512 tok/s best (median) | bandwidth GB/s best (median) | weights MiB | rounds |")
    print("|---|---|---|---|---|---|---|---|")
    for (typ, th), rs in sorted(runs.items()):
        def bm(key):
            v = [x[key]["best"] for x in rs]
            return max(v), statistics.median(v)
        d, p, f, b = bm("decode_tps"), bm("prefill_tps"), bm("decode_roofline_fraction"), bm("bandwidth_gbs")
        print(f"| {typ} | {th} | {d[0]:.2f} ({d[1]:.2f}) | {f[0]*100:.0f}% ({f[1]*100:.0f}%) "
              f"| {p[0]:.1f} ({p[1]:.1f}) | {b[0]:.1f} ({b[1]:.1f}) | {rs[0]['weight_bytes']/2**20:.0f} | {len(rs)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
