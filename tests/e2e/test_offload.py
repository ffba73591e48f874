#!/usr/bin/env python3
"""Routed experts offloaded to host memory (--device-mem), on one rank.

For tiny synthetic llama-moe and qwen2moe models (hidden 256, 2 layers, 8
experts top-2, vocabulary 4096; f32 and q8_0):
- a budget of one byte is refused with one sentence naming the bytes the
  smallest budget needs (n_expert_used = 2 experts per layer beside the
  dense weights, KV pool and activations);
- at exactly that budget a quarter of the experts (2 of 8) sit on the
  device, and the prompt logits (--logits-out) and greedy tokens are
  bit-identical to the run with every expert resident; the info log's
  counters show misses, and the bytes copied are (misses + predicted
  copies) times one expert's bytes (f32: the file's bytes, which the f32
  panels repack byte for byte);
- the predicted prefetch (layer 1 predicted from layer 0's output) copies
  experts that the route then uses (prefetch useful > 0, never more than
  the copies it started); with --no-expert-prefetch nothing is predicted
  and the bits are the same again;
- `gantry plan --device-mem` at its own minimum says 2 of 8 are resident;
- --expert-stats-out counts (n_prompt + n_gen - 1) x 2 routed pairs per
  layer, and a run placing the hottest experts first from that file gives
  the same bits again; a malformed statistics file is refused in one line."""
import os
import re
import subprocess
import sys
import tempfile

GANTRY = os.environ.get("GANTRY_BIN", "")
TMP = os.environ.get("GANTRY_TEST_TMP", tempfile.gettempdir())
PROMPT = [1, 17, 250, 3, 99, 640, 12, 7, 801, 44, 5, 300, 21, 9, 77, 512]
N_GEN = 6
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def run(args, env=None):
    return subprocess.run([GANTRY, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def synth(arch, typ):
    path = os.path.join(TMP, f"offload_{arch}_{typ}.gguf")
    p = run(["synth", "-o", path, "--arch", arch, "--layers", "2", "--hidden", "256", "--experts", "8",
             "--experts-used", "2", "--expert-ffn", "256", "--shared-ffn", "256", "--vocab", "4096",
             "--type", typ, "--seed", "5"])
    if p.returncode != 0:
        sys.exit(f"synth failed: {p.stderr}")
    return path


def gen(model, tag, extra=(), env=None):
    out = os.path.join(TMP, f"offload_{tag}.bin")
    p = run(["run", "-m", model, "--tokens", ",".join(map(str, PROMPT)), "-n", str(N_GEN), "--print-ids",
             "--ctx", "64", "--logits-out", out, *extra], env=env)
    if p.returncode != 0:
        return None, None, p.stderr
    with open(out, "rb") as f:
        return p.stdout.split(), f.read(), p.stderr


def minimum(stderr):
    m = re.search(r"needs at least (\d+) bytes", stderr)
    return int(m.group(1)) if m else None


def counters(stderr):
    m = re.search(r"expert cache total: (\d+) hits, (\d+) misses, (\d+) evictions, (\d+) bytes copied, "
                  r"[0-9.]+ s waiting, (\d+) prefetched, (\d+) prefetch useful", stderr)
    return tuple(map(int, m.groups())) if m else None


def one(arch, typ):
    label = f"{arch} {typ}"
    model = synth(arch, typ)
    ids, logits, err = gen(model, f"{arch}_{typ}_resident")
    check(ids is not None, f"{label}: resident run ({err.strip()[-300:]})")
    if ids is None:
        return
    ids1, _, err = gen(model, f"{arch}_{typ}_tiny", ["--device-mem", "1"])
    lines = [l for l in err.strip().splitlines() if l]
    need = minimum(err)
    check(ids1 is None and len(lines) == 1 and need is not None and "--device-mem" in lines[0],
          f"{label}: a 1-byte budget is refused in one sentence with the bytes needed: {lines[-1:]}")
    if need is None:
        return
    ids2, logits2, err = gen(model, f"{arch}_{typ}_offload", ["--device-mem", str(need)],
                             env={"GANTRY_LOG": "info"})
    check(ids2 is not None, f"{label}: offloaded run at {need} bytes ({err.strip()[-300:]})")
    if ids2 is None:
        return
    check("expert offload: 2 of 8 experts per layer on the device" in err,
          f"{label}: the smallest budget holds a quarter of the experts")
    check(ids2 == ids and logits2 == logits,
          f"{label}: offloaded logits and tokens bit-identical to the resident run")
    c = counters(err)
    check(c is not None and c[1] > 0 and c[3] > 0, f"{label}: counters show misses and bytes copied: {c}")
    expert = 3 * 256 * 256 * 4
    if c and typ == "f32":
        check(c[3] == (c[1] + c[4]) * expert,
              f"{label}: {c[3]} bytes copied = ({c[1]} misses + {c[4]} predicted) x {expert} bytes")
    if c:
        check(c[0] + c[1] > 0 and c[2] <= c[1] + c[4],
              f"{label}: evictions {c[2]} <= misses {c[1]} + predicted copies {c[4]}")
        check(0 < c[5] <= c[4] and c[5] <= c[0],
              f"{label}: predicted copies routed to: 0 < {c[5]} <= {c[4]} copies, <= {c[0]} hits")
    ids7, logits7, err = gen(model, f"{arch}_{typ}_no_prefetch", ["--device-mem", str(need), "--no-expert-prefetch"],
                             env={"GANTRY_LOG": "info"})
    c7 = counters(err) if ids7 is not None else None
    check(ids7 == ids and logits7 == logits and "predicted prefetch off" in err,
          f"{label}: --no-expert-prefetch gives the same bits")
    check(c7 is not None and c7[4] == 0 and c7[5] == 0 and (typ != "f32" or c7[3] == c7[1] * expert),
          f"{label}: --no-expert-prefetch predicts nothing and copies misses only: {c7}")
    ids3, _, err = gen(model, f"{arch}_{typ}_one_less", ["--device-mem", str(need - 1)])
    check(ids3 is None and minimum(err) == need, f"{label}: one byte less is refused")

    # Plan at its own minimum (its activations differ from run's --logits-out rows).
    p = run(["plan", "-m", model, "--ctx", "64", "--device-mem", "1"])
    pneed = minimum(p.stderr)
    check(p.returncode != 0 and pneed is not None, f"{label}: plan refuses a 1-byte budget")
    if pneed:
        p = run(["plan", "-m", model, "--ctx", "64", "--device-mem", str(pneed)])
        check(p.returncode == 0 and "2 of 8 experts per layer resident" in p.stdout,
              f"{label}: plan shows 2 of 8 experts resident per layer")

    # Routing statistics: count, then place the hottest first.
    stats = os.path.join(TMP, f"offload_{arch}_{typ}.stats")
    ids4, _, err = gen(model, f"{arch}_{typ}_count", ["--expert-stats-out", stats])
    check(ids4 == ids, f"{label}: counting run ({err.strip()[-200:]})")
    if ids4 is not None:
        with open(stats) as f:
            rows = [l.split() for l in f if l.startswith("layer")]
        want = (len(PROMPT) + N_GEN - 1) * 2
        check(len(rows) == 2 and all(len(r) == 10 and sum(map(int, r[2:])) == want for r in rows),
              f"{label}: statistics count {want} routed pairs in each of 2 layers")
        ids5, logits5, err = gen(model, f"{arch}_{typ}_hot", ["--device-mem", str(need), "--expert-stats", stats],
                                 env={"GANTRY_LOG": "info"})
        check(ids5 == ids and logits5 == logits and "hottest first" in err,
              f"{label}: hottest-first placement gives the same bits")
    bad = os.path.join(TMP, "offload_bad.stats")
    with open(bad, "w") as f:
        f.write("gantry-expert-stats 1\nexperts 4\n")
    ids6, _, err = gen(model, f"{arch}_{typ}_bad", ["--device-mem", str(need), "--expert-stats", bad])
    lines = [l for l in err.strip().splitlines() if l]
    check(ids6 is None and len(lines) == 1 and "4 experts" in lines[0],
          f"{label}: a statistics file for another model is refused: {lines[-1:]}")


def main():
    if not GANTRY or not os.path.exists(GANTRY):
        print("gantry binary not found (GANTRY_BIN); skipping")
        sys.exit(77)
    for arch in ("llama-moe", "qwen2moe"):
        for typ in ("f32", "q8_0"):
            one(arch, typ)
    if failures:
        print(f"{len(failures)} failures")
        sys.exit(1)
    print("all passed")


main()
