"""Shared by test_bf16_matmul.py and test_fp16_matmul.py: the small synthetic
llama both run (24-token prompt, vocabulary 4096), the gantry binary, and
the logits of `gantry run -n 0` with extra flags. Not a test itself."""
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from model import Model  # noqa: E402,F401  (re-exported for the tests)

GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"
N_VOCAB = 4096
SHAPE = ["--arch", "llama", "--layers", "2", "--hidden", "256", "--heads", "4", "--kv-heads", "2",
         "--ffn", "512", "--vocab", str(N_VOCAB), "--seed", "11"]
PROMPT = [int(t) for t in np.random.default_rng(2024).integers(3, N_VOCAB, 24)]
# (max abs, rms) bounds on logits of sd ~1 against the float64 reference, per
# half-precision product: fp16 measured 0.0081 / 0.0017 (activations rounded to
# fp16, sums in fp16 over 32 k); bf16 0.019 / 0.0045 (activations and F16
# weights rounded to bf16). Shared with test_reference.py.
HALF_BOUNDS = {"fp16": (0.012, 0.0025), "bf16": (0.05, 0.01)}
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


def compare_to_reference(name, got, want, bound):
    """max/rms against the float64 reference within bound, and the same
    argmax except where the reference's top two are within 2 * bound."""
    d = np.abs(got.astype(np.float64) - want)
    m, rms = float(d.max()), float(np.sqrt((d * d).mean()))
    if m > bound[0] or rms > bound[1]:
        fail(f"{name} logits off the reference by max {m:.4f} rms {rms:.5f}, bounds {bound}")
    top2 = np.sort(want, -1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) < 2 * bound[0]
    bad = (np.argmax(got, -1) != np.argmax(want, -1)) & ~tie
    if bad.any():
        fail(f"{name}: argmax differs from the reference at positions {np.nonzero(bad)[0]}")
    return m, rms
