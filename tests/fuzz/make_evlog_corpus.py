#!/usr/bin/python3
"""Writes the seed corpus of fuzz_evlog: headers of `gantry eval`'s base
logits file (tools/eval_logits.h), packed here with struct from the
documented layout, each followed by the file size the target checks
against (8 bytes, little-endian): valid ones, and ones with a wrong magic,
version, count, or size. Deterministic output.

Usage: /usr/bin/python3 tests/fuzz/make_evlog_corpus.py [OUT_DIR]
"""
import os
import struct
import sys


def header(n_vocab=5, ctx=8, chunk=8, first=4, n_scored=3, n_chunks=2, text_bytes=123, text_hash=77,
           n_pos=None, token_hash=0, magic=b"GTEVLOGT", version=1):
    if n_pos is None:
        n_pos = n_chunks * n_scored
    return magic + struct.pack("<6I5QQ", version, n_vocab, ctx, chunk, first, n_scored, n_chunks, text_bytes,
                               text_hash, n_pos, token_hash, 0)


def size_of(n_vocab=5, chunk=8, n_scored=3, n_chunks=2, **_):
    return 80 + n_chunks * chunk * 4 + n_chunks * n_scored * n_vocab * 4


SEEDS = {
    "valid-small": (header(), size_of()),
    "valid-llama": (header(32000, 512, 512, 256, 255, 7), size_of(32000, 512, 255, 7)),
    "valid-ctx-odd": (header(3, 9, 9, 4, 4, 1), size_of(3, 9, 4, 1)),
    "short-by-one": (header(), size_of() - 1),
    "bad-magic": (header(magic=b"GTEVLOGX"), size_of()),
    "bad-version": (header(version=2), size_of()),
    "bad-scored": (header(n_scored=4), size_of(n_scored=4)),
    "huge-vocab": (header(n_vocab=1 << 30), 0),
    "huge-positions": (header(n_pos=2**64 - 1), 0),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                             "corpus", "fuzz_evlog")
    os.makedirs(out, exist_ok=True)
    for name, (hdr, size) in SEEDS.items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(hdr + struct.pack("<Q", size))


main()
