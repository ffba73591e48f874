#!/usr/bin/env python3
"""Load for a running `gantry serve`: C concurrent clients (threads, one
connection each), each streaming N requests of PROMPT_LEN-ish prompts and
OUTPUT_LEN tokens; reports output tokens/s over the whole run, time to first
token and inter-token latency (p50/p90/p99) and end-to-end latency.

  bench/serve_load.py --port 7733 --concurrency 1,4,16 --requests 32 --output-len 64 [--json F]

Only the `msgpack` package and sockets (Debian: python3-msgpack). The
prompts are distinct (a counter in each), so the prefix cache does not
help; --shared-prefix N puts the same N-word preamble in front of all.
--api openai streams `POST /v1/completions` (server-sent events) over one
keep-alive http.client connection per client instead."""
import argparse
import http.client
import json
import socket
import threading
import time

import msgpack


def pct(v, p):
    if not v:
        return 0.0
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


def client(port, jobs, lock, out, args):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    u = msgpack.Unpacker(raw=False)
    msgid = 0
    while True:
        with lock:
            if not jobs:
                break
            i = jobs.pop()
        msgid += 1
        prompt = args.preamble + f"Request {i}: write about the number {i * 7919 % 1000}."
        t0 = time.time()
        s.sendall(msgpack.packb([0, msgid, "generate", [{"prompt": prompt, "max_tokens": args.output_len,
                                                          "stream": True}]]))
        stamps, res = [], None
        while res is None:
            data = s.recv(65536)
            if not data:
                raise ConnectionError("server closed")
            u.feed(data)
            for m in u:
                if m[0] == 2:
                    stamps.append(time.time())
                elif m[1] == msgid:
                    res = m
        if res[2] is not None:
            raise RuntimeError(res[2])
        n = res[3]["usage"]["completion_tokens"]
        with lock:
            out["tokens"] += n
            out["cached"] += res[3]["usage"]["cached_tokens"]
            if stamps:
                out["ttft"].append(stamps[0] - t0)
                out["itl"] += [b - a for a, b in zip(stamps, stamps[1:])]
            out["e2e"].append(time.time() - t0)


def client_openai(port, jobs, lock, out, args):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    while True:
        with lock:
            if not jobs:
                break
            i = jobs.pop()
        prompt = args.preamble + f"Request {i}: write about the number {i * 7919 % 1000}."
        body = json.dumps({"model": "gantry", "prompt": prompt, "max_tokens": args.output_len, "temperature": 0,
                           "stream": True, "stream_options": {"include_usage": True}})
        t0 = time.time()
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
        stamps, usage, done = [], None, False
        for line in resp:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            ev = json.loads(data)
            if ev.get("choices") and ev["choices"][0].get("text"):
                stamps.append(time.time())
            usage = ev.get("usage") or usage
        resp.read()  # the rest, so the connection can carry the next request
        if not done:
            raise RuntimeError("the stream ended without data: [DONE]")
        with lock:
            out["tokens"] += usage["completion_tokens"] if usage else len(stamps)
            out["cached"] += ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens", 0)
            if stamps:
                out["ttft"].append(stamps[0] - t0)
                out["itl"] += [b - a for a, b in zip(stamps, stamps[1:])]
            out["e2e"].append(time.time() - t0)
    conn.close()


def run(args, conc):
    jobs = list(range(args.requests))
    out = {"tokens": 0, "cached": 0, "ttft": [], "itl": [], "e2e": []}
    lock = threading.Lock()
    t0 = time.time()
    ts = [threading.Thread(target=client_openai if args.api == "openai" else client, args=(args.port, jobs, lock, out, args)) for _ in range(conc)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.time() - t0
    r = {"concurrency": conc, "requests": args.requests, "seconds": secs,
         "output_tok_s": out["tokens"] / secs, "requests_s": args.requests / secs,
         "cached_tokens": out["cached"]}
    for k in ("ttft", "itl", "e2e"):
        for p in (50, 90, 99):
            r[f"{k}_p{p}_ms"] = 1000 * pct(out[k], p)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=7733)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--shared-prefix", type=int, default=0)
    ap.add_argument("--api", choices=("rpc", "openai"), default="rpc")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.preamble = " ".join(["preamble"] * args.shared_prefix) + (" " if args.shared_prefix else "")
    rows = [run(args, int(c)) for c in args.concurrency.split(",")]
    print(f"{'conc':>4} {'tok/s':>8} {'req/s':>6} {'ttft p50/p90/p99 ms':>22} {'itl p50/p90/p99 ms':>22} "
          f"{'e2e p50 ms':>10}")
    for r in rows:
        print(f"{r['concurrency']:>4} {r['output_tok_s']:>8.1f} {r['requests_s']:>6.2f} "
              f"{r['ttft_p50_ms']:>7.0f}/{r['ttft_p90_ms']:.0f}/{r['ttft_p99_ms']:.0f} "
              f"{r['itl_p50_ms']:>10.1f}/{r['itl_p90_ms']:.1f}/{r['itl_p99_ms']:.1f} {r['e2e_p50_ms']:>10.0f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
