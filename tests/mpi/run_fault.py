"""Runs tests/mpi/test_comm_faults under mpirun and checks how the job ends.

usage: run_fault.py watchdog|kill MPIRUN PROGRAM [mpirun options...]

watchdog: 3 ranks, world timeout 2 s, rank 1 never arrives. The job must end
non-zero within 20 s; rank 0's point-to-point sentence must name the recv,
its label and rank 1; its allreduce sentence must name the operation, the
label, the group and rank 1 as the only missing rank, after about 2.5 s
(timeout plus one notice period), not much later.

kill: 2 ranks, rank 1 SIGKILLs itself mid-run. Every rank must be gone and
mpirun must exit non-zero within 20 s (the test's own timeout is the hang
detector). Uses only the standard library."""
import os
import re
import subprocess
import sys
import time


def fail(msg, out=""):
    print("FAIL:", msg)
    if out:
        print("---- job output ----")
        print(out)
    sys.exit(1)


def main():
    mode, mpirun, prog = sys.argv[1], sys.argv[2], sys.argv[3]
    extra = sys.argv[4:]
    n = "3" if mode == "watchdog" else "2"
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    cmd = [mpirun, "-np", n, "--oversubscribe", "--mca", "odls_base_sigkill_timeout", "0",
           *extra, prog, mode]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=20, text=True)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        fail("the job did not end within 20 s (hang)", out)
    dt = time.monotonic() - t0
    out = p.stdout
    print(out)
    print(f"mpirun exited {p.returncode} after {dt:.1f} s")
    if p.returncode == 0:
        fail("the job exited 0; a fault must end it with a non-zero status", out)
    if mode == "kill":
        if "kills itself" not in out:
            fail("rank 1 never reached the kill point", out)
        print("PASS: killed rank ended the job")
        return
    p2p = re.search(r"P2P status=(\S+ \S+) after ([0-9.]+) s: (.*)", out)
    if not p2p:
        fail("rank 0 printed no point-to-point watchdog line", out)
    if p2p.group(1) != "communication error":
        fail(f"recv returned {p2p.group(1)}, want communication error", out)
    if not 1.9 <= float(p2p.group(2)) <= 4.0:
        fail(f"recv failed after {p2p.group(2)} s, want about 2 s", out)
    for needle in ("recv 'pipeline activations'", "from rank 1", "group 'world'",
                   "rank 1 did not send"):
        if needle not in p2p.group(3):
            fail(f"point-to-point sentence lacks {needle!r}: {p2p.group(3)}", out)
    coll = re.search(r"COLL rank 0 status=(\S+ \S+) after ([0-9.]+) s: (.*)", out)
    if not coll:
        fail("rank 0 printed no collective watchdog line", out)
    if not 1.9 <= float(coll.group(2)) <= 5.0:
        fail(f"allreduce failed after {coll.group(2)} s, want about 2.5 s", out)
    msg = coll.group(3)
    for needle in ("allreduce 'watchdog probe allreduce'", "group 'world'",
                   ": rank 1 (world rank 1) did not arrive"):
        if needle not in msg:
            fail(f"collective sentence lacks {needle!r}: {msg}", out)
    if re.search(r"ranks? [0-9, ]*2[0-9, ]* \(world", msg):
        fail(f"collective sentence names rank 2, which did arrive: {msg}", out)
    print("PASS: watchdog named the label and the missing rank")


main()
