#!/usr/bin/env python3
"""Speculative decoding through `gantry run` and `gantry bench`.

Greedy speculation must print the plain decode's token ids, whatever the
proposer and the draft length: prompt lookup (--lookup 3, --draft-tokens 1,
3, 8; and 8 cut to 2 by --ubatch 3, with the prompt in chunks of 3), a draft
model of the same vocabulary (a different random model, --draft-tokens 3)
and the target's first layers (--self-draft 2). A draft
with another vocabulary is refused with a sentence naming both sizes.
`gantry bench --lookup` finishes with outputs equal to plain decode. With
SmolLM2 (when fetched), prompt lookup on a prompt that asks to copy a text
keeps more than half of its guesses and still prints the plain tokens."""
import os
import re
import subprocess
import sys
import tempfile

GANTRY = os.environ.get("GANTRY_BIN", "")
TMP = os.environ.get("GANTRY_TEST_TMP", tempfile.gettempdir())
SRC = os.environ.get("GANTRY_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS_DIR = os.environ.get("GANTRY_MODELS") or os.path.join(os.path.expanduser("~"), ".cache", "gantry", "models")
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def synth(name, *args):
    path = os.path.join(TMP, name)
    p = run([GANTRY, "synth", "-o", path, "--arch", "llama", "--vocab", "512", *args])
    if p.returncode != 0:
        sys.exit(f"synth failed: {p.stderr}")
    return path


def accepted(stderr):
    m = re.search(r"(\d+) of (\d+) drafted tokens accepted", stderr)
    return (int(m.group(1)), int(m.group(2))) if m else None


def main():
    if not GANTRY or not os.path.exists(GANTRY):
        print("gantry binary not found (GANTRY_BIN); skipping")
        sys.exit(77)
    target = synth("spec_e2e_target.gguf", "--layers", "4", "--hidden", "128", "--heads", "4", "--kv-heads", "2",
                   "--ffn", "256", "--seed", "3")
    draft = synth("spec_e2e_draft.gguf", "--layers", "1", "--hidden", "64", "--heads", "2", "--kv-heads", "1",
                  "--ffn", "128", "--seed", "4")
    other = os.path.join(TMP, "spec_e2e_other.gguf")
    run([GANTRY, "synth", "-o", other, "--arch", "llama", "--vocab", "300", "--layers", "1"])
    prompts = ["200,201,202,203,200,201", "7,7,7,7", "450,3,99,12,450,3"]
    for prompt in prompts:
        base = [GANTRY, "run", "-m", target, "--tokens", prompt, "-n", "24", "--print-ids", "--threads", "2"]
        plain = run(base)
        if plain.returncode != 0:
            sys.exit(f"plain run failed: {plain.stderr}")
        for extra in (["--lookup", "3", "--draft-tokens", "1"], ["--lookup", "3", "--draft-tokens", "3"],
                      ["--lookup", "3", "--draft-tokens", "8"], ["--draft", draft, "--draft-tokens", "3"],
                      ["--self-draft", "2", "--draft-tokens", "3"],
                      ["--ubatch", "3", "--lookup", "3", "--draft-tokens", "8"]):
            if extra[0] != "--lookup" and prompt != prompts[0]:
                continue  # the model proposers once; lookup on every prompt
            p = run(base + extra)
            check(p.returncode == 0 and p.stdout == plain.stdout and accepted(p.stderr) is not None,
                  f"prompt {prompt} {' '.join(extra[::2])} {extra[-1]}: ids equal plain decode "
                  f"({accepted(p.stderr)} accepted/drafted)")
    p = run([GANTRY, "run", "-m", target, "--tokens", "1,2,3", "-n", "4", "--draft", other])
    check(p.returncode != 0 and "vocabulary of 300 tokens, the target's has 512" in p.stderr,
          f"a draft of another vocabulary is refused: {p.stderr.strip()}")
    p = run([GANTRY, "bench", "-m", target, "--prompt", "16", "--gen", "12", "--rounds", "1", "--lookup", "2",
             "--threads", "2"])
    check(p.returncode == 0 and "outputs equal to plain decode" in p.stdout and "speed-up" in p.stdout,
          f"bench --lookup compares with plain decode: {p.stdout.strip().splitlines()[-1:]} {p.stderr.strip()}")

    smol = os.path.join(MODELS_DIR, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.isfile(smol):
        print(f"skip: {smol} not fetched (scripts/fetch-models.sh); the real-model part is left out")
    else:
        base = [GANTRY, "run", "-m", smol, "-f", os.path.join(SRC, "bench", "spec_prompt.txt"), "--chat", "-n", "24",
                "--print-ids", "--threads", "2"]
        plain = run(base)
        p = run(base + ["--lookup", "3", "--draft-tokens", "4"])
        acc = accepted(p.stderr)
        check(p.returncode == 0 and p.stdout == plain.stdout, "SmolLM2 copying a text: ids equal plain decode")
        check(acc is not None and acc[1] > 0 and acc[0] > acc[1] // 2,
              f"SmolLM2 copying a text: prompt lookup keeps more than half of its guesses ({acc})")
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)


if __name__ == "__main__":
    main()
