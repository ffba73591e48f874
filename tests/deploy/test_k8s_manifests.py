#!/usr/bin/env python3
"""The Kubernetes manifests in deploy/k8s against the Kubernetes and MPI
Operator schemas (tests/data/k8s-schemas), offline (k8s_validate.py says
what is checked):

- every YAML file under deploy/ and the test data parses, read with
  PyYAML alone (no Gantry code), and the schemas are self-contained JSON
  (no $ref, so the Draft 4 validator needs no resolver);
- the two deployments validate without an error: the MPI Operator variant
  (deploy/k8s/*.yaml + mpijob/) and the plain one (deploy/k8s/*.yaml +
  plain/ + secrets/); every manifest belongs to one of them;
- every deliberately broken manifest in tests/data/k8s-broken fails, with
  the field its header names ("# expect:") in a message; a broken copy
  that "# replaces:" a good file is validated in that file's deployment.
"""
import glob
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_validate  # noqa: E402  (exits 77 without jsonschema or yaml)
import yaml  # noqa: E402

SRC = k8s_validate.SOURCE
K8S = os.path.join(SRC, "deploy", "k8s")
BROKEN = os.path.join(SRC, "tests", "data", "k8s-broken")
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def yaml_files(root):
    return sorted(glob.glob(os.path.join(root, "**", "*.yaml"), recursive=True)
                  + glob.glob(os.path.join(root, "**", "*.yml"), recursive=True))


def header(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith("# %s:" % key):
                return line.split(":", 1)[1].strip()
    return None


def main():
    # 1. Parsing, independent of the validator.
    for p in yaml_files(os.path.join(SRC, "deploy")) + yaml_files(BROKEN) + \
            yaml_files(os.path.join(SRC, "tests", "data", "k8s-schemas")):
        try:
            with open(p) as f:
                n = sum(1 for d in yaml.safe_load_all(f) if d is not None)
            parsed = True
        except yaml.YAMLError:
            parsed, n = False, 0
        should = os.path.basename(p) != "yaml-syntax.yaml"
        check(parsed == should and (n > 0 or not should),
              "%s %s (%d documents)" % (os.path.relpath(p, SRC), "parses" if should else "does not parse", n))
    for p in sorted(glob.glob(os.path.join(SRC, "tests", "data", "k8s-schemas", "*.json"))):
        with open(p) as f:
            text = f.read()
        json.loads(text)
        check("$ref" not in text, "%s is self-contained (no $ref)" % os.path.basename(p))

    # 2. The two deployments.
    common = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
    sets = {
        "mpijob": common + sorted(glob.glob(os.path.join(K8S, "mpijob", "*.yaml"))),
        "plain": common + sorted(glob.glob(os.path.join(K8S, "plain", "*.yaml")))
        + sorted(glob.glob(os.path.join(K8S, "secrets", "*.yaml"))),
    }
    # The command docs/deploy.md, "Kubernetes" gives, as a user runs it.
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "k8s_validate.py"),
                        *sets["mpijob"]], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.startswith("ok: 4 files"), "k8s_validate.py FILE... says %r"
          % r.stdout.strip())
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "k8s_validate.py"),
                        os.path.join(BROKEN, "mpijob-slots.yaml")], capture_output=True, text=True)
    check(r.returncode == 1 and "spec.slotsPerWorker" in r.stdout, "k8s_validate.py exits 1 on a broken file")
    covered = set(sets["mpijob"]) | set(sets["plain"])
    for p in yaml_files(K8S):
        check(p in covered, "%s is validated in a deployment" % os.path.relpath(p, SRC))
    for name, files in sets.items():
        errors = k8s_validate.validate(files)
        for e in errors:
            print("     " + e)
        check(not errors, "deployment '%s' (%d files) validates" % (name, len(files)))

    # 3. The broken manifests: the copies are the current good files with
    # one change each, then each fails naming its field.
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "make_k8s_broken.py"), "--check"], capture_output=True, text=True)
    check(r.returncode == 0, "the broken copies are current%s" % (": " + r.stdout.strip() if r.returncode else ""))
    broken = sorted(glob.glob(os.path.join(BROKEN, "*.yaml")))
    check(len(broken) >= 20, "%d broken manifests" % len(broken))
    for p in broken:
        expect, replaces = header(p, "expect"), header(p, "replaces")
        if not expect:
            check(False, "%s names the field it breaks (# expect:)" % os.path.basename(p))
            continue
        files = [p]
        if replaces:
            target = os.path.join(SRC, replaces)
            home = next((s for s in sets.values() if target in s), None)
            if home is None:
                check(False, "%s replaces %s, which no deployment holds" % (os.path.basename(p), replaces))
                continue
            files = [p if f == target else f for f in home]
        errors = k8s_validate.validate(files)
        hit = [e for e in errors if expect in e]
        check(bool(hit), "%s fails naming '%s'%s" % (
            os.path.basename(p), expect, ": " + hit[0] if hit else " (errors: %s)" % errors))
    if failures:
        print("%d failures" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
