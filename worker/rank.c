/* A rank of the job and its step loop; see rank.h.
 *
 * Every step goes the same way on every rank: rank 0 broadcasts the 40-byte
 * header, then the payload whose length the header gives (counts first, then
 * rows); each rank checks both against its own limits, frees the listed
 * sequences, runs the batch through its engine (the stages pass activations
 * along inside gt_engine_decode) and the last stage returns the wanted rows'
 * outputs to rank 0. Buffers for all of it are allocated at creation. */
#include "worker/rank.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/bytes.h"
#include "common/log.h"
#include "common/timer.h"
#include "common/trace.h"
#include "parallel/par.h"
#include "transport/comm.h"

struct gt_rank {
    gt_rank_config cfg;
    gt_comm *world;     /* NULL on one rank without mpirun */
    int rank, size;
    gt_gguf *g;         /* the one open of the model file */
    gt_kernels *k;      /* the rank's backend: the engine computes on it, transport takes its buffers from it */
    struct comm_buf *comm_bufs; /* buffers lent to transport */
    gt_plan plan;
    bool have_plan;
    gt_par *par;        /* NULL without MPI */
    gt_engine *e;
    gt_step_limits lim;
    int64_t v0, n_local, n_vocab;
    uint32_t next_id;   /* the id the next step must carry */
    uint64_t t_reset;   /* RESET_STATS time */
    uint8_t header[GT_STEP_HEADER_BYTES];
    uint8_t *payload;   /* [lim's largest payload] */
    size_t payload_cap;
    float *logits;      /* [max_out_rows, n_local] the engine's logits rows (last stage; borrowed) */
    float *full;        /* [max_out_rows, n_vocab] rank 0 with gather_logits (on one rank: = logits) */
    float *cand_vals;   /* [max_out_rows, max_cand] */
    int32_t *cand_ids;  /* [max_out_rows, max_cand] */
    float *ep_rows, *ep_bytes; /* [world][n_layer] expert-parallel counters of the last REPORT */
};

static volatile sig_atomic_t g_stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    g_stop_requested = 1;
}

void gt_rank_watch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int gt_rank_launch_rank(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v) return atoi(v);
    }
    return 0;
}

static bool launched(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

/* Transport's own buffers (reduction scratch, ...) come from the backend:
 * host memory on the CPU, device memory under CUDA. */
struct comm_buf {
    void *addr;
    gt_buffer *b;
    struct comm_buf *next;
};

static void *comm_alloc(void *ctx, size_t bytes) {
    gt_rank *r = ctx;
    struct comm_buf *n = malloc(sizeof *n);
    if (!n) return NULL;
    if (gt_buffer_alloc(r->k, bytes, &n->b) != GT_OK) {
        free(n);
        return NULL;
    }
    n->addr = gt_buffer_addr(n->b);
    n->next = r->comm_bufs;
    r->comm_bufs = n;
    return n->addr;
}

static void comm_free(void *ctx, void *p) {
    gt_rank *r = ctx;
    for (struct comm_buf **q = &r->comm_bufs; *q; q = &(*q)->next)
        if ((*q)->addr == p) {
            struct comm_buf *n = *q;
            *q = n->next;
            gt_buffer_free(n->b);
            free(n);
            return;
        }
}

bool gt_rank_launched(void) { return launched(); }

static gt_status create_kernels(gt_rank *r) {
    gt_kernels_config kc = GT_KERNELS_CONFIG_INIT;
    kc.n_threads = r->cfg.eng.n_threads;
    kc.isa = r->cfg.eng.isa;
    kc.bf16 = r->cfg.eng.bf16;
    kc.backend = r->cfg.eng.backend;
    GT_TRY(gt_kernels_create(&kc, &r->k));
    if (!r->world) return GT_OK;
    gt_comm_allocator a = {comm_alloc, comm_free, r};
    return gt_comm_set_allocator(r->world, &a);
}

static gt_status start_world(gt_rank *r) {
    const gt_rank_config *c = &r->cfg;
    r->size = 1;
    if (!launched() && c->tp <= 1 && c->pp <= 1) return GT_OK;
    GT_TRY(gt_comm_init_world(NULL, NULL, &r->world));
    if (c->comm_timeout_s > 0) GT_TRY(gt_comm_set_timeout(r->world, c->comm_timeout_s));
    r->rank = gt_comm_rank(r->world);
    r->size = gt_comm_size(r->world);
    return GT_OK;
}

/* --mem-budget: every rank checks every shard, so all give the same verdict
 * before any weight is read. The KV pool is the one n_ctx × n_seqs need. */
static gt_status check_budget(const gt_plan *p) {
    uint64_t budget = p->cfg.mem_budget_bytes;
    if (!budget) return GT_OK;
    for (int i = 0; i < p->n_ranks; i++) {
        const gt_shard *s = &p->shards[i];
        if (s->total_bytes <= budget) continue;
        char t[32], w[32], k[32], a[32], b[32];
        return gt_fail(GT_ERR_RANGE, "rank %d needs %s (weights %s, KV cache %s for %d x %u tokens, "
                       "activations %s), more than the memory budget of %s", i,
                       gt_format_bytes(s->total_bytes, t, sizeof t), gt_format_bytes(s->weight_bytes, w, sizeof w),
                       gt_format_bytes(s->kv_bytes, k, sizeof k), p->cfg.n_seqs, p->cfg.n_ctx,
                       gt_format_bytes(s->act_bytes, a, sizeof a), gt_format_bytes(budget, b, sizeof b));
    }
    return GT_OK;
}

/* The plan from the one open of the file: the same verdict on every rank. */
static gt_status build_plan(gt_rank *r) {
    const gt_rank_config *c = &r->cfg;
    int pp = c->pp > 0 ? c->pp : 1;
    int tp = c->tp > 0 ? c->tp : r->size / pp;
    if (tp < 1) tp = 1;
    GT_TRY(gt_gguf_open(c->eng.model_path, &r->g));
    gt_plan_config pc = GT_PLAN_CONFIG_INIT;
    pc.world = r->size;
    pc.tp = tp;
    pc.pp = pp;
    pc.n_ctx = c->eng.n_ctx;
    pc.n_seqs = c->eng.max_seqs;
    pc.kv_block_size = c->eng.kv_block_size;
    pc.kv_type = c->eng.kv_type;
    pc.max_batch_tokens = c->eng.max_batch_tokens;
    pc.mem_budget_bytes = c->mem_budget_bytes;
    pc.max_out_rows = c->max_out_rows;
    pc.n_threads = gt_kernels_n_threads(r->k);
    pc.kv_host_bytes = c->eng.kv_host_bytes;
    pc.kv_blocks = c->eng.kv_blocks;
    pc.device_mem_bytes = c->eng.device_mem_bytes;
    pc.kernels = r->k;
    pc.ep = c->ep;
    GT_TRY(gt_plan_build(r->g, &pc, &r->plan));
    r->have_plan = true;
    GT_TRY(gt_plan_check_device(&r->plan));
    return check_budget(&r->plan);
}

static gt_status alloc_buffers(gt_rank *r) {
    const gt_rank_config *c = &r->cfg;
    size_t rows = (size_t)r->lim.max_tokens < (size_t)c->max_out_rows ? (size_t)r->lim.max_tokens
                                                                       : (size_t)c->max_out_rows;
    size_t k = (size_t)c->max_cand;
    r->payload_cap = gt_step_max_payload_bytes(&r->lim);
    r->payload = gt_alloc(r->payload_cap);
    r->logits = gt_engine_logits(r->e);
    r->cand_vals = gt_alloc(rows * k * sizeof(float));
    r->cand_ids = gt_alloc(rows * k * sizeof(int32_t));
    if (!r->payload || !r->cand_vals || !r->cand_ids)
        return gt_fail(GT_ERR_NOMEM, "cannot allocate the step buffers for %zu rows of %lld logits", rows,
                       (long long)r->n_local);
    if (c->gather_logits && r->rank == 0) {
        if (r->size == 1) {
            r->full = r->logits;
        } else {
            r->full = gt_alloc(rows * (size_t)r->n_vocab * sizeof(float));
            if (!r->full)
                return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu rows of %lld logits for the gather",
                               rows, (long long)r->n_vocab);
        }
    }
    return GT_OK;
}

static gt_status create_engine(gt_rank *r) {
    gt_engine_config ec = r->cfg.eng;
    ec.gguf = r->g;
    ec.kernels = r->k;
    ec.shard = gt_rank_shard(r);
    ec.par = r->par;
    ec.n_ctx = r->plan.cfg.n_ctx;
    ec.max_out_rows = r->cfg.max_out_rows;
    GT_TRY(gt_engine_create(&ec, &r->e));
    gt_engine_vocab_slice(r->e, &r->v0, &r->n_local);
    r->n_vocab = gt_engine_hparams(r->e)->n_vocab;
    r->lim.max_tokens = ec.max_batch_tokens;
    r->lim.max_seqs = ec.max_seqs;
    r->lim.max_cand = r->cfg.max_cand < r->n_vocab ? r->cfg.max_cand : (int32_t)r->n_vocab;
    /* Cached prefixes attached in one step: four whole contexts. */
    r->lim.max_attach_tokens = (int32_t)(4 * gt_engine_n_ctx(r->e));
    return alloc_buffers(r);
}

static void release(gt_rank *r) {
    if (r->full != r->logits) gt_free(r->full);
    gt_free(r->payload);
    gt_free(r->cand_vals);
    gt_free(r->cand_ids);
    free(r->ep_rows);
    free(r->ep_bytes);
    gt_engine_destroy(r->e);
    gt_par_destroy(r->par);
    if (r->have_plan) gt_plan_free(&r->plan);
    gt_gguf_close(r->g);
    if (r->world) gt_comm_finalize(r->world);
    while (r->comm_bufs) comm_free(r, r->comm_bufs->addr);
    gt_kernels_destroy(r->k);
    free(r);
}

gt_status gt_rank_create(const gt_rank_config *cfg, gt_rank **out) {
    *out = NULL;
    if (!cfg->eng.model_path) return gt_fail(GT_ERR_INVALID_ARG, "no model given (-m FILE)");
    if (cfg->max_cand < 1 || cfg->max_out_rows < 0)
        return gt_fail(GT_ERR_INVALID_ARG, "a rank needs at least 1 candidate and 0 or more output rows");
    gt_rank *r = calloc(1, sizeof *r);
    if (!r) return gt_fail(GT_ERR_NOMEM, "cannot allocate a rank");
    r->cfg = *cfg;
    if (r->cfg.max_out_rows == 0) r->cfg.max_out_rows = cfg->eng.max_seqs;
    gt_status st;
    GT_TRY_GOTO(start_world(r), st, fail);
    GT_TRY_GOTO(create_kernels(r), st, fail);
    GT_TRY_GOTO(build_plan(r), st, fail);
    const gt_shard *sh = gt_rank_shard(r);
    if (r->world) GT_TRY_GOTO(gt_par_create(r->world, &sh->grid, &r->par), st, fail);
    GT_LOG_INFO(GT_SUB_NET, "rank %d: stage %d/%d, tp %d/%d, layers %lld..%lld, heads %lld..%lld, "
                "vocab %lld..%lld", r->rank, sh->grid.stage, sh->grid.pp, sh->grid.tp_rank, sh->grid.tp,
                (long long)sh->layers.begin, (long long)sh->layers.end, (long long)sh->heads.begin,
                (long long)sh->heads.end, (long long)sh->vocab.begin, (long long)sh->vocab.end);
    /* From here a failure may be this rank's alone: every rank learns the
     * lowest failed one, so none goes on to wait for a step that never
     * comes. */
    st = create_engine(r);
    if (r->par) {
        gt_status mine = st;
        char why[512];
        snprintf(why, sizeof why, "%s", gt_last_error());
        int first = r->size;
        gt_status agreed = gt_par_agree(r->par, mine != GT_OK, &first, "start-up agreement");
        if (agreed != GT_OK) {
            st = agreed;
        } else if (mine != GT_OK) {
            GT_LOG_ERROR(GT_SUB_WORKER, "%s", why);
            st = gt_fail(mine, "%s", why);
        } else if (first < r->size) {
            st = gt_fail(GT_ERR_COMM, "rank %d of %d could not start (its sentence is above)", first,
                         r->size);
        }
    }
    if (st != GT_OK) goto fail;
    *out = r;
    return GT_OK;
fail:
    release(r);
    return st;
}

void gt_rank_destroy(gt_rank *r) {
    if (r) release(r);
}

_Noreturn void gt_rank_abort(gt_rank *r, int code) {
    if (r && r->world) gt_comm_abort(r->world, code);
    exit(code ? code : 1);
}

double gt_rank_comm_timeout(const gt_rank *r) {
    return r->world ? gt_comm_timeout(r->world) : GT_COMM_DEFAULT_TIMEOUT_S;
}
int gt_rank_world_rank(const gt_rank *r) { return r->rank; }
int gt_rank_world_size(const gt_rank *r) { return r->size; }
const gt_plan *gt_rank_plan(const gt_rank *r) { return &r->plan; }
const gt_shard *gt_rank_shard(const gt_rank *r) { return &r->plan.shards[r->rank]; }
const gt_hparams *gt_rank_hparams(const gt_rank *r) { return &r->plan.hp; }
const gt_gguf *gt_rank_gguf(const gt_rank *r) { return r->g; }
gt_engine *gt_rank_engine(gt_rank *r) { return r->e; }
gt_step_limits gt_rank_step_limits(const gt_rank *r) { return r->lim; }

/* Candidates of every wanted row, on the last stage, then to rank 0. */
static gt_status candidates(gt_rank *r, int n_rows, int k, int *n_got) {
    *n_got = 0;
    if (gt_engine_has_logits(r->e)) /* every row in one exchange over the stage */
        GT_TRY(gt_par_top_candidates_rows(r->par, r->logits, n_rows, r->n_local, r->v0, k, r->cand_vals,
                                          r->cand_ids, n_got, "sampling candidates"));
    /* Every rank of the last stage holds the same candidates; its first rank
     * sends them with their count to rank 0. */
    int32_t got = *n_got;
    GT_TRY(gt_par_last_to_coord(r->par, &got, 1, "candidate count"));
    GT_TRY(gt_par_last_to_coord(r->par, r->cand_vals, (size_t)n_rows * (size_t)k, "candidate logits"));
    GT_TRY(gt_par_last_to_coord(r->par, r->cand_ids, (size_t)n_rows * (size_t)k, "candidate ids"));
    *n_got = got;
    return GT_OK;
}

static gt_status forward(gt_rank *r, const gt_step *s, gt_step_result *res) {
    for (int i = 0; i < s->n_free; i++) {
        if (s->free_seqs[i] < 0 || s->free_seqs[i] >= r->lim.max_seqs)
            return gt_fail(GT_ERR_INVALID_ARG, "step %u frees sequence %d, outside 0..%d", s->id,
                           s->free_seqs[i], r->lim.max_seqs - 1);
        gt_engine_seq_clear(r->e, s->free_seqs[i]);
    }
    for (int i = 0; i < s->n_trunc; i++) {
        gt_status st = gt_engine_seq_truncate(r->e, s->trunc_seq[i], (uint32_t)s->trunc_len[i]);
        if (st != GT_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", gt_last_error());
            return gt_fail(st, "step %u: rank %d cannot truncate sequence %d: %s", s->id, r->rank,
                           s->trunc_seq[i], why);
        }
    }
    /* Every rank has executed the same steps, so every rank's prefix cache
     * holds the blocks rank 0 found; a rank that does not has diverged. */
    const int32_t *pt = s->attach_tokens;
    for (int i = 0; i < s->n_attach; i++) {
        int seq = s->attach_seq[i];
        if (seq < 0 || seq >= r->lim.max_seqs)
            return gt_fail(GT_ERR_INVALID_ARG, "step %u attaches sequence %d, outside 0..%d", s->id, seq,
                           r->lim.max_seqs - 1);
        gt_status st = gt_engine_seq_attach(r->e, seq, pt, (uint32_t)s->attach_len[i]);
        if (st != GT_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", gt_last_error());
            return gt_fail(st, "step %u: rank %d cannot attach the cached prefix of sequence %d: %s", s->id,
                           r->rank, seq, why);
        }
        pt += s->attach_len[i];
    }
    int n_rows = 0;
    for (int i = 0; i < s->n_tokens; i++) n_rows += s->want[i] != 0;
    if (n_rows > r->cfg.max_out_rows)
        return gt_fail(GT_ERR_RANGE, "step %u wants %d output rows, more than the %d this job holds",
                       s->id, n_rows, r->cfg.max_out_rows);
    if ((s->flags & GT_STEP_LOGITS) && !r->cfg.gather_logits)
        return gt_fail(GT_ERR_INVALID_ARG, "step %u asks for full logits, which this job did not "
                       "reserve", s->id);
    if (s->n_cand > 0 && !r->par)
        return gt_fail(GT_ERR_INVALID_ARG, "step %u asks for candidates on one rank, where the full "
                       "logits are at hand", s->id);
    if (s->n_tokens > 0) {
        gt_batch b = {s->n_tokens, s->tokens, s->pos, s->seq, s->want};
        GT_TRY(gt_engine_decode(r->e, &b, r->logits));
    }
    gt_step_result out = {.n_rows = n_rows};
    if (n_rows > 0 && (s->flags & GT_STEP_LOGITS)) {
        if (r->par && r->full != r->logits)
            GT_TRY(gt_par_gather_logits(r->par, r->logits, n_rows, r->n_local, r->v0, r->n_vocab,
                                        r->rank == 0 ? r->full : NULL, "logits gather"));
        out.logits = r->full;
    }
    if (n_rows > 0 && s->n_cand > 0) {
        GT_TRY(candidates(r, n_rows, s->n_cand, &out.n_cand));
        out.cand_vals = r->cand_vals;
        out.cand_ids = r->cand_ids;
    }
    if (res) *res = out;
    return GT_OK;
}

/* Every rank's counters to every rank: 7 figures, then per model layer the
 * expert-parallel rows and all-to-all bytes (zero where the rank holds no
 * such layer or has no expert parallelism). */
#define N_COUNTERS 7
static gt_status counters(gt_rank *r, uint32_t flags, gt_rank_counters *all) {
    const gt_shard *sh = gt_rank_shard(r);
    const gt_par_stats *ps = r->par ? gt_par_get_stats(r->par) : NULL;
    int NL = (int)r->plan.hp.n_layer;
    size_t per = N_COUNTERS + 2 * (size_t)NL;
    if (flags & GT_STEP_TRACE_WRITE) {
        char path[1024];
        snprintf(path, sizeof path, "%s.rank%d.json", r->cfg.trace_prefix ? r->cfg.trace_prefix : "trace",
                 r->rank);
        GT_TRY(gt_trace_write(path));
    }
    float *mine = calloc(per, sizeof *mine), *v = malloc((size_t)r->size * per * sizeof *v);
    if (!r->ep_rows) r->ep_rows = calloc((size_t)r->size * (size_t)NL + 1, sizeof *r->ep_rows);
    if (!r->ep_bytes) r->ep_bytes = calloc((size_t)r->size * (size_t)NL + 1, sizeof *r->ep_bytes);
    if (!mine || !v || !r->ep_rows || !r->ep_bytes) {
        free(mine);
        free(v);
        return gt_fail(GT_ERR_NOMEM, "cannot gather the counters of %d ranks", r->size);
    }
    float base[N_COUNTERS] = {(float)((double)(gt_now_ns() - r->t_reset) * 1e-9),
                              ps ? (float)ps->comm_s : 0.0f, ps ? (float)ps->bytes_sent : 0.0f,
                              (float)sh->grid.stage, (float)sh->grid.tp_rank, (float)g_stop_requested,
                              ps ? (float)ps->a2a_bytes : 0.0f};
    memcpy(mine, base, sizeof base);
    gt_engine_ep_stats es = gt_engine_ep(r->e);
    for (int i = 0; i < es.n_layer; i++) {
        int l = es.layer0 + i;
        if (l < 0 || l >= NL) continue;
        mine[N_COUNTERS + l] = (float)es.rows[i];
        mine[N_COUNTERS + NL + l] = (float)es.a2a_bytes[i];
    }
    gt_status st = r->par ? gt_par_gather_world(r->par, mine, per, v, "rank counters") : GT_OK;
    if (!r->par) memcpy(v, mine, per * sizeof *v);
    for (int i = 0; st == GT_OK && i < r->size; i++) {
        const float *w = v + (size_t)i * per;
        if (all)
            all[i] = (gt_rank_counters){w[0], w[1], w[2], (int)w[3], (int)w[4], w[5] != 0.0f, w[6]};
        memcpy(r->ep_rows + (size_t)i * NL, w + N_COUNTERS, (size_t)NL * sizeof *w);
        memcpy(r->ep_bytes + (size_t)i * NL, w + N_COUNTERS + NL, (size_t)NL * sizeof *w);
    }
    free(mine);
    free(v);
    return st;
}

gt_rank_ep_report gt_rank_ep(const gt_rank *r) {
    gt_rank_ep_report rep = {0, 0, NULL, NULL};
    if (gt_rank_shard(r)->grid.ep <= 1 || !r->ep_rows) return rep;
    rep.n_ranks = r->size;
    rep.n_layer = (int)r->plan.hp.n_layer;
    rep.rows = r->ep_rows;
    rep.a2a_bytes = r->ep_bytes;
    return rep;
}

/* Executes one decoded step on this rank. */
static gt_status execute(gt_rank *r, const gt_step *s, gt_step_result *res, gt_rank_counters *all) {
    if (s->id != r->next_id)
        return gt_fail(GT_ERR_FORMAT, "step plan: id %u arrived where %u was due", s->id, r->next_id);
    r->next_id++;
    if (s->flags & GT_STEP_RESET_STATS) {
        if (r->par) gt_par_reset_stats(r->par);
        gt_engine_reset_ep_stats(r->e);
        r->t_reset = gt_now_ns();
    }
    if (s->flags & GT_STEP_TRACE_ON) gt_trace_enable(r->rank);
    switch (s->op) {
    case GT_STEP_FORWARD: return forward(r, s, res);
    case GT_STEP_REPORT: return counters(r, s->flags, all);
    case GT_STEP_STOP: return GT_OK;
    }
    return gt_fail(GT_ERR_FORMAT, "step plan: unknown operation %d", (int)s->op);
}

static gt_status lead(gt_rank *r, gt_step *s, gt_step_result *res, gt_rank_counters *all) {
    if (r->rank != 0) return gt_fail(GT_ERR_INTERNAL, "only rank 0 leads steps (this is rank %d)", r->rank);
    s->id = r->next_id;
    GT_TRY(gt_step_encode(s, r->header, r->payload, r->payload_cap));
    /* The receivers' checks, here too: a step rank 0 would refuse is
     * never sent. */
    gt_step d;
    size_t bytes;
    GT_TRY(gt_step_decode_header(r->header, &r->lim, &d, &bytes));
    GT_TRY(gt_step_decode_payload(r->payload, bytes, &d));
    if (r->par) {
        GT_TRY(gt_par_bcast_plan(r->par, r->header, GT_STEP_HEADER_BYTES, "step plan header"));
        if (bytes) GT_TRY(gt_par_bcast_plan(r->par, r->payload, bytes, "step plan"));
    }
    return execute(r, &d, res, all);
}

gt_status gt_rank_lead(gt_rank *r, const gt_step *s, gt_step_result *res) {
    gt_step c = *s;
    return lead(r, &c, res, NULL);
}

gt_status gt_rank_report(gt_rank *r, uint32_t flags, gt_rank_counters *all) {
    gt_step s = {.op = GT_STEP_REPORT, .flags = flags};
    return lead(r, &s, NULL, all);
}

gt_status gt_rank_follow(gt_rank *r) {
    if (r->rank == 0) return gt_fail(GT_ERR_INTERNAL, "rank 0 leads; it does not follow");
    for (;;) {
        gt_step s;
        size_t bytes;
        GT_TRY(gt_par_bcast_plan(r->par, r->header, GT_STEP_HEADER_BYTES, "step plan header"));
        GT_TRY(gt_step_decode_header(r->header, &r->lim, &s, &bytes));
        if (bytes) GT_TRY(gt_par_bcast_plan(r->par, r->payload, bytes, "step plan"));
        GT_TRY(gt_step_decode_payload(r->payload, bytes, &s));
        gt_status st = execute(r, &s, NULL, NULL);
        /* A step that found the KV pool full failed alike on every rank
         * before any compute; rank 0 makes room and goes on. */
        if (st != GT_OK && !gt_engine_kv_full(r->e)) return st;
        if (s.op == GT_STEP_STOP) return GT_OK;
    }
}
