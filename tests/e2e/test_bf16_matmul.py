#!/usr/bin/python3
"""End to end: `--bf16-matmul on` (F16/BF16 weights in bf16 dot products).

On a small synthetic llama in F16 and in BF16 (24-token prompt):
  - the logits with bf16 on are within the bf16 bound of the float64 numpy
    reference (tests/reference/model.py; BF16_BOUND: activations rounded to
    bf16 add ~2^-9 relative per product; F16 weights lose 3 mantissa bits),
    with the same argmax except at near-ties, and differ from the fp32 path
    (so the bf16 kernels really ran);
  - batch invariance holds on the bf16 path: token-by-token evaluation
    (--ubatch 1, the decode kernels) gives the same bits as one batched
    prefill, and 1 and 2 threads give the same bits;
  - `--half-matmul auto` takes the bf16 products where /proc/cpuinfo names
    an AMD CPU of family 19h or later with avx512_bf16 and no avx512_fp16
    (vdpbf16ps at the FMA's rate), and the fp32 path on other CPUs without
    avx512_fp16 (the same bits as bf16 or off);
  - a bad mode is refused with one sentence.
Exit 77 when the gantry binary is missing or the CPU lacks AVX-512 BF16.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from halfmm import (GANTRY, HALF_BOUNDS, PROMPT, SHAPE, TMP, Model,  # noqa: E402
                    compare_to_reference, fail, failures, logits, run)

BF16_BOUND = HALF_BOUNDS["bf16"]


def auto_expected():
    """'bf16', 'off' or None (an avx512_fp16 CPU: test_fp16_matmul's case)."""
    info = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
            if not line.strip() and info:
                break
    flags = info.get("flags", "").split()
    if "avx512_fp16" in flags:
        return None
    amd = info.get("vendor_id") == "AuthenticAMD" and int(info.get("cpu family", "0")) >= 0x19
    return "bf16" if amd and "avx512_bf16" in flags else "off"


def main():
    if not os.path.exists(GANTRY):
        print(f"{GANTRY} not built: skipped")
        return 77
    for wtype in ("f16", "bf16"):
        path = os.path.join(TMP, f"bf16mm-{wtype}.gguf")
        run([GANTRY, "synth", "-o", path, "--type", wtype] + SHAPE)
        p = run([GANTRY, "run", "-m", path, "--tokens", "1", "-n", "0", "--bf16-matmul", "on"],
                check=False)
        if p.returncode != 0 and "AVX-512 BF16" in p.stderr:
            print("this CPU lacks AVX-512 BF16: skipped")
            return 77
        on = logits(path, ["--bf16-matmul", "on"])
        off = logits(path, ["--bf16-matmul", "off"])
        want = Model(path).forward(PROMPT)
        m, rms = compare_to_reference(f"{wtype}: bf16", on, want, BF16_BOUND)
        print(f"{wtype}: bf16 on vs reference max |diff| {m:.4f} rms {rms:.5f} (bounds {BF16_BOUND}); "
              f"vs fp32 path max |diff| {np.abs(on - off).max():.4f}")
        if np.array_equal(on, off):
            fail(f"{wtype}: --bf16-matmul on gave the fp32 path's exact logits (bf16 kernels unused?)")
        for extra in (["--ubatch", "1"], ["-t", "2"], ["-t", "2", "--ubatch", "5"]):
            other = logits(path, ["--bf16-matmul", "on"] + extra)
            if not np.array_equal(on, other):
                fail(f"{wtype}: bf16 logits with {' '.join(extra)} differ from one batched prefill "
                     f"by up to {np.abs(on - other).max():.3g} (must be bit-identical)")
        want_auto = auto_expected()
        if want_auto:
            auto = logits(path, ["--half-matmul", "auto"])
            same = on if want_auto == "bf16" else off
            print(f"{wtype}: auto should be {want_auto} on this CPU: "
                  f"{'yes' if np.array_equal(auto, same) else 'NO'}")
            if not np.array_equal(auto, same):
                fail(f"{wtype}: --half-matmul auto did not give the {want_auto} path's bits on this "
                     f"CPU (max |diff| {np.abs(auto - same).max():.3g})")
    p = run([GANTRY, "run", "-m", path, "--tokens", "1", "-n", "0", "--bf16-matmul", "yes"],
            check=False)
    if p.returncode == 0 or '"yes"' not in p.stderr or p.stderr.strip().count("\n") > 1:
        fail(f"--bf16-matmul yes: expected one sentence naming the word, got rc {p.returncode}: "
             f"{p.stderr!r}")
    print("FAILED" if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
