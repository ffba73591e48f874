/* `gantry serve` on rank 0: the network front, the msgpack-RPC codec, the
 * scheduler and the coordinator joined on one libuv loop.
 *
 * The loop alternates: while requests are running it polls the sockets
 * without blocking and then runs one engine step (every rank executes it);
 * when nothing runs it blocks until a client or a signal wakes it. Each
 * generate request is tokenized here once (prompt, chat messages through
 * the model's template, or token ids), checked against the context, and
 * handed to the scheduler with its own sampler and streaming detokenizer
 * (whole UTF-8 characters, stop strings never shown). A client that leaves
 * cancels its requests. SIGTERM or SIGINT stops admitting, lets the running
 * requests finish within the drain timeout, answers the rest with
 * finish_reason "shutdown", and returns. */
#ifndef GT_SERVER_H
#define GT_SERVER_H

#include "coordinator/coord.h"
#include "coordinator/net.h"
#include "coordinator/rpc.h"
#include "coordinator/sched.h"

/* The HTTP front (server_http.c, docs/protocol.md "HTTP"). */
typedef struct gt_server_http_config {
    const char *host;        /* default "127.0.0.1" */
    int port;                /* -1: no HTTP; 0: any free port */
    size_t max_header_bytes; /* request line plus headers (431 beyond) */
    size_t max_body_bytes;   /* 413 beyond */
    double header_timeout_s; /* a connection that does not finish its headers is closed */
    double body_timeout_s;   /* ... or its body, once the headers are in */
    double idle_timeout_s;   /* ... or sits idle between two keep-alive requests */
    bool open_health;        /* /health and /metrics need no token */
    void (*on_ready)(void *user, int port); /* called once listening */
} gt_server_http_config;
#define GT_SERVER_HTTP_CONFIG_INIT {"127.0.0.1", -1, (size_t)16 << 10, (size_t)4 << 20, 10.0, 30.0, 60.0, false, NULL}

typedef struct gt_server_config {
    gt_net_config net;
    gt_rpc_limits limits;
    const char *auth_token;  /* NULL: no auth; else every connection's first call must be auth */
    double drain_timeout_s;  /* after SIGTERM */
    gt_sched_config sched;
    /* Called once listening: the TCP port bound (0 without TCP). */
    void (*on_ready)(void *user, int port);
    void *user;
    gt_server_http_config http;
    /* ---- speculative decoding: defaults for requests without `speculate` ---- */
    int spec_lookup; /* --lookup N: prompt lookup's longest n-gram (0: off) */
    int spec_tokens; /* --draft-tokens K: guesses per step */
    /* A draft model on rank 0 (spec_draft.h), the proposer of requests
     * without `speculate` (and of those asking for it); at most one of the
     * two, and not with spec_lookup. */
    const char *draft_path;   /* --draft FILE */
    int self_draft_layers;    /* --self-draft L */
    int draft_threads;        /* the draft engine's threads */
    const char *draft_isa;    /* its kernels (NULL: the best) */
} gt_server_config;
#define GT_SERVER_CONFIG_INIT                                                                      \
    { GT_NET_CONFIG_INIT, GT_RPC_LIMITS_INIT, NULL, 30.0, GT_SCHED_CONFIG_INIT, NULL, NULL,        \
      GT_SERVER_HTTP_CONFIG_INIT, 0, 4, NULL, 0, 1, NULL }

/* Serves until a signal drains it. GT_ERR_IO when it cannot listen; a failed
 * engine step is returned (the job then ends). */
gt_status gt_server_run(gt_coord *c, const gt_server_config *cfg);

#endif
