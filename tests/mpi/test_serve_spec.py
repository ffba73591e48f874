#!/usr/bin/env python3
"""Speculative decoding (prompt lookup) in `gantry serve`, against an
independent client (Python's msgpack package and http.client).

The oracle is the same server without speculation: every request is first
run alone and plain, then all together, some speculating (`speculate`
{lookup, tokens}, and the server's --lookup default for HTTP), some not.
The CPU kernels are batch-invariant (docs/architecture.md, Kernels): a
row's logits do not depend on the rows beside it, so greedy outputs must be
equal token for token.

- One rank: 5 concurrent requests (copy-style prompts that prompt lookup
  guesses well, one with a repetition penalty, one with logprobs, one
  streamed, one sampled, one plain) equal their solo plain runs; a streamed
  speculating request's pieces add up to its text; accepted <= drafted for
  each, some guesses accepted, and the `stats` counters and /metrics rise
  by exactly the sums of the per-request numbers; the OpenAI API's
  `speculate` gives the same text and reports usage.spec; bad `speculate`
  values are refused with a sentence over RPC and HTTP; a speculating
  request is cancelled from another connection.
- Two ranks (pp 2) with a KV pool too small for all four requests at once:
  requests are preempted while speculating and resume; outputs still equal
  the one-rank solo runs.
Uses SmolLM2-135M-Instruct from the model cache; skips (77) without it."""
import http.client
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_serve as ts  # noqa: E402  (its Server and Client)

failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


PROMPTS = [
    "Copy the list twice: apple, banana, cherry, grape, lemon, mango, orange, peach. "
    "Again: apple, banana, cherry,",
    "Repeat exactly: the red fox jumps over the lazy dog, the red fox jumps over the lazy dog, "
    "the red fox",
    "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef add(a, b):\n",
    "Count: one two three four five, one two three four five, one two",
    "The capital of France is",
]
SPEC = {"lookup": 3, "tokens": 4}
N = 20
# (extra params, speculates)
EXTRA = [({}, True), ({"stream": True}, True), ({"logprobs": 2}, True),
         ({"repetition_penalty": 1.05, "frequency_penalty": 0.05}, True), ({}, False)]
PENALIZED = 3
GRAMMAR = 'root ::= "yes" | "no"'


def params(i, spec, extra=None):
    p = {"prompt": PROMPTS[i], "max_tokens": N, **EXTRA[i][0], **(extra or {})}
    if spec:
        p["speculate"] = SPEC
    return p


def result(c, r, msgid):
    if r is None or r[2] is not None:
        return {"error": r and r[2]}
    out = dict(r[3])
    notes = [n[2][0] for n in c.notes if n[1] == "token" and n[2][0]["id"] == msgid]
    out["streamed"] = "".join(ts.text_of(n["text"]) for n in notes)
    out["n_events"] = len(notes)
    return out


def gen(port, i, spec, msgid, extra=None):
    c = ts.Client(port)
    return result(c, c.call(msgid, "generate", params(i, spec, extra)), msgid)


def together(port, spec_flags, base=100):
    """Every request in one write, so that the server admits them at once."""
    c = ts.Client(port)
    c.s.sendall(b"".join(ts.msgpack.packb([0, base + i, "generate", [params(i, spec_flags[i])]])
                         for i in range(len(PROMPTS))))
    done = {}
    while len(done) < len(PROMPTS):
        for m in c.u:
            if m[0] == 2:
                c.notes.append(m)
            else:
                done[m[1]] = m
        if len(done) < len(PROMPTS):
            data = c.s.recv(65536)
            if not data:
                break
            c.u.feed(data)
    return [result(c, done.get(base + i), base + i) for i in range(len(PROMPTS))]


def counters(port):
    return ts.Client(port).call(900, "stats", {})[3]["counters"]


def http_post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def http_metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/metrics")
    data = c.getresponse().read().decode()
    c.close()
    return {m.group(1): int(float(m.group(2)))
            for m in re.finditer(r"^gantry_(spec_\w+_total) (\S+)$", data, re.M)}


def compare(label, got, solo):
    spec_sum = {"drafted": 0, "accepted": 0, "steps": 0}
    for i, g in enumerate(got):
        ok = "tokens" in g and g["tokens"] == solo[i]["tokens"]
        check(ok, f"{label}: request {i} ({'speculating' if EXTRA[i][1] else 'plain'}) equals its solo plain "
                  f"run: {g.get('tokens', g)} vs {solo[i]['tokens']}")
        sp = g.get("spec")
        if EXTRA[i][1]:
            check(sp is not None and 0 <= sp["accepted"] <= sp["drafted"] and sp["steps"] <= sp["drafted"],
                  f"{label}: request {i} reports spec {sp}")
            for k in spec_sum:
                spec_sum[k] += sp[k] if sp else 0
        else:
            check(sp is None, f"{label}: plain request {i} reports no spec")
    return spec_sum


def main():
    model = os.path.join(ts.MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not ts.GANTRY or not os.path.exists(ts.GANTRY) or not os.path.exists(model):
        print("gantry binary or SmolLM2 (scripts/fetch-models.sh) missing; skipping")
        return 77
    srv = ts.Server(model, ["--isa", "auto", "--http-port", "0"])
    m = None
    for _ in range(300):  # the HTTP front starts after the RPC one; its line follows
        m = re.search(r"http-port (\d+)", srv.err)
        if m or srv.p.poll() is not None:
            break
        time.sleep(0.1)
    http_port = int(m.group(1)) if m else None
    check(http_port is not None, "the HTTP front is up")
    try:
        solo = [gen(srv.port, i, False, 10 + i) for i in range(len(PROMPTS))]
        check(all("tokens" in s and len(s["tokens"]) >= 4 for s in solo), "solo plain runs")
        before = counters(srv.port)
        m0 = http_metrics(http_port) if http_port else {}
        got = together(srv.port, [e[1] for e in EXTRA])
        sums = compare("one rank", got, solo)
        after = counters(srv.port)
        check(sums["accepted"] > 0, f"prompt lookup's guesses were accepted: {sums}")
        check(got[PENALIZED].get("spec", {}).get("drafted", 0) > 0,
              f"the penalized request's guesses were verified: {got[PENALIZED].get('spec')}")
        delta = {k: after["spec_" + n] - before["spec_" + n]
                 for k, n in [("drafted", "drafted_tokens"), ("accepted", "accepted_tokens"), ("steps", "steps")]}
        check(delta == sums, f"stats rose by the requests' sums: {delta} vs {sums}")
        m1 = http_metrics(http_port) if http_port else {}
        check(m1 and m1["spec_draft_tokens_total"] - m0.get("spec_draft_tokens_total", 0) == sums["drafted"] and
              m1["spec_accepted_tokens_total"] - m0.get("spec_accepted_tokens_total", 0) == sums["accepted"] and
              m1["spec_verify_steps_total"] - m0.get("spec_verify_steps_total", 0) == sums["steps"],
              f"/metrics agrees: {m1}")
        s1 = got[1]
        check(s1.get("streamed") == s1.get("text") and s1.get("n_events", 0) >= 2,
              f"streamed speculating request: {s1.get('n_events')} events add up to its text")
        lp = got[2].get("logprobs")
        check(lp is not None and [e["token"] for e in lp] == got[2]["tokens"] and
              all(e["top"][0][0] == e["token"] for e in lp), "logprobs of a speculating greedy request")
        # Sampled: the rejection rule runs; the same seed gives the same tokens.
        samp = {"temperature": 0.8, "top_k": 20, "seed": 7}
        a = gen(srv.port, 0, True, 200, samp)
        b = gen(srv.port, 0, True, 201, samp)
        check("tokens" in a and a.get("tokens") == b.get("tokens") and a["spec"]["accepted"] <= a["spec"]["drafted"],
              f"sampled speculating request is reproducible: {a.get('spec')}")
        # OpenAI API extension.
        if http_port:
            st, body = http_post(http_port, {"prompt": PROMPTS[0], "max_tokens": N, "speculate": SPEC})
            check(st == 200 and body["choices"][0]["text"] == solo[0]["text"] and
                  body["usage"]["spec"]["accepted"] <= body["usage"]["spec"]["drafted"],
                  f"/v1/completions with speculate: same text, usage.spec {body.get('usage', {}).get('spec')}")
            st, body = http_post(http_port, {"prompt": "x", "speculate": {"lookup": 2, "tokens": 99}})
            check(st == 400 and "speculate.tokens is 99" in json.dumps(body), f"HTTP bad speculate: {st} {body}")
        # Bad params.
        c = ts.Client(srv.port)
        r = c.call(300, "generate", {"prompt": "x", "speculate": {"lookup": 2, "tokens": 0}})
        check(r[2] and r[2]["code"] == "invalid_param" and r[2]["message"] ==
              "generate: speculate.tokens 0 is outside [1, 64]", f"bad speculate.tokens: {r[2]}")
        r = c.call(301, "generate", {"prompt": "x", "speculate": [3, 4]})
        check(r[2] and "speculate must be a map" in r[2]["message"], f"speculate not a map: {r[2]}")
        r = c.call(304, "generate", {"prompt": "Yes or no?", "speculate": SPEC, "grammar": GRAMMAR})
        check(r[2] and r[2]["code"] == "invalid_param" and "speculation together with a grammar" in r[2]["message"],
              f"speculate with a grammar refused: {r[2]}")
        # Cancel a speculating stream from another connection.
        c.send(302, "generate", {"prompt": PROMPTS[3], "max_tokens": 400, "stream": True, "speculate": SPEC})
        while not c.notes:
            c.u.feed(c.s.recv(65536))
            for msg in c.u:
                c.notes.append(msg)
        cr = ts.Client(srv.port).call(303, "cancel", {"id": 302})
        r = c.read(302)
        check(cr[3] == {"cancelled": True} and r[3]["finish_reason"] == "cancelled",
              f"cancelled speculating stream: {r[3]['finish_reason'] if r[3] else r}")
    finally:
        check(srv.stop() == 0, "one-rank server exits cleanly")

    # Two ranks (pp 2), a pool of 10 blocks for four requests of 3 to 5
    # blocks each: the youngest is preempted and resumes from its tokens.
    srv = ts.Server(model, ["--isa", "auto", "--kv-blocks", "10", "--lookup", "3", "--draft-tokens", "4"], ranks=2)
    try:
        got = together(srv.port, [False] * len(PROMPTS))  # --lookup: the server's default speculates
        for i in range(len(PROMPTS)):
            EXTRA[i] = (EXTRA[i][0], True)
        sums = compare("pp 2, small pool", got, solo)
        st = counters(srv.port)
        check(st["preempted"] > 0 and st["spec_accepted_tokens"] == sums["accepted"],
              f"pp 2: {st['preempted']} preemptions, {sums['accepted']} of {sums['drafted']} guesses accepted")
        # A grammar request does not take the server's --lookup default.
        r = ts.Client(srv.port).call(400, "generate", {"prompt": "Yes or no?", "max_tokens": 4, "grammar": GRAMMAR})
        check(r[2] is None and r[3]["text"] in ("yes", "no") and "spec" not in r[3],
              f"grammar request under --lookup runs plain: {r[2] or r[3]['text']!r}")
    finally:
        check(srv.stop() == 0, "two-rank server exits cleanly")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
