#!/usr/bin/python3
"""End-to-end: `gantry tokenize --ids` reproduces the published vectors.

Runs the gantry binary on every case of every vocabulary in shared/vocab/
that has a .gguf beside its .inp/.out (at least GPT-2 and LLaMA-SPM), one
process per case with the text passed through --file so that newlines and
leading/trailing spaces arrive unchanged; checks the default `id<TAB>'piece'`
output, --add-special and bad usage. Exits 77 (skip) when GANTRY_BIN does not
exist yet.
"""
import os
import subprocess
import sys
import tempfile

SEP = "\n__ggml_vocab_test__\n"


def main():
    gantry = os.environ.get("GANTRY_BIN", "")
    if not gantry or not os.path.exists(gantry):
        print("GANTRY_BIN not built; skipping")
        return 77
    shared = os.environ.get("GANTRY_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../data"))
    vocab_dir = os.path.join(shared, "vocab")
    tmp = os.environ.get("GANTRY_TEST_TMP") or tempfile.gettempdir()

    names = ["gpt-2", "llama-spm", "phi-3", "mpt", "deepseek-coder", "llama-bpe", "qwen2"]
    checked = 0
    failures = 0
    for name in names:
        base = os.path.join(vocab_dir, "ggml-vocab-%s.gguf" % name)
        if not (os.path.exists(base) and os.path.exists(base + ".inp")):
            print("%s: no vocabulary file, skipped" % name)
            continue
        with open(base + ".inp", "rb") as f:
            cases = f.read().decode("utf-8").split(SEP)[:-1]
        with open(base + ".out", "r", encoding="utf-8") as f:
            outs = f.read().split("\n")
        n_bad = 0
        for i, text in enumerate(cases):
            want = [int(x) for x in outs[i].split()]
            path = os.path.join(tmp, "tokenize_cli_case.txt")
            with open(path, "wb") as f:
                f.write(text.encode("utf-8"))
            r = subprocess.run([gantry, "tokenize", "-m", base, "--file", path, "--ids"],
                               capture_output=True, timeout=60)
            got = [int(x) for x in r.stdout.decode().split()] if r.returncode == 0 else None
            if got != want:
                if n_bad == 0:
                    print("%s: case %d %r differs (rc %d)\n  want %s\n  got  %s\n  stderr %s"
                          % (name, i, text, r.returncode, want, got, r.stderr.decode()))
                n_bad += 1
        print("%s: %d cases, %d differ" % (name, len(cases), n_bad))
        failures += n_bad
        checked += 1
    if checked < 2:
        print("fewer than two vocabularies available")
        return 1

    gpt2 = os.path.join(vocab_dir, "ggml-vocab-gpt-2.gguf")
    spm = os.path.join(vocab_dir, "ggml-vocab-llama-spm.gguf")
    # Default output: one `id<TAB>'piece'` line per token.
    r = subprocess.run([gantry, "tokenize", "-m", gpt2, "Hello world\n"], capture_output=True)
    lines = r.stdout.decode().splitlines()
    if r.returncode != 0 or lines != ["15496\t'Hello'", "995\t' world'", "198\t'\\n'"]:
        print("default output wrong: rc %d %r" % (r.returncode, lines))
        failures += 1
    # --add-special adds LLaMA's BOS; GPT-2 adds none.
    r = subprocess.run([gantry, "tokenize", "-m", spm, "--ids", "--add-special", "Hello world"],
                       capture_output=True)
    if r.stdout.decode().split() != ["1", "15043", "3186"]:
        print("--add-special wrong: %r" % r.stdout)
        failures += 1
    # Bad usage exits 2 with one sentence; a missing file exits 1.
    r = subprocess.run([gantry, "tokenize", "Hello"], capture_output=True)
    if r.returncode != 2 or b"-m FILE" not in r.stderr:
        print("missing -m: rc %d %r" % (r.returncode, r.stderr))
        failures += 1
    r = subprocess.run([gantry, "tokenize", "-m", os.path.join(tmp, "no-such.gguf"), "x"],
                       capture_output=True)
    if r.returncode != 1:
        print("missing model file: rc %d" % r.returncode)
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
