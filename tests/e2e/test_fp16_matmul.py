#!/usr/bin/python3
"""End to end: `--half-matmul fp16` (F16/BF16 weights in fp16 products).

On a small synthetic llama in F16 and in BF16 (24-token prompt):
  - the logits with fp16 are within FP16_BOUND of the float64 numpy
    reference (tests/reference/model.py: activations rounded to fp16, 2^-11
    relative, products summed in fp16 over 32 k), with the same argmax
    except at near-ties, and differ from the fp32 path (so the fp16 kernels
    really ran);
  - batch invariance holds on the fp16 path: token-by-token evaluation
    (--ubatch 1, the decode kernels), 2 threads and --ubatch 5 give the bits
    of one batched prefill;
  - `auto` takes the fp16 products on this CPU (the same bits as fp16);
  - a bad mode is refused with one sentence.
Exit 77 when the gantry binary is missing or the CPU (or the build) lacks
AVX-512 FP16.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from halfmm import (GANTRY, HALF_BOUNDS, PROMPT, SHAPE, TMP, Model,  # noqa: E402
                    compare_to_reference, fail, failures, logits, run)

FP16_BOUND = HALF_BOUNDS["fp16"]


def main():
    if not os.path.exists(GANTRY):
        print(f"{GANTRY} not built: skipped")
        return 77
    for wtype in ("f16", "bf16"):
        path = os.path.join(TMP, f"fp16mm-{wtype}.gguf")
        run([GANTRY, "synth", "-o", path, "--type", wtype] + SHAPE)
        p = run([GANTRY, "run", "-m", path, "--tokens", "1", "-n", "0", "--half-matmul", "fp16"],
                check=False)
        if p.returncode != 0 and "FP16" in p.stderr:
            print(f"no fp16 products here ({p.stderr.strip()}): skipped")
            return 77
        on = logits(path, ["--half-matmul", "fp16"])
        off = logits(path, ["--half-matmul", "off"])
        want = Model(path).forward(PROMPT)
        m, rms = compare_to_reference(f"{wtype}: fp16", on, want, FP16_BOUND)
        print(f"{wtype}: fp16 vs reference max |diff| {m:.4f} rms {rms:.5f} (bounds {FP16_BOUND}); "
              f"vs fp32 path max |diff| {np.abs(on - off).max():.4f}")
        if np.array_equal(on, off):
            fail(f"{wtype}: --half-matmul fp16 gave the fp32 path's exact logits (fp16 kernels unused?)")
        for extra in (["--ubatch", "1"], ["-t", "2", "--ubatch", "5"], ["--half-matmul", "auto"]):
            other = logits(path, ["--half-matmul", "fp16"] + extra if "--half-matmul" not in extra
                           else extra)
            if not np.array_equal(on, other):
                fail(f"{wtype}: fp16 logits with {' '.join(extra)} differ from one batched prefill "
                     f"by up to {np.abs(on - other).max():.3g} (must be bit-identical)")
    p = run([GANTRY, "run", "-m", path, "--tokens", "1", "-n", "0", "--half-matmul", "fp8"],
            check=False)
    if p.returncode == 0 or '"fp8"' not in p.stderr or p.stderr.strip().count("\n") > 1:
        fail(f"--half-matmul fp8: expected one sentence naming the word, got rc {p.returncode}: "
             f"{p.stderr!r}")
    print("FAILED" if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
