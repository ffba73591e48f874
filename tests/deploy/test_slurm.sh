#!/usr/bin/env bash
# deploy/slurm/gantry.sbatch on a one-node Slurm cluster started here.
#
# munged, slurmctld and slurmd run in the foreground of this script with all
# their state (config, spool, logs, munge key and socket) in one temporary
# folder and ports picked free, and are stopped by PID on exit. Then:
# - job 1 (srun --mpi=pmix, 2 tasks, --pp 2): the endpoint file appears,
#   /health answers through curl, `gantry generate` greedy equals `gantry
#   run` of the same prompt on one rank (the independent reference); a long
#   request is streaming when a plain `scancel` arrives: it still finishes
#   (120 tokens), the drain and the server's exit are in the job's output,
#   the job is CANCELLED, the endpoint file is gone and no process of the job
#   is left;
# - job 2 (srun, settings from the environment): the same drain through
#   `scancel --batch --signal=TERM` (the TERM that `--signal=B:TERM@N` sends
#   before the time limit), which ends the job COMPLETED;
# - job 3 (GANTRY_LAUNCHER=mpirun, a generated token): the same drain;
# - jobs 4 and 5: no model, a file that is no model: the job fails with a
#   sentence that says so.
# Needs root (slurmd starts the tasks) and the packages slurm-wlm, munge,
# libpmix-dev and curl; skips (77) with a message without them.
# The endpoint files are sourced as clients would; their host, port and http
# are not visible to shellcheck.
# shellcheck disable=SC1090,SC2154
set -uo pipefail

GANTRY=${GANTRY_BIN:-}
SRC=${GANTRY_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
SBATCH_SCRIPT=$SRC/deploy/slurm/gantry.sbatch
fails=0
check() { # check OK|FAIL message
  if [ "$1" = 0 ]; then echo "ok   $2"; else echo "FAIL $2"; fails=$((fails + 1)); fi
}
skip() { echo "skipped: $*"; exit 77; }

for cmd in munged slurmctld slurmd sbatch srun squeue scontrol scancel curl mpirun; do
  command -v "$cmd" >/dev/null 2>&1 ||
    skip "'$cmd' is not installed (scripts/test.sh installs slurm-wlm munge libpmix-dev curl)"
done
compgen -G "/usr/lib/*/slurm-wlm/mpi_pmix*.so" >/dev/null || compgen -G "/usr/lib*/slurm/mpi_pmix*.so" >/dev/null ||
  skip "Slurm's mpi/pmix plugin is not installed (slurm-wlm with libpmix-dev)"
[ "$(id -u)" = 0 ] || skip "slurmd must run as root to start job tasks"
[ -x "$GANTRY" ] || { echo "FAIL: no gantry binary (GANTRY_BIN='$GANTRY')"; exit 1; }

# Short path: the munge socket's path must fit a sockaddr_un.
T=$(mktemp -d /tmp/gantry-slurm.XXXXXX) || exit 1
pids=()
cleanup() {
  local jobs
  [ -n "${SLURM_CONF:-}" ] && jobs=$(squeue -h -o %i 2>/dev/null) && [ -n "$jobs" ] && scancel $jobs 2>/dev/null && sleep 1
  for pid in $(pgrep -f "$T/model.gguf"); do kill -KILL "$pid" 2>/dev/null; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  if ((fails)) || [ -n "${GANTRY_TEST_KEEP:-}" ]; then echo "state kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

# ---- the cluster ----
for v in $(env | sed -n 's/^\(SLURM_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
mkdir -p "$T/munge" "$T/ctld" "$T/spool" && chmod 711 "$T/munge"
head -c 1024 /dev/urandom >"$T/munge/key" && chmod 400 "$T/munge/key"
munged -F --force --socket="$T/munge/sock" --key-file="$T/munge/key" --pid-file="$T/munge/pid" \
  --log-file="$T/munge/log" --seed-file="$T/munge/seed" >"$T/munged.out" 2>&1 &
pids+=($!)
read -r ctld_port d_port < <(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
node=$(hostname -s)
export SLURM_CONF=$T/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=gantrytest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/sock
StateSaveLocation=$T/ctld
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=30
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$node NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
for _ in $(seq 50); do [ -S "$T/munge/sock" ] && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" >"$T/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$node" >"$T/slurmd.out" 2>&1 &
pids+=($!)
up=1
for _ in $(seq 100); do sinfo -h -o %T 2>/dev/null | grep -q idle && { up=0; break; }; sleep 0.2; done
check $up "one-node cluster up ($node: slurmctld port $ctld_port, slurmd port $d_port)"
if ((up)); then tail -n 20 "$T"/*.out; exit 1; fi

# ---- a small model, and the reference answer on one rank ----
MODEL=$T/model.gguf
"$GANTRY" synth -o "$MODEL" --arch llama --layers 4 --hidden 512 --heads 4 --kv-heads 4 --ffn 1024 \
  --vocab 512 --ctx 512 >/dev/null || { echo "FAIL: gantry synth"; exit 1; }
PROMPT="The old lighthouse keeper"
want=$("$GANTRY" run -m "$MODEL" -p "$PROMPT" -n 12 --temp 0 --isa ref --ctx 256 2>/dev/null)
SERVE_FLAGS=(--isa ref --ctx 256 --seqs 2)
export GANTRY_BIN=$GANTRY GANTRY_PORT=0 GANTRY_HTTP_PORT=0 GANTRY_DRAIN_TIMEOUT=25
unset GANTRY_MODEL GANTRY_TP GANTRY_PP GANTRY_EP GANTRY_AUTH_TOKEN GANTRY_AUTH_TOKEN_FILE GANTRY_ENDPOINT_FILE GANTRY_LAUNCHER
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Clients are told the batch node's hostname; a container whose name does
# not resolve gets the loopback address instead.
getent hosts "$(hostname)" >/dev/null || export GANTRY_ADVERTISE_HOST=127.0.0.1

submit() { # submit NAME ARGS... -> prints the job id
  (cd "$T" && sbatch --parsable -n 2 -J "$1" --output="$T/job-%j.out" "${@:2}") | cut -d';' -f1
}
wait_gone() { # wait_gone JOB: until squeue no longer lists it (60 s)
  for _ in $(seq 300); do squeue -h -j "$1" 2>/dev/null | grep -q . || return 0; sleep 0.2; done
  return 1
}
wait_file() { # wait_file FILE JOB: until FILE exists, or the job is gone (60 s)
  for _ in $(seq 300); do
    [ -s "$1" ] && return 0
    squeue -h -j "$2" 2>/dev/null | grep -q . || return 1
    sleep 0.2
  done
  return 1
}
job_state() { scontrol show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
# A streaming request of 120 tokens in the background, through the
# endpoint file as a client would read it; returns when its first piece is
# out, so that it is running when the job is stopped.
long_request() { # long_request ENDPOINT_FILE TOKEN OUT
  (. "$1" && exec "$GANTRY" generate --host "$host" --port "$port" --auth-token "$2" \
    -p "Count: 1, 2, 3," -n 120 --temp 0 >"$3.out" 2>"$3.err") &
  long_pid=$!
  for _ in $(seq 300); do [ -s "$3.out" ] && return 0; kill -0 $long_pid 2>/dev/null || return 1; sleep 0.05; done
}
# stop_and_check JOB ENDPOINT_FILE HOW WANT_STATE: a request is running when
# the job is stopped with `scancel HOW`; it finishes, the drain is logged,
# nothing is left.
stop_and_check() {
  local j=$1 ep=$2 how=$3 want=$4 tok
  tok=${GANTRY_AUTH_TOKEN:-$(cat "$ep.token" 2>/dev/null)}
  long_request "$ep" "$tok" "$T/long-$j"
  check $? "job $j: a long request is streaming"
  # shellcheck disable=SC2086
  scancel $how "$j"
  wait_gone "$j"
  check $? "job $j left the queue after scancel $how"
  wait $long_pid
  grep -q "finish: length.*completion 120" "$T/long-$j.err"
  check $? "job $j: the running request finished during the drain: $(tail -n 1 "$T/long-$j.err")"
  grep -q "draining (1 requests in flight" "$T/job-$j.out"
  check $? "job $j: the server logged its drain: $(grep -o 'signal.*draining.*' "$T/job-$j.out" | head -1)"
  grep -q "the server stopped (exit 0)" "$T/job-$j.out"
  check $? "job $j: the batch script waited for the ranks and logged their exit"
  [ "$(job_state "$j")" = "$want" ]
  check $? "job $j ended $(job_state "$j") (want $want)"
  [ ! -e "$ep" ]
  check $? "job $j: the endpoint file is removed"
  left=$(pgrep -af "$MODEL")
  [ -z "$left" ]
  check $? "job $j: no process is left${left:+: $left}"
}

# ---- job 1: srun, settings from flags, stopped by a plain scancel ----
j1=$(submit gantry-srun "$SBATCH_SCRIPT" --model "$MODEL" --pp 2 --auth-token s3cret -- "${SERVE_FLAGS[@]}")
ep1=$T/gantry-$j1.endpoint
wait_file "$ep1" "$j1"
check $? "job $j1 (srun): endpoint file written: $(tr '\n' ' ' <"$ep1" 2>/dev/null)"
health=$(. "$ep1" && curl -sS -m 10 -H "Authorization: Bearer s3cret" "$http/health" 2>&1)
[[ $health == *serving* ]]
check $? "/health through curl: $health"
got=$(. "$ep1" && "$GANTRY" generate --host "$host" --port "$port" --auth-token s3cret \
  -p "$PROMPT" -n 12 --temp 0 -q 2>&1)
[ -n "$want" ] && [ "$got" = "$want" ]
check $? "gantry generate on 2 ranks = gantry run on one: '$got' vs '$want'"
GANTRY_AUTH_TOKEN=s3cret stop_and_check "$j1" "$ep1" "" CANCELLED

# ---- job 2: srun, settings from the environment, the TERM only to the
# batch script (what --signal=B:TERM@N sends before the time limit) ----
ep2=$T/job2.endpoint
j2=$(GANTRY_MODEL=$MODEL GANTRY_PP=2 GANTRY_AUTH_TOKEN=env-token GANTRY_ENDPOINT_FILE=$ep2 \
  submit gantry-srun-b "$SBATCH_SCRIPT" -- "${SERVE_FLAGS[@]}")
wait_file "$ep2" "$j2"
check $? "job $j2 (srun, environment): endpoint file written"
GANTRY_AUTH_TOKEN=env-token stop_and_check "$j2" "$ep2" "--batch --signal=TERM" COMPLETED

# ---- job 3: mpirun, a generated token, TERM to the batch script ----
ep3=$T/job3.endpoint
j3=$(GANTRY_LAUNCHER=mpirun GANTRY_MPIRUN_ARGS="--mca pml ob1 --mca btl self,vader" GANTRY_TP=1 \
  GANTRY_ENDPOINT_FILE=$ep3 submit gantry-mpirun "$SBATCH_SCRIPT" --pp 2 --model "$MODEL" -- "${SERVE_FLAGS[@]}")
wait_file "$ep3" "$j3"
check $? "job $j3 (mpirun): endpoint file written"
tok=$(cat "$ep3.token" 2>/dev/null)
[ ${#tok} -eq 32 ] && [ "$(stat -c %a "$ep3.token")" = 600 ]
check $? "a random auth token in $ep3.token (mode 600)"
stop_and_check "$j3" "$ep3" "--batch --signal=TERM" COMPLETED
[ ! -e "$ep3.token" ]
check $? "job $j3: the generated token file is removed"

# ---- job 4: bad input ----
j4=$(submit gantry-bad "$SBATCH_SCRIPT" --tp 2)
wait_gone "$j4"
grep -q "error: no model given (--model FILE or GANTRY_MODEL)" "$T/job-$j4.out" && [ "$(job_state "$j4")" = FAILED ]
check $? "no model: $(job_state "$j4"), '$(cat "$T/job-$j4.out")'"
echo "not a model" >"$T/bad.gguf"
j5=$(submit gantry-bad-model "$SBATCH_SCRIPT" --model "$T/bad.gguf")
wait_gone "$j5"
grep -q "error: the server exited before /health answered" "$T/job-$j5.out" && [ "$(job_state "$j5")" = FAILED ]
check $? "a file that is no model: $(job_state "$j5"), $(grep -c . "$T/job-$j5.out") lines of output, ending '$(tail -n 2 "$T/job-$j5.out" | tr '\n' ' ')'"

# ---- the multi-node example hands over to gantry.sbatch (run here, not
# submitted: it asks for GPUs and two nodes) ----
msg=$(cd "$T" && GANTRY_SBATCH=$SBATCH_SCRIPT bash "$SRC/deploy/slurm/gantry-multinode.sbatch" 2>&1)
[ $? = 2 ] && [[ $msg == *"error: no model given"* ]]
check $? "gantry-multinode.sbatch reaches gantry.sbatch: '$msg'"

if ((fails)); then
  for f in "$T"/job-*.out; do echo "== $f"; cat "$f"; done
  echo "$fails checks failed"
  exit 1
fi
echo "all checks passed"
