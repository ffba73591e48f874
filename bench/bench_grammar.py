#!/usr/bin/python3
"""Grammar mask overhead per decode step: `gantry run` on SmolLM2 with a
JSON schema against the same run without one, alternating, in one session.

Reports, per configuration, the median decode time per token over the
rounds, and for the constrained runs the grammar's own time per token
(single-token checks plus full masks, from the run's `grammar:` line) and
how often the lazy check fell back to a full mask. The ratio that matters,
grammar time / decode step, is measured inside the same runs, so machine
load moves both sides alike.

Usage: bench/bench_grammar.py [GANTRY] [MODEL] [ROUNDS]"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GANTRY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(SRC, "build", "tools", "gantry")
MODEL = sys.argv[2] if len(sys.argv) > 2 else os.path.expanduser(
    "~/.cache/gantry/models/SmolLM2-135M-Instruct.Q4_1.gguf")
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string"}, "age": {"type": "integer"},
    "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                "required": ["street", "city"]},
    "hobbies": {"type": "array", "items": {"type": "string"}}},
    "required": ["name", "age", "address", "hobbies"]}
PROMPT = "Describe a person as JSON with name, age, address and hobbies."


def run(extra):
    p = subprocess.run([GANTRY, "run", "-m", MODEL, "--chat", "-p", PROMPT, "-n", "96", "--threads", "1",
                        "--temp", "0.7", "--seed", "1", *extra], capture_output=True, text=True, check=True)
    m = re.search(r"decode: (\d+) tokens in ([\d.]+) s", p.stderr)
    n, t = int(m.group(1)), float(m.group(2))
    g = re.search(r"grammar: (\d+) tokens drawn, (\d+) full masks; ([\d.]+) ms checking tokens, ([\d.]+) ms in masks",
                  p.stderr)
    out = {"ms_per_token": 1e3 * t / max(n - 1, 1), "tokens": n}
    if g:
        draws = int(g.group(1))
        masks = int(g.group(2))
        out.update(masks=masks, grammar_ms_per_token=(float(g.group(3)) + float(g.group(4))) / draws,
                   ms_per_mask=float(g.group(4)) / masks if masks else None)
    return out


def main():
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(SCHEMA, f)
    free, cons = [], []
    for _ in range(ROUNDS):
        free.append(run([]))
        cons.append(run(["--json-schema", f.name]))
    os.unlink(f.name)
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    step_free, step_cons = med(free, "ms_per_token"), med(cons, "ms_per_token")
    g = med(cons, "grammar_ms_per_token")
    masks = sum(x["masks"] for x in cons) / sum(x["tokens"] for x in cons)
    print(json.dumps({"rounds": ROUNDS, "decode_ms_per_token_unconstrained": round(step_free, 3),
                      "decode_ms_per_token_json_schema": round(step_cons, 3),
                      "grammar_ms_per_token": round(g, 3),
                      "grammar_share_of_constrained_step": round(g / step_cons, 4),
                      "full_mask_fraction": round(masks, 3),
                      "ms_per_full_mask": round(statistics.median(x["ms_per_mask"] for x in cons if x["ms_per_mask"]), 3),
                      "step_ratio_constrained_over_free": round(step_cons / step_free, 3)}, indent=1))


if __name__ == "__main__":
    main()
