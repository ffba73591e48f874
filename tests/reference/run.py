#!/usr/bin/python3
"""Reference logits for a GGUF model: the oracle the end-to-end tests compare Gantry with.

    python3 tests/reference/run.py -m MODEL.gguf --tokens 1,2,3 --logits-out OUT.bin

writes float32 [n_tokens, n_vocab] row-major (the layout of `gantry run
--logits-out`) and prints the greedy token at each position. Uses only numpy
and the standard library; see docs/reference.md.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Model  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--logits-out", help="write float32 [n_tokens, n_vocab] here")
    ap.add_argument("--precision", choices=("float64", "float32"), default="float64")
    ap.add_argument("--head-precision", choices=("float64", "float32"), default=None,
                    help="precision of the output head product (default: --precision); float32 "
                    "halves the memory of a large-vocabulary head, see model.Model")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    try:
        tokens = [int(t) for t in a.tokens.split(",") if t != ""]
    except ValueError:
        ap.error(f"--tokens takes comma-separated ids, not {a.tokens!r}")
    if not tokens:
        ap.error("--tokens needs at least one id")
    dt = {"float64": np.float64, "float32": np.float32}
    m = Model(a.model, dtype=dt[a.precision],
              head_dtype=dt[a.head_precision] if a.head_precision else None)
    logits = m.forward(tokens)
    if a.logits_out:
        np.ascontiguousarray(logits, dtype=np.float32).tofile(a.logits_out)
    if not a.quiet:
        print("argmax:", ",".join(str(int(i)) for i in np.argmax(logits, axis=-1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
