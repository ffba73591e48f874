#!/usr/bin/env python3
"""`gantry serve --http-port` (the OpenAI-compatible HTTP front) against
independent clients: Python's http.client, curl, a raw socket, and the
msgpack-RPC API of the same server as the reference.

A 2-rank server (--pp 2; SmolLM2's 9 heads do not split over --tp 2) with
both APIs, --auth-token and --http-open-health:
- completions and chat, non-streaming and SSE (parsed here), via http.client
  and curl, greedy: the text equals the same request through msgpack-RPC;
  streamed pieces add up to that text; usage is reported.
- /v1/models, /health, /tokenize and /detokenize (round trip, and tokens
  equal msgpack-RPC's tokenize).
- 401 without and with a wrong token; bad JSON, wrong types, n = 2 (400),
  unknown path (404), wrong method (405), a body over the limit (413),
  headers that never finish (closed after --http-header-timeout), a client
  that disconnects mid-stream: each gets its status or a closed connection
  and a normal request succeeds after each.
- pipelined keep-alive requests are answered in order on one connection.
- a full queue answers 429 queue_full; while draining after SIGTERM, /health
  and new completions answer 503 and a running stream finishes.
- /metrics parses with prometheus_client's parser and the request counter
  moves.
Uses SmolLM2-135M-Instruct from the model cache; skips (77) without it."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import msgpack

GANTRY = os.environ.get("GANTRY_BIN", "")
MPIEXEC = os.environ.get("GANTRY_MPIEXEC", "mpirun")
MODELS = os.environ.get("GANTRY_MODELS", os.path.expanduser("~/.cache/gantry/models"))
MPI_ARGS = ["--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl", "self,vader"]
TOKEN = "s3cret"
AUTH = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


class Server:
    def __init__(self, model):
        cmd = [MPIEXEC, "-np", "2", *MPI_ARGS, GANTRY, "serve", "-m", model, "--port", "0",
               "--http-port", "0", "--isa", "ref", "--seqs", "4", "--max-batch-tokens", "32",
               "--ctx", "512", "--pp", "2", "--tp", "1", "--auth-token", TOKEN,
               "--http-open-health", "--http-header-timeout", "1",
               "--http-max-body-bytes", "65536", "--max-queue", "4", "--drain-timeout", "20"]
        self.p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.err = ""
        self.port = self.http = None
        t0 = time.time()
        while time.time() - t0 < 60 and not (self.port and self.http):
            line = self.p.stderr.readline()
            self.err += line
            m = re.search(r"port (\d+) \(pid (\d+)\)", line)
            if m:
                self.port, self.pid = int(m.group(1)), int(m.group(2))
            m = re.search(r"http-port (\d+)", line)
            if m:
                self.http = int(m.group(1))
            if not line and self.p.poll() is not None:
                break
        if not (self.port and self.http):
            raise RuntimeError("server did not start: " + self.err)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.p.stderr:
            self.err += line

    def stop(self):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            return self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return -9


def rpc(port, method, params):
    s = socket.create_connection(("127.0.0.1", port), timeout=120)
    u = msgpack.Unpacker(raw=False)
    for msgid, (m, p) in enumerate([("auth", {"token": TOKEN}), (method, params)]):
        s.sendall(msgpack.packb([0, msgid, m, [p]]))
        while True:
            msg = next((x for x in u if x[0] == 1), None)
            if msg:
                break
            u.feed(s.recv(65536))
    s.close()
    return msg[3]


def post(port, path, body, headers=AUTH, raw=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", path, body=raw if raw is not None else json.dumps(body), headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def get(port, path, headers=AUTH):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def sse_events(data):
    """data: lines of an SSE body -> list of JSON objects, and whether [DONE] ended it."""
    events, done = [], False
    for block in data.decode().split("\n\n"):
        if not block.strip():
            continue
        if not block.startswith("data: "):
            check(False, f"SSE block starts with 'data: ': {block[:40]!r}")
        payload = block[6:]
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done


def stream(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", path, body=json.dumps(body), headers=AUTH)
    r = c.getresponse()
    data = r.read()  # http.client undoes the chunked framing
    c.close()
    return r.status, r.getheader("Content-Type"), r.getheader("Transfer-Encoding"), data


def healthy(port):
    st, body = post(port, "/v1/completions", {"prompt": "Water boils at", "max_tokens": 2})
    return st == 200 and body["usage"]["completion_tokens"] == 2


def main():
    model = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not GANTRY or not os.path.exists(GANTRY) or not os.path.exists(model):
        print("gantry binary or SmolLM2 (scripts/fetch-models.sh) missing; skipping")
        return 77
    srv = Server(model)
    port, hp = srv.port, srv.http
    rc = None
    try:
        from prometheus_client.parser import text_string_to_metric_families

        def requests_total():
            st, text = get(hp, "/metrics", headers={})
            fams = {f.name: f for f in text_string_to_metric_families(text.decode())}
            return st, fams, fams["gantry_requests_submitted"].samples[0].value

        st, fams, n0 = requests_total()
        check(st == 200 and "gantry_time_to_first_token_seconds" in fams, f"/metrics parses ({len(fams)} families)")

        # completions: http.client and curl equal msgpack-RPC
        prompt = "The capital of France is"
        ref = rpc(port, "generate", {"prompt": prompt, "max_tokens": 12})
        st, body = post(hp, "/v1/completions", {"model": "x", "prompt": prompt, "max_tokens": 12,
                                                "temperature": 0})
        check(st == 200 and body["choices"][0]["text"] == ref["text"],
              f"completions = msgpack-RPC: {body['choices'][0]['text']!r} vs {ref['text']!r}")
        check(body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 12 and
              body["usage"]["prompt_tokens"] == ref["usage"]["prompt_tokens"] and
              body["choices"][0]["finish_reason"] == ref["finish_reason"], "completions usage and finish")
        out = subprocess.run(["curl", "-sS", "-H", "Authorization: Bearer " + TOKEN, "-H",
                              "Content-Type: application/json", "-d",
                              json.dumps({"prompt": prompt, "max_tokens": 12}),
                              f"http://127.0.0.1:{hp}/v1/completions"], capture_output=True, text=True,
                             timeout=120)
        check(json.loads(out.stdout)["choices"][0]["text"] == ref["text"], "curl completions = msgpack-RPC")
        st, ctype, te, data = stream(hp, "/v1/completions", {"prompt": prompt, "max_tokens": 12,
                                                             "stream": True})
        ev, done = sse_events(data)
        text = "".join(e["choices"][0]["text"] for e in ev if e["choices"])
        check(st == 200 and ctype == "text/event-stream" and te == "chunked" and done,
              "completions stream: SSE, chunked, ends in [DONE]")
        check(text == ref["text"] and ev[-1]["choices"][0]["finish_reason"] == "length",
              f"streamed completion = msgpack-RPC: {text!r}")

        # chat
        msgs = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a fruit."}]
        ref = rpc(port, "generate", {"messages": msgs, "max_tokens": 16})
        st, body = post(hp, "/v1/chat/completions", {"messages": msgs, "max_completion_tokens": 16,
                                                     "logprobs": True, "top_logprobs": 2})
        ch = body["choices"][0]
        check(st == 200 and ch["message"]["content"] == ref["text"] and ch["message"]["role"] == "assistant",
              f"chat = msgpack-RPC: {ch['message']['content']!r} vs {ref['text']!r}")
        lp = ch["logprobs"]["content"]
        check(len(lp) == body["usage"]["completion_tokens"] and all(len(t["top_logprobs"]) == 2 for t in lp)
              and all(t["logprob"] <= 0 for t in lp), "chat logprobs: one per token, 2 alternatives")
        st, ctype, te, data = stream(hp, "/v1/chat/completions", {"messages": msgs, "max_tokens": 16,
                                                                  "stream": True,
                                                                  "stream_options": {"include_usage": True}})
        ev, done = sse_events(data)
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in ev if e["choices"])
        check(done and ev[0]["choices"][0]["delta"].get("role") == "assistant" and text == ref["text"],
              f"chat stream = msgpack-RPC: {text!r}")
        check(ev[-1]["choices"] == [] and ev[-1]["usage"]["completion_tokens"] == len(ref["tokens"]),
              "chat stream: usage chunk last")
        out = subprocess.run(["curl", "-sSN", "-H", "Authorization: Bearer " + TOKEN, "-d",
                              json.dumps({"messages": msgs, "max_tokens": 16, "stream": True}),
                              f"http://127.0.0.1:{hp}/v1/chat/completions"], capture_output=True,
                             timeout=120)
        ev, done = sse_events(out.stdout)
        check(done and "".join(e["choices"][0]["delta"].get("content", "") for e in ev) == ref["text"],
              "curl chat stream = msgpack-RPC")

        # models, health, tokenize, detokenize
        st, data = get(hp, "/v1/models")
        check(st == 200 and json.loads(data)["data"][0]["object"] == "model", "/v1/models")
        st, data = get(hp, "/health", headers={})
        check(st == 200 and json.loads(data)["status"] == "serving", "/health open and serving")
        st, tk = post(hp, "/tokenize", {"text": "Hello world"})
        rtk = rpc(port, "tokenize", {"text": "Hello world"})
        check(st == 200 and tk["tokens"] == rtk["tokens"], f"/tokenize = msgpack-RPC: {tk}")
        st, dt = post(hp, "/detokenize", {"tokens": tk["tokens"]})
        check(st == 200 and dt["text"] == "Hello world", f"/detokenize round trip: {dt}")

        # auth
        st, body = post(hp, "/v1/completions", {"prompt": "x"}, headers={})
        check(st == 401 and body["error"]["type"] == "authentication_error", "401 without a token")
        st, body = post(hp, "/v1/completions", {"prompt": "x"}, headers={"Authorization": "Bearer nope"})
        check(st == 401 and "not this server's" in body["error"]["message"], "401 with a wrong token")
        st, _ = get(hp, "/v1/models", headers={})
        check(st == 401, "/v1/models needs the token")

        # malformed requests
        cases = [("bad JSON", "/v1/completions", None, "{\"prompt\": ", 400, None),
                 ("wrong type", "/v1/completions", {"prompt": "x", "max_tokens": "9"}, None, 400, "max_tokens"),
                 ("n = 2", "/v1/chat/completions", {"messages": msgs, "n": 2}, None, 400, "n"),
                 ("unknown field", "/v1/completions", {"prompt": "x", "bogus": 1}, None, 400, None),
                 ("past the context", "/v1/completions", {"prompt": "x", "max_tokens": 600}, None, 400, None),
                 ("unknown path", "/v2/nothing", {}, None, 404, None)]
        for name, path, body, raw, want, param in cases:
            st, resp = post(hp, path, body, raw=raw)
            err = resp.get("error", {}) if isinstance(resp, dict) else {}
            check(st == want and err.get("message") and (param is None or err.get("param") == param),
                  f"{name}: {st} {err.get('message')!r}")
            check(healthy(hp), f"serving after {name}")
        st, _ = get(hp, "/v1/completions")
        check(st == 405, "GET /v1/completions: 405")
        st, resp = post(hp, "/v1/completions", None, raw="x" * 70000)
        check(st == 413 and "limit of 65536" in resp["error"]["message"], f"huge body: {st}")
        check(healthy(hp), "serving after a huge body")

        # slow headers: closed after --http-header-timeout (1 s)
        s = socket.create_connection(("127.0.0.1", hp), timeout=30)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        check(s.recv(100) == b"", "slow headers: the connection is closed")
        s.close()
        check(healthy(hp), "serving after slow headers")

        # keep-alive: a connection idle longer than the header timeout (1 s)
        # between two requests is kept (--http-idle-timeout, 60 s by default)
        ka = http.client.HTTPConnection("127.0.0.1", hp, timeout=60)
        ka.request("GET", "/health")
        r = ka.getresponse()
        r.read()
        time.sleep(1.6)
        try:
            ka.request("GET", "/health")
            r = ka.getresponse()
            r.read()
            ka_ok = r.status == 200
        except OSError as e:
            ka_ok = repr(e)
        ka.close()
        check(ka_ok is True, f"keep-alive connection idle 1.6 s still answers ({ka_ok})")

        # pipelining: two requests in one write, answered in order
        s = socket.create_connection(("127.0.0.1", hp), timeout=60)
        reqs = b""
        for p in ("The capital of France is", "Water boils at"):
            b = json.dumps({"prompt": p, "max_tokens": 3}).encode()
            reqs += (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                     b"\r\nContent-Length: " + str(len(b)).encode() + b"\r\n\r\n" + b)
        reqs += b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        s.sendall(reqs)
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        check(data.count(b"HTTP/1.1 200 OK") == 3 and data.index(b"Paris") < data.index(b"serving"),
              "pipelined requests answered in order, then closed")

        # a client that leaves mid-stream is cancelled
        s = socket.create_connection(("127.0.0.1", hp), timeout=60)
        b = json.dumps({"prompt": "Once upon a time", "max_tokens": 200, "stream": True}).encode()
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                  b"\r\nContent-Length: " + str(len(b)).encode() + b"\r\n\r\n" + b)
        got = b""
        while got.count(b"data: ") < 3:
            got += s.recv(4096)
        s.close()
        check(healthy(hp), "serving after a client left mid-stream")
        cancelled = 0
        for _ in range(100):
            _, fams, _ = requests_total()
            cancelled = sum(x.value for x in fams["gantry_requests_finished"].samples
                            if x.labels.get("reason") == "cancelled")
            if cancelled >= 1:
                break
            time.sleep(0.1)
        check(cancelled >= 1, f"the stream that lost its client was cancelled ({cancelled})")

        st, fams, n1 = requests_total()
        check(n1 > n0, f"gantry_requests_submitted_total moved: {n0} -> {n1}")

        # queue full: 4 slots run, 4 wait (--max-queue 4); of 14 requests at
        # once some are refused with 429 in the OpenAI error shape, the rest
        # complete, and the server serves on.
        results = [None] * 14

        def one(i):
            try:
                results[i] = post(hp, "/v1/completions", {"prompt": "Count: 1, 2, 3,", "max_tokens": 24})
            except OSError as e:
                results[i] = (None, repr(e))
        ts = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        full = [b for st, b in results if st == 429]
        done = [b for st, b in results if st == 200]
        check(len(full) >= 1 and len(full) + len(done) == len(results) and
              all(isinstance(b, dict) and b.get("error", {}).get("code") == "queue_full" for b in full),
              f"queue full: {len(full)} of {len(results)} refused with 429 queue_full, {len(done)} served")
        check(healthy(hp), "serving after the queue was full")

        # draining: on a keep-alive connection opened before SIGTERM, /health
        # turns 503 and a new completion is refused with 503, while a
        # streaming request already running ends with [DONE] (finish_reason
        # "length", or "shutdown" at the 20 s --drain-timeout: long enough
        # for the checks below when steps are slow on a loaded machine).
        # (The keep-alive connection stays open between the calls: the idle
        # timeout is the default 60 s, not the 1 s header timeout.)
        got = {}

        def long_stream():
            got["r"] = stream(hp, "/v1/completions", {"prompt": "Count: 1, 2, 3,", "max_tokens": 400,
                                                       "stream": True})
        t = threading.Thread(target=long_stream)
        t.start()
        time.sleep(1.0)
        keep = http.client.HTTPConnection("127.0.0.1", hp, timeout=120)
        keep.request("GET", "/health")
        r = keep.getresponse()
        r.read()
        before = r.status
        os.kill(srv.pid, signal.SIGTERM)
        # Rank 0 notices the signal between two steps; ask until it has.
        during, t_sig = None, time.time()
        while time.time() - t_sig < 2.5:
            keep.request("GET", "/health")
            r = keep.getresponse()
            r.read()
            during = r.status
            if during == 503:
                break
            time.sleep(0.1)
        keep.request("POST", "/v1/completions", body=json.dumps({"prompt": "x", "max_tokens": 2}), headers=AUTH)
        r = keep.getresponse()
        refused = (r.status, json.loads(r.read() or b"{}"))
        keep.close()
        t.join(120)
        st, _, _, data = got.get("r", (None, None, None, b""))
        events, done = sse_events(data) if st == 200 else ([], False)
        check(before == 200 and during == 503, f"/health 200 before SIGTERM, 503 while draining ({before}, {during})")
        check(refused[0] == 503 and refused[1].get("error", {}).get("code") == "draining",
              f"a completion while draining is refused with 503 draining ({refused})")
        check(st == 200 and done and len(events) >= 2, f"the running stream finished during the drain ({st}, done {done})")
    except Exception as e:
        import traceback
        traceback.print_exc()
        check(False, f"exception {e!r}")
    finally:
        rc = srv.stop()
    check(rc == 0, f"server exited 0 (got {rc})")
    if failures:
        print(srv.err[-3000:])
        print(f"{len(failures)} failures")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
