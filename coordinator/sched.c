/* Continuous batching; see sched.h.
 *
 * A step is filled in a fixed order, so that running requests never
 * starve: first one decode token for every request that is generating (in
 * slot order), then the next chunk of every request still prefilling, then
 * newly admitted requests (first come, first served) while a slot and the
 * token budget last. A request's prompt may take several steps; its last
 * prompt token wants an output, and its first token is drawn from it.
 * Callbacks may submit and cancel; a request cancelled by another's
 * callback is skipped for the rest of the step. */
#include "coordinator/sched.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "coordinator/constraint.h"
#include "coordinator/sched_beam.h"
#include "coordinator/spec.h"
#include "coordinator/spec_draft.h"

typedef struct req {
    gt_sched_req r;
    int32_t *prompt;   /* owned copy */
    gt_sampler *smp;
    int slot;          /* the coordinator's sequence; -1 while waiting */
    int prefilled;     /* prompt tokens evaluated (or taken from the prefix cache) */
    int cached;        /* of which from the prefix cache */
    int n_orig;        /* the prompt as submitted (a preempted request's grows by its tokens) */
    int32_t *gen;      /* [max_tokens] generated so far */
    uint64_t admitted; /* admission order: the youngest is preempted first */
    int chunk_from;    /* prefilled before this step's chunk (to undo a refused step) */
    int n_gen;
    bool decoding;     /* the prompt is in; `last` is the next input */
    int32_t last;
    struct req *next;  /* the waiting queue */
    /* ---- speculative decoding: its guesses follow its tokens in `prompt` ---- */
    int spec_k;        /* guesses in this step (0: a plain decode row) */
    int spec_row;      /* its first verification row in the step's logits */
    int spec_qrow;     /* a draft's guesses: their first row of q in qrows */
    int spec_steps, spec_drafted, spec_accepted;
    /* ---- beam search (r.beams > 0): slot is bslots[0] ---- */
    int bslots[GT_BEAM_MAX_WIDTH];
    gt__sbeam *sb; /* while it holds its slots */
    double beam_score;
    gt_sched_hyp alts[GT_BEAM_MAX_WIDTH - 1]; /* the runners-up once the search ended (into sb) */
    int n_alts;
} req;

struct gt_sched {
    gt_coord *c;
    gt_sched_config cfg;
    int n_vocab, max_seqs, budget, max_cand;
    uint32_t n_ctx;
    req **slots;       /* [max_seqs] running requests */
    req *wait_head, *wait_tail;
    int n_waiting, n_running;
    int32_t *seqs, *toks; /* [budget] one step */
    int8_t *want;
    int *wanted;       /* [max_seqs] slots whose requests draw a token this step */
    int block_size, pool_blocks;
    uint64_t n_admitted, n_preempted;
    /* ---- speculative decoding (allocated with the first speculating request) ---- */
    int max_rows;          /* wanted rows per step */
    int8_t *verify;        /* [budget] the step's verification rows */
    float *vrows, *prows;  /* [max_rows, n_vocab] their logits; with penalties applied */
    float *p;              /* [n_vocab] */
    float *qrows;          /* [max_rows, n_vocab] the draft's distribution of each guess */
    gt_spec_draft_job *jobs; /* [max_seqs] one step's draft proposals */
    gt_cand *lp_scratch;   /* [2 * n_vocab] */
    gt_cand top[20];
    int n_vrows;
    bool trunc_pending;    /* a truncation rides on the next step */
    gt_sched_spec_stats spec;
};

const char *gt_finish_name(gt_finish f) {
    switch (f) {
    case GT_FINISH_STOP: return "stop";
    case GT_FINISH_LENGTH: return "length";
    case GT_FINISH_CANCELLED: return "cancelled";
    case GT_FINISH_SHUTDOWN: return "shutdown";
    }
    return "?";
}

gt_status gt_sched_create(gt_coord *c, const gt_sched_config *cfg, gt_sched **out) {
    *out = NULL;
    if (!gt_coord_leads(c)) return gt_fail(GT_ERR_INTERNAL, "only rank 0 schedules requests");
    gt_step_limits lim = gt_rank_step_limits(gt_coord_rank(c));
    if (cfg->max_batch_tokens < 0 || cfg->max_waiting < 0)
        return gt_fail(GT_ERR_INVALID_ARG, "the scheduler's batch (%d) and queue (%d) must not be negative",
                       cfg->max_batch_tokens, cfg->max_waiting);
    gt_sched *s = calloc(1, sizeof *s);
    if (!s) return gt_fail(GT_ERR_NOMEM, "cannot allocate the scheduler");
    s->c = c;
    s->cfg = *cfg;
    s->n_vocab = (int)gt_rank_hparams(gt_coord_rank(c))->n_vocab;
    s->n_ctx = gt_coord_n_ctx(c);
    s->max_seqs = lim.max_seqs;
    s->max_cand = lim.max_cand;
    gt_engine_kv_stats kv = gt_engine_kv(gt_rank_engine(gt_coord_rank(c)));
    s->block_size = kv.block_size;
    s->pool_blocks = kv.total_blocks;
    s->budget = cfg->max_batch_tokens > 0 && cfg->max_batch_tokens < lim.max_tokens ? cfg->max_batch_tokens
                                                                                      : lim.max_tokens;
    s->slots = calloc((size_t)s->max_seqs, sizeof *s->slots);
    s->wanted = calloc((size_t)s->max_seqs, sizeof *s->wanted);
    s->seqs = malloc((size_t)s->budget * sizeof *s->seqs);
    s->toks = malloc((size_t)s->budget * sizeof *s->toks);
    s->want = malloc((size_t)s->budget);
    s->verify = calloc((size_t)s->budget, 1);
    s->max_rows = gt_coord_max_rows(c);
    if (!s->slots || !s->wanted || !s->seqs || !s->toks || !s->want || !s->verify) {
        gt_sched_destroy(s);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate the scheduler's tables for %d sequences", lim.max_seqs);
    }
    *out = s;
    return GT_OK;
}

/* The request running in slot i, met once: a beam request holds several
 * slots and is met at its first. */
static req *run_at(const gt_sched *s, int i) {
    req *q = s->slots[i];
    return q && q->slot == i ? q : NULL;
}

static void release(req *q) {
    gt__sbeam_destroy(q->sb);
    gt_sampler_destroy(q->smp);
    gt_constraint_free(q->r.cons);
    free(q->prompt);
    free(q->gen);
    free(q);
}

/* Takes q out of the scheduler and tells its owner. */
static void finish(gt_sched *s, req *q, gt_finish why) {
    if (q->slot >= 0) {
        int n_slots = q->r.beams > 0 ? q->r.beams : 1;
        for (int i = 0; i < n_slots; i++) {
            int slot = q->r.beams > 0 ? q->bslots[i] : q->slot;
            gt_coord_set_sampler(s->c, slot, NULL);
            gt_coord_set_constraint(s->c, slot, NULL);
            gt_coord_free_seq(s->c, slot); /* sent with the next step */
            gt_spec_draft_release(s->cfg.draft, slot);
            s->slots[slot] = NULL;
        }
        s->n_running--;
    }
    gt_sched_usage u = {q->n_orig,        q->cached,     q->n_gen, q->spec_steps, q->spec_drafted,
                        q->spec_accepted, q->beam_score, q->alts,  q->n_alts};
    if (q->r.on_done) q->r.on_done(q->r.user, q->r.id, why, &u);
    release(q);
}

void gt_sched_destroy(gt_sched *s) {
    if (!s) return;
    for (int i = 0; s->slots && i < s->max_seqs; i++)
        if (run_at(s, i)) finish(s, s->slots[i], GT_FINISH_SHUTDOWN);
    while (s->wait_head) {
        req *q = s->wait_head;
        s->wait_head = q->next;
        finish(s, q, GT_FINISH_SHUTDOWN);
    }
    free(s->slots);
    free(s->wanted);
    free(s->seqs);
    free(s->toks);
    free(s->want);
    free(s->verify);
    free(s->vrows);
    free(s->prows);
    free(s->p);
    free(s->qrows);
    free(s->jobs);
    free(s->lp_scratch);
    free(s);
}

int gt_sched_n_waiting(const gt_sched *s) { return s->n_waiting; }
int gt_sched_n_running(const gt_sched *s) { return s->n_running; }
uint64_t gt_sched_n_preempted(const gt_sched *s) { return s->n_preempted; }
gt_sched_spec_stats gt_sched_get_spec_stats(const gt_sched *s) { return s->spec; }

/* The speculation settings of r, and the buffers its verification needs. */
static gt_status spec_check(gt_sched *s, const gt_sched_req *r) {
    if (r->spec_lookup == 0 && !r->spec_draft) return GT_OK;
    if (r->spec_draft && r->spec_lookup != 0)
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu asks for both prompt lookup (%d) and the draft model; "
                       "a request speculates with one of them", (unsigned long long)r->id, r->spec_lookup);
    if (r->spec_draft && !s->cfg.draft)
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu asks for draft-model speculation, but this server has no "
                       "draft model (start it with --draft FILE or --self-draft L)", (unsigned long long)r->id);
    if (r->spec_draft && (r->spec_tokens < 1 || r->spec_tokens > 64))
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu speculates with the draft model and %d tokens; tokens "
                       "must be in 1..64", (unsigned long long)r->id, r->spec_tokens);
    if (!r->spec_draft && (r->spec_lookup < 0 || r->spec_lookup > 64 || r->spec_tokens < 1 || r->spec_tokens > 64))
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu speculates with lookup %d and %d tokens; lookup must "
                       "be in 1..64 and tokens in 1..64", (unsigned long long)r->id, r->spec_lookup, r->spec_tokens);
    if (r->cons)
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu asks for speculation together with a grammar, JSON "
                       "schema or logit bias; verification does not apply them, so use one or the other",
                       (unsigned long long)r->id);
    if (s->max_rows - s->max_seqs < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu asks for speculation, but this job's steps hold %d output "
                       "rows for %d sequences, leaving none for guesses", (unsigned long long)r->id, s->max_rows,
                       s->max_seqs);
    if (r->spec_draft && !s->qrows) {
        s->qrows = malloc((size_t)s->max_rows * (size_t)s->n_vocab * sizeof *s->qrows);
        s->jobs = calloc((size_t)s->max_seqs, sizeof *s->jobs);
        if (!s->qrows || !s->jobs) {
            free(s->qrows);
            free(s->jobs);
            s->qrows = NULL;
            s->jobs = NULL;
            return gt_fail(GT_ERR_NOMEM, "cannot allocate %d draft distributions of %d tokens", s->max_rows,
                           s->n_vocab);
        }
    }
    if (s->vrows) return GT_OK;
    size_t rows = (size_t)s->max_rows * (size_t)s->n_vocab;
    s->vrows = malloc(rows * sizeof *s->vrows);
    s->prows = malloc(rows * sizeof *s->prows);
    s->p = malloc((size_t)s->n_vocab * sizeof *s->p);
    s->lp_scratch = malloc(2 * (size_t)s->n_vocab * sizeof *s->lp_scratch);
    if (!s->vrows || !s->prows || !s->p || !s->lp_scratch) {
        free(s->vrows);
        free(s->prows);
        free(s->p);
        free(s->lp_scratch);
        s->vrows = s->prows = s->p = NULL;
        s->lp_scratch = NULL;
        return gt_fail(GT_ERR_NOMEM, "cannot allocate %d verification rows of %d logits", s->max_rows, s->n_vocab);
    }
    return GT_OK;
}

/* The beam settings of r (need: KV blocks of one sequence). */
static gt_status beam_check(const gt_sched *s, const gt_sched_req *r, int need) {
    unsigned long long id = (unsigned long long)r->id;
    if (r->n_best < 0 || r->n_best > (r->beams > 0 ? r->beams : 1))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "request %llu asks for the %d best hypotheses of %d beams; at most one "
                       "per beam%s",
                       id, r->n_best, r->beams,
                       r->beams > 0 ? "" : " (and only beam search ranks several)");
    if (r->beams == 0) return GT_OK;
    int hi = s->max_seqs < GT_BEAM_MAX_WIDTH ? s->max_seqs : GT_BEAM_MAX_WIDTH;
    if (r->beams < 1 || r->beams > hi)
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu asks for %d beams; this job takes 1..%d (at most %d, "
                       "and one sequence slot each of its %d)", id, r->beams, hi, GT_BEAM_MAX_WIDTH, s->max_seqs);
    if (!(r->length_penalty >= -10.0f && r->length_penalty <= 10.0f))
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu has length penalty %g; it must be in [-10, 10]", id,
                       (double)r->length_penalty);
    if (r->cons || r->spec_lookup > 0 || r->spec_draft || r->logprobs > 0 || gt_penalties_active(&r->pen))
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu asks for beam search together with %s; beam search "
                       "ranks plain log-probabilities, so use one or the other", id,
                       r->cons ? "a grammar, JSON schema or logit bias"
                       : r->spec_lookup > 0 || r->spec_draft ? "speculation"
                       : r->logprobs > 0 ? "logprobs" : "repetition, presence or frequency penalties");
    if ((long)need * r->beams > s->pool_blocks)
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu's %d beams need up to %d KV blocks each (%d in all); the pool "
                       "holds %d", id, r->beams, need, need * r->beams, s->pool_blocks);
    return GT_OK;
}

static req *find(gt_sched *s, uint64_t id, req ***link) {
    for (int i = 0; i < s->max_seqs; i++)
        if (s->slots[i] && s->slots[i]->r.id == id) {
            *link = NULL;
            return s->slots[i];
        }
    for (req **p = &s->wait_head; *p; p = &(*p)->next)
        if ((*p)->r.id == id) {
            *link = p;
            return *p;
        }
    return NULL;
}

static gt_status submit(gt_sched *s, const gt_sched_req *r);

gt_status gt_sched_submit(gt_sched *s, const gt_sched_req *r) {
    gt_status st = submit(s, r);
    if (st != GT_OK) gt_constraint_free(r->cons); /* handed over even on failure */
    return st;
}

static gt_status submit(gt_sched *s, const gt_sched_req *r) {
    req **link;
    if (find(s, r->id, &link))
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu is already queued or running",
                       (unsigned long long)r->id);
    if (r->n_prompt < 1 || !r->prompt) return gt_fail(GT_ERR_INVALID_ARG, "request %llu has an empty prompt",
                                                      (unsigned long long)r->id);
    if (r->logprobs < 0 || r->logprobs > 20)
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu asks for %d log-probability alternatives; 0..20",
                       (unsigned long long)r->id, r->logprobs);
    if (r->max_tokens < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "request %llu asks for %d tokens; at least 1",
                       (unsigned long long)r->id, r->max_tokens);
    if ((uint64_t)r->n_prompt + (uint64_t)r->max_tokens > s->n_ctx)
        return gt_fail(GT_ERR_RANGE, "a prompt of %d tokens plus max_tokens %d exceeds the context of %u",
                       r->n_prompt, r->max_tokens, s->n_ctx);
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= s->n_vocab)
            return gt_fail(GT_ERR_INVALID_ARG, "prompt token %d (id %d) is outside the vocabulary of %d", i,
                           r->prompt[i], s->n_vocab);
    int need = (r->n_prompt + r->max_tokens + s->block_size - 1) / s->block_size;
    if (need > s->pool_blocks)
        return gt_fail(GT_ERR_RANGE, "a prompt of %d tokens plus max_tokens %d needs %d KV blocks; the pool "
                       "holds %d", r->n_prompt, r->max_tokens, need, s->pool_blocks);
    if (s->n_waiting >= s->cfg.max_waiting)
        return gt_fail(GT_ERR_RANGE, "the queue is full (%d requests waiting)", s->n_waiting);
    GT_TRY(spec_check(s, r));
    GT_TRY(beam_check(s, r, need));
    req *q = calloc(1, sizeof *q);
    if (!q) return gt_fail(GT_ERR_NOMEM, "cannot allocate a request");
    q->r = *r;
    q->slot = -1;
    q->n_orig = r->n_prompt;
    q->prompt = malloc((size_t)(r->n_prompt + r->max_tokens) * sizeof *q->prompt); /* room to resume */
    q->gen = malloc((size_t)r->max_tokens * sizeof *q->gen);
    gt_sampler_config greedy = GT_SAMPLER_CONFIG_INIT; /* a beam's rows draw, unused */
    gt_status st = q->prompt && q->gen ? gt_sampler_create(r->beams > 0 ? &greedy : &r->samp, s->n_vocab, &q->smp)
                             : gt_fail(GT_ERR_NOMEM, "cannot copy a prompt of %d tokens", r->n_prompt);
    if (st == GT_OK) {
        int k = gt_sampler_n_candidates(q->smp);
        if (k < s->n_vocab && k > s->max_cand)
            st = gt_fail(GT_ERR_INVALID_ARG, "top_k %d needs more candidates than the %d this job reserves",
                         k, s->max_cand);
    }
    if (st != GT_OK) {
        q->r.cons = NULL; /* gt_sched_submit frees it */
        release(q);
        return st;
    }
    memcpy(q->prompt, r->prompt, (size_t)r->n_prompt * sizeof *q->prompt);
    q->r.prompt = q->prompt;
    if (q->r.spec_lookup == 0 && !q->r.spec_draft) q->r.spec_tokens = 0;
    if (s->wait_tail) s->wait_tail->next = q;
    else s->wait_head = q;
    s->wait_tail = q;
    s->n_waiting++;
    return GT_OK;
}

gt_status gt_sched_cancel(gt_sched *s, uint64_t id) {
    req **link;
    req *q = find(s, id, &link);
    if (!q) return gt_fail(GT_ERR_NOT_FOUND, "no live request has id %llu", (unsigned long long)id);
    if (link) { /* waiting: unlink from the queue */
        *link = q->next;
        if (s->wait_tail == q) {
            s->wait_tail = NULL;
            for (req *p = s->wait_head; p; p = p->next) s->wait_tail = p;
        }
        s->n_waiting--;
    }
    finish(s, q, GT_FINISH_CANCELLED);
    return GT_OK;
}

/* Adds up to `room` prompt tokens of q to the step; returns how many. */
static int add_chunk(gt_sched *s, req *q, int n, int room) {
    q->chunk_from = q->prefilled;
    q->spec_k = 0; /* its wanted row, if any, draws as a plain one */
    int m = q->r.n_prompt - q->prefilled;
    if (m > room) m = room;
    for (int i = 0; i < m; i++) {
        s->seqs[n + i] = q->slot;
        s->toks[n + i] = q->prompt[q->prefilled + i];
        s->want[n + i] = 0;
        s->verify[n + i] = 0;
    }
    q->prefilled += m;
    if (m > 0 && q->prefilled == q->r.n_prompt) s->want[n + m - 1] = 1;
    return m;
}

static int free_slot(const gt_sched *s) {
    for (int i = 0; i < s->max_seqs; i++)
        if (!s->slots[i]) return i;
    return -1;
}

/* Takes beam request q off its slots: preempted, it starts its search
 * again when it is admitted anew. */
static void beam_unseat(gt_sched *s, req *q) {
    for (int i = 0; i < q->r.beams; i++) {
        gt_coord_set_sampler(s->c, q->bslots[i], NULL);
        gt_coord_free_seq(s->c, q->bslots[i]);
        s->slots[q->bslots[i]] = NULL;
    }
    gt__sbeam_destroy(q->sb);
    q->sb = NULL;
    q->slot = -1;
    s->n_running--;
}

/* Takes the youngest running request off its slot (its blocks go to the
 * prefix cache, and from there maybe to the host tier) and puts it first in
 * the queue, its prompt grown by what it generated: resumed, it attaches
 * what is still cached and recomputes the rest, and goes on drawing with
 * the same sampler, so its tokens do not change. */
static void preempt_youngest(gt_sched *s) {
    req *y = NULL;
    for (int i = 0; i < s->max_seqs; i++)
        if (s->slots[i] && (!y || s->slots[i]->admitted > y->admitted)) y = s->slots[i];
    if (y->r.beams > 0) {
        GT_LOG_INFO(GT_SUB_SCHED, "request %llu (beam search, %d beams) preempted: its search starts again",
                    (unsigned long long)y->r.id, y->r.beams);
        beam_unseat(s, y);
        y->next = s->wait_head;
        s->wait_head = y;
        if (!s->wait_tail) s->wait_tail = y;
        s->n_waiting++;
        s->n_preempted++;
        return;
    }
    gt_coord_set_sampler(s->c, y->slot, NULL);
    gt_coord_set_constraint(s->c, y->slot, NULL);
    gt_coord_free_seq(s->c, y->slot);
    gt_spec_draft_release(s->cfg.draft, y->slot); /* resumed, its draft starts again */
    s->slots[y->slot] = NULL;
    s->n_running--;
    memcpy(y->prompt + y->n_orig, y->gen, (size_t)y->n_gen * sizeof *y->prompt);
    y->r.n_prompt = y->n_orig + y->n_gen;
    y->slot = -1;
    y->prefilled = 0;
    y->decoding = false;
    y->next = s->wait_head;
    s->wait_head = y;
    if (!s->wait_tail) s->wait_tail = y;
    s->n_waiting++;
    s->n_preempted++;
}

/* Hands q its next token; false when q left (stop, max_tokens). Its
 * tokens are kept after its prompt too, where prompt lookup reads them and
 * a preempted request resumes from them. */
static bool emit(gt_sched *s, req *q, int32_t tok, const gt_token_info *ip) {
    if (q->n_gen < q->r.max_tokens) {
        q->gen[q->n_gen] = tok;
        q->prompt[q->n_orig + q->n_gen] = tok;
    }
    q->n_gen++;
    bool stop = q->r.on_token && q->r.on_token(q->r.user, q->r.id, tok, ip);
    if (stop) finish(s, q, GT_FINISH_STOP);
    else if (q->n_gen >= q->r.max_tokens) finish(s, q, GT_FINISH_LENGTH);
    else {
        q->decoding = true;
        q->last = tok;
        return true;
    }
    return false;
}

/* Prompt lookup for generating request q: its guesses go after its
 * tokens in q->prompt (room for max_tokens is there); returns their count,
 * within what the step has left (extra tokens, rows_extra output rows), what
 * q may still generate after one more token, and the context. */
static int spec_guess(const gt_sched *s, req *q, int extra, int rows_extra) {
    if (q->r.spec_lookup <= 0 && !q->r.spec_draft) return 0;
    int n = q->n_orig + q->n_gen; /* its tokens; the last is q->last, not yet in the cache */
    int k = q->r.spec_tokens;
    if (k > q->r.max_tokens - q->n_gen - 1) k = q->r.max_tokens - q->n_gen - 1;
    if (k > extra) k = extra;
    if (k > rows_extra) k = rows_extra;
    if (k > (int)s->n_ctx - n) k = (int)s->n_ctx - n;
    if (k <= 0) return 0;
    if (q->r.spec_draft) return k; /* the draft fills them in (plan_guesses) */
    return gt_spec_lookup(q->prompt, n, q->r.spec_lookup, k, q->prompt + n);
}

/* After a step that verified q's k guesses: keeps the longest acceptable
 * prefix and the token after it (gt_spec_accept, with q's penalties on
 * each row over the tokens before it, as a plain step applies them), drops
 * the rest of the rows with the next step, and hands q the tokens. */
static gt_status spec_verify(gt_sched *s, req *q) {
    size_t V = (size_t)s->n_vocab;
    int k = q->spec_k, n = q->n_orig + q->n_gen;
    const int32_t *ctx = q->prompt; /* [n + k]: its tokens, then the guesses */
    const float *raw = s->vrows + (size_t)q->spec_row * V, *rows = raw;
    if (gt_penalties_active(&q->r.pen)) {
        float *pr = s->prows + (size_t)q->spec_row * V;
        for (int j = 0; j <= k; j++) { /* row j follows ctx[n - 1 + j] */
            int end = n + j, from = end > GT_PENALTY_LAST_N ? end - GT_PENALTY_LAST_N : 0;
            memcpy(pr + (size_t)j * V, raw + (size_t)j * V, V * sizeof *pr);
            gt_apply_penalties(pr + (size_t)j * V, s->n_vocab, ctx + from, end - from, &q->r.pen);
        }
        rows = pr;
    }
    int32_t next;
    const float *qd = q->r.spec_draft ? s->qrows + (size_t)q->spec_qrow * V : NULL;
    int m = gt_spec_accept(q->smp, s->n_vocab, rows, ctx + n, k, qd, s->p, &next);
    s->spec.steps++;
    s->spec.drafted += (uint64_t)k;
    s->spec.accepted += (uint64_t)m;
    gt_sched_spec_counts *by = q->r.spec_draft ? &s->spec.draft : &s->spec.lookup;
    by->steps++;
    by->drafted += (uint64_t)k;
    by->accepted += (uint64_t)m;
    q->spec_steps++;
    q->spec_drafted += k;
    q->spec_accepted += m;
    /* The cache holds n + k tokens; the first n + m are right. */
    if (m < k) {
        GT_TRY(gt_coord_truncate_seq(s->c, q->slot, (uint32_t)(n + m)));
        s->trunc_pending = true;
    }
    for (int j = 0; j <= m; j++) {
        int32_t tok = j < m ? ctx[n + j] : next;
        gt_token_info info, *ip = NULL;
        if (q->r.logprobs > 0) {
            gt_logprobs(raw + (size_t)j * V, s->n_vocab, tok, q->r.logprobs, &info.logprob, s->top, s->lp_scratch);
            info.top = s->top;
            info.n_top = q->r.logprobs < s->n_vocab ? q->r.logprobs : s->n_vocab;
            ip = &info;
        }
        if (!emit(s, q, tok, ip)) break;
    }
    return GT_OK;
}

/* The guesses of every generating request this step, in slot order as
 * build() lays them out: prompt lookup's at once, the draft model's for all
 * its requests together (gt_spec_draft_propose). They take what one decode
 * token per generating request leaves of the budget and of the output rows
 * (a plain row per sequence). A request the step has no room for guesses
 * nothing (spec_k 0). */
static gt_status plan_guesses(gt_sched *s, int n_dec) {
    int extra = s->budget - n_dec, rows_extra = s->max_rows - s->max_seqs, n = 0, n_jobs = 0, qrow = 0;
    for (int i = 0; i < s->max_seqs; i++)
        if (s->slots[i]) s->slots[i]->spec_k = 0;
    for (int i = 0; i < s->max_seqs && n < s->budget; i++) {
        req *q = s->slots[i];
        if (!q || !q->decoding) continue;
        int k = spec_guess(s, q, extra, rows_extra);
        q->spec_k = k;
        n += k + 1;
        extra -= k;
        rows_extra -= k;
        if (k > 0 && q->r.spec_draft) {
            int ctx = q->n_orig + q->n_gen;
            q->spec_qrow = qrow;
            s->jobs[n_jobs++] = (gt_spec_draft_job){q->slot, q->prompt, ctx, k, q->smp, &q->r.pen, q->prompt + ctx,
                                                    s->qrows + (size_t)qrow * (size_t)s->n_vocab};
            qrow += k;
        }
    }
    if (!n_jobs) return GT_OK;
    GT_TRY(gt_spec_draft_propose(s->cfg.draft, s->jobs, n_jobs));
    for (int i = 0; i < n_jobs; i++) s->slots[s->jobs[i].seq]->spec_k = s->jobs[i].k;
    return GT_OK;
}

/* Admits beam request q, the queue's head, when W slots are free: each
 * draws greedily (the coordinator draws a token for every wanted row) and
 * reports the search's 2W alternatives. */
static gt_status beam_seat(gt_sched *s, req *q, bool *seated) {
    int W = q->r.beams, n_free = 0;
    *seated = false;
    for (int i = 0; i < s->max_seqs && n_free < W; i++)
        if (!s->slots[i]) q->bslots[n_free++] = i;
    if (n_free < W) return GT_OK;
    gt_beam_opts o = {W, q->r.length_penalty, q->r.max_tokens};
    GT_TRY(gt__sbeam_create(&o, q->bslots, q->prompt, q->r.n_prompt, &q->sb));
    s->wait_head = q->next;
    if (!s->wait_head) s->wait_tail = NULL;
    s->n_waiting--;
    q->next = NULL;
    q->slot = q->bslots[0];
    bool first = q->admitted == 0; /* not a preempted one's return */
    q->admitted = ++s->n_admitted;
    s->n_running++;
    for (int i = 0; i < W; i++) {
        s->slots[q->bslots[i]] = q;
        GT_TRY(gt_coord_set_sampler(s->c, q->bslots[i], q->smp));
        GT_TRY(gt_coord_set_extras(s->c, q->bslots[i], NULL, 2 * W));
        GT_TRY(gt_coord_set_constraint(s->c, q->bslots[i], NULL));
    }
    if (q->r.on_admit && first) q->r.on_admit(q->r.user, q->r.id);
    *seated = true;
    return GT_OK;
}

static bool beam_eog(void *user, int32_t tok) {
    const req *q = user;
    return q->r.is_eog(q->r.user, tok);
}

/* After a step: every beam request whose beams are all in selects the
 * next ones; one whose search ended hands over its winner. */
static gt_status beam_advance(gt_sched *s) {
    for (int i = 0; i < s->max_seqs; i++) {
        req *q = run_at(s, i);
        if (!q || !q->sb) continue;
        bool done;
        GT_TRY(gt__sbeam_advance(q->sb, s->c, q->r.is_eog ? beam_eog : NULL, q, &done));
        if (!done) continue;
        const int32_t *best;
        int n_best;
        GT_TRY(gt__sbeam_result(q->sb, 0, &best, &n_best, &q->beam_score));
        int n_alts = gt__sbeam_n_results(q->sb) - 1, want = q->r.n_best - 1;
        q->n_alts = n_alts < want ? n_alts : want;
        for (int k = 0; k < q->n_alts; k++) {
            gt_sched_hyp *h = &q->alts[k];
            GT_TRY(gt__sbeam_result(q->sb, k + 1, &h->toks, &h->n, &h->score));
        }
        bool live = true;
        for (int k = 0; k < n_best && live; k++) live = emit(s, q, best[k], NULL);
        if (live) finish(s, q, GT_FINISH_STOP); /* ended before the limit (nothing ends generation) */
    }
    return GT_OK;
}

/* Fills one step: decode tokens, then prompt chunks, then (when admit)
 * newly admitted requests. Returns its token count. */
static gt_status build(gt_sched *s, bool admit, int *n_out) {
    int n = 0, n_dec = 0;
    for (int i = 0; i < s->max_seqs; i++)
        if (run_at(s, i)) {
            s->slots[i]->chunk_from = s->slots[i]->prefilled;
            n_dec += s->slots[i]->decoding;
            if (s->slots[i]->sb) n_dec += gt__sbeam_n_live(s->slots[i]->sb); /* guesses leave its rows */
        }
    GT_TRY(plan_guesses(s, n_dec));
    s->n_vrows = 0;
    for (int i = 0; i < s->max_seqs && n < s->budget; i++) {
        req *q = s->slots[i];
        if (!q || !q->decoding) continue;
        int k = q->spec_k;
        q->spec_row = s->n_vrows;
        for (int j = 0; j <= k; j++) {
            s->seqs[n] = q->slot;
            s->toks[n] = j ? q->prompt[q->n_orig + q->n_gen + j - 1] : q->last;
            s->verify[n] = k > 0;
            s->want[n++] = 1;
        }
        if (k > 0) s->n_vrows += k + 1;
    }
    for (int i = 0; i < s->max_seqs && n < s->budget; i++) {
        req *q = run_at(s, i);
        int m = 0;
        if (q && q->sb) GT_TRY(gt__sbeam_rows(q->sb, s->c, n, s->budget - n, s->seqs, s->toks, s->want, &m));
        for (int j = 0; j < m; j++) s->verify[n + j] = 0;
        n += m;
    }
    for (int i = 0; i < s->max_seqs && n < s->budget; i++) {
        req *q = s->slots[i];
        if (q && !q->decoding && !q->sb) n += add_chunk(s, q, n, s->budget - n);
    }
    /* A pending truncation may take a block out of the prefix index that
     * rank 0's cache still shows: it goes first, in a step of its own,
     * before anyone is matched against the index. */
    if (admit && s->trunc_pending && s->wait_head && n < s->budget && free_slot(s) >= 0) {
        bool sent;
        GT_TRY(gt_coord_flush(s->c, &sent));
        s->trunc_pending = false;
    }
    int slot;
    while (admit && s->wait_head && n < s->budget && (slot = free_slot(s)) >= 0) {
        req *q = s->wait_head;
        if (q->r.beams > 0) {
            bool seated;
            GT_TRY(beam_seat(s, q, &seated));
            if (!seated) break; /* first come, first served: it waits for its slots */
            int m = 0;
            GT_TRY(gt__sbeam_rows(q->sb, s->c, n, s->budget - n, s->seqs, s->toks, s->want, &m));
            for (int j = 0; j < m; j++) s->verify[n + j] = 0;
            q->cached = gt__sbeam_cached(q->sb);
            n += m;
            continue;
        }
        s->wait_head = q->next;
        if (!s->wait_head) s->wait_tail = NULL;
        s->n_waiting--;
        q->slot = slot;
        q->admitted = ++s->n_admitted;
        s->slots[slot] = q;
        s->n_running++;
        if (q->r.on_admit && q->n_gen == 0) q->r.on_admit(q->r.user, q->r.id);
        GT_TRY(gt_coord_set_sampler(s->c, slot, q->smp));
        GT_TRY(gt_coord_set_extras(s->c, slot, &q->r.pen, q->r.logprobs));
        GT_TRY(gt_coord_set_constraint(s->c, slot, q->r.cons));
        int hit = 0;
        GT_TRY(gt_coord_attach_prefix(s->c, slot, q->prompt, q->r.n_prompt, &hit));
        if (q->n_gen == 0) q->cached = hit;
        q->prefilled = hit;
        n += add_chunk(s, q, n, s->budget - n);
    }
    *n_out = n;
    return GT_OK;
}

gt_status gt_sched_step(gt_sched *s, bool *did_work) {
    int n = 0;
    /* Chunk positions advance as a step is built; a step the pool cannot
     * hold is rebuilt after a preemption. */
    bool admit = true;
    for (;;) {
        GT_TRY(build(s, admit, &n));
        if (!n) break;
        gt_status st = s->n_vrows ? gt_coord_step_verify(s->c, n, s->seqs, s->toks, s->want, s->verify, s->vrows)
                                  : gt_coord_step(s->c, n, s->seqs, s->toks, s->want);
        if (st == GT_OK) break;
        if (!gt_coord_kv_full(s->c) || s->n_running < 2) return st;
        /* Undo this step's chunk progress, make room, try again without
         * admitting anyone new. */
        for (int i = 0; i < s->max_seqs; i++)
            if (s->slots[i] && !s->slots[i]->decoding) s->slots[i]->prefilled = s->slots[i]->chunk_from;
        preempt_youngest(s);
        admit = false;
    }
    *did_work = n > 0;
    if (!n) {
        s->trunc_pending = false;
        return gt_coord_flush(s->c, did_work); /* release the finished requests' blocks */
    }
    s->trunc_pending = false; /* the step carried them */
    /* One entry per request that draws: a speculating request's first
     * verification row stands for all of them. */
    int n_wanted = 0;
    for (int i = 0; i < n; i++)
        if (s->want[i] && !(s->verify[i] && i > 0 && s->verify[i - 1] && s->seqs[i - 1] == s->seqs[i]))
            s->wanted[n_wanted++] = s->seqs[i];
    for (int i = 0; i < n_wanted; i++) {
        req *q = s->slots[s->wanted[i]];
        if (!q || q->sb) continue; /* cancelled by an earlier callback of this step; a beam's rows */
        if (q->spec_k > 0) {
            GT_TRY(spec_verify(s, q));
            continue;
        }
        int32_t tok;
        if (q->r.cons && gt_coord_next_token(s->c, q->slot, &tok) != GT_OK) {
            /* The grammar (or the bias) left no token: end this request only. */
            GT_LOG_WARN(GT_SUB_SCHED, "request %llu ends: %s", (unsigned long long)q->r.id, gt_last_error());
            finish(s, q, GT_FINISH_STOP);
            continue;
        }
        if (!q->r.cons) GT_TRY(gt_coord_next_token(s->c, q->slot, &tok));
        gt_token_info info, *ip = NULL;
        if (q->r.logprobs > 0) {
            GT_TRY(gt_coord_next_logprobs(s->c, q->slot, &info.logprob, &info.top, &info.n_top));
            ip = &info;
        }
        emit(s, q, tok, ip);
    }
    return beam_advance(s);
}
