#!/usr/bin/python3
"""Accuracy of the bf16 dot products (--bf16-matmul) against the fp32 path.

  bench/bf16_kl.py convert IN.gguf OUT.gguf f16|bf16
      rewrites a GGUF with every quantized tensor dequantized to F16 or BF16
      (F32 tensors, metadata and tokenizer unchanged): a real checkpoint in
      the weight types the bf16 path is for.
  bench/bf16_kl.py kl --gantry BIN -m MODEL [-f TEXT | --tokens N] [--threads T]
      runs `gantry run -n 0 --logits-out` with --bf16-matmul off and on and
      prints, over the prompt positions, the mean and max KL(p_fp32 || p_bf16),
      the top-1 agreement and the max |logit difference|.

Uses tests/reference/{gguf,quants}.py; numpy only."""
import argparse
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gguf  # noqa: E402
import quants  # noqa: E402


def kv_end(g):
    """Byte offset just past the key-value section."""
    g._pos = 4 + 4 + 8 + 8
    for _ in range(len(g.kv)):
        g._read_str()
        t = g._read("<I")
        g._read_value(t)
    return g._pos


def to_bf16(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def convert(src, dst, kind):
    g = gguf.GGUFFile(src)
    end = kv_end(g)
    type_id = 1 if kind == "f16" else 30
    align = g.alignment
    infos, blobs, off = [], [], 0
    for t in g.tensors.values():
        if t.type_name in ("F32", "F16", "BF16", "I8", "I16", "I32", "I64", "F64"):
            tid, raw = t.type_id, np.asarray(t.data).tobytes()
        else:
            x = quants.dequantize(t.type_name, np.asarray(t.data), t.n_elements).astype(np.float32)
            tid = type_id
            raw = (x.astype(np.float16).view(np.uint16) if kind == "f16" else to_bf16(x)).tobytes()
        name = t.name.encode()
        infos.append(struct.pack("<Q", len(name)) + name + struct.pack("<I", len(t.ne)) +
                     b"".join(struct.pack("<Q", d) for d in t.ne) + struct.pack("<IQ", tid, off))
        blobs.append(raw)
        off = (off + len(raw) + align - 1) // align * align
    with open(dst, "wb") as f:
        f.write(bytes(g._buf[:end]))
        for i in infos:
            f.write(i)
        pad = (-f.tell()) % align
        f.write(b"\0" * pad)
        base = f.tell()
        for raw in blobs:
            f.write(b"\0" * ((-(f.tell() - base)) % align))
            f.write(raw)
    print(f"{dst}: {len(infos)} tensors, quantized ones now {kind.upper()}")


def logits(args, mode, out):
    cmd = [args.gantry, "run", "-m", args.model, "-n", "0", "--threads", str(args.threads),
           "--bf16-matmul", mode, "--logits-out", out]
    cmd += ["-f", args.file] if args.file else ["--tokens", ",".join(str(1 + (i * 7919) % 20000) for i in range(args.tokens))]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return np.fromfile(out, dtype="<f4")


def kl(args):
    with tempfile.TemporaryDirectory() as d:
        a = logits(args, "off", os.path.join(d, "off.bin"))
        b = logits(args, "on", os.path.join(d, "on.bin"))
    n_vocab = args.vocab
    if not n_vocab:
        g = gguf.GGUFFile(args.model)
        emb = g.tensors.get("token_embd.weight")
        n_vocab = emb.ne[1]
    a = a.reshape(-1, n_vocab).astype(np.float64)
    b = b.reshape(-1, n_vocab).astype(np.float64)
    la = a - a.max(1, keepdims=True)
    la -= np.log(np.exp(la).sum(1, keepdims=True))
    lb = b - b.max(1, keepdims=True)
    lb -= np.log(np.exp(lb).sum(1, keepdims=True))
    k = (np.exp(la) * (la - lb)).sum(1)
    top = (a.argmax(1) == b.argmax(1)).mean()
    print(f"{os.path.basename(args.model)}: {a.shape[0]} positions, KL mean {k.mean():.3e} "
          f"max {k.max():.3e}, top-1 agreement {top:.4f}, max |dlogit| {np.abs(a - b).max():.4f}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("kind", choices=["f16", "bf16"])
    k = sub.add_parser("kl")
    k.add_argument("--gantry", default="build/tools/gantry")
    k.add_argument("-m", "--model", required=True)
    k.add_argument("-f", "--file")
    k.add_argument("--tokens", type=int, default=128)
    k.add_argument("--threads", type=int, default=2)
    k.add_argument("--vocab", type=int, default=0)
    a = ap.parse_args()
    if a.cmd == "convert":
        convert(a.src, a.dst, a.kind)
    else:
        kl(a)


if __name__ == "__main__":
    main()
