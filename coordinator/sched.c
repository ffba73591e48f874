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
    if (!s->slots || !s->wanted || !s->seqs || !s->toks || !s->want) {
        gt_sched_destroy(s);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate the scheduler's tables for %d sequences", lim.max_seqs);
    }
    *out = s;
    return GT_OK;
}

static void release(req *q) {
    gt_sampler_destroy(q->smp);
    gt_constraint_free(q->r.cons);
    free(q->prompt);
    free(q->gen);
    free(q);
}

/* Takes q out of the scheduler and tells its owner. */
static void finish(gt_sched *s, req *q, gt_finish why) {
    if (q->slot >= 0) {
        gt_coord_set_sampler(s->c, q->slot, NULL);
        gt_coord_set_constraint(s->c, q->slot, NULL);
        gt_coord_free_seq(s->c, q->slot); /* sent with the next step */
        s->slots[q->slot] = NULL;
        s->n_running--;
    }
    gt_sched_usage u = {q->n_orig, q->cached, q->n_gen};
    if (q->r.on_done) q->r.on_done(q->r.user, q->r.id, why, &u);
    release(q);
}

void gt_sched_destroy(gt_sched *s) {
    if (!s) return;
    for (int i = 0; s->slots && i < s->max_seqs; i++)
        if (s->slots[i]) finish(s, s->slots[i], GT_FINISH_SHUTDOWN);
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
    free(s);
}

int gt_sched_n_waiting(const gt_sched *s) { return s->n_waiting; }
int gt_sched_n_running(const gt_sched *s) { return s->n_running; }
uint64_t gt_sched_n_preempted(const gt_sched *s) { return s->n_preempted; }

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
    req *q = calloc(1, sizeof *q);
    if (!q) return gt_fail(GT_ERR_NOMEM, "cannot allocate a request");
    q->r = *r;
    q->slot = -1;
    q->n_orig = r->n_prompt;
    q->prompt = malloc((size_t)(r->n_prompt + r->max_tokens) * sizeof *q->prompt); /* room to resume */
    q->gen = malloc((size_t)r->max_tokens * sizeof *q->gen);
    gt_status st = q->prompt && q->gen ? gt_sampler_create(&r->samp, s->n_vocab, &q->smp)
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
    int m = q->r.n_prompt - q->prefilled;
    if (m > room) m = room;
    for (int i = 0; i < m; i++) {
        s->seqs[n + i] = q->slot;
        s->toks[n + i] = q->prompt[q->prefilled + i];
        s->want[n + i] = 0;
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

/* Takes the youngest running request off its slot (its blocks go to the
 * prefix cache, and from there maybe to the host tier) and puts it first in
 * the queue, its prompt grown by what it generated: resumed, it attaches
 * what is still cached and recomputes the rest, and goes on drawing with
 * the same sampler, so its tokens do not change. */
static void preempt_youngest(gt_sched *s) {
    req *y = NULL;
    for (int i = 0; i < s->max_seqs; i++)
        if (s->slots[i] && (!y || s->slots[i]->admitted > y->admitted)) y = s->slots[i];
    gt_coord_set_sampler(s->c, y->slot, NULL);
    gt_coord_set_constraint(s->c, y->slot, NULL);
    gt_coord_free_seq(s->c, y->slot);
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

/* Fills one step: decode tokens, then prompt chunks, then (when admit)
 * newly admitted requests. Returns its token count. */
static gt_status build(gt_sched *s, bool admit, int *n_out) {
    int n = 0;
    for (int i = 0; i < s->max_seqs; i++)
        if (s->slots[i]) s->slots[i]->chunk_from = s->slots[i]->prefilled;
    for (int i = 0; i < s->max_seqs && n < s->budget; i++) {
        req *q = s->slots[i];
        if (!q || !q->decoding) continue;
        s->seqs[n] = q->slot;
        s->toks[n] = q->last;
        s->want[n++] = 1;
    }
    for (int i = 0; i < s->max_seqs && n < s->budget; i++) {
        req *q = s->slots[i];
        if (q && !q->decoding) n += add_chunk(s, q, n, s->budget - n);
    }
    int slot;
    while (admit && s->wait_head && n < s->budget && (slot = free_slot(s)) >= 0) {
        req *q = s->wait_head;
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
        gt_status st = gt_coord_step(s->c, n, s->seqs, s->toks, s->want);
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
    if (!n) return gt_coord_flush(s->c, did_work); /* release the finished requests' blocks */
    int n_wanted = 0;
    for (int i = 0; i < n; i++)
        if (s->want[i]) s->wanted[n_wanted++] = s->seqs[i];
    for (int i = 0; i < n_wanted; i++) {
        req *q = s->slots[s->wanted[i]];
        if (!q) continue; /* cancelled by an earlier callback of this step */
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
        if (q->n_gen < q->r.max_tokens) q->gen[q->n_gen] = tok;
        q->n_gen++;
        bool stop = q->r.on_token && q->r.on_token(q->r.user, q->r.id, tok, ip);
        if (stop) finish(s, q, GT_FINISH_STOP);
        else if (q->n_gen >= q->r.max_tokens) finish(s, q, GT_FINISH_LENGTH);
        else {
            q->decoding = true;
            q->last = tok;
        }
    }
    return GT_OK;
}
