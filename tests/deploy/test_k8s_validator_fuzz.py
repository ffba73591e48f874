#!/usr/bin/env python3
"""The manifest validator (k8s_validate.py) on mutated manifests: seeded
random mutations of the good deployments (a value replaced by one of
another type, a key deleted, a key added, a list emptied) must each give a
list of one-line error sentences naming a file, and never an exception.
Every unknown field added to an object (not to a free-form map such as
labels or data) must be reported with its name, so the run also shows
that every schema, the MPIJob's included, is strict everywhere.

  test_k8s_validator_fuzz.py [N] [SEED]   (default 120 mutations, seed 1)
"""
import copy
import glob
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_validate  # noqa: E402  (exits 77 without jsonschema or yaml)
import yaml  # noqa: E402

SRC = k8s_validate.SOURCE
K8S = os.path.join(SRC, "deploy", "k8s")
# Maps whose keys are free (string to string or to quantity).
FREE_MAPS = {"labels", "annotations", "data", "stringData", "selector", "matchLabels", "limits", "requests",
             "nodeSelector"}


def paths(node, prefix=()):
    """Every (path, value) in a document."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


def parent_of(doc, path):
    node = doc
    for p in path[:-1]:
        node = node[p]
    return node


def main(argv):
    n = int(argv[0]) if argv else 120
    seed = int(argv[1]) if len(argv) > 1 else 1
    rng = random.Random(seed)
    common = sorted(glob.glob(os.path.join(K8S, "*.yaml")))
    sets = [common + sorted(glob.glob(os.path.join(K8S, "mpijob", "*.yaml"))),
            common + sorted(glob.glob(os.path.join(K8S, "plain", "*.yaml")))
            + sorted(glob.glob(os.path.join(K8S, "secrets", "*.yaml")))]
    tmp = tempfile.mkdtemp(dir=os.environ.get("GANTRY_TEST_TMP"))
    crashes, silent, strict_adds = [], [], 0
    for i in range(n):
        files = rng.choice(sets)
        victim = rng.choice(files)
        with open(victim) as f:
            doc = yaml.safe_load(f)
        op = rng.choice(["type", "delete", "add", "add", "empty"])
        cands = [(p, v) for p, v in paths(doc) if p and (op != "add" or isinstance(v, dict))]
        path, old = rng.choice(cands)
        mutated = copy.deepcopy(doc)
        parent = parent_of(mutated, path)
        if op == "type":
            choices = [None, 7, "x", [1], {"k": "v"}, True, 2.5]
            new = rng.choice([c for c in choices if type(c) is not type(old)])
            parent[path[-1]] = new
        elif op == "delete":
            del parent[path[-1]]
        elif op == "add" and isinstance(old, dict):
            old_copy = parent[path[-1]]
            old_copy["fuzzUnknownField%d" % i] = "x"
        elif isinstance(old, (list, dict)):
            parent[path[-1]] = type(old)()
        else:
            parent[path[-1]] = None
        out = os.path.join(tmp, os.path.basename(victim))
        with open(out, "w") as f:
            yaml.safe_dump(mutated, f)
        what = "%s %s at %s" % (op, os.path.relpath(victim, SRC), ".".join(str(p) for p in path))
        try:
            errors = k8s_validate.validate([out if f == victim else f for f in files])
        except Exception as e:  # noqa: BLE001 -- any exception is the finding
            crashes.append("%s: %r" % (what, e))
            continue
        if not all(isinstance(e, str) and "\n" not in e and e.strip() for e in errors):
            crashes.append("%s: not one-line sentences: %r" % (what, errors))
        # An unknown field added to an object (not to a free-form map)
        # must be reported: every schema here is strict.
        if op == "add" and isinstance(old, dict) and path[-1] not in FREE_MAPS:
            strict_adds += 1
            if not any("fuzzUnknownField%d" % i in e for e in errors):
                silent.append(what + ": " + "; ".join(errors)[:300])
    print("%d mutations (seed %d): %d exceptions; %d unknown fields added to objects, %d of them unreported"
          % (n, seed, len(crashes), strict_adds, len(silent)))
    for c in crashes + silent:
        print("FAIL " + c)
    return 1 if crashes or silent else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
