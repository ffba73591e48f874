/* Speculative decoding; see spec.h. The verification is an ordinary step
 * plan (K + 1 tokens of one sequence, every row wanted, full logits to rank
 * 0), so it runs on any grid; the rows the proposer got wrong are dropped on
 * every rank by a truncation sent with the next step, so no extra round trip
 * is paid for them. The draft engine lives on rank 0 only. */
#include "coordinator/spec.h"

#include <stdlib.h>
#include <string.h>

#include "worker/engine.h"

struct gt_spec {
    gt_coord *c;
    gt_spec_config cfg;
    int K, V, seq;
    gt_sampler *smp;  /* borrowed: the sequence's sampler */
    gt_engine *draft; /* NULL: prompt lookup */
    int32_t *ctx;     /* [cap] the sequence's tokens; the last is not yet in the target's cache */
    int n, cap;
    uint32_t dlen;                /* tokens in the draft's cache (a prefix of ctx) */
    int32_t *toks, *seqs, *guess; /* [K + 1] */
    int8_t *want;                 /* [K + 1] all ones */
    float *rows;                  /* [K + 1, V] the verification's logits */
    float *q;                     /* [K, V] the draft's distribution of each guess */
    float *p;                     /* [V] */
    gt_spec_stats st;
};

bool gt_spec_enabled(const gt_spec_config *cfg) {
    return cfg->lookup > 0 || cfg->draft_path || cfg->self_draft_layers > 0;
}

int gt_spec_rows(const gt_spec_config *cfg) { return cfg->draft_tokens + 1; }

static gt_status create_draft(gt_spec *sp) {
    gt_rank *rk = gt_coord_rank(sp->c);
    const gt_hparams *hp = gt_rank_hparams(rk);
    gt_engine_config ec = GT_ENGINE_CONFIG_INIT;
    ec.n_threads = sp->cfg.n_threads;
    ec.n_ctx = gt_coord_n_ctx(sp->c);
    ec.max_seqs = 1;
    ec.max_out_rows = 1;
    if (sp->cfg.self_draft_layers > 0) {
        if ((uint32_t)sp->cfg.self_draft_layers >= hp->n_layer)
            return gt_fail(GT_ERR_INVALID_ARG,
                           "--self-draft %d: the draft must run fewer layers than the "
                           "model's %u",
                           sp->cfg.self_draft_layers, hp->n_layer);
        ec.gguf = gt_rank_gguf(rk);
        ec.max_layers = sp->cfg.self_draft_layers;
    } else {
        ec.model_path = sp->cfg.draft_path;
    }
    GT_TRY(gt_engine_create(&ec, &sp->draft));
    uint32_t dv = gt_engine_hparams(sp->draft)->n_vocab;
    if (dv != hp->n_vocab)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "the draft model %s has a vocabulary of %u tokens, the target's "
                       "has %u; speculation needs the same vocabulary",
                       sp->cfg.draft_path, dv, hp->n_vocab);
    return GT_OK;
}

gt_status gt_spec_create(gt_coord *c, const gt_spec_config *cfg, gt_spec **out) {
    *out = NULL;
    int kinds = (cfg->lookup > 0) + (cfg->draft_path != NULL) + (cfg->self_draft_layers > 0);
    if (kinds != 1)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "speculation takes one proposer (--lookup, --draft or "
                       "--self-draft), not %d",
                       kinds);
    if (cfg->draft_tokens < 1 || cfg->draft_tokens > 64)
        return gt_fail(GT_ERR_INVALID_ARG, "%d draft tokens per step is outside 1..64",
                       cfg->draft_tokens);
    gt_spec *sp = calloc(1, sizeof *sp);
    if (!sp) return gt_fail(GT_ERR_NOMEM, "cannot allocate the speculation state");
    sp->c = c;
    sp->cfg = *cfg;
    sp->K = cfg->draft_tokens;
    /* A verification step is one batch: K + 1 tokens within the engine's. */
    int max_tokens = gt_rank_step_limits(gt_coord_rank(c)).max_tokens;
    if (sp->K > max_tokens - 1) sp->K = max_tokens - 1;
    if (sp->K < 1) {
        free(sp);
        return gt_fail(GT_ERR_INVALID_ARG,
                       "a batch of %d tokens leaves no room for draft tokens beside the "
                       "verified one (--ubatch)",
                       max_tokens);
    }
    sp->V = (int)gt_rank_hparams(gt_coord_rank(c))->n_vocab;
    sp->cap = (int)gt_coord_n_ctx(c) + 1;
    size_t K = (size_t)sp->K, V = (size_t)sp->V;
    sp->ctx = malloc((size_t)sp->cap * sizeof *sp->ctx);
    sp->toks = malloc((K + 1) * sizeof *sp->toks);
    sp->seqs = malloc((K + 1) * sizeof *sp->seqs);
    sp->guess = malloc((K + 1) * sizeof *sp->guess);
    sp->want = malloc(K + 1);
    sp->rows = malloc((K + 1) * V * sizeof *sp->rows);
    sp->q = malloc(K * V * sizeof *sp->q);
    sp->p = malloc(V * sizeof *sp->p);
    if (!sp->ctx || !sp->toks || !sp->seqs || !sp->guess || !sp->want || !sp->rows || !sp->q ||
        !sp->p) {
        int k = sp->K, v = sp->V;
        gt_spec_destroy(sp);
        return gt_fail(GT_ERR_NOMEM,
                       "cannot allocate the speculation state for %d guesses of %d tokens", k, v);
    }
    memset(sp->want, 1, K + 1);
    if (cfg->lookup <= 0) {
        gt_status st = create_draft(sp);
        if (st != GT_OK) {
            gt_spec_destroy(sp);
            return st;
        }
    }
    *out = sp;
    return GT_OK;
}

void gt_spec_destroy(gt_spec *sp) {
    if (!sp) return;
    gt_engine_destroy(sp->draft);
    free(sp->ctx);
    free(sp->toks);
    free(sp->seqs);
    free(sp->guess);
    free(sp->want);
    free(sp->rows);
    free(sp->q);
    free(sp->p);
    free(sp);
}

gt_spec_stats gt_spec_get_stats(const gt_spec *sp) { return sp->st; }
void gt_spec_reset_stats(gt_spec *sp) { memset(&sp->st, 0, sizeof sp->st); }

/* The sequence's tokens so far; the draft starts again from none. */
static void set_ctx(gt_spec *sp, int seq, gt_sampler *smp, const int32_t *ctx, int n) {
    sp->seq = seq;
    sp->smp = smp;
    memcpy(sp->ctx, ctx, (size_t)n * sizeof *ctx);
    sp->n = n;
    if (sp->draft) gt_engine_seq_clear(sp->draft, 0);
    sp->dlen = 0;
}

gt_status gt_spec_resume(gt_spec *sp, int seq, gt_sampler *smp, const int32_t *ctx, int n) {
    if (n < 1 || n >= sp->cap)
        return gt_fail(GT_ERR_RANGE, "a context of %d tokens is outside 1..%d", n, sp->cap - 1);
    if (gt_coord_seq_len(sp->c, seq) != (uint32_t)n - 1)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "sequence %d holds %u tokens; speculation resumes after %d", seq,
                       gt_coord_seq_len(sp->c, seq), n - 1);
    GT_TRY(gt_coord_set_sampler(sp->c, seq, smp));
    set_ctx(sp, seq, smp, ctx, n);
    return GT_OK;
}

gt_status gt_spec_start(gt_spec *sp, int seq, gt_sampler *smp, const int32_t *prompt, int n,
                        float *logits, int32_t *first) {
    if (n < 1 || n + 1 >= sp->cap)
        return gt_fail(GT_ERR_RANGE, "a prompt of %d tokens is outside 1..%d", n, sp->cap - 2);
    GT_TRY(gt_coord_set_sampler(sp->c, seq, smp));
    GT_TRY(gt_coord_prefill(sp->c, seq, prompt, n, logits));
    GT_TRY(gt_coord_next_token(sp->c, seq, first));
    set_ctx(sp, seq, smp, prompt, n);
    sp->ctx[n] = *first;
    sp->n = n + 1;
    return GT_OK;
}

/* The draft model evaluates tokens [first, first + n) of ctx (its cache
 * then holds first + n), leaving the last one's logits in its rows. */
static gt_status draft_eval(gt_spec *sp, const int32_t *toks, int n) {
    int32_t pos[512], seq[512];
    memset(seq, 0, sizeof seq);
    for (int i0 = 0; i0 < n; i0 += 512) {
        int m = n - i0 < 512 ? n - i0 : 512;
        for (int i = 0; i < m; i++) pos[i] = (int32_t)sp->dlen + i;
        gt_batch b = {m, toks + i0, pos, seq, NULL};
        GT_TRY(gt_engine_decode(sp->draft, &b, gt_engine_logits(sp->draft)));
        sp->dlen += (uint32_t)m;
    }
    return GT_OK;
}

/* k guesses from the draft model, each drawn from its distribution q
 * (gt_sampler_probs of the draft's logits, with the sequence's sampler). */
static gt_status propose_draft(gt_spec *sp, int k) {
    size_t V = (size_t)sp->V;
    GT_TRY(draft_eval(sp, sp->ctx + sp->dlen, sp->n - (int)sp->dlen));
    for (int j = 0; j < k; j++) {
        if (j > 0) GT_TRY(draft_eval(sp, &sp->guess[j - 1], 1));
        float *q = sp->q + (size_t)j * V;
        gt_sampler_probs(sp->smp, gt_engine_logits(sp->draft), q);
        if (gt_sampler_greedy(sp->smp)) {
            sp->guess[j] = gt_argmax(q, sp->V);
        } else {
            double sum = 0;
            for (size_t i = 0; i < V; i++) sum += q[i];
            sp->guess[j] = gt_spec_draw(sp->smp, q, sp->V, sum);
        }
    }
    return GT_OK;
}

gt_status gt_spec_round(gt_spec *sp, int max_new, int32_t *out, int *n_out) {
    *n_out = 0;
    if (max_new < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "a speculation step must produce at least one token");
    /* The step evaluates positions n - 1 .. n - 1 + k. */
    int room = (int)gt_coord_n_ctx(sp->c) - sp->n;
    if (room < 0)
        return gt_fail(GT_ERR_RANGE, "sequence %d holds %d tokens, the whole context of %u",
                       sp->seq, sp->n, gt_coord_n_ctx(sp->c));
    int k = sp->K;
    if (k > max_new - 1) k = max_new - 1;
    if (k > room) k = room;
    bool lookup = sp->draft == NULL;
    if (lookup)
        k = gt_spec_lookup(sp->ctx, sp->n, sp->cfg.lookup, k, sp->guess);
    else if (k > 0)
        GT_TRY(propose_draft(sp, k));
    /* Verify: the last token and the guesses, every row wanted. */
    sp->toks[0] = sp->ctx[sp->n - 1];
    for (int j = 0; j < k; j++) sp->toks[j + 1] = sp->guess[j];
    for (int j = 0; j <= k; j++) sp->seqs[j] = sp->seq;
    GT_TRY(gt_coord_step_logits(sp->c, k + 1, sp->seqs, sp->toks, sp->want, sp->rows));
    int32_t next;
    int m = gt_spec_accept(sp->smp, sp->V, sp->rows, sp->guess, k, lookup ? NULL : sp->q, sp->p, &next);
    /* The cache holds n + k tokens; the first n + m are right. */
    uint32_t keep = (uint32_t)(sp->n + m);
    if (m < k) GT_TRY(gt_coord_truncate_seq(sp->c, sp->seq, keep));
    if (sp->draft && sp->dlen > keep) {
        GT_TRY(gt_engine_seq_truncate(sp->draft, 0, keep));
        sp->dlen = keep;
    }
    for (int j = 0; j < m; j++) out[j] = sp->guess[j];
    out[m] = next;
    for (int j = 0; j <= m; j++) sp->ctx[sp->n++] = out[j];
    *n_out = m + 1;
    sp->st.steps++;
    sp->st.drafted += (uint64_t)k;
    sp->st.accepted += (uint64_t)m;
    sp->st.emitted += (uint64_t)m + 1;
    return GT_OK;
}
