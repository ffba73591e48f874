#!/usr/bin/env python3
"""Uneven tensor-parallel MLP splits: quantized models on grids whose even
split would cut a quantization block.

A qwen3 model whose MLP is 768 columns of Q4_K (three 256-element blocks)
runs at tp 2 (512 + 256 columns), tp 4 (256 + 256 + 256 + 0: the last rank
holds no MLP column and adds zeros to the allreduce) and tp 2 x pp 2; a
llama-moe model with experts of 768 Q4_K columns runs at tp 2, and a
qwen2moe model with a 768-column shared expert and 256-column experts (one
block: the second rank holds none) at tp 2. For each:
  - `gantry plan` reports the block split (so the uneven path is the one
    under test);
  - the prompt logits agree with the float64 numpy reference
    (tests/reference/) within the Q4_K bound of tests/e2e/test_reference.py
    (max 0.12, rms 0.025: Q8 activation rounding; docs/reference.md), against
    the side of a MoE routing near-tie that Gantry took;
  - the greedy tokens equal the single-rank run's.
The comparison is shown able to fail: a reference that loses the 256
columns of one rank's block of ffn_down is rejected by the same bound.
Attention stays split by heads; wo (1024 columns) is block-aligned at tp 4.
Exit 77 (skip) only when the gantry binary does not exist."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from model import Model  # noqa: E402

GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
MPIEXEC = os.environ.get("GANTRY_MPIEXEC", "mpirun")
TMP = os.environ.get("GANTRY_TEST_TMP", tempfile.gettempdir())
MPI_ARGS = ["--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader"]
N_VOCAB = 4096
SHAPE = ["--layers", "2", "--hidden", "256", "--heads", "8", "--kv-heads", "4", "--head-dim", "128",
         "--ffn", "768", "--vocab", str(N_VOCAB), "--type", "q4_k", "--seed", "11"]
MOE_SHAPE = ["--experts", "4", "--experts-used", "2", "--expert-ffn", "768"]
BOUND = (0.12, 0.025)  # Q4_K against the reference: tests/e2e/test_reference.py's QUANT_BOUND
ROUTER_TIE = 0.06      # as in test_reference.py: a routing decision this close may go either way
PROMPT = [int(t) for t in np.random.default_rng(2024).integers(3, N_VOCAB, 16)]
N_GEN = 6
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def run(cmd, timeout=300):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def gantry_run(model, tp=1, pp=1):
    """Greedy ids and the prompt logits [n_prompt, n_vocab]; (None, stderr) on failure."""
    out = os.path.join(TMP, f"uneven_tp{tp}_pp{pp}.bin")
    args = ["run", "-m", model, "--tokens", ",".join(map(str, PROMPT)), "-n", str(N_GEN),
            "--print-ids", "--logits-out", out, "-t", "1"]
    if tp * pp == 1:
        cmd = [GANTRY, *args]
    else:
        cmd = [MPIEXEC, "-np", str(tp * pp), *MPI_ARGS, GANTRY, *args, "--tp", str(tp),
               "--pp", str(pp)]
    p = run(cmd)
    if p.returncode != 0:
        return None, p.stderr[-2000:]
    logits = np.fromfile(out, dtype=np.float32).astype(np.float64)
    if logits.size != len(PROMPT) * N_VOCAB:
        return None, f"{logits.size} logits, expected {len(PROMPT)} x {N_VOCAB}"
    return ([int(x) for x in p.stdout.split()], logits.reshape(len(PROMPT), N_VOCAB)), ""


def reference_candidates(path):
    """The reference logits, and one variant per side of each of the (at most
    3) closest MoE routing near-ties."""
    m = Model(path)
    cands = [m.forward(PROMPT)]
    ties = sorted((t for t in m.router_ties if t[2] < ROUTER_TIE), key=lambda t: t[2])[:3]
    k = m.hp.n_expert_used
    for mask in range(1, 1 << len(ties)):
        override = {(il, t): rank[:k - 1] + [rank[k]]
                    for j, (il, t, _, rank) in enumerate(ties) if mask >> j & 1}
        cands.append(Model(path, route_override=override).forward(PROMPT))
    return cands


def within(got, want):
    d = np.abs(got - want)
    return float(d.max()), float(np.sqrt(np.mean(d ** 2)))


def check_model(label, path, layouts, expect_plan):
    cands = reference_candidates(path)
    solo, err = gantry_run(path)
    check(solo is not None, f"{label}: single-rank run ({err})")
    if solo is None:
        return None
    m, rms = within(solo[1], min(cands, key=lambda c: float(np.abs(solo[1] - c).max())))
    check(m <= BOUND[0] and rms <= BOUND[1],
          f"{label} single rank: vs reference max |diff| {m:.4f}, rms {rms:.4f}")
    for tp, pp in layouts:
        p = run([GANTRY, "plan", "-m", path, "--tp", str(tp), "--pp", str(pp)])
        shown = p.returncode == 0 and expect_plan[tp] in p.stdout
        check(shown, f"{label} tp{tp} pp{pp}: plan shows '{expect_plan[tp]}'" +
              ("" if shown else f" (rc {p.returncode}: {(p.stdout + p.stderr).strip()[-600:]})"))
        res, err = gantry_run(path, tp, pp)
        if res is None:
            check(False, f"{label} tp{tp} pp{pp}: run failed: {err}")
            continue
        ids, logits = res
        want = min(cands, key=lambda c: float(np.abs(logits - c).max()))
        m, rms = within(logits, want)
        check(m <= BOUND[0] and rms <= BOUND[1],
              f"{label} tp{tp} pp{pp}: vs reference max |diff| {m:.4f} <= {BOUND[0]}, "
              f"rms {rms:.4f} <= {BOUND[1]}")
        check(ids == solo[0], f"{label} tp{tp} pp{pp}: greedy {ids} vs single rank {solo[0]}")
    return solo


def main():
    if not os.access(GANTRY, os.X_OK):
        print(f"skip: no gantry binary at {GANTRY}")
        return 77
    dense = os.path.join(TMP, "uneven_qwen3_q4k.gguf")
    p = run([GANTRY, "synth", "-o", dense, "--arch", "qwen3", *SHAPE])
    assert p.returncode == 0, p.stderr
    split2 = "MLP: 768 columns split in blocks of 256 (an even split would cut one): " \
             "tp 0 [0, 512), tp 1 [512, 768)"
    split4 = "tp 0 [0, 256), tp 1 [256, 512), tp 2 [512, 768), tp 3 [768, 768)"
    solo = check_model("qwen3 q4_k ffn 768", dense, [(2, 1), (4, 1), (2, 2)],
                       {2: split2, 4: split4})

    # The bound catches a lost block: the reference without ffn_down columns
    # [512, 768) of layer 0 (the block tp 4's third rank holds).
    if solo is not None:
        wrong = Model(dense)
        wrong.w("blk.0.ffn_down.weight")[:, 512:768] = 0.0
        m, rms = within(solo[1], wrong.forward(PROMPT))
        check(m > BOUND[0], f"a reference missing one block of ffn_down is rejected "
                            f"(max |diff| {m:.3f} > {BOUND[0]})")

    moe = os.path.join(TMP, "uneven_llama_moe_q4k.gguf")
    p = run([GANTRY, "synth", "-o", moe, "--arch", "llama-moe", *SHAPE, *MOE_SHAPE])
    assert p.returncode == 0, p.stderr
    check_model("llama-moe q4_k experts 768", moe, [(2, 1)],
                {2: "expert MLP: 768 columns split in blocks of 256 (an even split would cut "
                    "one): tp 0 [0, 512), tp 1 [512, 768)"})
    # qwen2moe: a shared expert of 768 columns (512 + 256) and routed experts
    # of one block each, all on the first rank: the second holds none.
    q2m = os.path.join(TMP, "uneven_qwen2moe_q4k.gguf")
    p = run([GANTRY, "synth", "-o", q2m, "--arch", "qwen2moe", *SHAPE, "--experts", "4",
             "--experts-used", "2", "--expert-ffn", "256", "--shared-ffn", "768"])
    assert p.returncode == 0, p.stderr
    check_model("qwen2moe q4_k shared 768, experts 256", q2m, [(2, 1)],
                {2: "expert MLP: 256 columns split in blocks of 256 (an even split would cut "
                    "one): tp 0 [0, 256), tp 1 [256, 256)"})
    print(f"{len(failures)} failed" if failures else "all uneven-split checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
