#!/usr/bin/env python3
"""Checks the source files' dependency graph, read from the object files.

A file depends on another when its object file references a global symbol
the other's object file defines (`nm`). Two checks, on every object file of
the project's libraries and the gantry binary (not tests/ or bench/):

  1. no cycles: every strongly connected component of more than one file is
     printed with the symbols on each of its edges;
  2. layering: a file may reference symbols of its own folder and of the
     folders the "may use" column of shared/DESIGN.md allows (LAYERS below,
     taken transitively); anything else is printed.

Known violations are listed in an allowlist (tests/deps_allow.txt): they are
printed as warnings and do not fail. Exit status 1 on any other violation.

  scripts/check-deps.py BUILD_DIR [--allow FILE] [--source DIR]
  scripts/check-deps.py --self-test   (builds tiny object files with a cycle
                                       and a layering violation, and checks
                                       that both are found)
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

# The "may use" column of shared/DESIGN.md ("Folders"); taken transitively,
# so worker may also use transport and common. tools/ may use everything.
LAYERS = {
    "common": [],
    "model": ["common"],
    "kernels": ["common"],
    "transport": ["common"],
    "parallel": ["model", "kernels", "transport", "common"],
    "worker": ["parallel", "kernels", "model"],
    "coordinator": ["worker", "model"],
    "tools": None,  # everything
}

SKIP_DIRS = ("tests", "bench")


def allowed_folders(folder):
    """The folders `folder` may use, itself included; None for everything."""
    if folder not in LAYERS or LAYERS[folder] is None:
        return None
    seen, stack = {folder}, list(LAYERS[folder])
    while stack:
        f = stack.pop()
        if f not in seen:
            seen.add(f)
            stack.extend(LAYERS.get(f) or [])
    return seen


def source_dir_of(build):
    cache = os.path.join(build, "CMakeCache.txt")
    try:
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_HOME_DIRECTORY:"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def find_objects(build, source):
    """{source path relative to the tree: object path}, for objects of the
    project's own targets. An object whose source no longer exists (a file
    moved or deleted since the last build) is ignored."""
    objs = {}
    for root, dirs, files in os.walk(build):
        rel_root = os.path.relpath(root, build)
        if rel_root.split(os.sep)[0] in SKIP_DIRS:
            dirs[:] = []
            continue
        for name in files:
            if not name.endswith(".o"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, build).split(os.sep)
            # FOLDER.../CMakeFiles/TARGET.dir/SUB.../FILE.c.o -> FOLDER.../SUB.../FILE.c
            if "CMakeFiles" not in rel:
                continue
            i = rel.index("CMakeFiles")
            if i == 0 or i + 2 >= len(rel) or not rel[i + 1].endswith(".dir"):
                continue
            src = "/".join(rel[:i] + rel[i + 2 :])[: -len(".o")]
            if src.split("/")[0] in SKIP_DIRS:
                continue
            if source and not os.path.exists(os.path.join(source, src)):
                continue
            objs[src] = path
    return objs


def read_symbols(path):
    """(defined globals, undefined references) of one object file."""
    out = subprocess.run(
        ["nm", "-P", path], check=True, capture_output=True, text=True
    ).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind in ("U", "w", "v"):
            undefined.add(name)
        elif kind.isupper():
            defined.add(name)
    return defined, undefined


def build_graph(objs):
    """{file: {file it depends on: sorted symbols}}."""
    syms = {src: read_symbols(p) for src, p in objs.items()}
    owner = {}
    for src in sorted(syms):
        for s in syms[src][0]:
            owner.setdefault(s, src)
    graph = {src: {} for src in syms}
    for src, (_, undef) in syms.items():
        for s in undef:
            dst = owner.get(s)
            if dst and dst != src:
                graph[src].setdefault(dst, []).append(s)
    for src in graph:
        for dst in graph[src]:
            graph[src][dst].sort()
    return graph


def sccs(graph):
    """Strongly connected components (Tarjan, iterative), each sorted."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


def one_cycle(graph, comp):
    """A shortest cycle through the component's first file (BFS)."""
    members, start = set(comp), comp[0]
    prev, queue = {start: None}, [start]
    for v in queue:
        for w in sorted(graph[v]):
            if w not in members:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return comp


def read_allow(path):
    """Allowed cycles (sets of files) and layering edges ((from, to))."""
    cycles, edges = [], set()
    if not path:
        return cycles, edges
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].split()
            if not line:
                continue
            if line[0] == "layer:" and len(line) == 3:
                edges.add((line[1], line[2]))
            else:
                cycles.append(set(line))
    return cycles, edges


def check(build, allow_path, source, out=sys.stdout):
    """Prints the findings; returns (n errors, n warnings)."""
    if source is None:
        source = source_dir_of(build)
    objs = find_objects(build, source)
    if not objs:
        print(f"check-deps: no object files under {build}", file=out)
        return 1, 0
    graph = build_graph(objs)
    allow_cycles, allow_edges = read_allow(allow_path)
    errors = warnings = 0
    used_cycles, used_edges = set(), set()

    for comp in sccs(graph):
        if len(comp) < 2:
            continue
        hit = [i for i, a in enumerate(allow_cycles) if set(comp) <= a]
        if hit:
            used_cycles.add(hit[0])
            warnings += 1
            word = "warning: allowed cycle"
        else:
            errors += 1
            word = "error: cycle"
        print(f"{word}: {' -> '.join(one_cycle(graph, comp))}", file=out)
        for a in comp:
            for b in sorted(graph[a]):
                if b in comp:
                    print(f"    {a} -> {b}: {', '.join(graph[a][b])}", file=out)

    for a in sorted(graph):
        fa = a.split("/")[0]
        ok = allowed_folders(fa)
        if ok is None:
            continue
        for b in sorted(graph[a]):
            fb = b.split("/")[0]
            if fb in ok:
                continue
            if (a, b) in allow_edges:
                used_edges.add((a, b))
                warnings += 1
                word = "warning: allowed layering"
            else:
                errors += 1
                word = "error: layering"
            print(
                f"{word}: {a} ({fa}/ may not use {fb}/) -> {b}: {', '.join(graph[a][b])}",
                file=out,
            )

    for i, c in enumerate(allow_cycles):
        if i not in used_cycles:
            print(f"note: allowlisted cycle no longer found, remove it: {' '.join(sorted(c))}",
                  file=out)
    for e in sorted(allow_edges - used_edges):
        print(f"note: allowlisted layering no longer found, remove it: {e[0]} {e[1]}", file=out)
    print(
        f"check-deps: {len(objs)} files, {sum(len(v) for v in graph.values())} edges, "
        f"{errors} errors, {warnings} allowed",
        file=out,
    )
    return errors, warnings


# ---- self-test ---------------------------------------------------------------

SELF_TEST_SOURCES = {
    # a.c <-> b.c: a cycle inside model/
    "model/a.c": "int gt_b(int);\nint gt_a(int x) { return x ? gt_b(x - 1) : 0; }\n",
    "model/b.c": "int gt_a(int);\nint gt_b(int x) { return x ? gt_a(x - 1) : 1; }\n",
    # c.c uses a.c only: no cycle
    "model/c.c": "int gt_a(int);\nint gt_c(void) { return gt_a(3); }\n",
    # common/ reaching up into model/: a layering violation
    "common/d.c": "int gt_c(void);\nint gt_d(void) { return gt_c(); }\n",
    # tools/ may use everything
    "tools/main.c": "int gt_d(void);\nint main(void) { return gt_d(); }\n",
}


def self_test():
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    tmp = tempfile.mkdtemp(prefix="check-deps-")
    try:
        src_root, build = os.path.join(tmp, "src"), os.path.join(tmp, "build")
        for rel, text in SELF_TEST_SOURCES.items():
            folder, name = rel.split("/")
            os.makedirs(os.path.join(src_root, folder), exist_ok=True)
            with open(os.path.join(src_root, rel), "w") as f:
                f.write(text)
            odir = os.path.join(build, folder, "CMakeFiles", f"gt_{folder}.dir")
            os.makedirs(odir, exist_ok=True)
            subprocess.run(
                [cc, "-c", os.path.join(src_root, rel), "-o", os.path.join(odir, name + ".o")],
                check=True,
            )
        # A stale object (its source is gone) and a test's object are ignored.
        os.makedirs(os.path.join(build, "tests", "CMakeFiles", "t.dir"))
        shutil.copy(
            os.path.join(build, "model", "CMakeFiles", "gt_model.dir", "a.c.o"),
            os.path.join(build, "tests", "CMakeFiles", "t.dir", "t.c.o"),
        )
        shutil.copy(
            os.path.join(build, "model", "CMakeFiles", "gt_model.dir", "b.c.o"),
            os.path.join(build, "model", "CMakeFiles", "gt_model.dir", "gone.c.o"),
        )

        failures = []

        class Capture:
            def __init__(self):
                self.text = ""

            def write(self, s):
                self.text += s

        cap = Capture()
        errors, warnings = check(build, None, src_root, out=cap)
        want = [
            "error: cycle: model/a.c -> model/b.c -> model/a.c",
            "    model/a.c -> model/b.c: gt_b",
            "    model/b.c -> model/a.c: gt_a",
            "error: layering: common/d.c (common/ may not use model/) -> model/c.c: gt_c",
        ]
        for w in want:
            if w not in cap.text.splitlines():
                failures.append(f"missing line: {w!r}")
        if errors != 2 or warnings != 0:
            failures.append(f"want 2 errors, 0 allowed; got {errors}, {warnings}")
        for bad in ("gone.c", "tests/", "tools/main.c ("):
            if bad in cap.text:
                failures.append(f"unexpected mention of {bad!r}")

        allow = os.path.join(tmp, "allow.txt")
        with open(allow, "w") as f:
            f.write("# comment\nmodel/b.c model/a.c\nlayer: common/d.c model/c.c\nx/y.c x/z.c\n")
        cap2 = Capture()
        errors, warnings = check(build, allow, src_root, out=cap2)
        if errors != 0 or warnings != 2:
            failures.append(f"with the allowlist: want 0 errors, 2 allowed; got {errors}, {warnings}")
        if "remove it: x/y.c x/z.c" not in cap2.text:
            failures.append("a stale allowlist line is not reported")

        sys.stdout.write(cap.text + cap2.text)
        for f in failures:
            print(f"self-test FAILED: {f}")
        if not failures:
            print("self-test passed")
        return 1 if failures else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", help="the CMake build directory")
    ap.add_argument("--allow", help="allowlist of known cycles and layering violations")
    ap.add_argument("--source", help="the source tree (default: from CMakeCache.txt)")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.build:
        ap.error("a build directory is required")
    errors, _ = check(args.build, args.allow, args.source)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
