#!/usr/bin/python3
"""Where a decode step's time goes, against the bandwidth roofline.

  bench/decode_account.py RUN.json [RUN2.json ...]

Each RUN.json is a `gantry bench --json` file of a dense llama-family model
whose `--trace PREFIX` was written beside it as PREFIX.rank0.json (PREFIX =
RUN.json without .json). From the trace's per-layer spans of the decode
steps (every step after the prefill) it splits the median step into
attention blocks (q/k/v/o products, rope, KV append, attention over the
cache, norms; split into the attention over the cache, against the K and
V bytes it reads, and the rest, where the trace has the kernel's spans),
FFN blocks (gate/up/down, SiLU, norms) and the rest (the LM head, the
final norm, sampling and the step's fork-joins and bookkeeping), and sets
each against the time its bytes take at the bandwidth measured in
the same round (weights from the GGUF tensor table, plus the f16 K and V
rows read). Printed per part: ms, bytes, GB/s achieved, fraction of the
measured bandwidth, and the ms lost to the roofline. Each part's ms is its
own median over the steps (robust on a loaded host), so they need not add
up to the median step."""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gguf  # noqa: E402


def part_bytes(model):
    g = gguf.GGUFFile(model)
    attn = ffn = head = 0
    for t in g.tensors.values():
        n = t.name
        if n.startswith("blk.") and any(k in n for k in ("attn_q.", "attn_k.", "attn_v.", "attn_output.")):
            attn += t.nbytes
        elif n.startswith("blk.") and any(k in n for k in ("ffn_gate.", "ffn_up.", "ffn_down.")):
            ffn += t.nbytes
        elif n == "output.weight" or (n == "token_embd.weight" and "output.weight" not in g.tensors):
            head += t.nbytes
    hp = {k.split(".")[-1]: v for k, v in g.kv.items() if isinstance(v, int)}
    n_layer = hp.get("block_count")
    n_embd, n_head, n_kv = hp.get("embedding_length"), hp.get("head_count"), hp.get("head_count_kv")
    kv_row = 2 * (n_embd // n_head) * n_kv * 2  # K and V, f16, per position and layer
    return attn, ffn, head, n_layer, kv_row


def account(path):
    run = json.load(open(path))
    trace = json.load(open(path[:-5] + ".rank0.json"))["traceEvents"]
    spans = [e for e in trace if e.get("ph") == "X" and e.get("cat") == "layer"]
    kern = [e for e in trace if e.get("ph") == "X" and e.get("cat") == "kernel"]
    attn_b, ffn_b, head_b, n_layer, kv_row = part_bytes(run["model"])
    steps = [spans[i:i + 2 * n_layer] for i in range(0, len(spans), 2 * n_layer)]
    steps = steps[1:]  # the first is the prefill
    rows = []
    for i in range(len(steps) - 1):
        s, nxt = steps[i], steps[i + 1]
        t0, t1 = s[0]["ts"], nxt[0]["ts"]
        wall = (t1 - t0) / 1e3
        a = sum(e["dur"] for e in s if e["name"].endswith(" attention")) / 1e3
        f = sum(e["dur"] for e in s if e["name"].endswith("ffn")) / 1e3
        kv = sum(e["dur"] for e in kern if t0 <= e["ts"] < t1 and e["name"].endswith("kv attention")) / 1e3
        rows.append((wall, a, f, wall - a - f, kv, a - kv))
    med = lambda j: statistics.median(r[j] for r in rows)  # noqa: E731
    wall, a, f, rest, kv_ms, proj_ms = med(0), med(1), med(2), med(3), med(4), med(5)
    pos = run["n_prompt"] + run["n_gen"] // 2
    kv_b = kv_row * pos * n_layer
    bw = run["bandwidth_gbs"]["median"]
    print(f"{run['type']} {run['threads']} thread(s): step {wall:.1f} ms median over {len(rows)} steps, "
          f"bandwidth {bw:.1f} GB/s, bench roofline {run['decode_roofline_fraction']['median']:.0%}")
    print(f"  {'part':22s} {'ms':>7s} {'share':>6s} {'MiB':>7s} {'GB/s':>6s} {'of bw':>6s} {'lost ms':>8s}")
    total_ideal = 0
    parts = [("attention (+KV reads)", a, attn_b + kv_b), ("ffn", f, ffn_b),
             ("head + rest of step", rest, head_b)]
    if kv_ms > 0:  # the trace has the attention kernel's own spans: split the block
        parts[0:1] = [("  q/k/v/o, norms, rope", proj_ms, attn_b), ("  attention over KV", kv_ms, kv_b)]
    for name, ms, b in parts:
        ideal = b / (bw * 1e9) * 1e3
        total_ideal += ideal
        print(f"  {name:22s} {ms:7.2f} {ms / wall:6.1%} {b / 2**20:7.1f} {b / ms / 1e6:6.1f} "
              f"{ideal / ms:6.0%} {ms - ideal:8.2f}")
    print(f"  {'step':22s} {wall:7.2f} {1:6.0%} {(attn_b + kv_b + ffn_b + head_b) / 2**20:7.1f} "
          f"{(attn_b + kv_b + ffn_b + head_b) / wall / 1e6:6.1f} {total_ideal / wall:6.0%} "
          f"{wall - total_ideal:8.2f}")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        account(p)
