#!/usr/bin/python3
"""bench/eval_speed.py: the accuracy table's decode column.

A stand-in for `gantry bench` (a small script written here) answers each
call with a speed that is the file's own speed times the machine's "load"
of that round (a different factor every round, known to the test), and logs
the order of the calls. Checks, against those known numbers:
- every round benches every file once, the base included once even when the
  row list repeats it, and the first file of the round rotates;
- each row's per-round ratio to the base is exactly its own speed over the
  base's (the load of the round cancels), and decode_tps holds the speeds
  the stand-in gave, round by round;
- entries of another group already in the output file are kept;
- a bench that fails stops the script with one sentence naming the file;
  --rounds 0 is refused in one sentence.
Needs no gantry build (nothing here is skipped)."""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("GANTRY_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(SRC, "bench", "eval_speed.py")
failures = []

FAKE = r'''#!/usr/bin/python3
import json, os, sys
a = sys.argv[1:]
model = a[a.index("-m") + 1]
out = a[a.index("--json") + 1]
state = os.environ["FAKE_STATE"]
log = open(state).read().split() if os.path.exists(state) else []
n = len(log)
with open(state, "a") as f:
    f.write(os.path.basename(model) + "\n")
if "broken" in model:
    sys.stderr.write("cannot read " + model + "\n")
    sys.exit(3)
speed = json.loads(os.environ["FAKE_SPEEDS"])[os.path.basename(model)]
load = [1.0, 0.5, 0.8, 0.25][(n // int(os.environ["FAKE_FILES"])) % 4]
json.dump({"decode_tps": {"median": speed * load, "best": speed * load}}, open(out, "w"))
'''


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def main():
    with tempfile.TemporaryDirectory(dir=os.environ.get("GANTRY_TEST_TMP")) as tmp:
        fake = os.path.join(tmp, "gantry")
        with open(fake, "w") as f:
            f.write(FAKE)
        os.chmod(fake, 0o755)
        speeds = {"base.gguf": 10.0, "q8.gguf": 17.0, "q4.gguf": 25.0}
        rows = []
        for m in speeds:
            r = os.path.join(tmp, "row-" + m.replace(".gguf", ".json"))
            with open(r, "w") as f:
                json.dump({"model": os.path.join(tmp, m)}, f)
            rows.append(r)
        out = os.path.join(tmp, "speed.json")
        with open(out, "w") as f:
            json.dump({"other-row.json": {"decode_tps": [1.0]}}, f)
        state = os.path.join(tmp, "calls")
        env = dict(os.environ, FAKE_STATE=state, FAKE_SPEEDS=json.dumps(speeds), FAKE_FILES="3")
        rounds = 4
        # The base first, then a glob's list that repeats it.
        p = subprocess.run([sys.executable, SCRIPT, "--gantry", fake, "--rounds", str(rounds),
                            "--out", out, rows[0]] + rows, env=env, capture_output=True, text=True)
        check(p.returncode == 0, f"eval_speed.py runs (exit {p.returncode}: {p.stderr.strip()[-200:]})")
        calls = open(state).read().split()
        check(len(calls) == 3 * rounds, f"{len(calls)} bench calls for 3 files x {rounds} rounds")
        per_round = [calls[3 * r:3 * r + 3] for r in range(rounds)]
        check(all(sorted(c) == sorted(speeds) for c in per_round),
              "every round benches every file once (the repeated base once)")
        firsts = [c[0] for c in per_round]
        check(firsts[:3] == ["base.gguf", "q8.gguf", "q4.gguf"], f"the first file rotates: {firsts}")
        res = json.load(open(out))
        check("other-row.json" in res, "another group's entry is kept")
        loads = [1.0, 0.5, 0.8, 0.25]
        for r, m in zip(rows, speeds):
            e = res.get(os.path.basename(r), {})
            want_tps = [speeds[m] * ld for ld in loads]
            check(e.get("decode_tps") == want_tps, f"{m}: speeds per round {e.get('decode_tps')} == {want_tps}")
            ratio = speeds[m] / speeds["base.gguf"]
            vs = e.get("vs_base", [])
            check(len(vs) == rounds and all(abs(v - ratio) < 1e-12 for v in vs),
                  f"{m}: the ratio to the base in every round is {ratio} ({vs})")
            check(e.get("threads") == 2 and e.get("rounds") == rounds, f"{m}: threads and rounds recorded")

        broken = os.path.join(tmp, "row-broken.json")
        with open(broken, "w") as f:
            json.dump({"model": os.path.join(tmp, "broken.gguf")}, f)
        os.remove(state)
        p = subprocess.run([sys.executable, SCRIPT, "--gantry", fake, "--rounds", "1", "--out", out,
                            rows[0], broken], env=env, capture_output=True, text=True)
        msg = p.stderr.strip()
        check(p.returncode != 0 and "broken.gguf" in msg and "cannot read" in msg and len(msg.splitlines()) == 1,
              f"a failing bench stops it in one sentence naming the file: {msg!r}")
        p = subprocess.run([sys.executable, SCRIPT, "--gantry", fake, "--rounds", "0", "--out", out, rows[0]],
                           env=env, capture_output=True, text=True)
        check(p.returncode != 0 and "--rounds must be at least 1, not 0" in p.stderr,
              f"--rounds 0 is refused: {p.stderr.strip()[-120:]!r}")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
