#!/usr/bin/python3
"""Writes the seed corpus of fuzz_gguf: a few small valid GGUF files (every
value type, string and nested arrays, several tensor types, alignments 32 and
64, a vocabulary-like file) and some near-valid ones that each carry one
defect. The GGUF encoding here is written from the format description, not
taken from Gantry's writer, so the seeds also check the reader against a
second encoder. Standard library only; deterministic output.

Usage: /usr/bin/python3 tests/fuzz/make_gguf_corpus.py [OUT_DIR]
"""
import os
import random
import struct
import sys

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
              F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml type id -> (block elements, block bytes)
DTYPES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 14: (256, 210),
          30: (1, 2)}


def gstr(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def payload(t, v):
    """Encodes a value of type t; arrays are (elem_type, [values])."""
    if t == STR:
        return gstr(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(payload(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def gguf(kvs, tensors, align=32, version=3, n_kv=None, n_tensors=None):
    """kvs: [(key, type, value)]; tensors: [(name, ne, type, data, offset or None)]."""
    head = struct.pack("<IIQQ", 0x46554747, version,
                       len(tensors) if n_tensors is None else n_tensors,
                       len(kvs) if n_kv is None else n_kv)
    body = b"".join(gstr(k) + struct.pack("<I", t) + payload(t, v) for k, t, v in kvs)
    infos, blobs, off = b"", [], 0
    for name, ne, ty, data, fixed in tensors:
        o = off if fixed is None else fixed
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", ty, o)
        blobs.append(data + b"\0" * (-len(data) % align))
        off += len(blobs[-1])
    out = head + body + infos
    out += b"\0" * (-len(out) % align)
    return out + b"".join(blobs)


def nested(levels):
    """An array value nested `levels` arrays deep, innermost [1] of u8."""
    v = (U8, [1])
    for _ in range(levels - 1):
        v = (ARR, [v])
    return v


def tensor(rng, name, ne, ty, offset=None):
    elems, nbytes = DTYPES[ty]
    n = ne[0] // elems * nbytes
    for d in ne[1:]:
        n *= d
    return (name, ne, ty, bytes(rng.randrange(256) for _ in range(n)), offset)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                             "corpus", "fuzz_gguf")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(1234)
    every = [
        ("general.architecture", STR, "llama"),
        ("k.u8", U8, 200), ("k.i8", I8, -5), ("k.u16", U16, 60000), ("k.i16", I16, -300),
        ("k.u32", U32, 4000000000), ("k.i32", I32, -7), ("k.f32", F32, 0.5), ("k.bool", BOOL, True),
        ("k.u64", U64, 1 << 40), ("k.i64", I64, -(1 << 40)), ("k.f64", F64, 1e-300),
        ("k.str", STR, "h\u00e9llo"),
        ("arr.i32", ARR, (I32, [1, -2, 3])), ("arr.f32", ARR, (F32, [0.25, -1.5])),
        ("arr.bool", ARR, (BOOL, [True, False])), ("arr.u64", ARR, (U64, [1 << 63])),
        ("arr.str", ARR, (STR, ["a", "", "\u2581the"])),
        ("arr.nest", ARR, (ARR, [(I32, [1, 2]), (STR, ["x"]), (ARR, [(U8, [7])])])),
        ("arr.empty", ARR, (U8, [])),
    ]
    t3 = [tensor(rng, "token_embd.weight", [8, 4], 0), tensor(rng, "blk.0.attn_q.weight", [64, 2], 2),
          tensor(rng, "blk.0.ffn_up.weight", [32, 2, 2], 8), tensor(rng, "output_norm.weight", [8], 1)]
    seeds = {
        "valid-bare.gguf": gguf([], []),
        "valid-every-type.gguf": gguf(every, t3),
        "valid-align64.gguf": gguf([("general.alignment", U32, 64)] + every[:3],
                                   [tensor(rng, "a", [256, 1], 12), tensor(rng, "b", [256], 14),
                                    tensor(rng, "c", [3, 3], 30)], align=64),
        "valid-v2.gguf": gguf(every[:2], t3[:1], version=2),
        "valid-vocab.gguf": gguf([
            ("general.architecture", STR, "llama"),
            ("tokenizer.ggml.model", STR, "gpt2"),
            ("tokenizer.ggml.tokens", ARR, (STR, ["<s>", "</s>"] + ["t%d" % i for i in range(300)])),
            ("tokenizer.ggml.scores", ARR, (F32, [-float(i) for i in range(302)])),
            ("tokenizer.ggml.token_type", ARR, (I32, [3, 3] + [1] * 300)),
            ("tokenizer.ggml.merges", ARR, (STR, ["t t%d" % i for i in range(50)])),
            ("tokenizer.ggml.bos_token_id", U32, 0),
        ], []),
        "valid-depth8.gguf": gguf([("deep", ARR, nested(8))], []),
        "bad-depth9.gguf": gguf([("deep", ARR, nested(9))], []),
        "bad-dup-key.gguf": gguf([("a", U32, 1), ("a", U32, 2)], []),
        "bad-dup-tensor.gguf": gguf([], [tensor(rng, "w", [8], 0), tensor(rng, "w", [8], 0)]),
        "bad-misaligned.gguf": gguf([], [tensor(rng, "w", [8], 0, offset=8)]),
        "bad-overlap.gguf": gguf([], [tensor(rng, "a", [16], 0, offset=0), tensor(rng, "b", [8], 0, offset=32)]),
        "bad-type17.gguf": gguf([], [("w", [256], 17, b"\1" * 66, None)]),
        "bad-align48.gguf": gguf([("general.alignment", U32, 48)], t3[:1]),
        "bad-count.gguf": gguf(every[:1], [], n_kv=1 << 40),
        "bad-version1.gguf": gguf([], [], version=1),
    }
    seeds["bad-trunc-data.gguf"] = seeds["valid-every-type.gguf"][:-40]
    seeds["bad-trunc-header.gguf"] = seeds["valid-every-type.gguf"][:500]
    for name, data in sorted(seeds.items()):
        assert len(data) < 64 * 1024, name
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
