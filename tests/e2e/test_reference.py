#!/usr/bin/python3
"""End to end: Gantry's logits against the numpy reference (tests/reference/).

For every architecture x weight type (plus q5_1, q2_k, q3_k, q5_k on llama
and three types on each MoE architecture), a small model is synthesized with
`gantry synth`, its prompt logits are computed by `gantry run --logits-out`
and by the float64 reference on the same 24-token prompt, and compared:
  - max |gantry - reference| and the rms difference stay within the weight
    type's bounds (BOUNDS; derived in docs/reference.md);
  - the argmax agrees at every position, except where the reference's top
    two logits are closer than twice the bound (a genuine near-tie).
Then: exact math (F32 weights, F32 KV cache, scalar kernels) within 2e-4;
batched prefill equals token-by-token evaluation (--ubatch 1); 1 and 2
threads generate the same greedy tokens; and the comparison is shown able to
fail (a reference with the wrong RoPE pairing, without the QKV bias or the
QK-norm, or with qwen3moe's expert weights not renormalised is rejected by
the same bounds).

Exit 77 (skip) only when the gantry binary does not exist.
"""
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from model import ARCHS, Model  # noqa: E402
from halfmm import HALF_BOUNDS  # noqa: E402  (tests/e2e, the script's own folder)

GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"

ARCH_LIST = ["llama", "qwen2", "qwen3"]
MOE_LIST = ["llama-moe", "qwen2moe", "qwen3moe"]
TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q4_k", "q6_k"]
MOE_TYPES = ["f32", "q8_0", "q4_k"]
EXTRA_TYPES = ["q5_1", "q2_k", "q3_k", "q5_k"]  # the other dequantizers, on llama only
N_VOCAB = 4096
SHAPE = ["--layers", "2", "--hidden", "256", "--heads", "4", "--kv-heads", "2", "--ffn", "512",
         "--vocab", str(N_VOCAB), "--seed", "11"]
MOE_SHAPE = ["--experts", "4", "--experts-used", "2", "--expert-ffn", "256", "--shared-ffn", "512"]

# (max abs, rms) bounds on the logits (sd ~1) per weight type; see docs/reference.md.
FLOAT_BOUND = (0.005, 0.001)   # f16 KV cache rounding (emulated: max 0.0012, rms 0.0002)
QUANT_BOUND = (0.12, 0.025)    # + Q8 activations (emulated: max 0.062, rms 0.0116)
BOUNDS = {t: FLOAT_BOUND if t in ("f32", "f16", "bf16") else QUANT_BOUND
          for t in TYPES + EXTRA_TYPES}
# F16/BF16 weights on half-precision products, where `auto` picks them (the
# engine's load line says which: GANTRY_LOG=info), are bounded by halfmm.py's
# HALF_BOUNDS; the fp32 path is then checked with `--half-matmul off` against
# FLOAT_BOUND.
EXACT_BOUND = (2e-4, 5e-5)     # F32 weights, F32 KV, scalar kernels: fp32 vs fp64 rounding only
# MoE: a routing decision whose last-selected and first-unselected router
# logits are closer than this may legitimately go either way (emulated
# router-logit error: max 0.025); both sides are then tried.
ROUTER_TIE = 0.06
MAX_ROUTER_TIES = 3

rng = np.random.default_rng(2024)
PROMPT = [int(t) for t in rng.integers(3, N_VOCAB, 24)]
failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def run(cmd, timeout=120):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p.stdout


def synth(path, arch, wtype, extra=()):
    run([GANTRY, "synth", "-o", path, "--arch", arch, "--type", wtype] + SHAPE + list(extra))


def gantry_logits(path, extra=(), tokens=PROMPT):
    out = path + ".logits.bin"
    if os.path.exists(out):
        os.unlink(out)
    run([GANTRY, "run", "-m", path, "--tokens", ",".join(map(str, tokens)), "-n", "0",
         "--logits-out", out] + list(extra))
    x = np.fromfile(out, dtype=np.float32)
    if x.size != len(tokens) * N_VOCAB:
        raise RuntimeError(f"{out}: {x.size} floats, expected {len(tokens)} x {N_VOCAB}")
    return x.reshape(len(tokens), N_VOCAB).astype(np.float64)


def reference_candidates(path):
    """The reference logits, plus one variant per combination of the other
    side of each MoE routing near-tie (closest MAX_ROUTER_TIES first)."""
    m = Model(path)
    base = m.forward(PROMPT)
    ties = sorted((t for t in m.router_ties if t[2] < ROUTER_TIE), key=lambda t: t[2])
    ties = ties[:MAX_ROUTER_TIES]
    k = m.hp.n_expert_used
    cands = [base]
    for mask in range(1, 1 << len(ties)):
        override = {}
        for j, (il, t, _, rank) in enumerate(ties):
            if mask >> j & 1:
                override[(il, t)] = rank[:k - 1] + [rank[k]]
        cands.append(Model(path, route_override=override).forward(PROMPT))
    return cands, len(ties)


def compare(label, got, want, bound):
    """Checks bounds and argmax; returns (max abs, rms, index of max, tie count)."""
    max_abs_b, rms_b = bound
    diff = np.abs(got - want)
    i = np.unravel_index(np.argmax(diff), diff.shape)
    m, rms = float(diff[i]), float(np.sqrt(np.mean(diff ** 2)))
    ok = True
    if not np.all(np.isfinite(got)):
        fail(f"{label}: gantry logits contain nan/inf")
        ok = False
    if m > max_abs_b:
        fail(f"{label}: max |diff| {m:.5f} > {max_abs_b} at position {i[0]}, token {i[1]} "
             f"(gantry {got[i]:.5f}, reference {want[i]:.5f})")
        ok = False
    if rms > rms_b:
        fail(f"{label}: rms diff {rms:.5f} > {rms_b}")
        ok = False
    ties = 0
    ga, ra = np.argmax(got, axis=-1), np.argmax(want, axis=-1)
    for t in np.nonzero(ga != ra)[0]:
        gap = want[t, ra[t]] - want[t, ga[t]]
        if gap <= 2 * max_abs_b:
            ties += 1
        elif ok:
            fail(f"{label}: position {t}: gantry picks {ga[t]}, reference {ra[t]} "
                 f"(reference gap {gap:.4f} > {2 * max_abs_b})")
    return m, rms, i, ties


def main():
    if not os.access(GANTRY, os.X_OK):
        print(f"skip: no gantry binary at {GANTRY}")
        return 77
    t_start = time.time()
    table = []
    half = {}  # "auto": the products auto gives F16/BF16 weights here ("fp16", "bf16", "off")

    def bound_of(wtype):
        mode = half.get("auto", "off") if wtype in ("f16", "bf16") else "off"
        return HALF_BOUNDS.get(mode, BOUNDS[wtype])

    def check_model(arch, wtype, extra=()):
        path = os.path.join(TMP, f"ref_{arch}_{wtype}.gguf")
        synth(path, arch, wtype, extra)
        if wtype in ("f16", "bf16") and "auto" not in half:
            p = subprocess.run([GANTRY, "run", "-m", path, "--tokens", "1", "-n", "0"],
                               capture_output=True, text=True, env=dict(os.environ, GANTRY_LOG="info"))
            m = re.search(r"F16/BF16 products: (\w+)", p.stderr)
            if not m:
                raise RuntimeError(f"no 'F16/BF16 products' in the load line: {p.stderr[-500:]!r}")
            half["auto"] = m.group(1)
            print(f"auto gives F16/BF16 weights {half['auto']} products on this CPU")
        cands, n_route_ties = reference_candidates(path)
        got = gantry_logits(path, ["-t", "2"])
        # Against a routing near-tie, the side of it that Gantry took.
        want = min(cands, key=lambda c: float(np.abs(got - c).max()))
        m, rms, _, ties = compare(f"{arch}/{wtype}", got, want, bound_of(wtype))
        table.append((arch, wtype, m, rms, ties, n_route_ties))
        return path, got, want

    models = {}
    for arch in ARCH_LIST:
        for wtype in TYPES:
            try:
                models[(arch, wtype)] = check_model(arch, wtype)
            except Exception as e:  # one broken combination must not hide the others
                fail(f"{arch}/{wtype}: {e}")
    for wtype in EXTRA_TYPES:
        try:
            models[("llama", wtype)] = check_model("llama", wtype)
        except Exception as e:
            fail(f"llama/{wtype}: {e}")
    for arch in MOE_LIST:
        for wtype in MOE_TYPES:
            try:
                models[(arch, wtype)] = check_model(arch, wtype, MOE_SHAPE)
            except Exception as e:
                fail(f"{arch}/{wtype}: {e}")

    print(f"\n{'arch':10s} {'type':5s} {'max|diff|':>10s} {'bound':>7s} {'rms':>8s} {'bound':>7s} "
          "argmax-ties router-ties")
    for arch, wtype, m, rms, ties, rties in table:
        b = bound_of(wtype)
        print(f"{arch:10s} {wtype:5s} {m:10.5f} {b[0]:7.3f} {rms:8.5f} {b[1]:7.3f} {ties:11d} "
              f"{rties:12d}")
    print(flush=True)

    # F16/BF16 on the fp32 path, where auto took half-precision products above.
    for arch in ARCH_LIST if half.get("auto", "off") != "off" else []:
        for wtype in ("f16", "bf16"):
            try:
                path, _, want = models[(arch, wtype)]
                got = gantry_logits(path, ["-t", "2", "--half-matmul", "off"])
                m, rms, _, _ = compare(f"{arch}/{wtype} --half-matmul off", got, want, FLOAT_BOUND)
                print(f"fp32 path {arch}/{wtype}: max |diff| {m:.2e} rms {rms:.2e} "
                      f"(bounds {FLOAT_BOUND})")
            except (KeyError, RuntimeError) as e:
                fail(f"{arch}/{wtype} --half-matmul off: {e}")

    # Exact math: no deliberate rounding anywhere, so only fp32 vs fp64 differs.
    for arch in ARCH_LIST:
        try:
            path, _, want = models[(arch, "f32")]
            got = gantry_logits(path, ["--isa", "ref", "--kv-type", "f32"])
            m, rms, _, _ = compare(f"{arch}/f32 exact (ref isa, f32 kv)", got, want, EXACT_BOUND)
            print(f"exact {arch}: max |diff| {m:.2e} rms {rms:.2e} (bounds {EXACT_BOUND})")
            # Scalar kernels on quantized weights: no activation quantization there.
            path, _, want = models[(arch, "q4_k")]
            got = gantry_logits(path, ["--isa", "ref"])
            m, rms, _, _ = compare(f"{arch}/q4_k ref isa", got, want, FLOAT_BOUND)
            print(f"ref isa {arch}/q4_k: max |diff| {m:.2e} rms {rms:.2e} (bounds {FLOAT_BOUND})")
        except (KeyError, RuntimeError) as e:
            fail(f"{arch} exact: {e}")

    # Prefill in one batch vs one token per forward call.
    for arch in ARCH_LIST + MOE_LIST:
        wtype = "q4_0" if arch in ARCH_LIST else "q8_0"
        try:
            path, batched, _ = models[(arch, wtype)]
            single = gantry_logits(path, ["-t", "2", "--ubatch", "1"])
            d = float(np.abs(batched - single).max())
            print(f"ubatch 1 vs batched {arch}/{wtype}: max |diff| {d:.2e}")
            if d > 1e-3 or np.any(np.argmax(batched, -1) != np.argmax(single, -1)):
                fail(f"{arch}/{wtype}: --ubatch 1 logits differ from batched prefill by {d:.2e} "
                     "(bound 1e-3, same argmax)")
        except (KeyError, RuntimeError) as e:
            fail(f"{arch} ubatch: {e}")

    # Thread counts: same greedy continuation.
    for arch in ARCH_LIST + MOE_LIST:
        wtype = "q4_k" if arch in ("qwen3", "qwen2moe") else "q8_0"
        try:
            path = models[(arch, wtype)][0]
            outs = []
            for nt in ("1", "2"):
                outs.append(run([GANTRY, "run", "-m", path, "--tokens",
                                 ",".join(map(str, PROMPT[:8])), "-n", "16", "--print-ids",
                                 "-t", nt]).split())
            print(f"threads 1/2 {arch}/{wtype}: {' '.join(outs[0])}")
            if outs[0] != outs[1] or len(outs[0]) != 16:
                fail(f"{arch}/{wtype}: greedy tokens with 1 thread {outs[0]} differ from 2 "
                     f"threads {outs[1]}")
        except (KeyError, RuntimeError) as e:
            fail(f"{arch} threads: {e}")

    # The comparison can fail: a wrong reference must be rejected by the same bounds.
    for arch, wtype, flag in (("llama", "q4_0", "rope_neox"), ("qwen2", "f16", "qkv_bias"),
                              ("qwen3", "q8_0", "qk_norm"), ("qwen3moe", "f32", "moe_norm_topk")):
        try:
            path, got, _ = models[(arch, wtype)]
            saved = dict(ARCHS[arch])
            ARCHS[arch][flag] = not ARCHS[arch][flag]
            try:
                wrong = Model(path).forward(PROMPT)
            finally:
                ARCHS[arch].clear()
                ARCHS[arch].update(saved)
            m = float(np.abs(got - wrong).max())
            print(f"wrong reference ({arch} with {flag} flipped): max |diff| {m:.3f}")
            if m <= BOUNDS[wtype][0]:
                fail(f"{arch}/{wtype}: a reference with {flag} flipped still passes "
                     f"(max |diff| {m:.4f})")
        except (KeyError, RuntimeError) as e:
            fail(f"{arch} self-check: {e}")

    print(f"\n{len(failures)} failure(s) in {time.time() - t_start:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
