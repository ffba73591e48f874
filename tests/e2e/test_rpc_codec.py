#!/usr/bin/python3
"""End-to-end: the msgpack-RPC codec (coordinator/rpc.h) against Python's
independent msgpack package, through tests/util/rpc_echo.

1. Encoders: `rpc_echo --samples` writes one of each response and
   notification; each must decode to the object written out here and, where
   no float32 is involved, equal msgpack.packb of it byte for byte.
2. Requests packed by Python, many in one stream, read by rpc_echo 1, 7 and
   65536 bytes at a time: each accepted request is echoed as validation saw
   it (compared with defaults computed here), each refused one answered with
   its code and sentence, notifications ignored.
3. Fatal input: a frame over --max-frame-bytes (answered to its msgid, then
   the connection ends), the byte 0xc1, a stream cut inside a frame.
Exits 77 (skip) when rpc_echo is not built.
"""
import os
import struct
import subprocess
import sys

import msgpack


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def run_echo(echo, data, *args):
    r = subprocess.run([echo] + list(args), input=data, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit("rpc_echo %s exited %d: %s" % (args, r.returncode, r.stderr.decode()))
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(r.stdout)
    return r.stdout, list(u)


def expected_samples():
    toks = [9906, 0, 2147483647]
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "cached_tokens": 8}
    timing = {"queue_ms": 0.25, "ttft_ms": 12.5, "total_ms": 100.125}
    text = "Berlin \u00e9 \ufffd"  # the lone 0xff byte became U+FFFD
    lp0 = {"token": 9906, "logprob": -0.5, "top": [[9906, -0.5], [11, -1.25]]}
    lps = [lp0, {"token": 0, "logprob": -2.0, "top": []},
           {"token": 2147483647, "logprob": 0.0, "top": [[9906, -0.5]]}]
    gen = {"text": text, "tokens": toks, "finish_reason": "stop", "usage": usage, "timing": timing}
    gen_lp = {"text": text, "tokens": toks, "finish_reason": "cancelled", "usage": usage,
              "logprobs": lps, "timing": timing, "spec": {"drafted": 7, "accepted": 5, "steps": 3,
                                                                         "method": "draft"}}
    out = [
        ([1, 1, {"code": "invalid_param", "message": "generate: top_p 2 is outside (0, 1]"}, None], True),
        ([1, 2, None, gen], True),
        ([1, 3, None, gen_lp], False),  # logprobs are float32
        ([1, 12, None, {"text": text, "tokens": toks, "finish_reason": "length", "usage": usage, "timing": timing,
                        "beam": {"beams": 4, "score": -0.75},
                        "alternatives": [{"text": "Paris", "tokens": [9906, 0], "finish_reason": "stop", "score": -1.5},
                                         {"text": "", "tokens": [], "finish_reason": "length", "score": -2.25}]}],
         True),
        ([2, "token", [{"id": 4000000000, "text": "\u4e2d", "token": 104}]], True),
        ([2, "token", [{"id": 4000000000, "text": "\u4e2d", "token": 104, "logprobs": lp0}]], False),
        ([1, 4, None, {"tokens": toks, "pieces": [b"Hello", b" w\xc3", b""]}], True),
        ([1, 5, None, {"tokens": []}], True),
        ([1, 6, None, {"text": "a\x00z"}], True),
        ([1, 7, None, {"architecture": "llama", "name": "SmolLM2 135M", "chat_format": "chatml",
                       "context": 8192, "vocabulary": 49152, "layout": {"tp": 2, "pp": 1, "ep": 1},
                       "ranks": 2}], True),
        ([1, 8, None, {"counters": {"requests_total": 42, "tokens_generated": 1234567890123},
                       "histograms": {"ttft_ms": {"bounds_ms": [1.0, 5.0, 25.5],
                                                  "counts": [1, 2, 3, 2**64 - 1],
                                                  "count": 6, "sum_ms": 77.5}}}], True),
        ([1, 9, None, {"status": "serving"}], True),
        ([1, 10, None, {"cancelled": True}], True),
        ([1, 2**32 - 1, None, True], True),
    ]
    codes = ["bad_frame", "bad_request", "unknown_method", "invalid_param", "too_long",
             "unauthorized", "draining", "queue_full", "internal"]
    for i, c in enumerate(codes):
        out.append(([1, 101 + i, {"code": c, "message": c}, None], True))
    return out


def check_samples(echo):
    raw, got = run_echo(echo, b"", "--samples")
    want = expected_samples()
    bad = 0
    if len(got) != len(want):
        print("samples: %d messages, expected %d" % (len(got), len(want)))
        return 1
    joined = b""
    for i, ((obj, exact), g) in enumerate(zip(want, got)):
        if g != obj:
            print("sample %d differs:\n  got  %r\n  want %r" % (i, g, obj))
            bad += 1
        joined += msgpack.packb(obj) if exact else b""
    # byte-for-byte: re-split our stream with Python and compare the exact ones
    u = msgpack.Unpacker(raw=False)
    u.feed(raw)
    pos = 0
    for i, (obj, exact) in enumerate(want):
        u.skip()
        end = u.tell()
        if exact and raw[pos:end] != msgpack.packb(obj):
            print("sample %d: bytes differ from msgpack.packb\n  got  %s\n  want %s"
                  % (i, raw[pos:end].hex(), msgpack.packb(obj).hex()))
            bad += 1
        pos = end
    print("samples: %d messages, %d differ" % (len(want), bad))
    return bad


DEFAULTS = {"max_tokens": None, "temperature": 0.0, "top_p": f32(0.95), "min_p": 0.0,
            "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "top_k": 40, "seed": 1234, "stop": [], "logprobs": 0, "stream": False}


def normalized_generate(p):
    p = {(k.decode() if isinstance(k, bytes) else k): v for k, v in p.items() if v is not None}
    out = {}
    for inp in ("prompt", "messages", "tokens"):
        if inp in p:
            out["input"] = inp
            v = p[inp]
            if inp == "prompt" and isinstance(v, bytes):
                v = v.decode()
            if inp == "messages":
                v = [[m["role"], m["content"]] for m in v]
            out[inp] = v
    for k, d in DEFAULTS.items():
        v = p.get(k, d)
        if k in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                 "frequency_penalty"):
            v = f32(v)
        out[k] = v
    return out


def request_cases():
    """(bytes of one frame, the reply expected)."""
    cases = []

    def ok(msgid, method, params, norm, frame=None):
        frame = frame or msgpack.packb([0, msgid, method, [params]])
        cases.append((frame, [1, msgid, None, {"method": method if isinstance(method, str)
                                                else method.decode(), "params": norm}]))

    def err(msgid, method, params, code, message, frame=None):
        frame = frame or msgpack.packb([0, msgid, method, [params]])
        cases.append((frame, [1, msgid, {"code": code, "message": message}, None]))

    gens = [
        {"prompt": "The capital of Germany is", "max_tokens": 8},
        {"prompt": "Hi", "temperature": 0.7, "top_k": 0, "top_p": 0.9, "min_p": 0.1,
         "repetition_penalty": 1.3, "presence_penalty": -1.5, "frequency_penalty": 2,
         "seed": 2**64 - 1, "stop": ["\n", "\u00e9t\u00e9"], "logprobs": 20, "stream": True},
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "\u4f60\u597d"},
                      {"role": "assistant", "content": ""}], "temperature": 1},
        {"tokens": [1, 2, 3, 2**31 - 1], "max_tokens": 1048576, "seed": None},
        {b"prompt": b"bin keys and value", b"stream": False},
    ]
    for i, g in enumerate(gens):
        ok(100 + i, "generate", g, normalized_generate(g))
    ok(110, "tokenize", {"text": "h\u00e9llo"}, {"text": "h\u00e9llo", "add_special": False})
    ok(111, "tokenize", {"text": "", "add_special": True}, {"text": "", "add_special": True})
    ok(112, "detokenize", {"tokens": []}, {"tokens": []})
    ok(113, "cancel", {"id": 2**32 - 1}, {"id": 2**32 - 1})
    ok(114, "auth", {"token": "s3cret"}, {"token": "s3cret"})
    ok(115, b"health", {}, {}, frame=msgpack.packb([0, 115, b"health", {}]))
    ok(116, "model_info", {}, {}, frame=msgpack.packb([0, 116, "model_info", []]))
    ok(117, "stats", {}, {}, frame=msgpack.packb([0, 117, "stats", None]))
    ok(2**32 - 1, "health", {}, {})

    err(200, "generat", {}, "unknown_method",
        "unknown method 'generat' (known: generate, tokenize, detokenize, cancel, model_info, "
        "health, stats, auth)")
    err(201, "generate", {"prompt": "a", "tokens": [1]}, "invalid_param",
        "generate: give exactly one of prompt, messages or tokens (got prompt and tokens)")
    err(202, "generate", {"prompt": "a", "top_p": 1.5}, "invalid_param",
        "generate: top_p 1.5 is outside (0, 1]")
    err(203, "generate", {"prompt": "a", "temprature": 1}, "invalid_param",
        "generate: generate has no key 'temprature' (known: prompt, messages, tokens, max_tokens, "
        "temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty, "
        "frequency_penalty, seed, stop, logprobs, stream, typical_p, logit_bias, grammar, json_schema, speculate, beams, length_penalty, n_best)")
    err(204, "generate", {"prompt": "a", "max_tokens": 1048577}, "invalid_param",
        "generate: max_tokens 1048577 is outside [1, 1048576]")
    err(205, "generate", {"messages": [{"role": "tool", "content": "x"}]}, "invalid_param",
        "generate: messages[0].role is 'tool'; it must be system, user or assistant")
    err(206, "generate", {"prompt": "a", "stop": ["x"] * 17}, "too_long",
        "generate: stop holds 17 strings, over the limit of 16")
    err(207, "generate", {"prompt": "a", "stream": "yes"}, "invalid_param",
        "generate: stream must be a boolean, not a string")
    err(208, "cancel", {}, "invalid_param", "cancel: param 'id' is missing")
    err(209, "health", None, "bad_request", "health: params holds 2 elements; it must hold one map",
        frame=msgpack.packb([0, 209, "health", [{}, {}]]))
    err(210, "health", None, "bad_request", "a request is [0, msgid, method, params], not an array of 3",
        frame=msgpack.packb([0, 210, "health"]))
    # a duplicate key, written by hand (Python dicts cannot hold one)
    err(211, "generate", None, "invalid_param", "generate: generate gives 'prompt' twice",
        frame=b"\x94\x00\xcc\xd3\xa8generate\x91\x82\xa6prompt\xa1a\xa6prompt\xa1b")
    # notifications are ignored; refusals without a msgid are reported as such
    cases.append((msgpack.packb([2, "nvim_set_client_info", ["x", {}, "remote", {}, {}]]),
                  [2, "ignored", ["nvim_set_client_info"]]))
    cases.append((msgpack.packb([1, 5, None, "a response"]),
                  [2, "refused", [{"code": "bad_request",
                                   "message": "a message must start with 0 (request) or 2 (notification)"}]]))
    cases.append((msgpack.packb([0, -1, "health", []]),
                  [2, "refused", [{"code": "bad_request",
                                   "message": "a request's msgid must be an integer in [0, 4294967295]"}]]))
    return cases


def check_requests(echo):
    cases = request_cases()
    stream = b"".join(f for f, _ in cases)
    bad = 0
    for read in ("1", "7", "65536"):
        _, got = run_echo(echo, stream, "--read", read)
        if len(got) != len(cases):
            print("--read %s: %d replies for %d frames" % (read, len(got), len(cases)))
            bad += 1
            continue
        for (frame, want), g in zip(cases, got):
            if g != want:
                print("--read %s: frame %s\n  got  %r\n  want %r" % (read, frame[:40].hex(), g, want))
                bad += 1
    print("requests: %d frames, 3 read sizes, %d differ" % (len(cases), bad))
    return bad


def check_fatal(echo):
    bad = 0
    health = msgpack.packb([0, 1, "health", []])
    big = msgpack.packb([0, 77, "generate", [{"prompt": "x" * 1000}]])
    _, got = run_echo(echo, health + big + health, "--max-frame-bytes", "256")
    # the str16 header already shows the whole frame's size
    sentence = "a frame of at least %d bytes exceeds the limit of 256 bytes (--max-frame-bytes)" % len(big)
    want = [[1, 1, None, {"method": "health", "params": {}}],
            [1, 77, {"code": "too_long", "message": sentence}, None],
            [2, "fatal", [sentence]]]
    if got != want:
        print("over the limit:\n  got  %r\n  want %r" % (got, want))
        bad += 1
    _, got = run_echo(echo, health + b"\xc1" + health)
    want = [[1, 1, None, {"method": "health", "params": {}}],
            [2, "refused", [{"code": "bad_frame", "message": "byte 0xc1 at offset 0 of a frame is not msgpack"}]],
            [2, "fatal", ["byte 0xc1 at offset 0 of a frame is not msgpack"]]]
    if got != want:
        print("0xc1:\n  got  %r\n  want %r" % (got, want))
        bad += 1
    _, got = run_echo(echo, health + big[:-10])
    want = [[1, 1, None, {"method": "health", "params": {}}],
            [2, "fatal", ["the connection closed %d bytes into a frame" % (len(big) - 10)]]]
    if got != want:
        print("truncated:\n  got  %r\n  want %r" % (got, want))
        bad += 1
    print("fatal input: 3 streams, %d differ" % bad)
    return bad


def main():
    echo = os.environ.get("GANTRY_RPC_ECHO", "")
    if not echo or not os.path.exists(echo):
        print("rpc_echo not built; skipping")
        return 77
    bad = check_samples(echo) + check_requests(echo) + check_fatal(echo)
    print("FAIL" if bad else "PASS")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
