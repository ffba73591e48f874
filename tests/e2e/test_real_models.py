#!/usr/bin/python3
"""End to end on the two real checkpoints that scripts/fetch-models.sh fetches.

For SmolLM2-135M-Instruct (llama, Q4_1) and Gemma 3 270M (gemma3, Q4_K_M):
  a. Reference agreement: a fixed English text is tokenized by
     `gantry tokenize --ids --add-special`; its first 64 tokens are evaluated by
     `gantry run --logits-out` with the default (AVX-512, 8-bit activations)
     kernels and with `--isa ref` (dequantize + fp32 dot), and by the numpy
     reference (tests/reference/) in float64 — exact, and with Gantry's two
     deliberate roundings emulated (Q8 activations and f16 KV cache, or the
     f16 KV cache alone for --isa ref). Each pair must agree within its bound
     (BOUNDS, derived in docs/reference.md) and on the top-1 token at every
     position except genuine near-ties (the reference's top-2 gap below twice
     the pair's max-abs bound). The emulated pairs have bounds 10-40x tighter
     than the exact ones: that is what shows the default path's error is the
     8-bit activation rounding and nothing else.
  b. Greedy generation of GEN_N tokens for a fixed prompt (`run -p`) gives
     identical ids across two runs and across --threads 1 and 2, and its first
     GEN_PIN tokens equal the reference's greedy continuation with the
     roundings emulated (the engine's default path). The exact reference's
     continuation is printed beside it.
  c. `gantry perplexity -f tests/data/public_domain.txt --ctx 512` lands in a
     plausible band per model (PPL_BAND, justified in docs/reference.md).
A table of all numbers is printed. Exits 77 when the gantry binary or a model
file is missing (CI runs scripts/fetch-models.sh first).

The reference keeps the output head in float32 (Model(head_dtype=np.float32)):
the dequantized weights are exact in float32, so only the head's accumulation
differs from float64 (relative ~1e-7), and Gemma's 262k x 640 head stays at
0.7 GB instead of 1.3 GB.
"""
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
from model import Model  # noqa: E402

GANTRY = os.environ.get("GANTRY_BIN") or os.path.join(SRC, "build", "tools", "gantry")
TMP = os.environ.get("GANTRY_TEST_TMP") or "/tmp"
MODELS_DIR = os.environ.get("GANTRY_MODELS") or os.path.join(os.path.expanduser("~"), ".cache",
                                                              "gantry", "models")
FETCH = "scripts/fetch-models.sh"
TEXT_FILE = os.path.join(SRC, "tests", "data", "public_domain.txt")

# name, file, perplexity band at --ctx 512 over tests/data/public_domain.txt.
MODELS = [
    ("SmolLM2-135M", "SmolLM2-135M-Instruct.Q4_1.gguf", (15.0, 40.0)),
    ("Gemma-3-270M", "gemma-3-270m-q4_k_m.gguf", (6.0, 25.0)),
]

N_PROMPT = 64
PROMPT_TEXT = (
    "The old lighthouse keeper climbed the narrow stairs every evening at dusk, lighting the "
    "great lamp so that ships passing through the treacherous strait would find their way "
    "safely home. One stormy night in late November, he noticed a small boat struggling "
    "against the waves near the rocks below, and he hurried down to the shore with a lantern "
    "and a coil of rope.")
GEN_PROMPT = "The capital of France is Paris. The capital of Germany is"
GEN_N = 16     # tokens generated for the determinism checks
GEN_PIN = 8    # of which the first GEN_PIN are pinned against the reference

# (max abs, rms) bounds on the logits per comparison; see docs/reference.md ("Real checkpoints").
# Logits have sd ~3 (SmolLM2) and ~5.4 (Gemma), |max| ~20-30.
BOUNDS = {
    # default kernels vs the exact reference: Q8 activations (emulated max 0.86 / 0.74).
    "default/exact": (2.5, 0.4),
    # default kernels vs the reference with Q8 activations + f16 KV emulated.
    "default/emulated": (0.1, 0.01),
    # --isa ref vs the exact reference: f16 KV cache only (emulated max 0.012 / 0.007).
    "ref/exact": (0.05, 0.005),
    # --isa ref vs the reference with the f16 KV cache emulated: fp32 vs fp64 only.
    "ref/emulated": (0.01, 0.001),
}

failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def run(cmd, timeout=300):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}")
    return p.stdout


def tokenize(path, text):
    f = os.path.join(TMP, "real_models_prompt.txt")
    with open(f, "w", encoding="utf-8") as fh:
        fh.write(text)
    return [int(t) for t in run([GANTRY, "tokenize", "-m", path, "--file", f, "--ids",
                                 "--add-special"]).split()]


def gantry_logits(path, tokens, n_vocab, extra):
    out = os.path.join(TMP, "real_models_logits.bin")
    if os.path.exists(out):
        os.unlink(out)
    run([GANTRY, "run", "-m", path, "--tokens", ",".join(map(str, tokens)), "-n", "0",
         "--logits-out", out] + list(extra))
    x = np.fromfile(out, dtype=np.float32)
    if x.size != len(tokens) * n_vocab:
        raise RuntimeError(f"{out}: {x.size} floats, expected {len(tokens)} x {n_vocab}")
    return x.reshape(len(tokens), n_vocab).astype(np.float64)


def compare(label, got, want, bound):
    """Checks the bounds and the top-1 token; returns a table row."""
    max_b, rms_b = bound
    diff = np.abs(got - want)
    i = np.unravel_index(np.argmax(diff), diff.shape)
    m, rms = float(diff[i]), float(np.sqrt(np.mean(diff ** 2)))
    if not np.all(np.isfinite(got)):
        fail(f"{label}: gantry logits contain nan/inf")
    if m > max_b:
        fail(f"{label}: max |diff| {m:.4f} > {max_b} at position {i[0]}, token {i[1]} "
             f"(gantry {got[i]:.4f}, reference {want[i]:.4f})")
    if rms > rms_b:
        fail(f"{label}: rms diff {rms:.5f} > {rms_b}")
    ga, ra = np.argmax(got, axis=-1), np.argmax(want, axis=-1)
    top2 = np.sort(want, axis=-1)[:, -2:]
    ties, worst_gap = 0, 0.0
    for t in np.nonzero(ga != ra)[0]:
        gap = float(want[t, ra[t]] - want[t, ga[t]])
        worst_gap = max(worst_gap, gap)
        if gap < 2 * max_b:
            ties += 1
        else:
            fail(f"{label}: position {t}: gantry's top-1 is {ga[t]}, the reference's {ra[t]} "
                 f"(reference gap {gap:.4f} >= {2 * max_b}: not a near-tie)")
    min_gap = float(np.min(top2[:, 1] - top2[:, 0]))
    return (label, m, max_b, rms, rms_b, int(np.sum(ga != ra)), ties, worst_gap, min_gap)


def reference_greedy(model, prompt, n):
    toks = list(prompt)
    for _ in range(n):
        toks.append(int(np.argmax(model.forward(toks)[-1])))
    return toks[len(prompt):]


def check_model(name, fname, band, rows, notes):
    path = os.path.join(MODELS_DIR, fname)
    t0 = time.time()

    # a. Reference agreement over 64 tokens of English text.
    toks = tokenize(path, PROMPT_TEXT)
    if len(toks) < N_PROMPT:
        fail(f"{name}: the prompt text gives {len(toks)} tokens, fewer than {N_PROMPT}")
        return
    toks = toks[:N_PROMPT]
    ref = Model(path, head_dtype=np.float32)
    exact = ref.forward(toks)
    n_vocab = exact.shape[1]
    ref.kv_f16 = True
    emu_kv = ref.forward(toks)
    ref.act_q8 = True
    emu_q8 = ref.forward(toks)
    ref.act_q8 = ref.kv_f16 = False
    t_ref = time.time() - t0
    dflt = gantry_logits(path, toks, n_vocab, ["-t", "2"])
    scal = gantry_logits(path, toks, n_vocab, ["-t", "2", "--isa", "ref"])
    for label, got, want in (("default/exact", dflt, exact), ("default/emulated", dflt, emu_q8),
                             ("ref/exact", scal, exact), ("ref/emulated", scal, emu_kv)):
        rows.append((name,) + compare(f"{name} {label}", got, want, BOUNDS[label]))
    # The emulation alone moves the exact reference by about what the engine does.
    notes.append(f"{name}: emulated Q8+f16KV vs exact reference: max {np.abs(emu_q8 - exact).max():.4f}"
                 f" rms {np.sqrt(np.mean((emu_q8 - exact) ** 2)):.4f}; f16 KV alone: max "
                 f"{np.abs(emu_kv - exact).max():.5f}; logit sd {exact.std():.2f}, "
                 f"max |logit| {np.abs(exact).max():.1f}")

    # b. Greedy generation: deterministic, thread-count independent, pinned to the reference.
    gen = []
    for nt in ("2", "2", "1"):
        gen.append([int(t) for t in run([GANTRY, "run", "-m", path, "-p", GEN_PROMPT, "-n",
                                         str(GEN_N), "--print-ids", "--ignore-eos", "-t", nt]).split()])
    if len(gen[0]) != GEN_N:
        fail(f"{name}: generated {len(gen[0])} ids, expected {GEN_N}: {gen[0]}")
    if gen[0] != gen[1]:
        fail(f"{name}: two greedy runs with 2 threads differ: {gen[0]} vs {gen[1]}")
    if gen[0] != gen[2]:
        fail(f"{name}: greedy ids with 1 thread {gen[2]} differ from 2 threads {gen[0]}")
    prompt = tokenize(path, GEN_PROMPT)
    ref.act_q8 = ref.kv_f16 = True
    want = reference_greedy(ref, prompt, GEN_PIN)
    ref.act_q8 = ref.kv_f16 = False
    want_exact = reference_greedy(ref, prompt, GEN_PIN)
    notes.append(f"{name}: greedy after {len(prompt)} prompt tokens: gantry {gen[0][:GEN_PIN]} "
                 f"(+{gen[0][GEN_PIN:]}), reference emulated {want}, exact {want_exact}")
    if gen[0][:GEN_PIN] != want:
        fail(f"{name}: greedy ids {gen[0][:GEN_PIN]} differ from the reference's (roundings "
             f"emulated) {want}")

    # c. Perplexity in a plausible band.
    out = run([GANTRY, "perplexity", "-m", path, "-f", TEXT_FILE, "--ctx", "512", "-t", "2"])
    line = [ln for ln in out.splitlines() if ln.startswith("perplexity:")]
    if not line:
        fail(f"{name}: no 'perplexity:' line in:\n{out[-1000:]}")
    else:
        ppl = float(line[-1].split()[1])
        ok = band[0] <= ppl <= band[1]
        notes.append(f"{name}: {line[-1]}  (band {band[0]}..{band[1]}{'' if ok else ': OUT'})")
        if not ok:
            fail(f"{name}: perplexity {ppl:.3f} outside the plausible band {band[0]}..{band[1]}")
    notes.append(f"{name}: {time.time() - t0:.1f} s ({t_ref:.1f} s in the numpy reference)")


def main():
    if not os.access(GANTRY, os.X_OK):
        print(f"skip: no gantry binary at {GANTRY}")
        return 77
    missing = [f for _, f, _ in MODELS if not os.path.isfile(os.path.join(MODELS_DIR, f))]
    if missing:
        print(f"skip: model file(s) {', '.join(missing)} not in {MODELS_DIR}; fetch them with "
              f"`{FETCH}` (set GANTRY_MODELS to use another folder)")
        return 77
    t_start = time.time()
    rows, notes = [], []
    for name, fname, band in MODELS:
        try:
            check_model(name, fname, band, rows, notes)
        except Exception as e:  # one model's breakage must not hide the other's results
            fail(f"{name}: {type(e).__name__}: {e}")

    print(f"\n{'comparison':32s} {'max|diff|':>9s} {'bound':>6s} {'rms':>8s} {'bound':>6s} "
          f"{'top1!=':>6s} {'ties':>4s} {'tie gap':>7s} {'min top2 gap':>12s}")
    for name, label, m, mb, rms, rb, nd, ties, wg, mg in rows:
        print(f"{label:32s} {m:9.4f} {mb:6.3f} {rms:8.5f} {rb:6.3f} {nd:6d} {ties:4d} {wg:7.4f} "
              f"{mg:12.5f}")
    print()
    for n in notes:
        print(n)
    print(f"\n{len(failures)} failure(s) in {time.time() - t_start:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
