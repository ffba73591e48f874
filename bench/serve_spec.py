#!/usr/bin/python3
"""Speculative decoding through `gantry serve` (issue 14): the same greedy
chat request (bench/spec_prompt.txt: copy a text; or --question TEXT) sent
plainly and with `speculate` {lookup, tokens} (or, with --draft FILE or
--self-draft L, {draft: true, tokens} against the server's draft model),
alternately in every round, one at a time and then C at once; the outputs
must be equal. Prints each round's decode rate (completion tokens over
total_ms - ttft_ms, summed over the requests of the round) and the
speed-up, spec / plain of the same round, with the acceptance the
responses report.

Usage: bench/serve_spec.py [--model M] [--rounds 3] [--tokens 96]
       [--lookup 3 | --draft FILE | --self-draft L] [--draft-tokens 4]
       [--concurrency 4] [--threads 2] [--question TEXT]
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import time

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
GANTRY = os.environ.get("GANTRY_BIN", os.path.join(HERE, "..", "build", "tools", "gantry"))
MODELS = os.environ.get("GANTRY_MODELS", os.path.expanduser("~/.cache/gantry/models"))


def batch(port, params, n):
    """n copies of params on one connection, sent in one write; their results."""
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    s.sendall(b"".join(msgpack.packb([0, i, "generate", [params]]) for i in range(n)))
    u = msgpack.Unpacker(raw=False)
    done = {}
    while len(done) < n:
        u.feed(s.recv(1 << 16))
        for m in u:
            if m[0] == 1:
                if m[2] is not None:
                    raise SystemExit("error: %s" % m[2])
                done[m[1]] = m[3]
    s.close()
    return [done[i] for i in range(n)]


def decode_rate(res):
    toks = sum(r["usage"]["completion_tokens"] - 1 for r in res)
    ms = max(r["timing"]["total_ms"] for r in res) - min(r["timing"]["ttft_ms"] for r in res)
    return toks / (ms * 1e-3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--lookup", type=int, default=3)
    ap.add_argument("--draft-tokens", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--draft", help="a draft model for the server (speculate {draft: true})")
    ap.add_argument("--self-draft", type=int, help="the model's first L layers as the server's draft")
    ap.add_argument("--question", help="ask this instead of copying bench/spec_prompt.txt")
    a = ap.parse_args()
    text = a.question or open(os.path.join(HERE, "spec_prompt.txt")).read()
    draft = ["--draft", a.draft] if a.draft else ["--self-draft", str(a.self_draft)] if a.self_draft else []
    p = subprocess.Popen([GANTRY, "serve", "-m", a.model, "--port", "0", "--threads", str(a.threads),
                          "--seqs", str(max(4, a.concurrency)), "--ctx", "1024", "--draft-tokens",
                          str(a.draft_tokens), *draft], stderr=subprocess.PIPE, text=True)
    port = None
    while port is None:
        line = p.stderr.readline()
        if not line:
            raise SystemExit("the server did not start")
        m = re.search(r"port (\d+) \(pid", line)
        port = int(m.group(1)) if m else None
    try:
        plain = {"messages": [{"role": "user", "content": text}], "max_tokens": a.tokens,
                 "speculate": {"draft": False}}
        spec = dict(plain, speculate={"draft": True, "tokens": a.draft_tokens} if draft else
                    {"lookup": a.lookup, "tokens": a.draft_tokens})
        batch(port, plain, 1)  # warm up (and fill the prefix cache for both)
        batch(port, spec, 1)
        how = " ".join(draft) if draft else f"lookup {a.lookup}"
        print(f"{os.path.basename(a.model)} through gantry serve, greedy chat, {a.tokens} tokens, {how}, "
              f"K {a.draft_tokens}, {a.threads} threads")
        for c in (1, a.concurrency):
            for rnd in range(a.rounds):
                rp = batch(port, plain, c)
                rs = batch(port, spec, c)
                same = all(x["tokens"] == rp[0]["tokens"] for x in rp + rs)
                d = sum(r["spec"]["drafted"] for r in rs)
                acc = sum(r["spec"]["accepted"] for r in rs)
                steps = sum(r["spec"]["steps"] for r in rs)
                vp, vs = decode_rate(rp), decode_rate(rs)
                print(f"concurrency {c} round {rnd}: plain {vp:.1f} tok/s, speculative {vs:.1f} tok/s, "
                      f"speed-up {vs / vp:.2f}x; accepted {acc}/{d} ({100.0 * acc / max(d, 1):.0f}%) "
                      f"in {steps} verification steps; outputs equal: {same}", flush=True)
        if draft:  # where the speculative rounds' time went
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            s.sendall(msgpack.packb([0, 1, "stats", []]))
            u = msgpack.Unpacker(raw=False)
            while True:
                u.feed(s.recv(1 << 16))
                got = [m for m in u if m[0] == 1]
                if got:
                    break
            c = got[0][3]["counters"]
            print(f"draft model: {c['spec_draft_forwards']} forwards, {c['spec_draft_ms'] / 1e3:.1f} s "
                  f"(warm-up included)")
    finally:
        p.terminate()
        p.wait(60)


if __name__ == "__main__":
    sys.exit(main())
