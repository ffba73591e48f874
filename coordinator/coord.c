/* The in-process coordinator; see coord.h.
 *
 * Each sequence keeps its length, its sampler and its next token: a wanted
 * row's token is drawn as soon as its step returns (from the candidates or
 * the full logits row), in batch order, so that steps of other sequences may
 * come between (a benchmark prefills every sequence before sampling any)
 * without keeping rows of logits. */
#include "coordinator/coord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "coordinator/constraint.h"

enum { MAX_TOP = GT_COORD_MAX_LOGPROBS };

typedef struct seq_state {
    uint32_t len;
    gt_sampler *smp;  /* borrowed */
    bool has_next;    /* a token was drawn from the last output */
    int32_t next;
    gt_penalty_config pen;
    int n_logprobs;   /* alternatives to report per token (0: no log-probabilities) */
    int32_t recent[GT_PENALTY_LAST_N]; /* the sequence's last tokens, a ring */
    int n_recent, recent_pos;
    float next_lp;    /* log-probability of next, with n_logprobs alternatives */
    gt_cand top[MAX_TOP];
    gt_constraint *cons;  /* borrowed: logit bias and grammar; NULL: none */
    char cons_err[256];   /* why the constraint could not draw the next token ("" when it could) */
} seq_state;

static void remember(seq_state *q, int32_t tok) {
    q->recent[q->recent_pos] = tok;
    q->recent_pos = (q->recent_pos + 1) % GT_PENALTY_LAST_N;
    if (q->n_recent < GT_PENALTY_LAST_N) q->n_recent++;
}

struct gt_coord {
    gt_rank *r;
    bool leads, failed;
    int n_vocab, max_seqs, max_batch, max_cand, max_rows;
    uint32_t n_ctx;
    uint32_t pending_flags;
    seq_state *seqs;     /* [max_seqs] (leader) */
    int32_t *free_list;  /* [max_seqs] sequences to free with the next step */
    int n_free;
    int32_t *trunc_seq, *trunc_len; /* [max_seqs] sequences to truncate with the next step */
    int n_trunc;
    bool skip_sampling;  /* gt_coord_step_logits: rows go to the caller, no token is drawn */
    const int8_t *verify; /* borrowed [n]: gt_coord_step_verify's rows that go to the caller (NULL: all wanted rows) */
    float *step_logits_out; /* borrowed: gt_coord_step_logits's rows [wanted, n_vocab]; NULL otherwise */
    int32_t *tok, *pos, *seq; /* [max_batch] one step's batch */
    int8_t *want;
    int8_t *want_in;          /* [max_batch] all ones, for decode steps */
    int32_t *step_pos;        /* [max_seqs] 1 + the next position of a sequence in the step being built (0: none yet) */
    int8_t *step_wanted;      /* [max_seqs] the sequence already wanted an output in it */
    int32_t *attach_seq, *attach_len; /* [max_seqs] cached prefixes to attach with the next step */
    int32_t *attach_tok;      /* [max_attach_tokens] */
    int n_attach, n_attach_tok, max_attach_tok;
    int attach_spare;         /* free pool blocks not yet promised to this step's attaches (-1: not counted) */
    float *row_tmp;           /* [n_vocab] a row with penalties applied */
    gt_cand *lp_scratch;      /* [2 * n_vocab] for the log-probabilities' top tokens */
};

gt_status gt_coord_create(const gt_rank_config *cfg, gt_coord **out) {
    *out = NULL;
    gt_coord *c = calloc(1, sizeof *c);
    if (!c) return gt_fail(GT_ERR_NOMEM, "cannot allocate the coordinator");
    gt_rank_config rc = *cfg;
    rc.gather_logits = true; /* full rows: one rank's sampling, top-k 0, --logits-out */
    gt_status st = gt_rank_create(&rc, &c->r);
    if (st != GT_OK) {
        free(c);
        return st;
    }
    c->leads = gt_rank_world_rank(c->r) == 0;
    gt_engine *e = gt_rank_engine(c->r);
    c->n_vocab = (int)gt_rank_hparams(c->r)->n_vocab;
    c->n_ctx = gt_engine_n_ctx(e);
    gt_step_limits lim = gt_rank_step_limits(c->r);
    c->max_seqs = lim.max_seqs;
    c->max_batch = lim.max_tokens;
    c->max_cand = lim.max_cand;
    c->max_rows = cfg->max_out_rows ? cfg->max_out_rows : lim.max_seqs;
    if (c->max_rows > c->max_batch) c->max_rows = c->max_batch;
    if (!c->leads) {
        *out = c;
        return GT_OK;
    }
    size_t S = (size_t)c->max_seqs, B = (size_t)c->max_batch;
    c->seqs = calloc(S, sizeof *c->seqs);
    c->free_list = malloc(S * sizeof *c->free_list);
    c->trunc_seq = malloc(S * sizeof *c->trunc_seq);
    c->trunc_len = malloc(S * sizeof *c->trunc_len);
    c->tok = malloc(B * sizeof *c->tok);
    c->pos = malloc(B * sizeof *c->pos);
    c->seq = malloc(B * sizeof *c->seq);
    c->want = malloc(B);
    c->want_in = malloc(B);
    c->step_pos = calloc(S, sizeof *c->step_pos);
    c->step_wanted = calloc(S, 1);
    c->max_attach_tok = lim.max_attach_tokens;
    c->attach_spare = -1;
    c->row_tmp = malloc((size_t)c->n_vocab * sizeof *c->row_tmp);
    c->lp_scratch = malloc(2 * (size_t)c->n_vocab * sizeof *c->lp_scratch);
    c->attach_seq = malloc(S * sizeof *c->attach_seq);
    c->attach_len = malloc(S * sizeof *c->attach_len);
    c->attach_tok = malloc((size_t)(c->max_attach_tok > 0 ? c->max_attach_tok : 1) * sizeof *c->attach_tok);
    if (!c->seqs || !c->free_list || !c->trunc_seq || !c->trunc_len || !c->tok || !c->pos || !c->seq || !c->want || !c->want_in || !c->step_pos || !c->step_wanted ||
        !c->attach_seq || !c->attach_len || !c->attach_tok || !c->row_tmp || !c->lp_scratch) {
        gt_coord_destroy(c);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate the coordinator's state for %zu sequences", S);
    }
    *out = c;
    return GT_OK;
}

void gt_coord_destroy(gt_coord *c) {
    if (!c) return;
    if (c->leads && !c->failed && c->r) {
        gt_step stop = {.op = GT_STEP_STOP};
        if (gt_rank_lead(c->r, &stop, NULL) != GT_OK) gt_rank_abort(c->r, 1);
    }
    free(c->seqs);
    free(c->free_list);
    free(c->trunc_seq);
    free(c->trunc_len);
    free(c->tok);
    free(c->pos);
    free(c->seq);
    free(c->want);
    free(c->want_in);
    free(c->step_pos);
    free(c->step_wanted);
    free(c->attach_seq);
    free(c->attach_len);
    free(c->attach_tok);
    free(c->row_tmp);
    free(c->lp_scratch);
    gt_rank_destroy(c->r);
    free(c);
}

bool gt_coord_leads(const gt_coord *c) { return c->leads; }
gt_rank *gt_coord_rank(gt_coord *c) { return c->r; }
bool gt_coord_failed(const gt_coord *c) { return c->failed; }
double gt_coord_step_timeout(const gt_coord *c) { return gt_rank_comm_timeout(c->r); }
bool gt_coord_kv_full(const gt_coord *c) { return gt_engine_kv_full(gt_rank_engine(c->r)); }
uint32_t gt_coord_n_ctx(const gt_coord *c) { return c->n_ctx; }

gt_status gt_coord_follow(gt_coord *c) {
    if (c->leads) return GT_OK;
    return gt_rank_follow(c->r);
}

_Noreturn void gt_coord_abort(gt_coord *c, int code) { gt_rank_abort(c ? c->r : NULL, code); }

static gt_status check_seq(const gt_coord *c, int seq) {
    if (!c->leads) return gt_fail(GT_ERR_INTERNAL, "only rank 0 coordinates sequences");
    if (seq < 0 || seq >= c->max_seqs)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence %d is outside 0..%d", seq, c->max_seqs - 1);
    return GT_OK;
}

gt_status gt_coord_set_sampler(gt_coord *c, int seq, gt_sampler *s) {
    GT_TRY(check_seq(c, seq));
    if (s && gt_sampler_n_candidates(s) < c->n_vocab && gt_sampler_n_candidates(s) > c->max_cand)
        return gt_fail(GT_ERR_INVALID_ARG, "the sampler needs %d candidates, more than the %d this job "
                       "reserved", gt_sampler_n_candidates(s), c->max_cand);
    c->seqs[seq].smp = s;
    return GT_OK;
}

gt_status gt_coord_set_constraint(gt_coord *c, int seq, gt_constraint *cons) {
    GT_TRY(check_seq(c, seq));
    c->seqs[seq].cons = cons;
    c->seqs[seq].cons_err[0] = 0;
    return GT_OK;
}

uint32_t gt_coord_seq_len(const gt_coord *c, int seq) {
    return check_seq(c, seq) == GT_OK ? c->seqs[seq].len : 0;
}

gt_status gt_coord_set_extras(gt_coord *c, int seq, const gt_penalty_config *pen, int n_logprobs) {
    GT_TRY(check_seq(c, seq));
    if (n_logprobs < 0 || n_logprobs > MAX_TOP)
        return gt_fail(GT_ERR_INVALID_ARG, "%d log-probability alternatives per token; at most %d", n_logprobs,
                       MAX_TOP);
    if (pen && !(pen->repetition >= 0 && pen->repetition <= 10))
        return gt_fail(GT_ERR_INVALID_ARG, "repetition penalty %g is outside (0, 10]", (double)pen->repetition);
    c->seqs[seq].pen = pen ? *pen : (gt_penalty_config){1.0f, 0.0f, 0.0f};
    c->seqs[seq].n_logprobs = n_logprobs;
    return GT_OK;
}

gt_status gt_coord_next_logprobs(const gt_coord *c, int seq, float *lp, const gt_cand **top, int *n_top) {
    GT_TRY(check_seq(c, seq));
    const seq_state *q = &c->seqs[seq];
    if (!q->has_next || q->n_logprobs == 0)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence %d has no log-probabilities for its next token", seq);
    *lp = q->next_lp;
    *top = q->top;
    *n_top = q->n_logprobs < c->n_vocab ? q->n_logprobs : c->n_vocab;
    return GT_OK;
}

gt_status gt_coord_attach_prefix(gt_coord *c, int seq, const int32_t *toks, int n, int *cached) {
    *cached = 0;
    GT_TRY(check_seq(c, seq));
    if (c->seqs[seq].len)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence %d holds %u tokens; a cached prefix attaches only to an "
                       "empty sequence", seq, c->seqs[seq].len);
    for (int i = 0; i < c->n_attach; i++)
        if (c->attach_seq[i] == seq) return gt_fail(GT_ERR_INVALID_ARG, "sequence %d is attached twice", seq);
    /* Rank 0's cache is every rank's: they all executed the same steps.
     * Blocks coming back from the host tier may only take free blocks, so
     * that no attach of this step evicts another's. */
    gt_engine *e = gt_rank_engine(c->r);
    if (c->attach_spare < 0) c->attach_spare = gt_engine_kv(e).free_blocks;
    int hit = (int)gt_engine_prefix_fit(e, toks, n, &c->attach_spare);
    if (hit == 0 || c->n_attach_tok + hit > c->max_attach_tok) return GT_OK;
    c->attach_seq[c->n_attach] = seq;
    c->attach_len[c->n_attach++] = hit;
    memcpy(c->attach_tok + c->n_attach_tok, toks, (size_t)hit * sizeof *toks);
    c->n_attach_tok += hit;
    c->seqs[seq].len = (uint32_t)hit;
    c->seqs[seq].has_next = false;
    for (int i = 0; i < hit; i++) remember(&c->seqs[seq], toks[i]); /* the penalties see them too */
    *cached = hit;
    return GT_OK;
}

gt_status gt_coord_free_seq(gt_coord *c, int seq) {
    GT_TRY(check_seq(c, seq));
    seq_state *s = &c->seqs[seq];
    for (int i = 0; i < c->n_free; i++)
        if (c->free_list[i] == seq) return GT_OK;
    c->free_list[c->n_free++] = seq;
    for (int i = 0; i < c->n_trunc; i++) /* a pending truncation has nothing left to cut */
        if (c->trunc_seq[i] == seq) {
            c->trunc_seq[i] = c->trunc_seq[c->n_trunc - 1];
            c->trunc_len[i] = c->trunc_len[--c->n_trunc];
            break;
        }
    s->len = 0;
    s->has_next = false;
    s->n_recent = s->recent_pos = 0;
    return GT_OK;
}

void gt_coord_reset_stats(gt_coord *c) { c->pending_flags |= GT_STEP_RESET_STATS; }
void gt_coord_trace_on(gt_coord *c) { c->pending_flags |= GT_STEP_TRACE_ON; }

gt_status gt_coord_report(gt_coord *c, bool write_trace, gt_rank_counters *all) {
    gt_status st = gt_rank_report(c->r, write_trace ? GT_STEP_TRACE_WRITE : 0, all);
    if (st != GT_OK) c->failed = true;
    return st;
}

/* Full rows are needed on one rank (the sampler reads them there) and for
 * samplers that consider the whole vocabulary. */
static bool needs_full_row(const gt_coord *c, const seq_state *q) {
    return gt_rank_world_size(c->r) == 1 || gt_sampler_n_candidates(q->smp) >= c->n_vocab ||
           gt_penalties_active(&q->pen) || q->n_logprobs > 0 || gt_constraint_active(q->cons);
}

/* Runs the batch assembled in c->tok/pos/seq/want[n]: full logits of the
 * wanted rows into `logits` ([rows, n_vocab]) when given, and each wanted
 * row's output kept for its sequence's sampler. */
static gt_status run_step(gt_coord *c, int n, float *logits) {
    int n_cand = 0;
    bool full = logits != NULL;
    for (int i = 0; i < n; i++) {
        const seq_state *sq = &c->seqs[c->seq[i]];
        const gt_sampler *smp = sq->smp;
        if (!c->want[i] || !smp) continue;
        if (needs_full_row(c, sq)) full = true;
        int k = gt_sampler_n_candidates(smp);
        if (k > n_cand) n_cand = k;
    }
    gt_step s = {.op = GT_STEP_FORWARD, .n_tokens = n, .n_free = c->n_free,
                 .n_cand = full ? 0 : n_cand, .flags = c->pending_flags | (full ? GT_STEP_LOGITS : 0),
                 .tokens = c->tok, .pos = c->pos, .seq = c->seq, .want = c->want,
                 .free_seqs = c->free_list, .n_attach = c->n_attach, .n_attach_tokens = c->n_attach_tok,
                 .attach_seq = c->attach_seq, .attach_len = c->attach_len, .attach_tokens = c->attach_tok,
                 .n_trunc = c->n_trunc, .trunc_seq = c->trunc_seq, .trunc_len = c->trunc_len};
    gt_step_result res;
    gt_status st = gt_rank_lead(c->r, &s, &res);
    if (st != GT_OK && gt_engine_kv_full(gt_rank_engine(c->r))) {
        /* Every rank refused the batch for lack of KV blocks before any
         * compute, after its frees and attaches: those are done. */
        c->pending_flags = 0;
        c->n_free = c->n_trunc = 0;
        c->n_attach = c->n_attach_tok = 0;
        c->attach_spare = -1;
        return st;
    }
    if (st != GT_OK) {
        c->failed = true;
        return st;
    }
    c->pending_flags = 0;
    c->n_free = c->n_trunc = 0;
    c->n_attach = c->n_attach_tok = 0;
    c->attach_spare = -1;
    int row = 0, out_row = 0;
    for (int i = 0; i < n; i++) {
        seq_state *q = &c->seqs[c->seq[i]];
        q->len = (uint32_t)c->pos[i] + 1;
        q->has_next = false;
        remember(q, c->tok[i]);
        if (!c->want[i]) continue;
        const float *full_row = full ? res.logits + (size_t)row * (size_t)c->n_vocab : NULL;
        bool to_caller = logits && (!c->verify || c->verify[i]);
        if (to_caller)
            memcpy(logits + (size_t)out_row++ * (size_t)c->n_vocab, full_row, (size_t)c->n_vocab * sizeof(float));
        bool skip = c->verify ? c->verify[i] != 0 : c->skip_sampling;
        if (q->smp && !skip) {
            const float *draw_row = full_row;
            bool cons = full_row && gt_constraint_active(q->cons);
            if (full_row && (gt_penalties_active(&q->pen) || cons)) {
                int32_t rec[GT_PENALTY_LAST_N];
                for (int j = 0; j < q->n_recent; j++)
                    rec[j] = q->recent[(q->recent_pos - q->n_recent + j + GT_PENALTY_LAST_N) % GT_PENALTY_LAST_N];
                memcpy(c->row_tmp, full_row, (size_t)c->n_vocab * sizeof(float));
                if (gt_penalties_active(&q->pen))
                    gt_apply_penalties(c->row_tmp, c->n_vocab, rec, q->n_recent, &q->pen);
                draw_row = c->row_tmp;
            }
            q->cons_err[0] = 0;
            if (cons) {
                /* A failure ends only this sequence: gt_coord_next_token reports it. */
                if (gt_constraint_draw(q->cons, q->smp, c->row_tmp, &q->next) != GT_OK) {
                    snprintf(q->cons_err, sizeof q->cons_err, "%s", gt_last_error());
                    q->next = 0;
                }
            } else {
                q->next = draw_row ? gt_sampler_sample(q->smp, draw_row)
                                   : gt_sampler_sample_candidates(q->smp, res.cand_vals + (size_t)row * (size_t)res.n_cand,
                                                                  res.cand_ids + (size_t)row * (size_t)res.n_cand,
                                                                  res.n_cand);
            }
            if (full_row && q->n_logprobs > 0)
                gt_logprobs(full_row, c->n_vocab, q->next, q->n_logprobs, &q->next_lp, q->top, c->lp_scratch);
            q->has_next = true;
        }
        row++;
    }
    return GT_OK;
}

static gt_status check_tokens(const gt_coord *c, int seq, const int32_t *toks, int n) {
    GT_TRY(check_seq(c, seq));
    for (int i = 0; i < n; i++)
        if (toks[i] < 0 || toks[i] >= c->n_vocab)
            return gt_fail(GT_ERR_INVALID_ARG, "token %d (id %d) is outside the vocabulary of %d", i,
                           toks[i], c->n_vocab);
    if ((uint64_t)c->seqs[seq].len + (uint64_t)n > c->n_ctx)
        return gt_fail(GT_ERR_RANGE, "sequence %d holds %u tokens; %d more exceed the context of %u "
                       "tokens", seq, c->seqs[seq].len, n, c->n_ctx);
    return GT_OK;
}

gt_status gt_coord_prefill(gt_coord *c, int seq, const int32_t *toks, int n, float *logits) {
    GT_TRY(check_tokens(c, seq, toks, n));
    if (logits && c->max_rows < (n < c->max_batch ? n : c->max_batch))
        return gt_fail(GT_ERR_INVALID_ARG, "full logits of %d tokens need %d output rows per step; this "
                       "job holds %d", n, n < c->max_batch ? n : c->max_batch, c->max_rows);
    for (int i0 = 0; i0 < n; i0 += c->max_batch) {
        int m = n - i0 < c->max_batch ? n - i0 : c->max_batch;
        uint32_t p0 = c->seqs[seq].len;
        for (int i = 0; i < m; i++) {
            c->tok[i] = toks[i0 + i];
            c->pos[i] = (int32_t)(p0 + (uint32_t)i);
            c->seq[i] = seq;
            c->want[i] = logits != NULL || i0 + i == n - 1;
        }
        GT_TRY(run_step(c, m, logits ? logits + (size_t)i0 * (size_t)c->n_vocab : NULL));
    }
    return GT_OK;
}

static void clear_step_marks(gt_coord *c, const int32_t *seqs, int n) {
    for (int i = 0; i < n; i++) c->step_pos[seqs[i]] = c->step_wanted[seqs[i]] = 0;
}

gt_status gt_coord_step(gt_coord *c, int n, const int32_t *seqs, const int32_t *toks,
                        const int8_t *want) {
    if (!c->leads) return gt_fail(GT_ERR_INTERNAL, "only rank 0 coordinates sequences");
    if (n < 1 || n > c->max_batch)
        return gt_fail(GT_ERR_INVALID_ARG, "a step of %d tokens is outside 1..%d", n, c->max_batch);
    for (int i = 0; i < n; i++) {
        GT_TRY(check_seq(c, seqs[i]));
        if (toks[i] < 0 || toks[i] >= c->n_vocab)
            return gt_fail(GT_ERR_INVALID_ARG, "token %d (id %d) is outside the vocabulary of %d", i,
                           toks[i], c->n_vocab);
    }
    int rows = 0;
    for (int i = 0; i < n; i++) {
        /* The position continues the sequence's cache and its earlier tokens
         * here (step_pos[seq] counts them; 0 until the sequence's first one). */
        int32_t sq = seqs[i];
        if (!c->step_pos[sq]) c->step_pos[sq] = (int32_t)c->seqs[sq].len + 1;
        uint32_t pos = (uint32_t)c->step_pos[sq]++ - 1;
        gt_status st = GT_OK;
        if (c->step_wanted[sq] && !c->skip_sampling && !(c->verify && c->verify[i]))
            st = gt_fail(GT_ERR_INVALID_ARG, "sequence %d wants an output before its last token of the step", sq);
        else if (pos >= c->n_ctx)
            st = gt_fail(GT_ERR_RANGE, "sequence %d would pass the context of %u tokens", sq, c->n_ctx);
        c->step_wanted[sq] = want[i] != 0;
        if (st != GT_OK) {
            clear_step_marks(c, seqs, i + 1);
            return st;
        }
        c->tok[i] = toks[i];
        c->pos[i] = (int32_t)pos;
        c->seq[i] = seqs[i];
        c->want[i] = want[i] != 0;
        rows += want[i] != 0;
    }
    clear_step_marks(c, seqs, n);
    if (rows > c->max_rows)
        return gt_fail(GT_ERR_INVALID_ARG, "a step wants %d outputs; this job holds %d", rows, c->max_rows);
    return run_step(c, n, c->step_logits_out);
}

gt_status gt_coord_flush(gt_coord *c, bool *sent) {
    *sent = false;
    if (!c->leads || (c->n_free == 0 && c->n_attach == 0 && c->n_trunc == 0)) return GT_OK;
    *sent = true;
    return run_step(c, 0, NULL);
}

gt_status gt_coord_decode(gt_coord *c, int n, const int32_t *seqs, const int32_t *toks) {
    if (n < 1 || n > c->max_batch || n > c->max_rows)
        return gt_fail(GT_ERR_INVALID_ARG, "a decode step of %d sequences is outside 1..%d", n,
                       c->max_batch < c->max_rows ? c->max_batch : c->max_rows);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i])
                return gt_fail(GT_ERR_INVALID_ARG, "sequence %d appears twice in one decode step", seqs[i]);
    memset(c->want_in, 1, (size_t)n);
    return gt_coord_step(c, n, seqs, toks, c->want_in);
}

gt_status gt_coord_next_token(gt_coord *c, int seq, int32_t *tok) {
    GT_TRY(check_seq(c, seq));
    seq_state *q = &c->seqs[seq];
    if (!q->smp) return gt_fail(GT_ERR_INVALID_ARG, "sequence %d has no sampler", seq);
    if (!q->has_next) return gt_fail(GT_ERR_INVALID_ARG, "sequence %d has no output to sample from", seq);
    if (q->cons_err[0]) return gt_fail(GT_ERR_INVALID_ARG, "%s", q->cons_err);
    *tok = q->next;
    return GT_OK;
}

gt_status gt_coord_truncate_seq(gt_coord *c, int seq, uint32_t n) {
    GT_TRY(check_seq(c, seq));
    seq_state *q = &c->seqs[seq];
    if (n > q->len)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence %d holds %u tokens; it cannot be truncated to %u", seq,
                       q->len, n);
    if (n == q->len) return GT_OK;
    for (int i = 0; i < c->n_free; i++)
        if (c->free_list[i] == seq)
            return gt_fail(GT_ERR_INVALID_ARG, "sequence %d is freed with the next step; it cannot be truncated",
                           seq);
    int i = 0;
    while (i < c->n_trunc && c->trunc_seq[i] != seq) i++;
    if (i == c->n_trunc) c->n_trunc++;
    c->trunc_seq[i] = seq;
    c->trunc_len[i] = (int32_t)n;
    /* The penalties look back on the tokens kept: the dropped ones leave the ring. */
    int drop = (int)(q->len - n);
    if (drop > q->n_recent) drop = q->n_recent;
    q->n_recent -= drop;
    q->recent_pos = (q->recent_pos - drop + GT_PENALTY_LAST_N) % GT_PENALTY_LAST_N;
    q->len = n;
    q->has_next = false;
    return GT_OK;
}

gt_status gt_coord_step_logits(gt_coord *c, int n, const int32_t *seqs, const int32_t *toks,
                               const int8_t *want, float *logits) {
    if (!logits) return gt_fail(GT_ERR_INVALID_ARG, "gt_coord_step_logits needs an output buffer");
    c->skip_sampling = true;
    float *saved = c->step_logits_out;
    c->step_logits_out = logits;
    gt_status st = gt_coord_step(c, n, seqs, toks, want);
    c->step_logits_out = saved;
    c->skip_sampling = false;
    return st;
}

gt_status gt_coord_step_verify(gt_coord *c, int n, const int32_t *seqs, const int32_t *toks,
                               const int8_t *want, const int8_t *verify, float *logits) {
    if (!logits || !verify)
        return gt_fail(GT_ERR_INVALID_ARG, "gt_coord_step_verify needs its verify rows and an output buffer");
    for (int i = 0; i < n; i++)
        if (verify[i] && !want[i])
            return gt_fail(GT_ERR_INVALID_ARG, "token %d of the step is verified but not wanted", i);
    c->verify = verify;
    float *saved = c->step_logits_out;
    c->step_logits_out = logits;
    gt_status st = gt_coord_step(c, n, seqs, toks, want);
    c->step_logits_out = saved;
    c->verify = NULL;
    return st;
}

int gt_coord_max_rows(const gt_coord *c) { return c->max_rows; }
