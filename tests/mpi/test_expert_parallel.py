#!/usr/bin/env python3
"""Expert parallelism (--ep): MoE models under mpirun against the numpy
reference (tests/reference/) and against one rank.

For every MoE architecture in EP_ARCHS (F32 and one quantized type each) a
small model (2 layers, hidden 256, 8 experts, 2 used, vocabulary 4096) is
run with --ep 2 on 2 ranks, --ep 4 on 4 ranks and --tp 2 --pp 2 --ep 2 on
4 ranks (and, once, --ep 2 inside a stage group of 4: ep < tp):
  - the prompt logits agree with the float64 reference within the weight
    type's bound of tests/e2e/test_reference.py (F32: 0.005 max, 0.001 rms,
    the f16 KV cache's rounding; Q8_0: 0.12 / 0.025, 8-bit activations),
    taking the reference's side of any routing near-tie as that test does;
  - the greedy tokens equal the single-rank run's.
A model whose routers are zeroed sends every token to the same two experts
(0 and 1, the lowest indices of an exact tie), both on EP rank 0, so every
other rank's all-to-all blocks are empty: it still matches the reference
and one rank, and `gantry bench` reports all routed rows on rank 0. A top-1
copy sends every token to expert 0 alone, with the same checks.
Impossible layouts stop every rank with one sentence.
Added time: about 30 s on 2 cores."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from gguf import GGUFFile  # noqa: E402
from model import Model  # noqa: E402

GANTRY = os.environ.get("GANTRY_BIN", "")
MPIEXEC = os.environ.get("GANTRY_MPIEXEC", "mpirun")
TMP = os.environ.get("GANTRY_TEST_TMP", tempfile.gettempdir())
MPI_ARGS = ["--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader"]

# The MoE architectures to run; a new one (qwen3moe) only needs its name here.
EP_ARCHS = ["llama-moe", "qwen2moe", "qwen3moe"]
# (max abs, rms) logit bounds against the reference, from tests/e2e/test_reference.py.
BOUNDS = {"f32": (0.005, 0.001), "q8_0": (0.12, 0.025)}
LAYOUTS = [(2, ["--ep", "2"]), (4, ["--ep", "4"]), (4, ["--tp", "2", "--pp", "2", "--ep", "2"])]
N_VOCAB = 4096
SHAPE = ["--layers", "2", "--hidden", "256", "--heads", "4", "--kv-heads", "2", "--ffn", "512",
         "--vocab", str(N_VOCAB), "--seed", "11", "--experts", "8", "--experts-used", "2",
         "--expert-ffn", "256", "--shared-ffn", "512"]
ROUTER_TIE, MAX_ROUTER_TIES = 0.06, 3  # as in tests/e2e/test_reference.py
rng = np.random.default_rng(2024)
PROMPT = [int(t) for t in rng.integers(3, N_VOCAB, 24)]
N_GEN = 8
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def run(cmd, timeout=120):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p, time.time() - t0


def gantry_run(model, np_=1, flags=()):
    """Greedy ids and prompt logits [len(PROMPT), N_VOCAB], or (None, None, stderr)."""
    out = os.path.join(TMP, "ep_logits.bin")
    if os.path.exists(out):
        os.unlink(out)
    args = ["run", "-m", model, "--tokens", ",".join(map(str, PROMPT)), "-n", str(N_GEN),
            "--print-ids", "--logits-out", out, *flags]
    cmd = [GANTRY, *args] if np_ == 1 else [MPIEXEC, "-np", str(np_), *MPI_ARGS, GANTRY, *args]
    p, _ = run(cmd)
    if p.returncode != 0:
        return None, None, p.stderr[-2000:]
    logits = np.fromfile(out, dtype=np.float32).reshape(len(PROMPT), N_VOCAB).astype(np.float64)
    return [int(x) for x in p.stdout.split()], logits, ""


def reference_candidates(path):
    """The reference logits, and one variant per side of each routing near-tie."""
    m = Model(path)
    cands = [m.forward(PROMPT)]
    ties = sorted((t for t in m.router_ties if t[2] < ROUTER_TIE), key=lambda t: t[2])[:MAX_ROUTER_TIES]
    k = m.hp.n_expert_used
    for mask in range(1, 1 << len(ties)):
        override = {(il, t): rank[:k - 1] + [rank[k]]
                    for j, (il, t, _, rank) in enumerate(ties) if mask >> j & 1}
        cands.append(Model(path, route_override=override).forward(PROMPT))
    return cands


def against_reference(label, got, cands, bound):
    want = min(cands, key=lambda c: float(np.abs(got - c).max()))
    d = np.abs(got - want)
    mx, rms = float(d.max()), float(np.sqrt(np.mean(d ** 2)))
    check(np.all(np.isfinite(got)) and mx <= bound[0] and rms <= bound[1],
          f"{label}: max |diff| {mx:.2e} <= {bound[0]}, rms {rms:.2e} <= {bound[1]} against the reference")


def compare(label, model, wtype, layouts):
    cands = reference_candidates(model)
    ref_ids, ref_logits, err = gantry_run(model)
    check(ref_ids is not None, f"{label}: single-rank run {err}")
    if ref_ids is None:
        return
    against_reference(f"{label} one rank", ref_logits, cands, BOUNDS[wtype])
    for np_, flags in layouts:
        tag = f"{label} np {np_} {' '.join(flags)}"
        ids, logits, err = gantry_run(model, np_, flags)
        check(ids is not None, f"{tag}: runs {err}")
        if ids is None:
            continue
        against_reference(tag, logits, cands, BOUNDS[wtype])
        check(ids == ref_ids, f"{tag}: greedy {ids} equals one rank's {ref_ids}")


def synth(arch, wtype):
    path = os.path.join(TMP, f"ep_{arch}_{wtype}.gguf")
    p, _ = run([GANTRY, "synth", "-o", path, "--arch", arch, "--type", wtype, *SHAPE])
    assert p.returncode == 0, p.stderr
    return path


def zero_routers(src):
    """A copy of src whose router matrices are all zero: every router logit
    ties, so each token takes experts 0 and 1."""
    dst = src.replace(".gguf", "_onerouted.gguf")
    shutil.copyfile(src, dst)
    f = GGUFFile(dst)
    spans = [(f.data_offset + t.offset, t.nbytes) for n, t in f.tensors.items()
             if n.endswith("ffn_gate_inp.weight")]
    del f
    mm = np.memmap(dst, dtype=np.uint8, mode="r+")
    for start, n in spans:
        mm[start:start + n] = 0
    mm.flush()
    del mm
    return dst, len(spans)


def one_routed(model):
    path, n = zero_routers(model)
    check(n == 2, f"zeroed {n} router matrices")
    compare("one-routed llama-moe f32", path, "f32", LAYOUTS[:2])
    # Every routed row lands on EP rank 0; rank 1's blocks are empty both ways.
    p, _ = run([MPIEXEC, "-np", "2", *MPI_ARGS, GANTRY, "bench", "-m", path, "--prompt", "8", "--gen", "4",
                "--rounds", "1", "--bw-mib", "16", "--ep", "2"])
    lines = p.stdout.splitlines()
    rows = {}
    for i, line in enumerate(lines):
        if line.startswith("expert parallelism"):
            for row in lines[i + 2:i + 4]:
                v = row.split()
                rows[int(v[0])] = [float(x) for x in v[1:3]]
    want = {0: [4 * 2, 0.0], 1: [4 * 2, 0.0]}  # 4 decode steps x 2 experts, all on rank 0
    check(p.returncode == 0 and rows == want,
          f"bench --ep 2: rows per rank and layer {rows} equal {want} (rc {p.returncode} {p.stderr[-300:]})")


def one_expert():
    """Top-1 with zeroed routers: every token of every layer goes to expert 0,
    so under --ep 2 and --ep 4 one rank computes all rows and the others
    send and receive nothing in both all-to-alls."""
    path = os.path.join(TMP, "ep_llama-moe_top1.gguf")
    p, _ = run([GANTRY, "synth", "-o", path, "--arch", "llama-moe", "--type", "f32", *SHAPE,
                "--experts-used", "1"])
    assert p.returncode == 0, p.stderr
    zeroed, n = zero_routers(path)
    check(n == 2, f"top-1: zeroed {n} router matrices")
    compare("every token to expert 0 (top-1, llama-moe f32)", zeroed, "f32", LAYOUTS[:2])


def refusals(moe, dense):
    cases = [(2, moe, ["--ep", "4"], "--ep 4 does not divide the stage group of tp 2"),
             (4, moe, ["--ep", "3", "--tp", "4"], "8 experts do not divide over --ep 3"),
             (2, dense, ["--ep", "2"], "--ep 2 asks for expert parallelism, but this llama model is dense")]
    for np_, model, flags, words in cases:
        p, secs = run([MPIEXEC, "-np", str(np_), *MPI_ARGS, GANTRY, "run", "-m", model, "--tokens", "1,2",
                       "-n", "2", *flags], timeout=60)
        check(p.returncode != 0 and words in p.stderr and secs < 30,
              f"{flags} on {np_} ranks: refused in {secs:.1f} s with '{words}' "
              f"(rc {p.returncode}, stderr {p.stderr.strip()[:200]!r})")


def main():
    if not GANTRY or not os.path.exists(GANTRY):
        print("gantry binary not found (GANTRY_BIN); skipping")
        return 77
    t0 = time.time()
    for arch in EP_ARCHS:
        for wtype in BOUNDS:
            layouts = LAYOUTS + ([(4, ["--ep", "2"])] if (arch, wtype) == ("llama-moe", "f32") else [])
            compare(f"{arch} {wtype}", synth(arch, wtype), wtype, layouts)
    one_routed(os.path.join(TMP, "ep_llama-moe_f32.gguf"))
    one_expert()
    dense = os.path.join(TMP, "ep_dense.gguf")
    p, _ = run([GANTRY, "synth", "-o", dense, "--arch", "llama", "--layers", "2", "--hidden", "128",
                "--heads", "4", "--kv-heads", "2", "--ffn", "256", "--vocab", "512", "--seed", "3"])
    assert p.returncode == 0, p.stderr
    refusals(os.path.join(TMP, "ep_llama-moe_f32.gguf"), dense)
    print(f"{len(failures)} failed" if failures else "all expert-parallel checks passed",
          f"in {time.time() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
