"""Shared by test_beam.py and test_run_penalties.py: the gantry binary, a
run that raises on failure, and the logits of a fresh evaluation of a token
sequence (`gantry run -n 0 --logits-out`, with an f32 KV cache), which
shares no KV cache with the run under test. Not a test itself."""
import os
import subprocess

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"


def gantry(args):
    p = subprocess.run([GANTRY, *args], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(" ".join(args) + ": " + p.stderr)
    return p


def fresh_logits(model, tokens, name):
    """float32 logits [len(tokens), n_vocab] of every position, written
    through TMP/name (one name per test: tests run side by side)."""
    out = os.path.join(TMP, name)
    gantry(["run", "-m", model, "--tokens", ",".join(map(str, tokens)), "-n", "0", "--kv-type", "f32",
            "--logits-out", out])
    return np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1)
