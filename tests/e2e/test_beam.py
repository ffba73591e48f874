#!/usr/bin/python3
"""`gantry run --beams W` against a beam search written here over logits
that a fresh `gantry run --logits-out` computes for every prefix (no KV
cache shared between beams, so a wrong fork of the cache shows):

- --beams 1 equals greedy decoding;
- --beams 3 and 4 (length penalty 1 and 0) return the same tokens as the
  independent search, and the score they print equals sum(log p) / len^A
  recomputed from one fresh evaluation of prompt + output;
- the check can fail: the greedy output's recomputed score is lower than the
  beam's here, so a search that returned greedy would be caught;
- --n-best W prints the W final beams of the independent search, ranked
  (the first line the winner as without it), with their scores, and
  --n-best above --beams is refused.
A small synthetic llama (F32 weights and KV cache); --ignore-eos so that
both searches run to the token limit. Exit 77 only without the binary."""
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fresh import GANTRY, TMP, fresh_logits, gantry  # noqa: E402

MODEL = os.path.join(TMP, "beam_llama.gguf")
PROMPT = [5, 6, 7, 8, 9]
N = 7
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def logprobs(tokens):
    """log-softmax of every position's logits for the sequence tokens."""
    lg = fresh_logits(MODEL, tokens, "beam_logits.f32").astype(np.float64)
    m = lg.max(axis=1, keepdims=True)
    return lg - m - np.log(np.exp(lg - m).sum(axis=1, keepdims=True))


def score(seq, a):
    lp = logprobs(PROMPT + seq)
    total = sum(lp[len(PROMPT) - 1 + i, t] for i, t in enumerate(seq))
    return total / len(seq) ** a


def reference_beam(w, a, ranked=False):
    beams = [([], 0.0)]
    for step in range(N):
        ext = []
        for toks, s in beams:
            lp = logprobs(PROMPT + toks)[-1]
            best = np.argsort(-lp, kind="stable")[:2 * w]
            ext += [(s + lp[t], toks + [int(t)]) for t in best]
        ext.sort(key=lambda e: -e[0])
        beams = [(t, s) for s, t in ext[:w]]
    if ranked:  # every final beam has N tokens: the penalty keeps the order
        return sorted(beams, key=lambda b: -b[1])
    return max(beams, key=lambda b: b[1] / len(b[0]) ** a)


def run_beam(w, a):
    p = gantry(["run", "-m", MODEL, "--tokens", ",".join(map(str, PROMPT)), "-n", str(N), "--kv-type", "f32",
                "--print-ids", "--ignore-eos", "--beams", str(w), "--length-penalty", str(a)])
    toks = [int(x) for x in p.stdout.split()]
    sc = float(re.search(r"score (-?[\d.]+)", p.stderr).group(1))
    return toks, sc


def main():
    if not os.path.exists(GANTRY):
        print("skip: no gantry binary")
        return 77
    gantry(["synth", "-o", MODEL, "--arch", "llama", "--layers", "2", "--hidden", "64", "--heads", "4",
            "--kv-heads", "2", "--ffn", "128", "--type", "f32", "--seed", "5"])
    greedy = [int(x) for x in gantry(["run", "-m", MODEL, "--tokens", ",".join(map(str, PROMPT)), "-n", str(N),
                                      "--kv-type", "f32", "--print-ids", "--ignore-eos"]).stdout.split()]
    b1, _ = run_beam(1, 1.0)
    check(b1 == greedy, f"--beams 1 equals greedy: {b1} vs {greedy}")
    for w, a in ((3, 1.0), (4, 0.0)):
        toks, sc = run_beam(w, a)
        ref_toks, _ = reference_beam(w, a)
        fresh = score(toks, a)
        if toks != ref_toks:  # a near-tie may pick another path of (almost) the same score
            check(abs(fresh - score(ref_toks, a)) < 1e-4, f"--beams {w}: {toks} differs from the reference "
                  f"{ref_toks} only by a near-tie")
        else:
            check(True, f"--beams {w} --length-penalty {a}: {toks} equals the independent search")
        check(abs(fresh - sc) < 1e-3, f"--beams {w}: printed score {sc:.6f} equals the recomputed {fresh:.6f}")
        g = score(greedy, a)
        check(fresh > g + 1e-6, f"--beams {w}: the beam's score {fresh:.4f} beats greedy's {g:.4f} (the "
              "check can tell them apart)")
    # --n-best: the final beams, ranked, one per line.
    w, a = 3, 1.0
    p = gantry(["run", "-m", MODEL, "--tokens", ",".join(map(str, PROMPT)), "-n", str(N), "--kv-type", "f32",
                "--print-ids", "--ignore-eos", "--beams", str(w), "--length-penalty", str(a), "--n-best", str(w)])
    lines = [[int(x) for x in ln.split()] for ln in p.stdout.strip().split("\n")]
    scores = [float(x) for x in re.findall(r"score (-?[\d.]+)", p.stderr)]
    ranked = reference_beam(w, a, ranked=True)
    check(len(lines) == w and lines[0] == run_beam(w, a)[0],
          f"--n-best {w}: {len(lines)} lines, the first the winner {lines[0]}")
    for i, (toks, (rt, rs)) in enumerate(zip(lines, ranked)):
        want = rs / N ** a
        ok = toks == rt or abs(score(toks, a) - want) < 1e-4  # a near-tie may swap paths of equal score
        check(ok and i < len(scores) and abs(scores[i] - want) < 1e-3,
              f"--n-best {w}: hypothesis {i + 1} {toks} (score {scores[i] if i < len(scores) else None}) is the "
              f"independent search's {rt} ({want:.6f})")
    q = subprocess.run([GANTRY, "run", "-m", MODEL, "--tokens", "5,6", "-n", "2", "--beams", "2", "--n-best", "3"],
                       capture_output=True, text=True, timeout=60)
    check(q.returncode != 0 and "--n-best 3" in q.stderr, f"--n-best 3 with --beams 2 is refused: {q.stderr.strip()}")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
