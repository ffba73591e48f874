#!/usr/bin/python3
"""`gantry bench serve --api openai` (client/http_client.c) against a mock
OpenAI server built on Python's http.server: the streamed events are counted
and the usage read whatever the framing (chunked with events split across
chunks and inside the JSON, or one Content-Length body), one keep-alive
connection carries every request of a client, the request is the OpenAI
shape, and a malformed stream, a stream without `data: [DONE]` and an
OpenAI error answer each fail with a clear sentence.

Exit 77 (skip) only when the gantry binary does not exist."""
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"

STATE = {"mode": "chunked", "conns": 0, "bodies": []}
LOCK = threading.Lock()


def events(usage):
    out = []
    for i, t in enumerate(["Hel", "lo", " wörld"]):
        fin = "length" if i == 2 else None
        out.append({"id": "cmpl-1", "object": "text_completion",
                    "choices": [{"index": 0, "text": t, "finish_reason": fin}]})
    if usage:
        out.append({"id": "cmpl-1", "choices": [],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}})
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        with LOCK:
            STATE["conns"] += 1

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n))
        with LOCK:
            STATE["bodies"].append((self.path, body))
        mode = STATE["mode"]
        if mode == "error":
            err = json.dumps({"error": {"message": "the queue is full (64 waiting)", "type": "rate_limit",
                                        "code": 429}}).encode()
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(err)))
            self.end_headers()
            self.wfile.write(err)
            return
        data = {"chunked": events(True), "length": events(False),
                "malformed": b"data: {\"choices\": [{\"text\": \"a\"\n\n",
                "nodone": events(True)}[mode]
        if mode != "nodone":
            data += b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if mode == "length":
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # odd chunk sizes: events split across chunks, inside the JSON and the "data:" field
        i, sizes = 0, [3, 17, 1, 40, 7]
        k = 0
        while i < len(data):
            piece = data[i:i + sizes[k % len(sizes)]]
            i += len(piece)
            k += 1
            self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


def bench(port, n, extra=()):
    out = os.path.join(TMP, "http_client_bench.json")
    if os.path.exists(out):
        os.remove(out)
    p = subprocess.run([GANTRY, "bench", "serve", "--api", "openai", "--host", "127.0.0.1", "--port", str(port),
                        "--num-prompts", str(n), "--concurrency", "1", "--output-len", "4", "--json", out, *extra],
                       capture_output=True, text=True, timeout=120)
    res = json.load(open(out)) if os.path.exists(out) else None
    return p, res


def main():
    if not os.path.exists(GANTRY):
        print(f"{GANTRY} not built; skipping")
        return 77
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    # chunked, with usage: 3 requests over one connection, 5 tokens each by usage
    p, r = bench(port, 3)
    assert p.returncode == 0, p.stderr
    assert r["api"] == "openai" and r["requests"] == 3 and r["failed"] == 0, r
    assert r["output_tokens"] == 15, r
    assert STATE["conns"] == 1, f"{STATE['conns']} connections for 3 requests; keep-alive not used"
    for path, body in STATE["bodies"]:
        assert path == "/v1/completions", path
        assert body["stream"] is True and body["max_tokens"] == 4 and isinstance(body["prompt"], str), body
        assert body["stream_options"] == {"include_usage": True}, body
    assert "openai: 3 of 3 requests" in p.stdout, p.stdout

    # Content-Length body, no usage: the 3 text events are the tokens
    STATE["mode"] = "length"
    p, r = bench(port, 2)
    assert p.returncode == 0, p.stderr
    assert r["requests"] == 2 and r["output_tokens"] == 6, r

    # refusals, each with its sentence
    for mode, words in [("malformed", "not JSON"), ("nodone", "without `data: [DONE]`"),
                        ("error", "HTTP 429: the queue is full (64 waiting)")]:
        STATE["mode"] = mode
        p, r = bench(port, 2)
        assert p.returncode == 1, f"{mode}: exit {p.returncode}"
        assert r["requests"] == 0 and r["failed"] == 2, (mode, r)
        assert words in p.stderr, f"{mode}: {p.stderr!r} lacks {words!r}"

    # --api openai over a Unix socket is refused before anything is sent
    p = subprocess.run([GANTRY, "bench", "serve", "--api", "openai", "--unix", "/tmp/nothing"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "speaks HTTP over TCP" in p.stderr, p.stderr
    srv.shutdown()
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
