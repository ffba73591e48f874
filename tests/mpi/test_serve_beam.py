#!/usr/bin/env python3
"""Beam search in `gantry serve` (`beams`, `length_penalty`; OpenAI's
`use_beam_search`/`best_of`) against `gantry run --beams W` and a beam
search written here.

The oracles: `gantry run --beams W` on one rank (the same search, driven
directly on the coordinator, one sequence after another), and, for one
case, an independent Python search over logits that fresh `gantry run
--logits-out` calls compute for every prefix (no KV cache shared between
beams, so a wrong fork of the cache shows). Every case runs in the server
beside a plain greedy request, which must equal its solo run (the scalar
kernels, --isa ref, are batch-invariant, so the checks are exact).

- One rank, then a 2-rank pipeline (pp 2), then tp 2: for several prompts
  and W in {2, 4} (length penalties 1 and 0), the server's tokens and score
  equal `run --beams W`, with the greedy request running concurrently.
- The Python search gives the same tokens for one prompt with W = 4.
- W = 1 equals greedy decoding; the check can fail: for at least one case
  the beam's output differs from greedy's.
- n_best W returns the W - 1 runners-up, ranked; for the Python search's
  case they are its 2nd to 4th hypotheses (tokens, scores, finish
  reasons), and on pp 2 and tp 2 they equal the one-rank server's.
- HTTP: use_beam_search with best_of gives the RPC's text; n choices are
  the RPC's n_best hypotheses; n without beam search, or above best_of,
  is refused.
- Refusals, one sentence each: beams out of range, with stream, with a
  grammar, with speculation, with logprobs; best_of without
  use_beam_search.
- The W slots are released: a later request still runs with all slots.
A small synthetic llama (F32); skips (77) without the binary."""
import http.client
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_serve as ts  # noqa: E402  (its Server and Client)

GANTRY = os.environ.get("GANTRY_BIN", "")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"
MODEL = os.path.join(TMP, "serve_beam_llama.gguf")
# The last prompt is longer than two KV blocks (16 tokens): forks attach
# whole blocks from the prefix cache and recompute the rest, in chunks
# (--max-batch-tokens 32 < 4 forks of up to 16 tokens).
PROMPTS = [[1, 5, 6, 7, 8, 9], [1, 40, 41, 300, 12], [1, 200, 17, 17, 99, 100, 101, 3],
           [1] + [(7 * i * i + 3 * i + 11) % 500 + 3 for i in range(33)]]
N = 8
EOG = {2}
SERVE = ["--kv-type", "f32", "--seqs", "6", "--max-batch-tokens", "32", "--ctx", "128"]
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def gantry(args):
    p = subprocess.run([GANTRY, *args], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(" ".join(args) + ": " + p.stderr)
    return p


def run_ids(prompt, extra, n=N):
    p = gantry(["run", "-m", MODEL, "--isa", "ref", "--kv-type", "f32", "--tokens", ",".join(map(str, prompt)),
                "-n", str(n), "--print-ids", *extra])
    m = re.search(r"score (-?[\d.]+)", p.stderr)
    return [int(x) for x in p.stdout.split()], float(m.group(1)) if m else None


def logprobs(tokens):
    out = os.path.join(TMP, "serve_beam_logits.f32")
    gantry(["run", "-m", MODEL, "--isa", "ref", "--tokens", ",".join(map(str, tokens)), "-n", "0", "--kv-type",
            "f32", "--logits-out", out])
    lg = np.fromfile(out, dtype=np.float32).astype(np.float64).reshape(len(tokens), -1)
    m = lg.max(axis=1, keepdims=True)
    return lg - m - np.log(np.exp(lg - m).sum(axis=1, keepdims=True))


def reference_beam(prompt, w, a):
    """Beam search with end-of-generation tokens: an EOG among the W best
    extensions finishes a hypothesis; stop once W finished and none of
    the live beams scores better; the best normalised score wins. Returns
    every hypothesis (tokens, normalised score), best first (a tie keeps
    the one that finished first)."""
    norm = lambda s, n: s / max(n, 1) ** a  # noqa: E731
    beams, finished = [([], 0.0)], []
    for step in range(N):
        ext = []
        for bi, (toks, s) in enumerate(beams):
            lp = logprobs(prompt + toks)[-1]
            for t in np.argsort(-lp, kind="stable")[:2 * w]:
                ext.append((s + lp[t], bi, int(t)))
        ext.sort(key=lambda e: (-e[0], e[1], e[2]))
        nxt = []
        for k, (s, bi, t) in enumerate(ext):
            if len(nxt) == w:
                break
            if t in EOG:
                if k < w:
                    finished.append((beams[bi][0] + [t], s))
                continue
            nxt.append((beams[bi][0] + [t], s))
        if not nxt:
            break
        worst = min((norm(s, len(t)) for t, s in finished), default=None)
        if step + 1 == N or (len(finished) >= w and worst >= norm(nxt[0][1], len(nxt[0][0]))):
            finished += nxt
            break
        beams = nxt
    return sorted(((t, norm(s, len(t))) for t, s in finished), key=lambda h: -h[1])


def rpc_error(port, params):
    r = ts.Client(port).call(1, "generate", params)
    return r[2] if r and r[2] is not None else None


def serve_cases(server, cases, greedy_solo, label, alts):
    """Each case beside a concurrent greedy request. Every beam request asks
    for its W best hypotheses (n_best W); the runners-up are recorded in
    alts on the first server and must be the same on the others."""
    for prompt_i, w, a, want_toks, want_score in cases:
        beam = {"tokens": PROMPTS[prompt_i], "max_tokens": N, "beams": w, "length_penalty": a, "n_best": w}
        plain = {"tokens": PROMPTS[(prompt_i + 1) % len(PROMPTS)], "max_tokens": N}
        cb, cp = ts.Client(server.port), ts.Client(server.port)
        cb.send(7, "generate", beam)  # both sent before either is read: they share the batch
        cp.send(8, "generate", plain)
        out = {"beam": cb.read(7), "plain": cp.read(8)}
        rb, rp = out.get("beam"), out.get("plain")
        ok = rb is not None and rb[2] is None
        got = rb[3]["tokens"] if ok else rb
        sc = rb[3].get("beam", {}).get("score") if ok else None
        check(ok and got == want_toks and sc is not None and abs(sc - want_score) < 1e-4,
              f"{label}: prompt {prompt_i} beams {w} length_penalty {a}: {got} (score {sc}) equals run's "
              f"{want_toks} ({want_score})")
        alt = [(h["tokens"], round(h["score"], 5), h["finish_reason"]) for h in rb[3].get("alternatives", [])] \
            if ok else None
        key = (prompt_i, w, a)
        if key not in alts:
            alts[key] = alt
        check(alt is not None and len(alt) == w - 1 and alt == alts[key] and
              all(sc >= s for _, s, _ in alt) and all(alt[i][1] >= alt[i + 1][1] for i in range(len(alt) - 1)),
              f"{label}: prompt {prompt_i} beams {w}: {len(alt or [])} runners-up, ranked below the winner, "
              f"as on one rank")
        pg = rp[3]["tokens"] if rp and rp[2] is None else rp
        check(pg == greedy_solo[(prompt_i + 1) % len(PROMPTS)],
              f"{label}: the concurrent greedy request equals its solo run ({pg})")


def http_post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def http_checks(srv):
    m = None
    for _ in range(300):  # the HTTP front's line follows the RPC one
        m = re.search(r"http-port (\d+)", srv.err)
        if m or srv.p.poll() is not None:
            break
        time.sleep(0.1)
    check(m is not None, "the HTTP front is up")
    if not m:
        return
    port = int(m.group(1))
    text = "hello there, beams"
    r = ts.Client(srv.port).call(5, "generate", {"prompt": text, "max_tokens": N, "beams": 3, "length_penalty": 0.5})
    st, body = http_post(port, {"prompt": text, "max_tokens": N, "use_beam_search": True, "best_of": 3,
                                "length_penalty": 0.5})
    ok = r[2] is None and st == 200
    check(ok and body["choices"][0]["text"] == r[3]["text"] and
          abs(body["usage"]["beam"]["score"] - r[3]["beam"]["score"]) < 1e-6,
          f"/v1/completions use_beam_search best_of 3: {body} equals the RPC's {r[3] if r[2] is None else r[2]}")
    # n choices: the n best hypotheses, as the RPC's n_best gives them.
    r = ts.Client(srv.port).call(6, "generate", {"prompt": text, "max_tokens": N, "beams": 3, "n_best": 3})
    st, body = http_post(port, {"prompt": text, "max_tokens": N, "use_beam_search": True, "best_of": 3, "n": 3})
    ok = r[2] is None and st == 200
    want = [r[3]["text"]] + [h["text"] for h in r[3].get("alternatives", [])] if ok else None
    got = [c["text"] for c in body["choices"]] if ok else body
    check(ok and got == want and [c["index"] for c in body["choices"]] == [0, 1, 2],
          f"/v1/completions n 3 of best_of 3: choices {got} equal the RPC's n_best 3 {want}")
    n_all = len(r[3]["tokens"]) + sum(len(h["tokens"]) for h in r[3].get("alternatives", [])) if ok else None
    check(ok and body["usage"]["completion_tokens"] == n_all and
          body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + n_all,
          f"/v1/completions n 3: usage counts every choice's tokens ({body['usage'] if ok else body} against {n_all})")
    # A stop string met by the first runner-up only (where it leaves the
    # winner's text) cuts that runner-up there, with finish "stop".
    if ok and len(want) > 1:
        w0, a0 = want[0], want[1]
        k = next((i for i in range(min(len(w0), len(a0))) if w0[i] != a0[i]), min(len(w0), len(a0)))
        stop = a0[k:k + 3]
        if stop and stop not in w0:
            r2 = ts.Client(srv.port).call(7, "generate", {"prompt": text, "max_tokens": N, "beams": 3, "n_best": 3,
                                                          "stop": [stop]})
            alt = r2[3]["alternatives"][0] if r2[2] is None else r2[2]
            check(r2[2] is None and r2[3]["text"] == w0 and alt["text"] == a0[:a0.find(stop)] and
                  alt["finish_reason"] == "stop" and len(alt["tokens"]) <= N,
                  f"stop {stop!r}: the runner-up {a0!r} becomes {alt}; the winner stays {w0!r}")
        else:
            check(False, f"no stop string tells the runner-up {a0!r} from the winner {w0!r}")
    for extra, word in (({"best_of": 2}, "use_beam_search"), ({"use_beam_search": True}, "best_of"),
                        ({"use_beam_search": True, "best_of": 2, "stream": True}, "stream"),
                        ({"n": 2}, "n 2"), ({"use_beam_search": True, "best_of": 2, "n": 3}, "best_of 2")):
        st, body = http_post(port, {"prompt": text, "max_tokens": N, **extra})
        check(st == 400 and word in json.dumps(body), f"HTTP refuses {extra}: {st} {body}")


def preemption(cases):
    """A pool of 16 blocks of 16 tokens: two greedy requests of 34 + 90
    tokens (8 blocks each) and a beam request (4 beams of 34 + 24 tokens, up
    to 16 blocks) do not fit at once, so requests are preempted; the beam
    request, sent last and so the youngest, starts its search again (the
    server logs it). Every output still equals its solo run."""
    os.environ["GANTRY_LOG"] = "info"
    try:
        srv = ts.Server(MODEL, SERVE + ["--kv-blocks", "16", "--max-batch-tokens", "16"])
    finally:
        del os.environ["GANTRY_LOG"]
    try:
        prompts = [[1] + [(t + 17 * (k + 1)) % 500 + 3 for t in PROMPTS[3][1:]] for k in range(2)]
        w, a = 4, 1.0
        want = run_ids(PROMPTS[3], ["--beams", str(w), "--length-penalty", str(a)], 24)[0]
        # All three in one write, so they arrive in one turn of the server's
        # loop whatever the host's load: sent on separate connections, the
        # beam request could come after the greedy ones had grown too far to
        # admit it, and then wait for them instead of preempting.
        c = ts.Client(srv.port)
        c.send_all([(20 + k, "generate", {"tokens": prompts[k], "max_tokens": 90}) for k in range(2)] +
                   [(30, "generate", {"tokens": PROMPTS[3], "max_tokens": 24, "beams": w, "length_penalty": a})])
        out = {k: c.read(20 + k) for k in range(2)}
        out["beam"] = c.read(30)
        st = ts.Client(srv.port).call(31, "stats", {})[3]["counters"]
        rb = out["beam"]
        got = rb[3]["tokens"] if rb[2] is None else rb[2]
        solo = [[int(x) for x in gantry(["run", "-m", MODEL, "--isa", "ref", "--kv-type", "f32", "--tokens",
                                         ",".join(map(str, p)), "-n", "90", "--print-ids"]).stdout.split()]
                for p in prompts]
        plain = [out[k][3]["tokens"] if out[k][2] is None else out[k][2] for k in range(2)]
        restarted = "(beam search, 4 beams) preempted" in srv.err
        check(got == want and plain == solo and st["preempted"] > 0,
              f"small KV pool ({st['preempted']} preemptions, the beam request restarted: {restarted}): beams {w} "
              f"gives {got} = run's {want}; greedy requests equal their solo runs: {plain == solo}")
        return restarted
    finally:
        check(srv.stop() == 0, "the small-pool server exits 0")


def main():
    if not GANTRY or not os.path.exists(GANTRY):
        print("gantry binary not found (GANTRY_BIN); skipping")
        return 77
    gantry(["synth", "-o", MODEL, "--arch", "llama", "--vocab", "512", "--layers", "2", "--hidden", "64",
            "--heads", "4", "--kv-heads", "2", "--ffn", "128", "--type", "f32", "--seed", "5"])
    greedy = [run_ids(p, [])[0] for p in PROMPTS]
    cases, differs = [], 0
    for i in range(len(PROMPTS)):
        for w, a in ((2, 1.0), (4, 0.0)) if i % 2 == 0 else ((4, 1.0), (2, 0.0)):
            toks, sc = run_ids(PROMPTS[i], ["--beams", str(w), "--length-penalty", str(a)])
            cases.append((i, w, a, toks, sc))
            differs += toks != greedy[i]
    check(differs > 0, f"{differs} of {len(cases)} beam outputs differ from greedy (the check can tell them apart)")
    ranked = reference_beam(PROMPTS[0], 4, 0.0)
    ref = ranked[0][0]
    want = [c for c in cases if c[0] == 0 and c[1] == 4][0][3]
    check(ref == want, f"run --beams 4 {want} equals the independent Python search {ref}")
    b1, _ = run_ids(PROMPTS[2], ["--beams", "1"])

    srv = ts.Server(MODEL, SERVE + ["--http-port", "0"])
    alts = {}
    try:
        serve_cases(srv, cases, greedy, "1 rank", alts)
        # The runners-up against the independent search's ranking.
        got = [(t, s) for t, s, _ in alts[(0, 4, 0.0)] or []]
        want_alts = ranked[1:4]
        check(len(got) == 3 and all(g[0] == list(wt) and abs(g[1] - ws) < 1e-4 for g, (wt, ws) in zip(got, want_alts)),
              f"n_best 4: the runners-up {got} equal the Python search's {want_alts}")
        fin = [f for _, _, f in alts[(0, 4, 0.0)] or []]
        check(all((f == "stop") == (t[-1] in EOG) for (t, _), f in zip(got, fin)),
              f"n_best 4: finish reasons {fin} say which runners-up ended with an end-of-generation token")
        r = ts.Client(srv.port).call(3, "generate", {"tokens": PROMPTS[2], "max_tokens": N, "beams": 1})
        check(r[2] is None and r[3]["tokens"] == b1 == greedy[2][:len(b1)],
              f"beams 1 equals greedy ({r[3]['tokens'] if r[2] is None else r[2]})")
        # HTTP is checked in the same server: its text equals the RPC's.
        refusals = [({"beams": 11}, "beams"), ({"beams": 7}, "beams"), ({"beams": 2, "stream": True}, "stream"),
                    ({"beams": 2, "grammar": 'root ::= "a"'}, "grammar"),
                    ({"beams": 2, "speculate": {"lookup": 2}}, "speculation"),
                    ({"beams": 2, "logprobs": 2}, "logprobs"), ({"beams": 2, "length_penalty": 20}, "length_penalty")]
        for extra, word in refusals:
            err = rpc_error(srv.port, {"tokens": PROMPTS[0], "max_tokens": N, **extra})
            msg = str(err)
            check(err is not None and word in msg, f"refused {extra}: {msg}")
        r = ts.Client(srv.port).call(4, "generate", {"tokens": PROMPTS[1], "max_tokens": N, "beams": 6})
        check(r[2] is None, "beams 6 with --seqs 6 runs (all slots were released)")
        http_checks(srv)
    finally:
        check(srv.stop() == 0, "the one-rank server exits 0")
    preemption(cases)
    for grid, label in ((["--pp", "2", "--tp", "1"], "pp 2"), (["--tp", "2", "--pp", "1"], "tp 2")):
        srv = ts.Server(MODEL, SERVE + grid, ranks=2, grid=False)
        try:
            serve_cases(srv, cases[:3] + cases[-2:], greedy, label, alts)
        finally:
            check(srv.stop() == 0, f"the {label} server exits 0")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
