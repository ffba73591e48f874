/* Beam search over the coordinator's sequences; see run_beam.h.
 *
 * Each live beam holds one sequence slot. A step reads every beam's K best
 * next tokens with their log-probabilities (the coordinator's logprobs,
 * K = 2W <= 20, a softmax at temperature 1 over the full row), ranks all
 * beam x token extensions by cumulative log-probability, and keeps the W
 * best; an end-of-generation token among the first W finishes that
 * hypothesis instead. The KV cache is forked by recomputation: the first
 * child of a beam continues in its parent's slot; every other child takes
 * a slot whose beam died, attaches the prompt's and the parent's whole KV
 * blocks from the prefix cache (gt_coord_attach_prefix) and evaluates the
 * rest of its tokens. The winner maximises sum(log p) / length^A over the
 * finished hypotheses and, at the token limit, the live beams. */
#include "tools/run_beam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct beam {
    int32_t *toks; /* [n_predict] generated tokens */
    int n;
    double lp; /* sum of log-probabilities */
    int slot, parent;
} beam;

typedef struct ext {
    int parent;
    int32_t tok;
    double lp;
} ext;

static int ext_cmp(const void *a, const void *b) {
    const ext *x = a, *y = b;
    if (x->lp != y->lp) return x->lp > y->lp ? -1 : 1;
    if (x->parent != y->parent) return x->parent - y->parent;
    return x->tok - y->tok;
}

static double norm(double lp, int len, float a) {
    return lp / pow((double)(len > 0 ? len : 1), (double)a);
}

typedef struct state {
    int W, K, n_max, n_prompt;
    beam cur[GT_BEAM_MAX_WIDTH], next[GT_BEAM_MAX_WIDTH];
    int n_cur;
    int32_t *best; /* [n_max] the best finished (or final) hypothesis */
    int n_best;
    double best_score;
    bool have_best;
    int n_finished;
    double worst_finished; /* the lowest score among the finished ones kept */
    int32_t *full;         /* [n_prompt + n_max] a beam's whole token sequence */
    gt_sampler *smp[GT_BEAM_MAX_WIDTH];
    ext *ext; /* [W * K] */
} state;

static void offer(state *s, const int32_t *toks, int n, double lp, float a) {
    double sc = norm(lp, n, a);
    if (!s->have_best || sc > s->best_score) {
        memcpy(s->best, toks, (size_t)n * sizeof *toks);
        s->n_best = n;
        s->best_score = sc;
        s->have_best = true;
    }
}

static void finish_hyp(state *s, beam *b, int32_t eog, double lp, float a) {
    b->toks[b->n] = eog; /* room: n < n_max while the beam lives */
    offer(s, b->toks, b->n + 1, lp, a);
    double sc = norm(lp, b->n + 1, a);
    if (s->n_finished == 0 || sc < s->worst_finished) s->worst_finished = sc;
    s->n_finished++;
}

/* Evaluates the W new beams: forks first, then the in-place children in
 * one decode step. */
static gt_status advance(state *s, gt_coord *c, const int32_t *prompt, int n_next) {
    bool taken[GT_BEAM_MAX_WIDTH] = {false}, inplace[GT_BEAM_MAX_WIDTH] = {false};
    for (int j = 0; j < n_next; j++) {
        int slot = s->cur[s->next[j].parent].slot;
        if (!taken[slot]) {
            taken[slot] = inplace[j] = true;
            s->next[j].slot = slot;
        }
    }
    for (int j = 0; j < n_next; j++) {
        if (inplace[j]) continue;
        int slot = 0;
        while (taken[slot]) slot++;
        taken[slot] = true;
        s->next[j].slot = slot;
    }
    int32_t seqs[GT_BEAM_MAX_WIDTH], toks[GT_BEAM_MAX_WIDTH];
    int n_in = 0;
    for (int j = 0; j < n_next; j++) {
        const beam *b = &s->next[j];
        if (inplace[j]) {
            seqs[n_in] = b->slot;
            toks[n_in++] = b->toks[b->n - 1];
            continue;
        }
        int len = s->n_prompt + b->n, cached = 0;
        memcpy(s->full, prompt, (size_t)s->n_prompt * sizeof *prompt);
        memcpy(s->full + s->n_prompt, b->toks, (size_t)b->n * sizeof *b->toks);
        if (gt_coord_seq_len(c, b->slot)) GT_TRY(gt_coord_free_seq(c, b->slot));
        GT_TRY(gt_coord_attach_prefix(c, b->slot, s->full, len, &cached));
        GT_TRY(gt_coord_prefill(c, b->slot, s->full + cached, len - cached, NULL));
    }
    if (n_in) GT_TRY(gt_coord_decode(c, n_in, seqs, toks));
    for (int j = 0; j < s->W; j++)
        if (!taken[j] && gt_coord_seq_len(c, j)) GT_TRY(gt_coord_free_seq(c, j));
    return GT_OK;
}

static gt_status search(state *s, gt_coord *c, const gt_text *text, const int32_t *prompt,
                        const gt_beam_opts *o) {
    gt_sampler_config greedy = GT_SAMPLER_CONFIG_INIT;
    for (int i = 0; i < s->W; i++) {
        GT_TRY(gt_sampler_create(&greedy, o->n_vocab, &s->smp[i]));
        GT_TRY(gt_coord_set_sampler(c, i, s->smp[i]));
        GT_TRY(gt_coord_set_extras(c, i, NULL, s->K));
    }
    GT_TRY(gt_coord_prefill(c, 0, prompt, s->n_prompt, NULL));
    s->cur[0].n = 0;
    s->cur[0].lp = 0;
    s->cur[0].slot = 0;
    s->n_cur = 1;
    for (int step = 0; step < s->n_max; step++) {
        int n_ext = 0;
        for (int b = 0; b < s->n_cur; b++) {
            float lp;
            const gt_cand *top;
            int n_top;
            GT_TRY(gt_coord_next_logprobs(c, s->cur[b].slot, &lp, &top, &n_top));
            for (int k = 0; k < n_top; k++)
                s->ext[n_ext++] = (ext){b, top[k].id, s->cur[b].lp + top[k].logit};
        }
        qsort(s->ext, (size_t)n_ext, sizeof *s->ext, ext_cmp);
        int n_next = 0;
        for (int k = 0; k < n_ext && n_next < s->W; k++) {
            const ext *e = &s->ext[k];
            beam *p = &s->cur[e->parent];
            if (!o->ignore_eos && gt_text_is_eog(text, e->tok)) {
                if (k < s->W) finish_hyp(s, p, e->tok, e->lp, o->length_penalty);
                continue;
            }
            beam *nb = &s->next[n_next++];
            memcpy(nb->toks, p->toks, (size_t)p->n * sizeof *p->toks);
            nb->toks[p->n] = e->tok;
            nb->n = p->n + 1;
            nb->lp = e->lp;
            nb->parent = e->parent;
        }
        bool last = step + 1 == s->n_max;
        if (n_next == 0) break;
        /* Done when W hypotheses finished and none of the live beams
         * scores better now (HF's early_stopping=False heuristic). */
        double best_live = norm(s->next[0].lp, s->next[0].n, o->length_penalty);
        if (last || (s->n_finished >= s->W && s->worst_finished >= best_live)) {
            for (int j = 0; j < n_next; j++)
                offer(s, s->next[j].toks, s->next[j].n, s->next[j].lp, o->length_penalty);
            break;
        }
        GT_TRY(advance(s, c, prompt, n_next));
        for (int j = 0; j < n_next; j++) { /* swap the token buffers: next becomes cur */
            beam t = s->cur[j];
            s->cur[j] = s->next[j];
            s->next[j] = t;
        }
        s->n_cur = n_next;
    }
    return GT_OK;
}

gt_status gt_run_beam(gt_coord *c, const gt_text *text, const int32_t *prompt, int n_prompt,
                      const gt_beam_opts *o, int32_t **out, int *n_out, double *score) {
    *out = NULL;
    *n_out = 0;
    if (o->width < 1 || o->width > GT_BEAM_MAX_WIDTH)
        return gt_fail(GT_ERR_INVALID_ARG, "--beams %d is outside 1..%d", o->width,
                       GT_BEAM_MAX_WIDTH);
    if (o->n_predict < 1) return gt_fail(GT_ERR_INVALID_ARG, "beam search needs -n of at least 1");
    state s = {.W = o->width, .K = 2 * o->width, .n_max = o->n_predict, .n_prompt = n_prompt};
    gt_status st = GT_OK;
    size_t nt = (size_t)o->n_predict + 1;
    s.best = malloc(nt * sizeof *s.best);
    s.full = malloc(((size_t)n_prompt + nt) * sizeof *s.full);
    s.ext = malloc((size_t)(s.W * s.K) * sizeof *s.ext);
    bool ok = s.best && s.full && s.ext;
    for (int i = 0; i < s.W; i++) {
        s.cur[i].toks = malloc(nt * sizeof(int32_t));
        s.next[i].toks = malloc(nt * sizeof(int32_t));
        ok = ok && s.cur[i].toks && s.next[i].toks;
    }
    if (!ok) st = gt_fail(GT_ERR_NOMEM, "cannot allocate %d beams of %d tokens", s.W, o->n_predict);
    if (st == GT_OK) st = search(&s, c, text, prompt, o);
    for (int i = 0; i < s.W; i++) {
        gt_coord_set_sampler(c, i, NULL);
        gt_sampler_destroy(s.smp[i]);
        free(s.cur[i].toks);
        free(s.next[i].toks);
    }
    free(s.full);
    free(s.ext);
    if (st == GT_OK && !s.have_best)
        st = gt_fail(GT_ERR_INTERNAL, "beam search ended without a hypothesis");
    if (st != GT_OK) {
        free(s.best);
        return st;
    }
    *out = s.best;
    *n_out = s.n_best;
    *score = s.best_score;
    return GT_OK;
}
