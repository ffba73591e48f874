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
Uses SmolLM2-135M-Instruct from the model cache; skips that part without it.

Draft-model speculation (--draft, --self-draft), on a synthetic target
(always run; draft_cases):
- One rank, --draft a requantized (q4_0) copy of the target: 6 requests in
  one write mixing the server's default (the draft), speculate {draft,
  tokens}, logprobs, penalties, prompt lookup and {draft: false} (plain)
  equal their solo plain runs; the per-proposer counters of `stats` and
  /metrics rise by the requests' sums; a sampled draft request is
  reproducible; /v1/completions with speculate {draft} gives the solo text
  and usage.spec.method "draft"; bad combinations are refused with a
  sentence; a drafting stream is cancelled from another connection.
- pp 2 with the target's own file as the draft and tp 2 with --self-draft
  2, each with a KV pool too small for all requests (preemption): the
  outputs equal the one-rank solo runs, and with the target as its own
  draft every greedy guess is kept (the draft runs the target's rows bit
  for bit, pipeline stages do not change a row's sums, so a rejection
  would mean a draft KV sequence went wrong after a preemption or a slot
  changed hands)."""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_serve as ts  # noqa: E402  (its Server and Client)

TMP = os.environ.get("GANTRY_TEST_TMP", tempfile.gettempdir())
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


def http_port_of(srv):
    m = None
    for _ in range(300):  # the HTTP front starts after the RPC one; its line follows
        m = re.search(r"http-port (\d+)", srv.err)
        if m or srv.p.poll() is not None:
            break
        time.sleep(0.1)
    return int(m.group(1)) if m else None


# ---- draft-model speculation on a synthetic target ----

D_PROMPTS = [[1, 5, 9, 33, 2, 7, 5, 9, 33, 2, 7], [4, 8, 15, 16, 23, 42] * 3, [100, 200, 300, 400, 100, 200],
             [7] * 9 + [11, 12, 13], [250, 251, 252, 253, 254, 255, 256, 257, 258, 259, 260, 261, 262, 263], [42, 43]]
D_N = 24
# (extra params, proposer: "draft", "lookup" or None)
D_EXTRA = [({}, "draft"), ({"speculate": {"draft": True, "tokens": 3}}, "draft"),
           ({"logprobs": 2, "speculate": {"draft": True}}, "draft"),
           ({"repetition_penalty": 1.1, "presence_penalty": 0.2}, "draft"),
           ({"speculate": {"lookup": 3, "tokens": 4}}, "lookup"), ({"speculate": {"draft": False}}, None)]


def d_params(i, default=False):
    p = {"tokens": D_PROMPTS[i], "max_tokens": D_N, **D_EXTRA[i][0]}
    if default:  # the server's proposer for all
        p.pop("speculate", None)
    return p


def d_together(port, default=False, base=500):
    c = ts.Client(port)
    c.s.sendall(b"".join(ts.msgpack.packb([0, base + i, "generate", [d_params(i, default)]])
                         for i in range(len(D_PROMPTS))))
    done = {}
    while len(done) < len(D_PROMPTS):
        for m in c.u:
            if m[0] != 2:
                done[m[1]] = m
        if len(done) < len(D_PROMPTS):
            data = c.s.recv(65536)
            if not data:
                break
            c.u.feed(data)
    return [done[base + i][3] if base + i in done and done[base + i][2] is None else {"error": done.get(base + i)}
            for i in range(len(D_PROMPTS))]


def d_compare(label, got, solo, kinds, exact=False):
    sums = {"draft": [0, 0, 0], "lookup": [0, 0, 0]}
    for i, g in enumerate(got):
        check(g.get("tokens") == solo[i], f"{label}: request {i} ({kinds[i] or 'plain'}) equals its solo plain run: "
                                          f"{g.get('tokens', g)} vs {solo[i]}")
        sp = g.get("spec")
        if kinds[i] is None:
            check(sp is None, f"{label}: plain request {i} reports no spec")
            continue
        ok = sp is not None and sp.get("method") == kinds[i] and 0 <= sp["accepted"] <= sp["drafted"]
        if exact and kinds[i] == "draft":
            ok = ok and sp["drafted"] > 0 and sp["accepted"] == sp["drafted"]
        check(ok, f"{label}: request {i} reports spec {sp}" + (" (all kept: the draft is the target)" if exact else ""))
        if sp:
            for j, k in enumerate(("steps", "drafted", "accepted")):
                sums[kinds[i]][j] += sp[k]
    return sums


def d_metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/metrics")
    data = c.getresponse().read().decode()
    c.close()
    return {(m.group(1), m.group(2)): int(float(m.group(3)))
            for m in re.finditer(r'^gantry_spec_method_(\w+)_total\{method="(\w+)"\} (\S+)$', data, re.M)}


def draft_cases():
    target = os.path.join(TMP, "serve_draft_target.gguf")
    draft = os.path.join(TMP, "serve_draft_q4_0.gguf")
    p = subprocess.run([ts.GANTRY, "synth", "-o", target, "--arch", "llama", "--vocab", "512", "--type", "q8_0",
                        "--layers", "4", "--hidden", "128", "--ffn", "256", "--seed", "5"], capture_output=True, text=True)
    q = subprocess.run([ts.GANTRY, "quantize", target, draft, "--type", "q4_0"], capture_output=True, text=True)
    if p.returncode or q.returncode:
        check(False, f"synth and quantize the draft test's models: {p.stderr} {q.stderr}")
        return
    bad = subprocess.run([ts.GANTRY, "serve", "-m", target, "--lookup", "3", "--draft", draft],
                         capture_output=True, text=True, timeout=60)
    check(bad.returncode != 0 and "--lookup, --draft and --self-draft each set the requests' default proposer"
          in bad.stderr, f"serve --lookup with --draft refused: {bad.stderr.strip()}")
    bad = subprocess.run([ts.GANTRY, "serve", "-m", target, "--port", "0", "--self-draft", "4"],
                         capture_output=True, text=True, timeout=60)
    check(bad.returncode not in (0, -11) and "the draft must run fewer layers than the model's 4" in bad.stderr,
          f"serve --self-draft as deep as the model refused: {bad.returncode} {bad.stderr.strip()}")
    kinds = [e[1] for e in D_EXTRA]
    srv = ts.Server(target, ["--draft", draft, "--http-port", "0"])
    http_port = http_port_of(srv)
    try:
        c = ts.Client(srv.port)
        solo = []
        for i in range(len(D_PROMPTS)):
            r = c.call(600 + i, "generate", {**d_params(i), "speculate": {"draft": False}})
            solo.append(r[3]["tokens"] if r[2] is None else None)
        check(all(s and len(s) >= 4 for s in solo), "draft: solo plain runs")
        before = c.call(610, "stats", {})[3]["counters"]
        m0 = d_metrics(http_port) if http_port else {}
        got = d_together(srv.port)
        sums = d_compare("draft, one rank", got, solo, kinds)
        after = c.call(611, "stats", {})[3]["counters"]
        check(sums["draft"][2] > 0, f"the q4_0 draft's guesses were accepted: {sums}")
        delta = {k: [after[f"spec_{k}_{n}"] - before[f"spec_{k}_{n}"] for n in ("steps", "drafted_tokens",
                                                                             "accepted_tokens")]
                 for k in ("draft", "lookup")}
        check(delta == sums and after["spec_draft_forwards"] > before["spec_draft_forwards"],
              f"stats per proposer rose by the requests' sums: {delta} vs {sums}")
        m1 = d_metrics(http_port) if http_port else {}
        mdelta = {k: [m1.get((n, k), -1) - m0.get((n, k), 0) for n in ("verify_steps", "draft_tokens",
                                                                        "accepted_tokens")]
                  for k in ("draft", "lookup")}
        check(mdelta == sums, f"/metrics per proposer agrees: {mdelta}")
        lp = got[2].get("logprobs")
        check(lp is not None and [e["token"] for e in lp] == got[2].get("tokens"), "logprobs of a drafting request")
        samp = {"temperature": 0.9, "top_k": 20, "seed": 3}
        a = c.call(620, "generate", {**d_params(0), **samp})
        b = c.call(621, "generate", {**d_params(0), **samp})
        check(a[2] is None and a[3]["tokens"] == b[3]["tokens"] and a[3]["spec"]["accepted"] <= a[3]["spec"]["drafted"],
              f"sampled drafting request is reproducible: {a[3].get('spec') if a[2] is None else a[2]}")
        if http_port:
            st, body = http_post(http_port, {"prompt": D_PROMPTS[0], "max_tokens": D_N, "speculate": {"draft": True}})
            plain_text = c.call(622, "generate", {**d_params(0), "speculate": {"draft": False}})[3]["text"]
            check(st == 200 and body["choices"][0]["text"] == plain_text and
                  body["usage"]["spec"]["method"] == "draft", f"/v1/completions with speculate.draft: "
                                                              f"usage.spec {body.get('usage', {}).get('spec')}")
            st, body = http_post(http_port, {"prompt": "x", "speculate": {"draft": "yes"}})
            check(st == 400 and "speculate.draft" in json.dumps(body), f"HTTP bad speculate.draft: {st} {body}")
        r = c.call(623, "generate", {"tokens": [1, 2], "speculate": {"draft": True, "lookup": 2}})
        check(r[2] and r[2]["code"] == "invalid_param" and "both prompt lookup (lookup 2) and the draft model"
              in r[2]["message"], f"draft with lookup refused: {r[2]}")
        r = c.call(624, "generate", {"tokens": [1, 2], "speculate": {"draft": True}, "grammar": GRAMMAR})
        check(r[2] and "speculation together with a grammar" in r[2]["message"], f"draft with a grammar refused: {r[2]}")
        # Beam search does not take the server's draft default, and refuses it asked for.
        r = c.call(627, "generate", {"tokens": D_PROMPTS[0], "max_tokens": 4, "beams": 2})
        check(r[2] is None and "spec" not in r[3] and "beam" in r[3], f"beam request on a draft server: {r[2] or r[3]}")
        r = c.call(628, "generate", {"tokens": D_PROMPTS[0], "max_tokens": 4, "beams": 2, "speculate": {"draft": True}})
        check(r[2] and "beam search together with speculation" in r[2]["message"], f"beams with draft refused: {r[2]}")
        c.send(625, "generate", {"tokens": D_PROMPTS[0], "max_tokens": 400, "stream": True})
        while not c.notes:
            c.u.feed(c.s.recv(65536))
            for msg in c.u:
                c.notes.append(msg)
        cr = ts.Client(srv.port).call(626, "cancel", {"id": 625})
        r = c.read(625)
        check(cr[3] == {"cancelled": True} and r[3]["finish_reason"] == "cancelled" and r[3]["spec"]["method"] == "draft",
              f"cancelled drafting stream: {r[3] and r[3]['finish_reason']}")
    finally:
        check(srv.stop() == 0, "draft: one-rank server exits cleanly")
    # Grids with a small pool: every request speculates with the server's
    # draft (no speculate field), some are preempted and resume.
    for label, extra, grid, exact in (("pp 2, the target as its own draft", ["--draft", target], True, True),
                                      ("tp 2, --self-draft 2", ["--self-draft", "2", "--tp", "2"], False, False)):
        srv = ts.Server(target, ["--kv-blocks", "6", *extra], ranks=2, grid=grid)
        try:
            got = d_together(srv.port, default=True)
            d_compare(label, got, solo, ["draft"] * len(D_PROMPTS), exact=exact)
            st = ts.Client(srv.port).call(700, "stats", {})[3]["counters"]
            check(st["preempted"] > 0 and st["spec_draft_drafted_tokens"] > 0,
                  f"{label}: {st['preempted']} preemptions, {st['spec_draft_accepted_tokens']} of "
                  f"{st['spec_draft_drafted_tokens']} guesses kept")
        finally:
            check(srv.stop() == 0, f"{label}: server exits cleanly")


def main():
    if not ts.GANTRY or not os.path.exists(ts.GANTRY):
        print("gantry binary missing (GANTRY_BIN); skipping")
        return 77
    draft_cases()
    model = os.path.join(ts.MODELS, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(model):
        print("SmolLM2 (scripts/fetch-models.sh) missing; skipping the prompt-lookup part")
        print(f"{len(failures)} failures")
        return 1 if failures else 0
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
        r = c.call(305, "generate", {"prompt": "x", "speculate": {"draft": True}})
        check(r[2] and r[2]["code"] == "invalid_param" and "this server has no draft model" in r[2]["message"],
              f"speculate.draft on a server without a draft refused: {r[2]}")
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
