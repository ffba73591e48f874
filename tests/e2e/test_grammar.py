#!/usr/bin/python3
"""Grammar-constrained decoding on a real model (SmolLM2-135M-Instruct),
judged by independent code: Python's json and the jsonschema package.

- `gantry run --json-schema`: three schemas (a nested object, an enum, an
  array of integers), two seeds each at temperature 1 (top-k and top-p
  off): every output
  parses with json.loads and validates against its schema with jsonschema
  (the schemas say additionalProperties false, as the compiler assumes),
  and every run ends normally (the mask never emptied).
- greedy constrained output equals greedy unconstrained output when the
  latter already satisfies the grammar (a character-class sentence
  grammar), and a grammar that forbids the greedy answer changes it.
- a bad grammar is refused before generation with the rule named.
- `gantry serve`: one msgpack-RPC generate with json_schema and one HTTP
  /v1/chat/completions with response_format json_schema, both validated;
  an invalid grammar over RPC and over HTTP is an error naming the rule.
Skips (77) when the model or the binary is missing."""
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

import jsonschema
import msgpack

GANTRY = os.environ.get("GANTRY_BIN", "")
MODELS = os.environ.get("GANTRY_MODELS", os.path.expanduser("~/.cache/gantry/models"))
MODEL = os.path.join(MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"
failures = []

SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "address": {"type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
                        "required": ["city"], "additionalProperties": False},
            "member": {"type": "boolean"},
        },
        "required": ["name", "age", "address"],
        "additionalProperties": False,
    },
    "color": {"enum": ["red", "green", "blue", "yellow"]},
    "numbers": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 8},
}
PROMPTS = {
    "person": "Describe a person called Anna as JSON with name, age and address.",
    "color": "What color is the sky? Answer with one color as JSON.",
    "numbers": "List the first five prime numbers as a JSON array.",
}


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def run(args):
    p = subprocess.run([GANTRY, "run", "-m", MODEL, "--threads", "1", *args], capture_output=True, text=True,
                       timeout=300)
    return p.returncode, p.stdout, p.stderr


def validates(text, schema):
    try:
        jsonschema.validate(json.loads(text), schema)
        return True, ""
    except (ValueError, jsonschema.ValidationError) as e:
        return False, str(e).splitlines()[0]


def test_run_schemas():
    for name, schema in SCHEMAS.items():
        path = os.path.join(TMP, f"grammar_{name}.json")
        with open(path, "w") as f:
            json.dump(schema, f)
        for seed in (1, 2):
            rc, out, err = run(["--chat", "-p", PROMPTS[name], "-n", "120", "--temp", "1", "--top-k", "0",
                                "--top-p", "1", "--seed", str(seed), "--json-schema", path])
            ok, why = validates(out.strip(), schema) if rc == 0 else (False, err.strip())
            check(ok, f"run --json-schema {name} seed {seed}: {out.strip()[:100]!r} {why}")


def test_greedy_sanity():
    prompt = ["--chat", "-p", "What is the capital of Germany?", "-n", "24"]
    rc, free, err = run(prompt)
    check(rc == 0, f"unconstrained greedy run: {err.strip()[-200:]}")
    free = free.rstrip("\n")
    check(re.fullmatch(r"[A-Za-z0-9 ,.'!?\-]+", free) is not None,
          f"the unconstrained answer {free!r} is a sentence of the grammar (precondition)")
    gpath = os.path.join(TMP, "grammar_sentence.gbnf")
    with open(gpath, "w") as f:
        f.write("# letters, digits and simple punctuation\nroot ::= [A-Za-z0-9 ,.'!?\\-]+\n")
    rc, cons, err = run(prompt + ["--grammar", gpath])
    check(rc == 0 and cons.rstrip("\n") == free,
          f"greedy constrained {cons.rstrip()!r} equals unconstrained {free!r}")
    # The test can fail: a grammar that forbids the first letter of the answer changes it.
    with open(gpath, "w") as f:
        f.write(f"root ::= [^{free[0]}] [A-Za-z0-9 ,.'!?\\-]*\n")
    rc, other, err = run(prompt + ["--grammar", gpath])
    check(rc == 0 and other.rstrip("\n") != free and not other.startswith(free[0]),
          f"a grammar without {free[0]!r} first gives another answer: {other.strip()!r}")


def test_refused():
    gpath = os.path.join(TMP, "grammar_bad.gbnf")
    with open(gpath, "w") as f:
        f.write("root ::= \"{\" value \"}\"\n")
    rc, out, err = run(["-p", "hi", "-n", "4", "--grammar", gpath])
    check(rc != 0 and "rule 'value' is used but never defined" in err and gpath in err,
          f"an undefined rule is refused: {err.strip()!r}")
    rc, out, err = run(["-p", "hi", "-n", "4", "--logit-bias", "7=inf"])
    check(rc != 0 and "--logit-bias" in err, f"a +inf bias is refused: {err.strip()!r}")


class Server:
    def __init__(self):
        self.sock = os.path.join(TMP, f"grammar_{os.getpid()}.sock")
        cmd = [GANTRY, "serve", "-m", MODEL, "--unix", self.sock, "--http-port", "0", "--seqs", "2",
               "--ctx", "1024", "--threads", "1"]
        self.p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.err, self.http = "", None
        t0 = time.time()
        while time.time() - t0 < 60 and not self.http:
            line = self.p.stderr.readline()
            self.err += line
            m = re.search(r"http-port (\d+)", line)
            if m:
                self.http = int(m.group(1))
            if not line and self.p.poll() is not None:
                break
        if not self.http:
            raise RuntimeError("server did not start: " + self.err)
        threading.Thread(target=lambda: [None for _ in self.p.stderr], daemon=True).start()

    def rpc(self, method, params):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(120)
        s.connect(self.sock)
        u = msgpack.Unpacker(raw=False)
        s.sendall(msgpack.packb([0, 1, method, [params]]))
        msg = None
        while msg is None:
            u.feed(s.recv(65536))
            msg = next((x for x in u if x[0] == 1), None)
        s.close()
        return msg

    def post(self, path, body):
        c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=120)
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = json.loads(r.read())
        c.close()
        return r.status, data

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()


def test_serve():
    srv = Server()
    try:
        schema = SCHEMAS["person"]
        msg = srv.rpc("generate", {"messages": [{"role": "user", "content": PROMPTS["person"]}],
                                   "max_tokens": 160, "temperature": 1.0, "top_k": 0, "seed": 5,
                                   "json_schema": json.dumps(schema)})
        err, res = msg[2], msg[3]
        ok, why = validates(res["text"], schema) if not err else (False, str(err))
        check(ok, f"RPC generate json_schema: {res['text'][:100] if res else err!r} {why}")
        st, data = srv.post("/v1/chat/completions", {
            "messages": [{"role": "user", "content": PROMPTS["numbers"]}], "max_tokens": 80, "temperature": 1,
            "seed": 9, "response_format": {"type": "json_schema",
                                           "json_schema": {"name": "n", "schema": SCHEMAS["numbers"]}}})
        text = data["choices"][0]["message"]["content"] if st == 200 else str(data)
        ok, why = validates(text, SCHEMAS["numbers"]) if st == 200 else (False, text)
        check(ok, f"HTTP response_format json_schema: {text[:100]!r} {why}")
        msg = srv.rpc("generate", {"prompt": "hi", "max_tokens": 4, "grammar": "root ::= item\n"})
        check(msg[2] is not None and "rule 'item' is used but never defined" in json.dumps(msg[2]),
              f"RPC: a bad grammar is an error naming the rule: {msg[2]}")
        st, data = srv.post("/v1/completions", {"prompt": "hi", "max_tokens": 4, "grammar": "root ::= x x\nx ::= x"})
        check(st == 400 and "rule" in json.dumps(data), f"HTTP: a bad grammar is a 400 naming the rule: {st} {data}")
    finally:
        srv.stop()


def main():
    if not GANTRY or not os.path.exists(GANTRY) or not os.path.exists(MODEL):
        print("skip: no gantry binary or no SmolLM2 in " + MODELS)
        return 77
    test_run_schemas()
    test_greedy_sanity()
    test_refused()
    test_serve()
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
