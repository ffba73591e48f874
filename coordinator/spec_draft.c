/* The server's draft model; see spec_draft.h. Each proposal first brings
 * every job's draft sequence in line with its context (the agreeing prefix
 * kept, the rest truncated; an empty sequence first takes what the draft's
 * prefix cache holds), then runs the missing context tokens of all jobs in
 * shared forwards of at most max_tokens (each job's last token wanted: its
 * first guess), then one forward per further guess with one row for every
 * job still guessing. A guess is drawn from the draft's distribution under
 * the request's own sampler (gt_sampler_probs: greedy is its argmax), which
 * is what the verification's rejection rule needs as q. */
#include "coordinator/spec_draft.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timer.h"
#include "coordinator/spec.h"
#include "worker/engine.h"

struct gt_spec_draft {
    gt_spec_draft_config cfg;
    gt_engine *eng;
    int V, cap, max_tokens;
    uint32_t n_ctx;
    int32_t *shadow;            /* [max_seqs, cap] the tokens each draft sequence holds */
    int *from;                  /* [max_seqs] per job: the first context token the draft lacks */
    int32_t *toks, *pos, *seqs; /* [max_tokens] one forward */
    int8_t *want;               /* [max_tokens] */
    int *row_job;               /* [max_seqs] the job of each wanted row */
    float *pen_row;             /* [n_vocab] a row with a request's penalties */
    int32_t recent[GT_PENALTY_LAST_N]; /* the tokens before a guess the penalties look at */
    char name[96];
    gt_spec_draft_stats st;
};

static gt_status draft_engine(gt_spec_draft *d, gt_coord *c) {
    gt_rank *rk = gt_coord_rank(c);
    const gt_hparams *hp = gt_rank_hparams(rk);
    gt_engine_kv_stats kv = gt_engine_kv(gt_rank_engine(rk));
    gt_engine_config ec = GT_ENGINE_CONFIG_INIT;
    ec.n_threads = d->cfg.n_threads;
    ec.isa = d->cfg.isa;
    ec.n_ctx = d->n_ctx;
    ec.max_seqs = d->cfg.max_seqs;
    ec.max_out_rows = d->cfg.max_seqs;
    ec.max_batch_tokens = d->max_tokens;
    ec.kv_block_size = kv.block_size;
    /* As many blocks as the target's pool, plus room per sequence for the
     * guesses and a partial block: the draft's sequences hold at most the
     * target's tokens and K - 1 guesses each. A full context for every
     * sequence (0) when that is less. */
    long bs = kv.block_size, per_seq = (d->cfg.max_guesses + bs - 1) / bs + 1;
    long want = (long)kv.total_blocks + (long)d->cfg.max_seqs * per_seq;
    long full = (long)d->cfg.max_seqs * (((long)d->n_ctx + bs - 1) / bs);
    ec.kv_blocks = want < full ? (int)want : 0;
    if (d->cfg.self_layers > 0) {
        if ((uint32_t)d->cfg.self_layers >= hp->n_layer)
            return gt_fail(GT_ERR_INVALID_ARG,
                           "--self-draft %d: the draft must run fewer layers than the model's %u",
                           d->cfg.self_layers, hp->n_layer);
        ec.gguf = gt_rank_gguf(rk);
        ec.max_layers = d->cfg.self_layers;
        snprintf(d->name, sizeof d->name, "self-draft (%d of %u layers)", d->cfg.self_layers,
                 hp->n_layer);
    } else {
        ec.model_path = d->cfg.path;
        snprintf(d->name, sizeof d->name, "draft %s", d->cfg.path);
    }
    GT_TRY(gt_engine_create(&ec, &d->eng));
    uint32_t dv = gt_engine_hparams(d->eng)->n_vocab;
    if (dv != hp->n_vocab)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "the draft model %s has a vocabulary of %u tokens, the target's has %u; "
                       "speculation needs the same vocabulary",
                       d->cfg.path, dv, hp->n_vocab);
    return GT_OK;
}

gt_status gt_spec_draft_create(gt_coord *c, const gt_spec_draft_config *cfg, gt_spec_draft **out) {
    *out = NULL;
    if ((cfg->path != NULL) == (cfg->self_layers > 0))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "a draft is either a model file (--draft) or the target's first layers "
                       "(--self-draft), not %s",
                       cfg->path ? "both" : "neither");
    if (cfg->max_seqs < 1 || cfg->max_guesses < 1 || cfg->max_guesses > 64 || cfg->n_threads < 1)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "a draft for %d sequences, %d guesses and %d threads: each must be at "
                       "least 1 (guesses at most 64)",
                       cfg->max_seqs, cfg->max_guesses, cfg->n_threads);
    gt_spec_draft *d = calloc(1, sizeof *d);
    if (!d) return gt_fail(GT_ERR_NOMEM, "cannot allocate the draft model's state");
    d->cfg = *cfg;
    d->n_ctx = gt_coord_n_ctx(c);
    d->cap = (int)d->n_ctx + 1;
    d->V = (int)gt_rank_hparams(gt_coord_rank(c))->n_vocab;
    d->max_tokens = cfg->max_tokens > cfg->max_seqs ? cfg->max_tokens : cfg->max_seqs;
    size_t S = (size_t)cfg->max_seqs, B = (size_t)d->max_tokens;
    d->shadow = malloc(S * (size_t)d->cap * sizeof *d->shadow);
    d->from = calloc(S, sizeof *d->from);
    d->row_job = calloc(S, sizeof *d->row_job);
    d->toks = malloc(B * sizeof *d->toks);
    d->pos = malloc(B * sizeof *d->pos);
    d->seqs = malloc(B * sizeof *d->seqs);
    d->want = malloc(B);
    d->pen_row = malloc((size_t)d->V * sizeof *d->pen_row);
    gt_status st =
        d->shadow && d->from && d->row_job && d->toks && d->pos && d->seqs && d->want && d->pen_row
            ? draft_engine(d, c)
            : gt_fail(GT_ERR_NOMEM,
                      "cannot allocate the draft's tables for %d sequences of %u tokens",
                      cfg->max_seqs, d->n_ctx);
    if (st != GT_OK) {
        gt_spec_draft_destroy(d);
        return st;
    }
    *out = d;
    return GT_OK;
}

void gt_spec_draft_destroy(gt_spec_draft *d) {
    if (!d) return;
    gt_engine_destroy(d->eng);
    free(d->shadow);
    free(d->from);
    free(d->row_job);
    free(d->toks);
    free(d->pos);
    free(d->seqs);
    free(d->want);
    free(d->pen_row);
    free(d);
}

const char *gt_spec_draft_name(const gt_spec_draft *d) { return d->name; }
gt_spec_draft_stats gt_spec_draft_get_stats(const gt_spec_draft *d) { return d->st; }

void gt_spec_draft_release(gt_spec_draft *d, int seq) {
    if (!d || seq < 0 || seq >= d->cfg.max_seqs) return;
    gt_engine_seq_clear(d->eng, seq);
}

int gt_spec_draft_seqs_held(const gt_spec_draft *d) {
    int n = 0;
    for (int i = 0; i < d->cfg.max_seqs; i++) n += gt_engine_seq_len(d->eng, i) > 0;
    return n;
}

/* Keeps the part of j's draft sequence that agrees with its context, at
 * most n - 1 tokens (the last one's logits give the first guess); an empty
 * sequence first attaches the draft's cached prefix of the context. The
 * whole held prefix is compared (a few thousand integers at most, nothing
 * beside a forward), so a sequence is right even if its slot changed hands
 * without a release. */
static gt_status sync_seq(gt_spec_draft *d, const gt_spec_draft_job *j, int *from) {
    int32_t *sh = d->shadow + (size_t)j->seq * (size_t)d->cap;
    uint32_t len = gt_engine_seq_len(d->eng, j->seq);
    if (len == 0) {
        uint32_t hit = gt_engine_prefix_cached(d->eng, j->ctx, j->n);
        if (hit && gt_engine_seq_attach(d->eng, j->seq, j->ctx, hit) == GT_OK) {
            memcpy(sh, j->ctx, hit * sizeof *sh);
            len = hit;
        }
    }
    uint32_t lim = len < (uint32_t)j->n - 1 ? len : (uint32_t)j->n - 1;
    uint32_t p = 0;
    while (p < lim && sh[p] == j->ctx[p]) p++;
    if (p < len && gt_engine_seq_truncate(d->eng, j->seq, p) != GT_OK) {
        /* Inside a block another sequence shares: start this one again. */
        GT_LOG_DEBUG(GT_SUB_SCHED, "draft sequence %d starts again: %s", j->seq, gt_last_error());
        gt_clear_error();
        gt_engine_seq_clear(d->eng, j->seq);
        p = 0;
    }
    *from = (int)p;
    return GT_OK;
}

/* Guess g of job j from its draft logits row. */
static void draw(gt_spec_draft *d, gt_spec_draft_job *j, int g, const float *row) {
    size_t V = (size_t)d->V;
    float *q = j->q + (size_t)g * V;
    if (j->pen && gt_penalties_active(j->pen)) {
        /* The last GT_PENALTY_LAST_N of ctx[0, n) and guess[0, g). */
        int end = j->n + g, from = end > GT_PENALTY_LAST_N ? end - GT_PENALTY_LAST_N : 0;
        for (int t = from; t < end; t++)
            d->recent[t - from] = t < j->n ? j->ctx[t] : j->guess[t - j->n];
        memcpy(d->pen_row, row, V * sizeof *row);
        gt_apply_penalties(d->pen_row, d->V, d->recent, end - from, j->pen);
        row = d->pen_row;
    }
    gt_sampler_probs(j->smp, row, q);
    if (gt_sampler_greedy(j->smp)) {
        j->guess[g] = gt_argmax(q, d->V);
        return;
    }
    double sum = 0;
    for (size_t i = 0; i < V; i++) sum += q[i];
    j->guess[g] = gt_spec_draw(j->smp, q, d->V, sum);
}

/* One draft forward of d->toks[nb]; the wanted rows' jobs are row_job[rows]
 * and draw their guess g (g < 0: the first, after a catch-up). */
static gt_status forward(gt_spec_draft *d, gt_spec_draft_job *jobs, int nb, int rows, int g) {
    for (int i = 0; i < nb; i++)
        d->shadow[(size_t)d->seqs[i] * (size_t)d->cap + (size_t)d->pos[i]] = d->toks[i];
    gt_batch b = {nb, d->toks, d->pos, d->seqs, d->want};
    float *logits = gt_engine_logits(d->eng);
    GT_TRY(gt_engine_decode(d->eng, &b, logits));
    d->st.forwards++;
    d->st.tokens += (uint64_t)nb;
    for (int r = 0; r < rows; r++)
        draw(d, &jobs[d->row_job[r]], g < 0 ? 0 : g, logits + (size_t)r * (size_t)d->V);
    return GT_OK;
}

/* The context tokens each job's draft lacks, in shared forwards; each job's
 * last one draws its first guess. */
static gt_status catch_up(gt_spec_draft *d, gt_spec_draft_job *jobs, int n_jobs) {
    int i = 0, off = d->from[0];
    while (i < n_jobs) {
        int nb = 0, rows = 0;
        while (i < n_jobs && nb < d->max_tokens) {
            gt_spec_draft_job *j = &jobs[i];
            int m = j->n - off < d->max_tokens - nb ? j->n - off : d->max_tokens - nb;
            for (int t = 0; t < m; t++, nb++) {
                d->toks[nb] = j->ctx[off + t];
                d->pos[nb] = off + t;
                d->seqs[nb] = j->seq;
                d->want[nb] = 0;
            }
            off += m;
            if (off == j->n) {
                d->want[nb - 1] = 1;
                d->row_job[rows++] = i;
                if (++i < n_jobs) off = d->from[i];
            }
        }
        GT_TRY(forward(d, jobs, nb, rows, -1));
    }
    return GT_OK;
}

/* Guesses 1..k-1: one forward each, a row per job still guessing. */
static gt_status guess_on(gt_spec_draft *d, gt_spec_draft_job *jobs, int n_jobs) {
    for (int g = 1;; g++) {
        int nb = 0;
        for (int i = 0; i < n_jobs; i++) {
            if (jobs[i].k <= g) continue;
            d->toks[nb] = jobs[i].guess[g - 1];
            d->pos[nb] = jobs[i].n + g - 1;
            d->seqs[nb] = jobs[i].seq;
            d->want[nb] = 1;
            d->row_job[nb++] = i;
        }
        if (!nb) return GT_OK;
        GT_TRY(forward(d, jobs, nb, nb, g));
    }
}

static gt_status check_jobs(const gt_spec_draft *d, const gt_spec_draft_job *jobs, int n_jobs) {
    if (n_jobs < 0 || n_jobs > d->cfg.max_seqs)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%d draft proposals in one step; the draft holds %d sequences", n_jobs,
                       d->cfg.max_seqs);
    for (int i = 0; i < n_jobs; i++) {
        const gt_spec_draft_job *j = &jobs[i];
        if (j->seq < 0 || j->seq >= d->cfg.max_seqs || j->n < 1 || j->k < 1 || j->k > 64 ||
            (uint64_t)j->n + (uint64_t)j->k - 1 > d->n_ctx || !j->ctx || !j->smp || !j->guess ||
            !j->q)
            return gt_fail(GT_ERR_INVALID_ARG,
                           "draft proposal %d: sequence %d, %d context tokens and %d guesses do "
                           "not fit %d sequences and a context of %u",
                           i, j->seq, j->n, j->k, d->cfg.max_seqs, d->n_ctx);
        for (int h = 0; h < i; h++)
            if (jobs[h].seq == j->seq)
                return gt_fail(GT_ERR_INVALID_ARG,
                               "draft proposals %d and %d are both for sequence %d", h, i, j->seq);
    }
    return GT_OK;
}

gt_status gt_spec_draft_propose(gt_spec_draft *d, gt_spec_draft_job *jobs, int n_jobs) {
    GT_TRY(check_jobs(d, jobs, n_jobs));
    if (!n_jobs) return GT_OK;
    uint64_t t0 = gt_now_ns();
    gt_status st = GT_OK;
    for (int i = 0; i < n_jobs && st == GT_OK; i++) st = sync_seq(d, &jobs[i], &d->from[i]);
    if (st == GT_OK) st = catch_up(d, jobs, n_jobs);
    if (st == GT_OK) st = guess_on(d, jobs, n_jobs);
    if (st != GT_OK && gt_engine_kv_full(d->eng)) {
        /* No room in the draft's pool: these requests decode plainly this
         * step and start their draft sequences again at the next. */
        GT_LOG_DEBUG(GT_SUB_SCHED, "the draft's KV pool is full: %s", gt_last_error());
        gt_clear_error();
        for (int i = 0; i < n_jobs; i++) {
            gt_spec_draft_release(d, jobs[i].seq);
            jobs[i].k = 0;
        }
        st = GT_OK;
    }
    d->st.seconds += (double)(gt_now_ns() - t0) * 1e-9;
    return st;
}
