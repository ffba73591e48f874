/* What server.c and server_http.c share: the server's state and its
 * request record, which streams either to a msgpack-RPC connection (sc) or
 * to an HTTP one (hc). Internal to the coordinator. */
#ifndef GT_SERVER_INTERNAL_H
#define GT_SERVER_INTERNAL_H

#include "coordinator/server.h"
#include "model/chat.h"
#include "model/tokenizer/tokenizer.h"

struct srv_http_conn;
struct srv_http_req;
struct srv_http;

typedef struct srv_conn {
    gt_conn *conn;
    gt_rpc_decoder *dec;
    bool authed;
} srv_conn;

typedef struct srv_req {
    uint64_t id;          /* the scheduler's */
    srv_conn *sc;         /* NULL once its client left */
    struct srv_http_conn *hc; /* the HTTP sink instead of sc; NULL once its client left */
    struct srv_http_req *h;   /* owned by server_http.c */
    uint32_t msgid;
    bool stream, stop_string;
    gt_detok_stream *detok;
    char *text;
    size_t len, cap;
    int32_t *toks;        /* [max_tokens] generated */
    uint32_t n_lp;        /* alternatives per token (0: no logprobs) */
    gt_rpc_token_logprobs *lps; /* [max_tokens] with n_lp */
    gt_rpc_logprob *tops; /* [max_tokens, n_lp] */
    uint32_t n_toks, max_toks, n_prompt;
    uint64_t t_submit, t_admit, t_first, t_last;
    int32_t last;
    bool spec;            /* it speculates: its answer carries "spec" */
    bool spec_draft;      /* ... with the draft model (else prompt lookup) */
    uint32_t beams;       /* beam search's width (0: none): its answer carries "beam" */
    gt_detok_stream *
        *alt_detok; /* [n_alt_detok] n_best > 1: one per runner-up (the same stop strings) */
    uint32_t n_alt_detok;
    gt_rpc_alternative *alts; /* [n_alts] once done: the runners-up as answers (texts owned) */
    uint32_t n_alts;
    struct srv_req *prev, *next;
} srv_req;

/* A latency histogram over fixed bounds in milliseconds. */
enum { N_BOUNDS = 12 };
extern const double k_bounds_ms[N_BOUNDS];
typedef struct histo {
    uint64_t counts[N_BOUNDS + 1];
    uint64_t count;
    double sum_ms;
} histo;

typedef struct gt_server {
    gt_server_config cfg;
    gt_coord *c;
    gt_sched *sched;
    gt_tokenizer *tok;
    gt_chat_template tmpl;
    bool have_tmpl;
    uint32_t n_ctx, n_vocab;
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int;
    uv_timer_t heartbeat;  /* grid only: a REPORT step when idle, before the followers' watchdog fires */
    bool heartbeat_due;
    gt_rank_counters *ranks; /* [world] what the last heartbeat gathered */
    gt_net *net;
    struct srv_http *http; /* NULL without --http-port */
    const struct srv_core *core; /* server.c's entries that server_http.c calls */
    bool draining;
    uint64_t drain_deadline_ns;
    gt_rpc_buf out;
    srv_req *reqs;
    int n_reqs;
    uint64_t next_id;
    /* counters and latency histograms for `stats` */
    uint64_t n_requests, n_finished[4], n_prompt_tokens, n_generated, n_cached, n_refused;
    histo h_queue, h_ttft, h_itl, h_e2e;
    struct gt_vocab_trie *trie; /* built at the first grammar request (server_grammar.c) */
    int32_t *eog;               /* [n_eog] end-of-generation tokens, with the trie */
    int n_eog;
    struct gt_spec_draft *draft; /* --draft / --self-draft (spec_draft.h); NULL: none */
} gt_server;

/* server_grammar.c: the logit bias and grammar of a request (*out NULL
 * when it has neither). The grammar's sentence on failure. */
struct gt_constraint;
gt_status srv_constraint(gt_server *s, const gt_rpc_generate *g, struct gt_constraint **out);
void srv_grammar_free(gt_server *s);


/* server.c's entries for its HTTP front, reached through s->core so that
 * server_http.c, which server.c calls, does not call back into it. */
typedef struct srv_core {
    /* Validates g (the prompt tokenized, checked against the model) and
     * queues it for sc/msgid or for hc; *out is the live record. On failure
     * *code is the protocol's code and the sentence gt_last_error(). */
    gt_status (*submit)(gt_server *s, gt_rpc_generate *g, srv_conn *sc, uint32_t msgid,
                        struct srv_http_conn *hc, srv_req **out, gt_rpc_code *code);
    const char *(*model_name)(gt_server *s);
    /* The Prometheus text of the server's counters (metrics.h). */
    gt_status (*metrics_text)(const gt_server *s, gt_rpc_buf *out);
} srv_core;

/* server_http.c */
gt_status srv_http_start(gt_server *s);
void srv_http_stop_listening(gt_server *s);
void srv_http_close(gt_server *s);
void srv_http_free(gt_server *s);
void srv_http_piece(gt_server *s, srv_req *r, const char *p, size_t n, const gt_rpc_token_logprobs *lp);
void srv_http_done(gt_server *s, srv_req *r, gt_rpc_finish f, const gt_sched_usage *u);
void srv_http_fail(gt_server *s, srv_req *r, const char *msg);
void srv_http_req_free(struct srv_http_req *h);

#endif
