#!/usr/bin/env python3
"""The scripts the Kubernetes pods run (deploy/docker/gantry-*), here on
one machine with the built `gantry` and a small synthetic model, as the
plain variant's pods would run them:

- gantry-hostfile writes "HOST slots=N" for peers that resolve (localhost)
  and fails, naming the peer, for one that does not;
- gantry-launch counts the slots of an operator-style hostfile (comments,
  blank lines, a host without slots, max_slots, no final newline), and refuses a layout that does not
  fill them (GANTRY_TP x GANTRY_PP against the slots, both numbers in the
  message), a layout value that is not a number, a missing hostfile and a
  missing GANTRY_MODEL;
- gantry-launch starts `mpirun ... gantry serve` over the hostfile (2
  ranks, tp 1 x pp 2): /health answers 200 {"status": "serving"} on
  GANTRY_HTTP_PORT, and a greedy /v1/completions answers the same text as
  a single-rank `gantry run` of the same prompt (the reference);
- the benchmark Job's command (deploy/k8s/bench-job.yaml), pointed at
  this server with fewer and shorter requests, runs and succeeds;
- gantry-drain (the preStop hook) drains it: the job logs the drain and
  gantry-launch exits 0, gantry-drain too.
Exits 77 (skipped) without the gantry binary or mpirun.
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

try:
    import yaml
except ImportError:  # Debian: python3-yaml (scripts/setup.sh)
    print("skip: no PyYAML (install python3-yaml)")
    sys.exit(77)

SRC = os.environ.get("GANTRY_SOURCE_DIR",
                     os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GANTRY = os.environ.get("GANTRY_BIN", "")
MPIEXEC = os.environ.get("GANTRY_MPIEXEC", "mpirun")
DOCKER = os.path.join(SRC, "deploy", "docker")
PROMPT = "hello world"
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures.append(msg)


def script(name, args, env, **kw):
    return subprocess.run(["bash", os.path.join(DOCKER, name), *args], env=env, capture_output=True,
                          text=True, timeout=120, **kw)


def http_get(port, path, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST" if body else "GET", path, body=json.dumps(body) if body else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def main():
    if not (GANTRY and os.access(GANTRY, os.X_OK)) or not shutil.which(MPIEXEC):
        print("skip: needs GANTRY_BIN (%r) and mpirun (%r)" % (GANTRY, MPIEXEC))
        return 77
    tmp = tempfile.mkdtemp(dir=os.environ.get("GANTRY_TEST_TMP"))
    model = os.path.join(tmp, "tiny.gguf")
    subprocess.run([GANTRY, "synth", "-o", model, "--layers", "2", "--hidden", "64", "--heads", "4",
                    "--kv-heads", "2", "--ffn", "128", "--vocab", "256"], check=True, capture_output=True)
    env = dict(os.environ, GANTRY_GPUS_PER_POD="2", GANTRY_PEER_TIMEOUT="0")

    # gantry-hostfile
    hostfile = os.path.join(tmp, "hostfile")
    r = script("gantry-hostfile", [hostfile, "localhost"], env)
    text = open(hostfile).read() if os.path.exists(hostfile) else ""
    check(r.returncode == 0 and text == "localhost slots=2\n", "gantry-hostfile writes %r" % text)
    r = script("gantry-hostfile", [os.path.join(tmp, "h2"), "localhost", "no-such-peer.invalid"], env)
    check(r.returncode == 2 and "no-such-peer.invalid" in r.stderr and not os.path.exists(os.path.join(tmp, "h2")),
          "gantry-hostfile fails on a peer that does not resolve: %s" % r.stderr.strip())

    # gantry-launch: refusals
    env.update(GANTRY_HOSTFILE=hostfile, GANTRY_MODEL=model, GANTRY_BIN=GANTRY, GANTRY_PORT="0",
               GANTRY_HTTP_PORT="0", GANTRY_DRAIN_TIMEOUT="5", GANTRY_TP="3", GANTRY_PP="1",
               GANTRY_EXTRA_ARGS="--ctx 256 --seqs 2 --isa ref",
               GANTRY_MPIRUN_ARGS="--oversubscribe --mca pml ob1 --mca btl self,vader")
    r = script("gantry-launch", [], env)
    check(r.returncode == 2 and "GANTRY_TP 3" in r.stderr and "holds 2 slots" in r.stderr,
          "gantry-launch refuses tp 3 x pp 1 on 2 slots: %s" % r.stderr.strip())
    odd = os.path.join(tmp, "hostfile-odd")
    with open(odd, "w") as f:
        f.write("# the operator's format, with a comment, a blank line and a host without slots\n\n"
                "a.gantry slots=3\nb.gantry\n  c.gantry   max_slots=20 slots=12")  # no newline at the end
    r = script("gantry-launch", [], dict(env, GANTRY_HOSTFILE=odd))
    check(r.returncode == 2 and "holds 16 slots" in r.stderr, "gantry-launch counts 3 + 1 + 12 slots: %s"
          % r.stderr.strip())
    r = script("gantry-launch", [], dict(env, GANTRY_HOSTFILE=os.path.join(tmp, "missing")))
    check(r.returncode == 2 and "no readable hostfile" in r.stderr, "gantry-launch needs a hostfile: %s"
          % r.stderr.strip())
    r = script("gantry-launch", [], dict(env, GANTRY_PP="two"))
    check(r.returncode == 2 and "GANTRY_PP is 'two'" in r.stderr, "gantry-launch refuses pp 'two': %s"
          % r.stderr.strip())
    r = script("gantry-launch", [], dict(env, GANTRY_MODEL=""))
    check(r.returncode == 2 and "GANTRY_MODEL" in r.stderr, "gantry-launch needs GANTRY_MODEL: %s" % r.stderr.strip())

    # The reference: one rank, greedy.
    ref = subprocess.run([GANTRY, "run", "-m", model, "-p", PROMPT, "-n", "6", "--temp", "0", "--isa", "ref",
                          "--ctx", "256"], capture_output=True, text=True, timeout=120)
    ref_text = ref.stdout.rstrip("\n")
    check(ref.returncode == 0 and ref_text, "single-rank gantry run: %r" % ref_text)

    # gantry-launch: a 2-rank job (tp 1 x pp 2) over the hostfile.
    env.update(GANTRY_TP="1", GANTRY_PP="2")
    p = subprocess.Popen(["bash", os.path.join(DOCKER, "gantry-launch")], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    log, port, rpc = [], None, None
    for line in p.stderr:
        log.append(line)
        m = re.search(r"listening on \S+ port (\d+)", line)
        if m:
            rpc = int(m.group(1))
        m = re.search(r"http-port (\d+)", line)
        if m:
            port = int(m.group(1))
            break
    threading.Thread(target=lambda: log.extend(p.stderr), daemon=True).start()
    try:
        check(port is not None, "gantry-launch starts the server: %s" % "".join(log[-5:]).strip())
        if port:
            st, body = http_get(port, "/health")
            check(st == 200 and body == {"status": "serving"}, "/health answers %d %s" % (st, body))
            st, body = http_get(port, "/v1/completions", {"model": "x", "prompt": PROMPT, "max_tokens": 6,
                                                          "temperature": 0})
            text = (body.get("choices") or [{}])[0].get("text") if st == 200 else body
            check(text == ref_text, "greedy completion through the launched job %r equals gantry run's %r"
                  % (text, ref_text))
        if rpc:
            with open(os.path.join(SRC, "deploy", "k8s", "bench-job.yaml")) as f:
                job = yaml.safe_load(f)
            argv = list(job["spec"]["template"]["spec"]["containers"][0]["command"])
            small = {"--host": "127.0.0.1", "--port": str(rpc), "--num-prompts": "4", "--concurrency": "2",
                     "--prompt-len": "8", "--output-len": "4"}
            for k, v in small.items():
                argv[argv.index(k) + 1] = v
            b = subprocess.run([GANTRY] + argv[1:], capture_output=True, text=True, timeout=120)
            check(argv[0] == "gantry" and b.returncode == 0,
                  "the benchmark Job's command runs against the server: %s" % (b.stdout + b.stderr).strip()[-300:])
        # gantry-drain, as the kubelet's preStop hook would run it.
        d = script("gantry-drain", [str(p.pid)], dict(env, GANTRY_PRESTOP_DELAY="0"))
        check(d.returncode == 0 and "SIGTERM to gantry processes" in d.stderr,
              "gantry-drain signals the job's ranks: %s" % d.stderr.strip())
        rc = p.wait(timeout=120)
        check(rc == 0, "the job stops after the drain (gantry-launch exit %d)" % rc)
        check(any("draining" in ln for ln in log), "rank 0 logged the drain")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("".join(log[-20:]))
        print("%d failures" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
