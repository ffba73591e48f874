#!/usr/bin/python3
"""`gantry run --repeat-penalty/--presence-penalty/--frequency-penalty` and
`--logprobs N` against a greedy decoder written here over logits that a
fresh `gantry run --logits-out` computes for every prefix (no KV cache
shared with the run):

- with the three penalties, greedy output equals the reference decoder
  that applies llama.cpp's rule to the last 64 tokens of the context (a
  seen token's positive logit divided by R, a negative one multiplied,
  then P subtracted once and F once per occurrence), in float32 as the
  coordinator does;
- the check can fail: the penalised output differs from plain greedy
  output on this repetitive prompt;
- --logprobs 3 prints, per generated token, its log-probability and the
  three most likely tokens' under the model's own distribution (before
  penalties), equal to a double-precision log-softmax of the fresh logits;
- a penalty with --beams and --logprobs above 20 are refused.
A small synthetic llama (F32 weights and KV cache); --ignore-eos so that
both decoders run to the token limit. Exit 77 only without the binary."""
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fresh import GANTRY, TMP, fresh_logits, gantry  # noqa: E402

MODEL = os.path.join(TMP, "penalty_llama.gguf")
PROMPT = [5, 6, 7, 5, 6, 7, 5, 6, 7, 5]
N = 10
LAST_N = 64  # GT_PENALTY_LAST_N
REP, PRES, FREQ = np.float32(1.8), np.float32(0.6), np.float32(0.4)
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def last_logits(tokens):
    """The float32 logits of the last position of a fresh evaluation."""
    return fresh_logits(MODEL, tokens, "penalty_logits.f32")[-1]


def penalised(logits, ctx):
    """llama.cpp's penalties on the last LAST_N tokens of ctx, in float32."""
    l = logits.copy()
    recent = ctx[-LAST_N:]
    for t in dict.fromkeys(recent):  # each distinct token once
        x = l[t]
        x = x / REP if x > 0 else x * REP
        l[t] = np.float32(x - np.float32(recent.count(t)) * FREQ - PRES)
    return l


def reference(penalties):
    ctx, out = list(PROMPT), []
    for _ in range(N):
        lg = last_logits(ctx)
        if penalties:
            lg = penalised(lg, ctx)
        t = int(np.argmax(lg))
        out.append(t)
        ctx.append(t)
    return out


def run(extra):
    return gantry(["run", "-m", MODEL, "--tokens", ",".join(map(str, PROMPT)), "-n", str(N), "--kv-type", "f32",
                   "--print-ids", "--ignore-eos", *extra])


def main():
    if not os.path.exists(GANTRY):
        print("skip: no gantry binary")
        return 77
    gantry(["synth", "-o", MODEL, "--arch", "llama", "--layers", "2", "--hidden", "64", "--heads", "4",
            "--kv-heads", "2", "--ffn", "128", "--type", "f32", "--seed", "6"])
    pen_flags = ["--repeat-penalty", str(REP), "--presence-penalty", str(PRES), "--frequency-penalty", str(FREQ)]
    plain = [int(x) for x in run([]).stdout.split()]
    pen = [int(x) for x in run(pen_flags).stdout.split()]
    ref_plain, ref_pen = reference(False), reference(True)
    check(plain == ref_plain, f"greedy {plain} equals the reference decoder's {ref_plain}")
    check(pen == ref_pen, f"with penalties {pen} equals the reference decoder's {ref_pen}")
    check(pen != plain, f"the penalties change the output here ({pen} vs {plain}), so the check can fail")

    # --logprobs 3, with the penalties on: the model's own distribution.
    p = run(pen_flags + ["--logprobs", "3"])
    toks = [int(x) for x in p.stdout.split()]
    rows = re.findall(r"^logprob (\d+): (\d+) (-?[\d.]+) \|((?: \d+ -?[\d.]+)*)$", p.stderr, re.M)
    check(toks == pen and len(rows) == N, f"--logprobs 3: the same tokens, {len(rows)} lines for {N} tokens")
    worst = 0.0
    order_ok = True
    ctx = list(PROMPT)
    for (i, tok, lp, rest), t in zip(rows, toks):
        lg = last_logits(ctx).astype(np.float64)
        ls = lg - lg.max() - np.log(np.exp(lg - lg.max()).sum())
        top = rest.split()
        ids, vals = [int(x) for x in top[0::2]], [float(x) for x in top[1::2]]
        want = list(np.argsort(-ls, kind="stable")[:3])
        order_ok = order_ok and int(tok) == t and ids == want and len(ids) == 3
        worst = max(worst, abs(float(lp) - ls[t]), *(abs(v - ls[j]) for j, v in zip(ids, vals)))
        ctx.append(t)
    check(order_ok, "--logprobs 3: each line names the drawn token and the three most likely, best first")
    check(worst < 1e-4, f"--logprobs 3: log-probabilities within 1e-4 of the fresh log-softmax (worst {worst:.2e})")

    for args, what in ((["--repeat-penalty", "1.2", "--beams", "2"], "--beams"),
                       (["--logprobs", "21"], "--logprobs")):
        q = subprocess.run([GANTRY, "run", "-m", MODEL, "--tokens", "5,6", "-n", "2", *args],
                           capture_output=True, text=True, timeout=60)
        check(q.returncode != 0 and what in q.stderr and len(q.stderr.strip().splitlines()) == 1,
              f"{' '.join(args)} is refused in one sentence: {q.stderr.strip()}")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
