#!/usr/bin/python3
"""`gantry eval`: a model against its base over a text.

Small synthetic llama models (2 layers, hidden 64, the llama-spm vocabulary
of 32000 tokens): an F32 original, its Q8_0 and Q4_0 siblings from the same
seed (synth writes the same random weights, rounded to nearest), and a copy
of the original with one damaged tensor (blk.1.ffn_down.weight replaced by
noise, written here with tests/reference/gguf.py's offsets). Checks:
- the original against itself: KL exactly 0, top-1 agreement exactly 1,
  p99 |dlogit| exactly 0, both perplexities equal;
- the damaged copy: KL > 0 and top-1 < 1; Q8_0 stays closer than Q4_0;
- the KV cache's type: against the f32 cache's logits, 0 < KL(f16) <
  KL(bf16) < a tenth of the Q8_0 weights' KL; a BF16 cache in odd blocks
  is refused;
- every number of one small case (2 chunks of 16 tokens: 14 positions) equals
  a numpy computation from `gantry run --logits-out` of each chunk of both
  models, the chunk tokens read from the --save-base file by a reader written
  here from the documented layout (tools/eval_logits.h);
- the model's perplexity is the one `gantry perplexity` prints;
- --save-base then --base-logits gives identical numbers;
- refused in one sentence: --base-logits over another text, another --ctx,
  a model of another vocabulary (with --base and with --base-logits), a
  truncated logits file, a file over --max-bytes (and --force writes it),
  --base with --base-logits.
Exit 77 (skip) only when the gantry binary does not exist."""
import json
import math
import os
import re
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from gguf import GGUFFile  # noqa: E402

GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"
TEXT = os.path.join(SRC, "tests", "data", "public_domain.txt")
SHAPE = ["--arch", "llama", "--layers", "2", "--hidden", "64", "--heads", "4", "--kv-heads", "2",
         "--ffn", "128", "--seed", "7"]
EVAL = ["--ctx", "32", "--chunks", "3"]
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def gantry(args):
    return subprocess.run([GANTRY, *args], capture_output=True, text=True, timeout=300)


def path(name):
    return os.path.join(TMP, "eval_" + name)


def synth(name, extra=()):
    p = gantry(["synth", "-o", path(name), *SHAPE, *extra])
    if p.returncode != 0:
        sys.exit(f"synth failed: {p.stderr}")
    return path(name)


def damaged_copy(src, dst, tensor):
    g = GGUFFile(src)
    t = g.tensors[tensor]
    assert t.type_name == "F32", t.type_name
    start = g.data_offset + t.offset
    with open(src, "rb") as f:
        data = bytearray(f.read())
    noise = np.random.default_rng(3).standard_normal(t.n_elements).astype("<f4")
    data[start:start + t.nbytes] = noise.tobytes()
    with open(dst, "wb") as f:
        f.write(data)
    return dst


def evaluate(model, base=None, extra=(), args=EVAL, tag="x"):
    out = path(tag + ".json")
    if os.path.exists(out):
        os.remove(out)
    cmd = ["eval", "-m", model, "-f", TEXT, *args, "--json", out, *extra]
    if base:
        cmd += ["--base", base]
    p = gantry(cmd)
    if p.returncode != 0:
        return None, p.stderr
    with open(out) as f:
        return json.load(f), p.stdout


def refused(p, *words):
    lines = [l for l in p.stderr.strip().splitlines() if l]
    return p.returncode != 0 and len(lines) == 1 and all(w in lines[0] for w in words), lines


def numbers(j):
    """The measured numbers of an eval JSON, without the file names."""
    return {k: v for k, v in j.items() if k not in ("base", "base_logits", "base_bytes")}


def read_evlog(fname):
    with open(fname, "rb") as f:
        data = f.read()
    assert data[:8] == b"GTEVLOGT"
    version, n_vocab, ctx, chunk_tokens, first, n_scored = struct.unpack_from("<6I", data, 8)
    n_chunks, text_bytes, text_hash, n_pos, token_hash = struct.unpack_from("<5Q", data, 32)
    off = 80
    toks = np.frombuffer(data, "<i4", n_chunks * chunk_tokens, off).reshape(n_chunks, chunk_tokens)
    off += toks.nbytes
    rows = np.frombuffer(data, "<f4", n_pos * n_vocab, off).reshape(n_pos, n_vocab)
    return dict(n_vocab=n_vocab, ctx=ctx, first=first, n_scored=n_scored, n_chunks=n_chunks,
                text_bytes=text_bytes, tokens=toks, rows=rows)


def run_logits(model, tokens, ctx):
    out = path("run_logits.bin")
    p = gantry(["run", "-m", model, "--tokens", ",".join(map(str, tokens)), "-n", "0", "--ctx", str(ctx),
                "--logits-out", out])
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return np.fromfile(out, "<f4").reshape(len(tokens), -1)


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def nearest_rank(v, q):
    s = np.sort(v)
    return s[max(1, math.ceil(q * len(s))) - 1]


def numpy_case(model, base, ctx, chunks):
    """Every number of eval, from `run --logits-out` and numpy."""
    saved = path("np_case.logits")
    j, _ = evaluate(model, base, ["--save-base", saved], ["--ctx", str(ctx), "--chunks", str(chunks)], "np")
    check(j is not None, f"numpy case: eval with --save-base ran")
    if j is None:
        return
    lg = read_evlog(saved)
    first, n_sc = lg["first"], lg["n_scored"]
    check(lg["ctx"] == ctx and lg["n_chunks"] == chunks and first == ctx // 2 and n_sc == ctx - 1 - ctx // 2
          and lg["text_bytes"] == os.path.getsize(TEXT),
          f"logits file header: ctx {lg['ctx']}, {lg['n_chunks']} chunks, rows {first}..{first + n_sc}")
    kl, top1, dmax, dp, nll_b, nll_f = [], [], [], [], [], []
    base_rows = []
    for c in range(chunks):
        toks = [int(t) for t in lg["tokens"][c]]
        lb_all = run_logits(base, toks, ctx)
        lf_all = run_logits(model, toks, ctx)
        for k in range(n_sc):
            jj = first + k
            b, f = lb_all[jj], lf_all[jj]
            base_rows.append(b)
            lb, lf = log_softmax(b), log_softmax(f)
            kl.append(float(np.sum(np.exp(lb) * (lb - lf))))
            top1.append(int(np.argmax(b)) == int(np.argmax(f)))
            dmax.append(float(np.max(np.abs(f.astype(np.float64) - b.astype(np.float64)))))
            t = toks[jj + 1]
            dp.append(math.exp(lf[t]) - math.exp(lb[t]))
            nll_b.append(-lb[t])
            nll_f.append(-lf[t])
    check(np.array_equal(np.array(base_rows), lg["rows"]),
          "the saved base rows are `run --logits-out`'s rows of the scored positions, bit for bit")
    n = len(kl)
    want = {"positions": n, "perplexity.base": math.exp(np.mean(nll_b)),
            "perplexity.model": math.exp(np.mean(nll_f)), "kl.mean": np.mean(kl),
            "kl.median": nearest_rank(kl, 0.5), "kl.p99": nearest_rank(kl, 0.99), "kl.max": max(kl),
            "top1_agreement": sum(top1) / n, "max_abs_dlogit.p99": nearest_rank(dmax, 0.99),
            "max_abs_dlogit.max": max(dmax), "dp_next_token.mean": np.mean(dp),
            "dp_next_token.rms": math.sqrt(np.mean(np.square(dp)))}
    for key, w in want.items():
        got = j
        for part in key.split("."):
            got = got[part]
        ok = abs(got - w) <= 1e-9 * max(1.0, abs(w)) + 1e-15
        check(ok, f"numpy case ({n} positions): {key} {got!r} == numpy {w!r}")
    check(0 < sum(top1) < n or j["kl"]["mean"] > 0, "numpy case is not trivial (KL > 0)")


def main():
    if not os.path.exists(GANTRY):
        print("gantry binary not found (GANTRY_BIN); skipping")
        return 77
    f32 = synth("f32.gguf")
    q8 = synth("q8_0.gguf", ["--type", "q8_0"])
    q4 = synth("q4_0.gguf", ["--type", "q4_0"])
    bad = damaged_copy(f32, path("damaged.gguf"), "blk.1.ffn_down.weight")

    # The original against itself.
    j, out = evaluate(f32, f32, tag="self")
    check(j is not None, f"self: ran ({out.strip()[-300:]})")
    if j:
        check(j["kl"] == {"mean": 0, "median": 0, "p99": 0, "max": 0}, f"self: KL exactly 0: {j['kl']}")
        check(j["top1_agreement"] == 1 and j["top1_same"] == j["positions"] == 3 * 15,
              f"self: top-1 agreement exactly 1 over 45 positions: {j['top1_agreement']}")
        check(j["max_abs_dlogit"] == {"p99": 0, "max": 0} and j["dp_next_token"] == {"mean": 0, "rms": 0},
              f"self: |dlogit| and dp exactly 0: {j['max_abs_dlogit']}")
        check(j["perplexity"]["model"] == j["perplexity"]["base"], "self: both perplexities equal")
        p = gantry(["perplexity", "-m", f32, "-f", TEXT, *EVAL])
        m = re.search(r"perplexity: ([0-9.]+) over (\d+)", p.stdout)
        check(m is not None and m.group(1) == f"{j['perplexity']['model']:.4f}" and int(m.group(2)) == 45,
              f"perplexity agrees with `gantry perplexity`: {m.group(0) if m else p.stderr}")

    # Damaged and quantized copies.
    res = {}
    for name, model in (("damaged", bad), ("q8_0", q8), ("q4_0", q4)):
        res[name], out = evaluate(model, f32, tag=name)
        check(res[name] is not None, f"{name}: ran ({out.strip()[-300:]})")
    if res["damaged"]:
        d = res["damaged"]
        check(d["kl"]["mean"] > 0.01 and d["kl"]["max"] >= d["kl"]["p99"] >= d["kl"]["median"] > 0,
              f"damaged tensor: KL grows: {d['kl']}")
        check(d["top1_agreement"] < 1, f"damaged tensor: top-1 agreement < 1: {d['top1_agreement']}")
        check(d["max_abs_dlogit"]["p99"] > 0, f"damaged tensor: p99 |dlogit| > 0: {d['max_abs_dlogit']}")
    if res["q8_0"] and res["q4_0"] and res["damaged"]:
        k8, k4, kd = (res[n]["kl"]["mean"] for n in ("q8_0", "q4_0", "damaged"))
        check(0 < k8 < k4 < kd, f"KL mean: q8_0 {k8:.3g} < q4_0 {k4:.3g} < damaged {kd:.3g}")

    numpy_case(q4, f32, 16, 2)

    # The KV cache's type against an f32 cache (F32 weights: fp32 products,
    # so the cache's rounding is the only difference): f16 rounds K and V to
    # 11 bits, bf16 to 8 and also the queries and softmax weights (bf16 dot
    # products), so 0 < KL(f16) < KL(bf16), both far below the weights' Q8_0.
    kvb = path("kv_f32.logits")
    jb, out = evaluate(f32, f32, ["--kv-type", "f32", "--save-base", kvb], tag="kv_f32")
    check(jb is not None and jb["kl"]["max"] == 0, f"f32 KV cache against itself: KL 0 ({out.strip()[-200:]})")
    kl = {}
    for kt in ("f16", "bf16"):
        j, out = evaluate(f32, None, ["--base-logits", kvb, "--kv-type", kt], tag="kv_" + kt)
        check(j is not None, f"--kv-type {kt}: ran ({out.strip()[-300:]})")
        kl[kt] = j["kl"]["mean"] if j else None
    if None not in kl.values() and res["q8_0"]:
        k8 = res["q8_0"]["kl"]["mean"]
        check(0 < kl["f16"] < kl["bf16"] < k8 / 10,
              f"KL mean against an f32 KV cache: f16 {kl['f16']:.3g} < bf16 {kl['bf16']:.3g} "
              f"< Q8_0 weights / 10 ({k8 / 10:.3g})")
    p = gantry(["plan", "-m", f32, "--kv-type", "bf16", "--block", "15"])
    ok, lines = refused(p, "BF16", "15", "odd")
    check(ok, f"a BF16 cache in blocks of 15 is refused: {lines}")

    # Save once, reuse.
    saved = path("base.logits")
    j1, _ = evaluate(q4, f32, ["--save-base", saved], tag="save")
    j2, out = evaluate(q4, None, ["--base-logits", saved], tag="reuse")
    check(j1 is not None and j2 is not None and numbers(j1) == numbers(j2),
          f"--save-base then --base-logits: identical numbers ({out.strip()[-200:]})")

    # Refusals, one sentence each.
    other = path("other.txt")
    with open(TEXT) as f:
        body = f.read()
    with open(other, "w") as f:
        f.write(body.replace("the", "a"))
    p = gantry(["eval", "-m", q4, "--base-logits", saved, "-f", other, *EVAL])
    ok, lines = refused(p, "text", saved)
    check(ok, f"another text with --base-logits is refused: {lines}")
    p = gantry(["eval", "-m", q4, "--base-logits", saved, "-f", TEXT, "--ctx", "40", "--chunks", "3"])
    ok, lines = refused(p, "--ctx 32", "--ctx 40")
    check(ok, f"another --ctx with --base-logits is refused: {lines}")
    gpt2 = os.path.join(SRC, "tests", "data", "vocab", "ggml-vocab-gpt-2.gguf")
    vg = synth("gpt2vocab.gguf", ["--vocab-from", gpt2])
    p = gantry(["eval", "-m", vg, "--base", f32, "-f", TEXT, *EVAL])
    ok, lines = refused(p, "vocabulary", "50257", "32000")
    check(ok, f"a base of another vocabulary is refused: {lines}")
    p = gantry(["eval", "-m", vg, "--base-logits", saved, "-f", TEXT, *EVAL])
    ok, lines = refused(p, "vocabulary", "50257", "32000")
    check(ok, f"base logits of another vocabulary are refused: {lines}")
    trunc = path("trunc.logits")
    with open(saved, "rb") as f, open(trunc, "wb") as g:
        g.write(f.read()[:-10])
    p = gantry(["eval", "-m", q4, "--base-logits", trunc, "-f", TEXT, *EVAL])
    ok, lines = refused(p, "truncated")
    check(ok, f"a truncated logits file is refused: {lines}")
    big = path("big.logits")
    if os.path.exists(big):
        os.remove(big)
    p = gantry(["eval", "-m", q4, "--base", f32, "-f", TEXT, *EVAL, "--save-base", big, "--max-bytes", "1M"])
    ok, lines = refused(p, "--max-bytes", "--force")
    check(ok and not os.path.exists(big), f"a logits file over --max-bytes is refused: {lines}")
    p = gantry(["eval", "-m", q4, "--base", f32, "-f", TEXT, *EVAL, "--save-base", big, "--max-bytes", "1M",
                "--force"])
    check(p.returncode == 0 and os.path.getsize(big) == os.path.getsize(saved), "--force writes it anyway")
    p = gantry(["eval", "-m", q4, "--base", f32, "--base-logits", saved, "-f", TEXT])
    ok, lines = refused(p, "--base-logits")
    check(ok and p.returncode == 2, f"--base with --base-logits is refused: {lines}")

    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("all passed")
    return 0


sys.exit(main())
