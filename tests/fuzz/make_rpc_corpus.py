#!/usr/bin/python3
"""Writes the seed corpus of fuzz_rpc: each file is one byte (the seed of
the piece sizes the fuzzer feeds) and then a connection's byte stream:
valid requests of every method, notifications, several frames in a row,
and broken ones (wrong shapes, types, ranges, truncated frames, frames over
the limit, the unused byte 0xc1, deep nesting). Frames are packed with
Python's msgpack package, independent of msgpack-c. Deterministic output.

Usage: /usr/bin/python3 tests/fuzz/make_rpc_corpus.py [OUT_DIR]
"""
import os
import sys

import msgpack


def req(msgid, method, params=None):
    return msgpack.packb([0, msgid, method, [params if params is not None else {}]])


SEEDS = {
    "generate-prompt": req(1, "generate", {"prompt": "The capital of Germany is", "max_tokens": 8}),
    "generate-all": req(2, "generate", {
        "prompt": "Hello", "max_tokens": 16, "temperature": 0.7, "top_k": 40, "top_p": 0.95,
        "min_p": 0.05, "repetition_penalty": 1.1, "presence_penalty": 0.5,
        "frequency_penalty": -0.5, "seed": 2**64 - 1, "stop": ["\n\n", "END"], "logprobs": 3,
        "stream": True}),
    "generate-messages": req(3, "generate", {"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}),
    "generate-tokens": req(4, "generate", {"tokens": [1, 2, 3, 299], "max_tokens": 4}),
    "tokenize": req(5, "tokenize", {"text": "h\u00e9llo w\u00f6rld", "add_special": True}),
    "detokenize": req(6, "detokenize", {"tokens": [1, 2, 3]}),
    "cancel": req(7, "cancel", {"id": 2}),
    "model-info": msgpack.packb([0, 8, "model_info", []]),
    "health": msgpack.packb([0, 9, b"health", {}]),
    "stats": msgpack.packb([0, 10, "stats", None]),
    "auth": req(11, "auth", {"token": "sesame"}),
    "notification": msgpack.packb([2, "nvim_set_client_info", ["x", {}, "remote", {}, {}]]),
    "pipeline": b"".join([req(i, "health") for i in range(20)]) + req(21, "generate", {"prompt": "x"}),
    "generate-speculate": req(29, "generate", {"prompt": "a b a b a", "max_tokens": 8,
                                               "speculate": {"lookup": 3, "tokens": 4}}),
    "generate-speculate-defaults": req(30, "generate", {"prompt": "x", "speculate": {}}),
    "generate-speculate-draft": req(38, "generate", {"prompt": "a b", "speculate": {"draft": True, "tokens": 3}})
    + req(39, "generate", {"prompt": "a", "speculate": {"draft": False}}),
    "generate-beams": req(34, "generate", {"prompt": "a b", "max_tokens": 4, "beams": 3, "length_penalty": 0.5}),
    "bad-beams": req(35, "generate", {"prompt": "a", "beams": 99}) + req(36, "generate", {"prompt": "a", "beams": -1})
    + req(37, "generate", {"prompt": "a", "length_penalty": float("nan")}),
    "generate-nbest": req(40, "generate", {"prompt": "a b", "max_tokens": 4, "beams": 3, "n_best": 3}),
    "bad-nbest": req(41, "generate", {"prompt": "a", "n_best": 2})
    + req(42, "generate", {"prompt": "a", "beams": 2, "n_best": 3}),
    # broken ones
    "bad-speculate": req(31, "generate", {"prompt": "a", "speculate": {"lookup": 65, "tokens": 0}})
    + req(32, "generate", {"prompt": "a", "speculate": [3]})
    + req(33, "generate", {"prompt": "a", "speculate": {"draft": "x"}})
    + req(40, "generate", {"prompt": "a", "speculate": {"draft": True, "lookup": 2}}),
    "bad-unknown-method": req(12, "generat", {}),
    "bad-unknown-key": req(13, "generate", {"prompt": "a", "temprature": 1}),
    "bad-both-inputs": req(14, "generate", {"prompt": "a", "tokens": [1]}),
    "bad-types": req(15, "generate", {"prompt": 3, "stream": 1, "top_k": 1.5}),
    "bad-ranges": req(16, "generate", {"prompt": "a", "temperature": -1, "top_p": 2}),
    "bad-role": req(17, "generate", {"messages": [{"role": "tool", "content": "x"}]}),
    "bad-too-long-prompt": req(18, "generate", {"prompt": "x" * 300}),
    "bad-context": req(19, "generate", {"tokens": list(range(300)), "max_tokens": 400}),
    "bad-vocab": req(20, "detokenize", {"tokens": [5, 300, 2**31]}),
    "bad-shape": msgpack.packb([0, 22, "health"]) + msgpack.packb({"a": 1}) + msgpack.packb([1, 2, None, None]),
    "bad-msgid": msgpack.packb([0, -1, "health", []]) + msgpack.packb([0, 2**32, "health", []]),
    "bad-params": msgpack.packb([0, 23, "health", [{}, {}]]) + msgpack.packb([0, 24, "health", "x"]),
    "bad-dup-key": b"\x94\x00\x19\xa6health\x91\x82\xa1a\x01\xa1a\x02",
    "bad-truncated": req(25, "generate", {"prompt": "never finished"})[:-4],
    "bad-over-limit": b"\x94\x00\x1a\xa8generate\x91\x81\xa6prompt\xdb\x00\x10\x00\x00xxxx",
    "bad-huge-array": b"\xdd\xff\xff\xff\xff\x00",
    "bad-c1": req(27, "health") + b"\xc1",
    "bad-deep": b"\x91" * 40 + b"\x00",
    "bad-ext": msgpack.packb([0, 28, "health", [msgpack.ExtType(5, b"abcd")]]),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "fuzz_rpc")
    os.makedirs(out, exist_ok=True)
    for i, (name, data) in enumerate(sorted(SEEDS.items())):
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(bytes([(i * 37) % 256]) + data)
    print("%d seeds in %s" % (len(SEEDS), out))


if __name__ == "__main__":
    main()
