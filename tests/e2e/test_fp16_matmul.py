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
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from model import Model  # noqa: E402

GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"
N_VOCAB = 4096
SHAPE = ["--arch", "llama", "--layers", "2", "--hidden", "256", "--heads", "4", "--kv-heads", "2",
         "--ffn", "512", "--vocab", str(N_VOCAB), "--seed", "11"]
PROMPT = [int(t) for t in np.random.default_rng(2024).integers(3, N_VOCAB, 24)]
FP16_BOUND = (0.012, 0.0025)  # (max abs, rms) on logits of sd ~1; measured 0.0081 / 0.0017
failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def run(cmd, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p


def logits(path, extra):
    out = path + ".logits.bin"
    if os.path.exists(out):
        os.unlink(out)
    run([GANTRY, "run", "-m", path, "--tokens", ",".join(map(str, PROMPT)), "-n", "0",
         "--logits-out", out] + extra)
    return np.fromfile(out, dtype=np.float32).reshape(len(PROMPT), N_VOCAB)


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
        d = np.abs(on.astype(np.float64) - want)
        m, rms = float(d.max()), float(np.sqrt((d * d).mean()))
        print(f"{wtype}: fp16 vs reference max |diff| {m:.4f} rms {rms:.5f} (bounds {FP16_BOUND}); "
              f"vs fp32 path max |diff| {np.abs(on - off).max():.4f}")
        if m > FP16_BOUND[0] or rms > FP16_BOUND[1]:
            fail(f"{wtype}: fp16 logits off the reference by max {m:.4f} rms {rms:.5f}, "
                 f"bounds {FP16_BOUND}")
        top2 = np.sort(want, -1)[:, -2:]
        tie = (top2[:, 1] - top2[:, 0]) < 2 * FP16_BOUND[0]
        bad = (np.argmax(on, -1) != np.argmax(want, -1)) & ~tie
        if bad.any():
            fail(f"{wtype}: argmax differs from the reference at positions {np.nonzero(bad)[0]}")
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
