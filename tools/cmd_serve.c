/* `gantry serve`: the model as a msgpack-RPC service (docs/protocol.md).
 *
 * Every rank joins the job; rank 0 runs the server loop (coordinator/
 * server.c: network, admission, continuous batching, sampling,
 * detokenizing) and the other ranks execute the step plans it broadcasts.
 * SIGTERM or SIGINT on any rank drains and stops the whole job: rank 0
 * handles its own, and hears of another rank's at the next heartbeat (a
 * REPORT step at least every second); every rank leaves when rank 0 says
 * STOP. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "coordinator/server.h"
#include "tools/cmds.h"
#include "tools/flags.h"
#include "tools/verb.h"

typedef struct serve_opts {
    gt_rank_config job; /* the model, engine, grid and limits of the job */
    gt_server_config srv;
} serve_opts;

#define O(f) offsetof(serve_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(job.eng.model_path), .metavar = "FILE", .help = "GGUF model",
     .required = "no model given (-m FILE)"},
    {NULL, "--host", GT_FLAG_STR, O(srv.net.host), .metavar = "ADDR",
     .help = "TCP address to listen on (default 127.0.0.1)"},
    {NULL, "--port", GT_FLAG_INT, O(srv.net.port), .lo = 0, .hi = 65535, .metavar = "N",
     .help = "TCP port (default 7733; 0: any free port, printed at start)"},
    {NULL, "--unix", GT_FLAG_STR, O(srv.net.unix_path), .metavar = "PATH",
     .help = "also listen on a Unix socket"},
    {NULL, "--http-port", GT_FLAG_INT, O(srv.http.port), .lo = 0, .hi = 65535, .metavar = "N",
     .help = "also answer HTTP (OpenAI-compatible API, /metrics) on this port (0: any free port)"},
    {NULL, "--http-host", GT_FLAG_STR, O(srv.http.host), .metavar = "ADDR",
     .help = "address for --http-port (default 127.0.0.1)"},
    {NULL, "--http-header-timeout", GT_FLAG_DOUBLE, O(srv.http.header_timeout_s), .flo = 0.01,
     .fhi = 86400, .metavar = "S",
     .help = "close an HTTP connection without whole headers S seconds after it opened or its "
             "request began (default 10)"},
    {NULL, "--http-idle-timeout", GT_FLAG_DOUBLE, O(srv.http.idle_timeout_s), .flo = 0.01,
     .fhi = 86400, .metavar = "S",
     .help = "close a keep-alive HTTP connection idle S seconds between requests (default 60)"},
    {NULL, "--http-body-timeout", GT_FLAG_DOUBLE, O(srv.http.body_timeout_s), .flo = 0.01,
     .fhi = 86400, .metavar = "S",
     .help =
         "close an HTTP connection whose body is not in S seconds after its headers (default 30)"},
    {NULL, "--http-max-header-bytes", GT_FLAG_BYTES, O(srv.http.max_header_bytes), .lo = 256,
     .metavar = "B", .help = "largest HTTP request line plus headers (default 16K; 431 beyond)"},
    {NULL, "--http-max-body-bytes", GT_FLAG_BYTES, O(srv.http.max_body_bytes), .lo = 64,
     .metavar = "B", .help = "largest HTTP request body (default 4M; 413 beyond)"},
    {NULL, "--http-open-health", GT_FLAG_BOOL, O(srv.http.open_health),
     .help = "/health and /metrics need no bearer token under --auth-token"},
    {NULL, "--auth-token", GT_FLAG_STR, O(srv.auth_token), .metavar = "TOKEN",
     .help = "clients must call auth with this token first"},
    {NULL, "--max-connections", GT_FLAG_INT, O(srv.net.max_connections), .lo = 1, .hi = 1 << 20,
     .metavar = "N", .help = "open connections at most (default 256)"},
    {NULL, "--max-frame-bytes", GT_FLAG_BYTES, O(srv.limits.max_frame_bytes), .lo = 64,
     .metavar = "B", .help = "largest request frame (default 4M)"},
    {NULL, "--drain-timeout", GT_FLAG_DOUBLE, O(srv.drain_timeout_s), .flo = 0, .fhi = 86400,
     .metavar = "S", .help = "after SIGTERM, seconds running requests may take (default 30)"},
    {NULL, "--max-queue", GT_FLAG_INT, O(srv.sched.max_waiting), .lo = 1, .hi = 1 << 20,
     .metavar = "N", .help = "requests waiting for a slot at most (default 1024)"},
    {NULL, "--seqs", GT_FLAG_INT, O(job.eng.max_seqs), .lo = 1, .hi = 4096, .metavar = "N",
     .help = "requests running at once (sequence slots; default 8)"},
    {NULL, "--max-batch-tokens", GT_FLAG_INT, O(job.eng.max_batch_tokens), .lo = 1, .hi = 16384,
     .metavar = "N",
     .help = "tokens per engine step: decode tokens plus prompt chunks (default 512)"},
    {"-c", "--ctx", GT_FLAG_U32, O(job.eng.n_ctx), .lo = 1, .hi = 1 << 22, .metavar = "N",
     .help = "context length per request (default min(model, 4096))"},
    {NULL, "--kv-blocks", GT_FLAG_INT, O(job.eng.kv_blocks), .lo = 1, .hi = 1 << 30, .metavar = "N",
     .help =
         "KV pool blocks (default: a full context for every slot); fewer lets more requests run,\n"
         "preempting the youngest when the pool runs out"},
    {NULL, "--kv-host-mem", GT_FLAG_BYTES, O(job.eng.kv_host_bytes), .lo = 1, .metavar = "B",
     .help = "host memory per rank for KV blocks evicted from the pool (prefix cache tier)"},
    {NULL, "--lookup", GT_FLAG_INT, O(srv.spec_lookup), .lo = 1, .hi = 64, .metavar = "N",
     .help = "speculate with prompt lookup (longest n-gram N) for requests without `speculate`"},
    {NULL, "--draft", GT_FLAG_STR, O(srv.draft_path), .metavar = "FILE",
     .help = "a draft model of the same vocabulary (on rank 0): requests without `speculate`\n"
             "speculate with it, others with `speculate: {draft: true}`"},
    {NULL, "--self-draft", GT_FLAG_INT, O(srv.self_draft_layers), .lo = 1, .hi = 1 << 16,
     .metavar = "L", .help = "the model's first L layers as the draft (on rank 0), as --draft"},
    {NULL, "--draft-tokens", GT_FLAG_INT, O(srv.spec_tokens), .lo = 1, .hi = 64, .metavar = "K",
     .help = "guesses per speculating request and step (default 4); each step holds K + 1 output\n"
             "rows per sequence for them"},
    GT_JOB_FLAGS(serve_opts),
};
#undef O

static gt_status validate(void *opts) {
    serve_opts *o = opts;
    int kinds = (o->srv.spec_lookup > 0) + (o->srv.draft_path != NULL) + (o->srv.self_draft_layers > 0);
    if (kinds > 1)
        return gt_fail(GT_ERR_INVALID_ARG, "--lookup, --draft and --self-draft each set the requests' default "
                       "proposer; give one (a request may still ask for prompt lookup with `speculate`)");
    return GT_OK;
}

static const gt_flag_spec k_spec = {
    .verb = "serve",
    .synopsis = "-m FILE [--host ADDR --port N --unix PATH] [--seqs N] [--tp T --pp P] [options]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .validate = validate,
};

static void on_ready(void *user, int port) {
    const serve_opts *o = user;
    if (port) fprintf(stderr, "gantry serve: listening on %s port %d", o->srv.net.host, port);
    if (o->srv.net.unix_path) fprintf(stderr, "%s%s", port ? " and on " : "gantry serve: listening on ", o->srv.net.unix_path);
    fprintf(stderr, " (pid %ld)\n", (long)getpid());
    fflush(stderr);
}

static void on_http_ready(void *user, int port) {
    const serve_opts *o = user;
    fprintf(stderr, "gantry serve: HTTP on %s http-port %d\n", o->srv.http.host, port);
    fflush(stderr);
}

static gt_status serve_lead(gt_coord *c, void *opts) {
    serve_opts *o = opts;
    o->srv.on_ready = on_ready;
    o->srv.http.on_ready = on_http_ready;
    o->srv.user = o;
    return gt_server_run(c, &o->srv);
}

int gt_cmd_serve(int argc, char **argv) {
    serve_opts o = {.job = GT_RANK_CONFIG_INIT, .srv = GT_SERVER_CONFIG_INIT};
    o.job.eng.max_seqs = 8;
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    /* Rank 0 decides when the job ends; another rank that is signalled
     * tells it at the next heartbeat, and it drains. */
    if (gt_rank_launch_rank() != 0) gt_rank_watch_signals();
    o.job.max_cand = 64;
    /* One output row per sequence, plus K more for a speculating one's
     * guesses (any request may speculate with its `speculate` field). */
    long rows = (long)o.job.eng.max_seqs * (1 + o.srv.spec_tokens);
    o.job.max_out_rows = rows < o.job.eng.max_batch_tokens ? (int)rows : o.job.eng.max_batch_tokens;
    if (o.job.max_out_rows < o.job.eng.max_seqs) o.job.max_out_rows = o.job.eng.max_seqs;
    o.srv.sched.max_batch_tokens = o.job.eng.max_batch_tokens;
    o.srv.draft_threads = o.job.eng.n_threads;
    o.srv.draft_isa = o.job.eng.isa;
    return gt_verb_run("serve", &o.job, &o, serve_lead);
}
