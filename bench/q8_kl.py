#!/usr/bin/python3
"""Where Q8_0's KL divergence comes from: weight rounding or the engine's
8-bit activations.

  bench/q8_kl.py --gantry build/tools/gantry --base BASE_F16.gguf -m MODEL_Q8_0.gguf \
      -f TEXT [--ctx 512] [--threads 2] [--head-f32] [--json OUT]

One chunk of the text (the first --ctx tokens, BOS in front when the model
adds one, as `gantry perplexity` cuts it) runs through:
  - the numpy reference (tests/reference/model.py, float64) on BASE;
  - the numpy reference on MODEL with float activations: only the weights
    are rounded;
  - the numpy reference on MODEL with every quantized product's input
    rounded to Q8 in blocks of 32 (act_q8, what the engine's integer dot
    products do);
  - `gantry run -n 0 --logits-out` on BASE and on MODEL (the engine's own
    kernels, --isa as given).
It prints, over the chunk's second half (the positions perplexity scores),
mean / median / p99 / max of KL(P_base || P_model) in nats and the top-1
agreement for each model-side run against the numpy base, and for the
engine's BASE against the numpy base (the floor of the comparison). Uses
only numpy and tests/reference."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from gguf import GGUFFile  # noqa: E402
from model import Model, q8_round  # noqa: E402
from quants import tensor_f32  # noqa: E402


def chunk_tokens(gantry, model, text, ctx):
    """BOS (when the model adds one) and the first text tokens: ctx in all."""
    out = subprocess.run([gantry, "tokenize", "-m", model, "--file", text, "--ids"], check=True,
                         capture_output=True, text=True).stdout
    ids = [int(t) for t in out.split()]
    g = GGUFFile(model)
    bos = g.get("tokenizer.ggml.bos_token_id")
    add_bos = g.get("tokenizer.ggml.add_bos_token", True) and bos is not None
    toks = ([int(bos)] if add_bos else []) + ids
    if len(toks) < ctx:
        sys.exit(f"{text}: {len(toks)} tokens, fewer than --ctx {ctx}")
    return toks[:ctx]


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def stats(base, other):
    """KL(P_base || P_other) per row, summarised; both [rows, n_vocab]."""
    lb, lo = log_softmax(base), log_softmax(other)
    kl = (np.exp(lb) * (lb - lo)).sum(axis=-1)
    s = np.sort(kl)
    n = len(s)
    return {"kl_mean": float(kl.mean()), "kl_median": float(s[int(np.ceil(0.5 * n)) - 1]),
            "kl_p99": float(s[int(np.ceil(0.99 * n)) - 1]), "kl_max": float(s[-1]),
            "top1": float((base.argmax(-1) == other.argmax(-1)).mean()),
            "max_abs_dlogit": float(np.abs(base - other).max())}


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def kind(name):
    """blk.7.ffn_down.weight -> ffn_down; token_embd.weight -> token_embd (head)."""
    parts = name.split(".")
    return parts[2] if parts[0] == "blk" else parts[0] + " (head)"


class Probe(Model):
    """The float base, recording for every matrix product the relative rms
    error that Q8 rounding of its input in blocks of 32 would add, and how
    many times larger than its rms the block maxima are (an outlier makes a
    block's scale coarse for the other 31 values)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.act = {}

    def _note(self, name, x):
        T, n = x.shape
        b = np.abs(x.reshape(T, n // 32, 32))
        crest = float(np.mean(b.max(-1) / np.maximum(np.sqrt((b * b).mean(-1)), 1e-30)))
        self.act.setdefault(kind(name), []).append((rel_err(q8_round(x), x), crest))

    def mm(self, x, name, expert=None):
        self._note(name, x)
        return super().mm(x, name, expert)

    def head(self, x):
        if self.head_dtype != self.dtype:
            self._note("token_embd.weight" if self.hp.tied else "output.weight", x)
        return super().head(x)


def weight_errors(base, model):
    """Relative rms error of each quantized matrix of model against base, by kind."""
    gb, gm = GGUFFile(base), GGUFFile(model)
    out = {}
    for name, t in gm.tensors.items():
        if t.type_name in ("F32", "F16", "BF16") or len(t.ne) < 2:
            continue
        out.setdefault(kind(name), []).append(
            (rel_err(tensor_f32(t).astype(np.float64), tensor_f32(gb.tensors[name]).astype(np.float64)),
             t.type_name))
    return out


def reference(path, toks, act_q8, head_f32, probe=False):
    cls = Probe if probe else Model
    m = cls(path, dtype=np.float64, act_q8=act_q8, head_dtype=np.float32 if head_f32 else None)
    logits = m.forward(toks).astype(np.float64)
    return (logits, m.act) if probe else logits


def engine(a, path, toks, tmp):
    out = os.path.join(tmp, "logits.bin")
    cmd = [a.gantry, "run", "-m", path, "-n", "0", "--tokens", ",".join(map(str, toks)),
           "--threads", str(a.threads), "--logits-out", out]
    if a.isa:
        cmd += ["--isa", a.isa]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4").reshape(len(toks), -1).astype(np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gantry", default="build/tools/gantry")
    ap.add_argument("--base", required=True, help="the F16 base")
    ap.add_argument("-m", "--model", required=True, help="the quantized model (Q8_0)")
    ap.add_argument("-f", "--file", required=True, help="the text")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--isa", default=None, help="the engine's --isa (default: auto)")
    ap.add_argument("--head-f32", action="store_true",
                    help="reference head product in float32 (large vocabularies)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.ctx < 4:
        ap.error(f"--ctx must be at least 4, not {a.ctx}")
    toks = chunk_tokens(a.gantry, a.base, a.file, a.ctx)
    rows = slice(a.ctx // 2, a.ctx)
    ref_base, act = reference(a.base, toks, False, a.head_f32, probe=True)
    ref_base = ref_base[rows]
    werr = weight_errors(a.base, a.model)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs["engine base (F16) vs numpy base"] = stats(ref_base, engine(a, a.base, toks, tmp)[rows])
        runs["numpy model, float activations"] = stats(ref_base, reference(a.model, toks, False, a.head_f32)[rows])
        runs["numpy model, Q8 activations"] = stats(ref_base, reference(a.model, toks, True, a.head_f32)[rows])
        runs["engine model"] = stats(ref_base, engine(a, a.model, toks, tmp)[rows])
    print(f"{os.path.basename(a.model)} against {os.path.basename(a.base)}: one chunk of {a.ctx} "
          f"tokens, {a.ctx - a.ctx // 2} scored positions")
    print(f"{'run':38s} {'mean KL':>10s} {'median':>10s} {'p99':>10s} {'max':>10s} {'top-1':>7s} {'max|dl|':>8s}")
    for k, s in runs.items():
        print(f"{k:38s} {s['kl_mean']:10.6f} {s['kl_median']:10.6f} {s['kl_p99']:10.6f} "
              f"{s['kl_max']:10.6f} {s['top1']:7.4f} {s['max_abs_dlogit']:8.3f}")
    print("\nrelative rms error added to each product's inputs, mean over layers (tokens of the chunk):")
    print(f"{'matrix':20s} {'weights (type)':>22s} {'Q8 activations':>15s} {'act max/rms per block':>22s}")
    errs = {}
    for k in act:
        w = werr.get(k, [])
        wm = float(np.mean([e for e, _ in w])) if w else 0.0
        types = ",".join(sorted({t for _, t in w})) or "float"
        am = float(np.mean([e for e, _ in act[k]]))
        cr = float(np.mean([c for _, c in act[k]]))
        errs[k] = {"weights": wm, "weight_types": types, "activations_q8": am, "act_block_crest": cr}
        print(f"{k:20s} {wm:14.5f} ({types:5s}) {am:15.5f} {cr:22.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "base": a.base, "ctx": a.ctx, "runs": runs,
                       "relative_errors": errs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
