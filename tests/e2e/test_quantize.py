#!/usr/bin/python3
"""End to end: `gantry quantize` and `gantry imatrix`.

1. Byte identity: a small model is synthesized as F32 and, with the same
   seed, as every weight type; `gantry quantize` of the F32 file to that type
   must give the same bytes for every tensor (and the same tensor types) as
   synth's own round-to-nearest writer.
2. Layout: every quantized file loads and runs in the engine (`gantry run
   --logits-out`), and its logits agree with the numpy reference model
   (tests/reference, which dequantizes the file with its own decoders)
   within test_reference.py's bounds; the reference's decoding of each
   quantized matrix is also within the type's error bound of the F32
   original.
3. Mixes: q4_k_m on an 8-layer model gives the documented type per tensor
   (a Python restatement of docs/quantize.md), --keep overrides, norms stay
   F32, general.file_type is 15, rows that are not whole Q4_K blocks fall
   back to Q5_0 with a warning; requantizing warns; bad input gets one
   sentence.
4. imatrix: the file `gantry imatrix` writes, read back with
   tests/reference/gguf.py, holds for every matrix the sums of squares of
   its inputs that the reference model computes over the same chunks
   (counts: every row); on an MoE model per expert. Quantizing with it lowers
   the importance-weighted error of every K-quant/Q4_0 matrix against
   round-to-nearest, and the result still runs.

Exit 77 (skip) only when the gantry binary does not exist.
"""
import fnmatch
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from gguf import GGUFFile  # noqa: E402
from model import Model  # noqa: E402
from quants import tensor_f32  # noqa: E402

GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.path.join(os.environ.get("GANTRY_TEST_TMP") or "/tmp", "test_quantize")
TYPES = ["f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k",
         "q6_k"]
N_VOCAB = 1024
SHAPE = ["--layers", "1", "--hidden", "256", "--heads", "4", "--kv-heads", "2", "--ffn", "512",
         "--vocab", str(N_VOCAB), "--seed", "5"]
FLOAT_BOUND = (0.005, 0.001)  # test_reference.py's bounds on the logits
QUANT_BOUND = (0.12, 0.025)
# rms(dequantized - original) / rms(original) per type: tests/unit/test_quant.c's
# round-trip bounds (N(0,1) data; synth's weights are a bounded near-normal).
DEQ_BOUND = {"f16": 5e-4, "bf16": 4e-3, "q8_0": 0.007, "q4_0": 0.11, "q4_1": 0.10, "q5_0": 0.055,
             "q5_1": 0.048, "q2_k": 0.37, "q3_k": 0.19, "q4_k": 0.09, "q5_k": 0.045, "q6_k": 0.023}
PROMPT = [5, 17, 300, 2, 999, 41, 7, 128]
failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def run(cmd, ok=True, timeout=300):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if ok and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p


def path(name):
    return os.path.join(TMP, name)


def logits(model, tokens=PROMPT):
    out = model + ".logits.bin"
    # The fp32 path for F16/BF16 (auto may take fp16 products): this checks the files.
    run([GANTRY, "run", "-m", model, "--tokens", ",".join(map(str, tokens)), "-n", "0",
         "--logits-out", out, "--half-matmul", "off"])
    return np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1).astype(np.float64)


def check_logits(label, model, bound):
    got, want = logits(model), Model(model).forward(PROMPT)
    d = np.abs(got - want)
    m, rms = float(d.max()), float(np.sqrt(np.mean(d ** 2)))
    print(f"  {label}: engine vs reference logits max {m:.5f} rms {rms:.5f}")
    if m > bound[0] or rms > bound[1]:
        fail(f"{label}: logits differ from the reference by max {m:.5f} / rms {rms:.5f} "
             f"(bounds {bound})")


def byte_identity_and_layout():
    f32 = path("f32.gguf")
    run([GANTRY, "synth", "-o", f32, "--arch", "llama"] + SHAPE)
    orig = GGUFFile(f32)
    for t in TYPES:
        s, q = path(f"synth_{t}.gguf"), path(f"quant_{t}.gguf")
        run([GANTRY, "synth", "-o", s, "--arch", "llama", "--type", t] + SHAPE)
        p = run([GANTRY, "quantize", f32, q, "--type", t, "--threads", "2"])
        if "->" not in p.stderr:
            fail(f"{t}: no summary of bytes before and after on stderr")
        a, b = GGUFFile(s), GGUFFile(q)
        if list(a.tensors) != list(b.tensors):
            fail(f"{t}: tensor names differ from synth's")
            continue
        for name, ta in a.tensors.items():
            tb = b.tensors[name]
            if ta.type_id != tb.type_id or ta.ne != tb.ne:
                fail(f"{t}: {name} is {tb.type_name} {tb.ne}, synth wrote {ta.type_name} {ta.ne}")
            elif not np.array_equal(ta.data, tb.data):
                k = int(np.nonzero(ta.data != tb.data)[0][0])
                fail(f"{t}: {name} differs from synth's bytes first at byte {k}")
        if a.get("general.file_type") != b.get("general.file_type"):
            fail(f"{t}: general.file_type {b.get('general.file_type')}, synth "
                 f"{a.get('general.file_type')}")
        # The reference's decoding of the quantized matrices against the F32 original.
        worst = 0.0
        for name, tq in b.tensors.items():
            if len(tq.ne) < 2 or tq.type_name == "F32":
                continue
            x = tensor_f32(orig.tensors[name]).astype(np.float64)
            y = tensor_f32(tq).astype(np.float64)
            worst = max(worst, float(np.sqrt(np.mean((x - y) ** 2) / np.mean(x ** 2))))
        print(f"{t}: bytes identical to synth; worst matrix rms error {worst:.5f} "
              f"(bound {DEQ_BOUND[t]})")
        if worst > DEQ_BOUND[t]:
            fail(f"{t}: a matrix decodes with relative rms error {worst:.5f} > {DEQ_BOUND[t]}")
        check_logits(t, q, FLOAT_BOUND if t in ("f16", "bf16") else QUANT_BOUND)


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def expected_q4_k_m(name, n_layer, keep):
    """docs/quantize.md's q4_k_m rule, restated."""
    if len(name.split(".")) < 2 or "norm" in name:
        return "F32"
    want = "Q4_K"
    if name in ("output.weight", "token_embd.weight"):
        want = "Q6_K"
    elif name.startswith("blk."):
        il = int(name.split(".")[1])
        if (".attn_v." in name or ".ffn_down" in name) and use_more_bits(il, n_layer):
            want = "Q6_K"
    for pat, typ in keep:
        if fnmatch.fnmatchcase(name, pat):
            want = typ
    return want


def presets():
    f32 = path("f32_8.gguf")
    run([GANTRY, "synth", "-o", f32, "--arch", "llama", "--layers", "8", "--hidden", "256",
         "--ffn", "256", "--vocab", "256", "--seed", "9"])
    out = path("q4_k_m.gguf")
    keep = [("blk.2.attn_q.*", "Q8_0"), ("blk.5.ffn_*", "Q5_0")]
    run([GANTRY, "quantize", f32, out, "--type", "q4_k_m"] +
        sum((["--keep", f"{p}={t.lower()}"] for p, t in keep), []))
    g = GGUFFile(out)
    if g.get("general.file_type") != 15:
        fail(f"q4_k_m: general.file_type {g.get('general.file_type')}, not 15")
    counts = {}
    for name, t in g.tensors.items():
        want = expected_q4_k_m(name, 8, keep)
        counts[t.type_name] = counts.get(t.type_name, 0) + 1
        if t.type_name != want:
            fail(f"q4_k_m: {name} is {t.type_name}, the documented mix says {want}")
    print(f"q4_k_m (8 layers, 2 --keep): types {counts}")
    logits(out, [5, 17, 200, 2])  # loads and runs
    # Rows of 128 are not whole Q4_K blocks: Q8_0, said on stderr.
    small = path("f32_128.gguf")
    run([GANTRY, "synth", "-o", small, "--arch", "llama", "--hidden", "128", "--ffn", "256",
         "--vocab", str(N_VOCAB)])
    p = run([GANTRY, "quantize", small, path("fb.gguf"), "--type", "q4_k"])
    for name, t in GGUFFile(path("fb.gguf")).tensors.items():
        want = "F32" if len(t.ne) < 2 else "Q4_K" if t.ne[0] % 256 == 0 else "Q5_0"
        if t.type_name != want:
            fail(f"fallback: {name} {t.ne} is {t.type_name}, not {want}")
    if "blk.0.attn_q.weight (and every layer's) has rows of 128, not whole Q4_K blocks: " \
            "stored as Q5_0" not in p.stderr:
        fail(f"fallback: no warning naming the tensor on stderr: {p.stderr[:600]!r}")
    # Requantizing warns, and the result runs.
    p = run([GANTRY, "quantize", path("quant_q8_0.gguf"), path("req.gguf"), "--type", "q4_0"])
    if "requantizing" not in p.stderr:
        fail("requantizing Q8_0 to Q4_0 gave no warning")
    logits(path("req.gguf"))
    # Bad input: one sentence, exit 2 (usage) or 1.
    for args, words in [(["--type", "q9_0"], "is not a type"),
                        (["--type", "q4_0", "--keep", "nothing"], "PATTERN=TYPE"),
                        (["--type", "q4_0", "--imatrix", f32], "not an importance matrix")]:
        p = run([GANTRY, "quantize", f32, path("bad.gguf")] + args, ok=False)
        if p.returncode == 0 or words not in p.stderr or len(p.stderr.strip().splitlines()) > 12:
            fail(f"quantize {args}: exit {p.returncode}, stderr {p.stderr[-300:]!r}")
    p = run([GANTRY, "quantize", path("missing.gguf"), path("bad.gguf"), "--type", "q4_0"], ok=False)
    if p.returncode == 0 or "missing.gguf" not in p.stderr:
        fail(f"quantize of a missing file: exit {p.returncode}, {p.stderr!r}")


class Recorder(Model):
    """The reference model, summing the squares of every matrix product's input."""

    def __init__(self, path_, **kw):
        super().__init__(path_, **kw)
        self.sums, self.counts = {}, {}

    def mm(self, x, name, expert=None):
        n_mat = self.gf.tensors[name].ne[2] if len(self.gf.tensors[name].ne) > 2 else 1
        if name not in self.sums:
            self.sums[name] = np.zeros((n_mat, x.shape[1]))
            self.counts[name] = np.zeros(n_mat)
        m = 0 if expert is None else int(expert)
        self.sums[name][m] += np.sum(x.astype(np.float64) ** 2, axis=0)
        self.counts[name][m] += x.shape[0]
        return super().mm(x, name, expert)


def tokens_of(model, text_path):
    plain = run([GANTRY, "tokenize", "-m", model, "--file", text_path, "--ids"]).stdout.split()
    special = run([GANTRY, "tokenize", "-m", model, "--file", text_path, "--ids",
                   "--add-special"]).stdout.split()
    ids = [int(t) for t in plain]
    bos = int(special[0]) if len(special) == len(plain) + 1 else None
    return ids, bos


def imatrix_check(arch, extra, ctx, chunks, tol):
    model = path(f"im_{arch}.gguf")
    run([GANTRY, "synth", "-o", model, "--arch", arch, "--layers", "2", "--hidden", "256",
         "--heads", "4", "--kv-heads", "2", "--ffn", "512", "--seed", "21"] + extra)
    text = os.path.join(SRC, "tests", "data", "public_domain.txt")
    out = path(f"im_{arch}.imatrix.gguf")
    p = run([GANTRY, "imatrix", "-m", model, "-f", text, "-o", out, "--ctx", str(ctx),
             "--chunks", str(chunks)])
    print(f"imatrix {arch}: {p.stdout.strip()}")
    ids, bos = tokens_of(model, text)
    body = ctx - 1 if bos is not None else ctx
    ref = Recorder(model, kv_f16=True)
    for c in range(chunks):
        toks = ([bos] if bos is not None else []) + ids[c * body:(c + 1) * body]
        ref.forward(toks)
    g = GGUFFile(out)
    if g.get("general.type") != "imatrix" or g.get("imatrix.chunk_count") != chunks or \
            g.get("imatrix.chunk_size") != ctx or g.get("imatrix.datasets") != [text]:
        fail(f"imatrix {arch}: metadata {[(k, g.get(k)) for k in g.kv]}")
    names = {n[:-len(".in_sum2")] for n in g.tensors if n.endswith(".in_sum2")}
    if names != set(ref.sums):
        fail(f"imatrix {arch}: tensors {sorted(names ^ set(ref.sums))} are in only one of "
             f"gantry's file and the reference")
    worst = 0.0
    for name in sorted(names & set(ref.sums)):
        s = tensor_f32(g.tensors[name + ".in_sum2"]).astype(np.float64).reshape(ref.sums[name].shape)
        c = tensor_f32(g.tensors[name + ".counts"]).astype(np.float64).reshape(-1)
        if not np.array_equal(c, ref.counts[name]):
            fail(f"imatrix {arch}: {name} counts {c}, reference {ref.counts[name]}")
            continue
        err = float(np.max(np.abs(s - ref.sums[name]) / (np.abs(ref.sums[name]) + 1e-3 *
                                                         np.max(ref.sums[name]))))
        worst = max(worst, err)
        if err > tol:
            fail(f"imatrix {arch}: {name} sums differ from the reference by {err:.2e} (> {tol})")
    print(f"imatrix {arch}: {len(names)} tensors, counts equal, sums within {worst:.2e} "
          f"of the reference")
    return model, out


def imatrix_quantize(model, im):
    """--imatrix lowers each matrix's importance-weighted error against RTN."""
    g = GGUFFile(im)
    orig = GGUFFile(model)
    for t in ["q4_0", "q4_k", "q3_k"]:
        a, b = path(f"rtn_{t}.gguf"), path(f"imx_{t}.gguf")
        # The 32000-row embedding and head stay F32 (--keep), to keep the test short.
        big = ["--keep", "token_embd.weight=f32", "--keep", "output.weight=f32"]
        run([GANTRY, "quantize", model, a, "--type", t] + big)
        run([GANTRY, "quantize", model, b, "--type", t, "--imatrix", im] + big)
        fa, fb = GGUFFile(a), GGUFFile(b)
        if fb.get("quantize.imatrix.file") != im:
            fail(f"{t}: quantize.imatrix.file is {fb.get('quantize.imatrix.file')!r}")
        better = total = 0
        for name in fa.tensors:
            if name + ".in_sum2" not in g.tensors or fa.tensors[name].type_name == "F32":
                continue
            qw = (tensor_f32(g.tensors[name + ".in_sum2"]) /
                  tensor_f32(g.tensors[name + ".counts"])[0]).astype(np.float64)
            x = tensor_f32(orig.tensors[name]).astype(np.float64)
            ea = float(np.sum(qw * (x - tensor_f32(fa.tensors[name])) ** 2))
            eb = float(np.sum(qw * (x - tensor_f32(fb.tensors[name])) ** 2))
            total += 1
            better += eb < ea
            if eb >= ea:
                fail(f"{t}: {name}: weighted error with --imatrix {eb:.4g} >= without {ea:.4g}")
        print(f"{t} --imatrix: weighted error lower on {better}/{total} matrices")
        if total == 0:
            fail(f"{t}: no matrix had an imatrix entry")
        logits(b, PROMPT[:4])


def main():
    if not os.access(GANTRY, os.X_OK):
        print(f"skip: no gantry binary at {GANTRY}")
        return 77
    os.makedirs(TMP, exist_ok=True)
    byte_identity_and_layout()
    presets()
    model, im = imatrix_check("llama", [], 32, 3, 2e-3)
    imatrix_check("qwen2moe", ["--experts", "4", "--experts-used", "2", "--expert-ffn", "256",
                               "--shared-ffn", "256"], 24, 2, 5e-3)
    imatrix_quantize(model, im)
    p = run([GANTRY, "imatrix", "-m", model, "-f", model, "--tp", "2"], ok=False)
    if p.returncode == 0 or "one rank" not in p.stderr:
        fail(f"imatrix --tp 2: exit {p.returncode}, {p.stderr!r}")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
