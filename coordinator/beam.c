/* Beam search's bookkeeping; see beam.h. The algorithm is the one `gantry
 * run --beams` always ran (tests/e2e/test_beam.py checks it against an
 * independent search); this file only turns its loop inside out so that
 * the server's scheduler can evaluate the beams inside its batches. */
#include "coordinator/beam.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct beam {
    int32_t *toks; /* [n_predict + 1] generated tokens */
    int n;
    double lp; /* sum of log-probabilities */
    int slot, parent;
    bool fork;
} beam;

typedef struct ext {
    int parent;
    int32_t tok;
    double lp;
} ext;

struct gt_beam {
    gt_beam_opts o;
    int W, K;
    beam cur[GT_BEAM_MAX_WIDTH], next[GT_BEAM_MAX_WIDTH];
    int n_cur;
    int n_fed[GT_BEAM_MAX_WIDTH]; /* alternatives fed per live beam (-1: not yet) */
    ext *ext;                     /* [W * K] */
    /* The W best hypotheses offered so far (finished ones, and the live
     * beams at the end), best first; a tie keeps the one offered first. */
    int32_t *hyp[GT_BEAM_MAX_WIDTH]; /* [n_predict + 1] each */
    int hyp_n[GT_BEAM_MAX_WIDTH];
    double hyp_score[GT_BEAM_MAX_WIDTH];
    int n_hyp;
    bool done;
    int n_finished;
    double worst_finished; /* the lowest score among the finished ones */
};

static int ext_cmp(const void *a, const void *b) {
    const ext *x = a, *y = b;
    if (x->lp != y->lp) return x->lp > y->lp ? -1 : 1;
    if (x->parent != y->parent) return x->parent - y->parent;
    return x->tok - y->tok;
}

static double norm(double lp, int len, float a) {
    return lp / pow((double)(len > 0 ? len : 1), (double)a);
}

gt_status gt_beam_create(const gt_beam_opts *o, gt_beam **out) {
    *out = NULL;
    if (o->width < 1 || o->width > GT_BEAM_MAX_WIDTH)
        return gt_fail(GT_ERR_INVALID_ARG, "beam search with %d beams; the width must be in 1..%d",
                       o->width, GT_BEAM_MAX_WIDTH);
    if (o->n_predict < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "beam search for %d tokens; it needs at least 1",
                       o->n_predict);
    gt_beam *b = calloc(1, sizeof *b);
    if (!b) return gt_fail(GT_ERR_NOMEM, "cannot allocate a beam search");
    b->o = *o;
    b->W = o->width;
    b->K = 2 * o->width;
    size_t nt = (size_t)o->n_predict + 1;
    b->ext = malloc((size_t)(b->W * b->K) * sizeof *b->ext);
    bool ok = b->ext;
    for (int i = 0; i < b->W; i++) {
        b->cur[i].toks = malloc(nt * sizeof(int32_t));
        b->next[i].toks = malloc(nt * sizeof(int32_t));
        b->hyp[i] = malloc(nt * sizeof(int32_t));
        ok = ok && b->cur[i].toks && b->next[i].toks && b->hyp[i];
    }
    if (!ok) {
        gt_beam_destroy(b);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate %d beams of %d tokens", o->width,
                       o->n_predict);
    }
    b->cur[0] = (beam){b->cur[0].toks, 0, 0.0, 0, 0, true};
    b->n_cur = 1;
    b->n_fed[0] = -1;
    *out = b;
    return GT_OK;
}

void gt_beam_destroy(gt_beam *b) {
    if (!b) return;
    for (int i = 0; i < GT_BEAM_MAX_WIDTH; i++) {
        free(b->cur[i].toks);
        free(b->next[i].toks);
        free(b->hyp[i]);
    }
    free(b->ext);
    free(b);
}

int gt_beam_n_top(const gt_beam *b) { return b->K; }
int gt_beam_n_live(const gt_beam *b) { return b->done ? 0 : b->n_cur; }

gt_beam_live gt_beam_get(const gt_beam *b, int j) {
    const beam *e = &b->cur[j];
    return (gt_beam_live){e->slot, e->fork, e->toks, e->n};
}

bool gt_beam_slot_used(const gt_beam *b, int slot) {
    for (int j = 0; j < gt_beam_n_live(b); j++)
        if (b->cur[j].slot == slot) return true;
    return false;
}

gt_status gt_beam_feed(gt_beam *b, int j, const gt_cand *top, int n_top) {
    if (j < 0 || j >= gt_beam_n_live(b) || n_top < 1 || n_top > b->K)
        return gt_fail(GT_ERR_INVALID_ARG, "beam %d of %d fed %d alternatives; 1..%d", j,
                       gt_beam_n_live(b), n_top, b->K);
    ext *e = b->ext + (size_t)j * (size_t)b->K;
    for (int k = 0; k < n_top; k++) e[k] = (ext){j, top[k].id, b->cur[j].lp + top[k].logit};
    b->n_fed[j] = n_top;
    return GT_OK;
}

/* Ranks a hypothesis among the W best kept (the last one drops out when
 * all W are taken and this one scores higher). */
static void offer(gt_beam *b, const int32_t *toks, int n, double lp) {
    double sc = norm(lp, n, b->o.length_penalty);
    int at = b->n_hyp;
    while (at > 0 && sc > b->hyp_score[at - 1]) at--;
    if (at >= b->W) return;
    int last = b->n_hyp < b->W ? b->n_hyp++ : b->W - 1;
    int32_t *buf = b->hyp[last]; /* the buffer that drops out (or a free one) */
    for (int i = last; i > at; i--) {
        b->hyp[i] = b->hyp[i - 1];
        b->hyp_n[i] = b->hyp_n[i - 1];
        b->hyp_score[i] = b->hyp_score[i - 1];
    }
    memcpy(buf, toks, (size_t)n * sizeof *toks);
    b->hyp[at] = buf;
    b->hyp_n[at] = n;
    b->hyp_score[at] = sc;
}

static void finish_hyp(gt_beam *b, beam *p, int32_t eog, double lp) {
    p->toks[p->n] = eog; /* room: n < n_predict while the beam lives */
    offer(b, p->toks, p->n + 1, lp);
    double sc = norm(lp, p->n + 1, b->o.length_penalty);
    if (b->n_finished == 0 || sc < b->worst_finished) b->worst_finished = sc;
    b->n_finished++;
}

/* The new beams' slots: a beam's first child keeps its parent's slot, the
 * other children take the slots left over, lowest first. */
static void assign_slots(gt_beam *b, int n_next) {
    bool taken[GT_BEAM_MAX_WIDTH] = {false};
    for (int j = 0; j < n_next; j++) {
        int slot = b->cur[b->next[j].parent].slot;
        b->next[j].fork = taken[slot];
        if (!taken[slot]) {
            taken[slot] = true;
            b->next[j].slot = slot;
        }
    }
    for (int j = 0; j < n_next; j++) {
        if (!b->next[j].fork) continue;
        int slot = 0;
        while (taken[slot]) slot++;
        taken[slot] = true;
        b->next[j].slot = slot;
    }
}

gt_status gt_beam_select(gt_beam *b, gt_beam_eog_fn is_eog, void *user, bool *done) {
    *done = b->done;
    if (b->done) return GT_OK;
    /* Every live beam's alternatives, in beam order (as one loop over the
     * beams would gather them), then ranked. */
    int n_ext = 0;
    for (int j = 0; j < b->n_cur; j++) {
        if (b->n_fed[j] < 0)
            return gt_fail(GT_ERR_INVALID_ARG, "beam %d of %d was not fed before the selection", j,
                           b->n_cur);
        memmove(b->ext + n_ext, b->ext + (size_t)j * (size_t)b->K,
                (size_t)b->n_fed[j] * sizeof *b->ext);
        n_ext += b->n_fed[j];
    }
    qsort(b->ext, (size_t)n_ext, sizeof *b->ext, ext_cmp);
    int n_next = 0;
    for (int k = 0; k < n_ext && n_next < b->W; k++) {
        const ext *e = &b->ext[k];
        beam *p = &b->cur[e->parent];
        if (is_eog && is_eog(user, e->tok)) {
            if (k < b->W) finish_hyp(b, p, e->tok, e->lp);
            continue;
        }
        beam *nb = &b->next[n_next++];
        memcpy(nb->toks, p->toks, (size_t)p->n * sizeof *p->toks);
        nb->toks[p->n] = e->tok;
        nb->n = p->n + 1;
        nb->lp = e->lp;
        nb->parent = e->parent;
    }
    bool last = n_next > 0 && b->next[0].n >= b->o.n_predict;
    if (n_next == 0) {
        b->done = true;
    } else {
        /* Done when W hypotheses finished and none of the live beams
         * scores better now. */
        double best_live = norm(b->next[0].lp, b->next[0].n, b->o.length_penalty);
        if (last || (b->n_finished >= b->W && b->worst_finished >= best_live)) {
            for (int j = 0; j < n_next; j++) offer(b, b->next[j].toks, b->next[j].n, b->next[j].lp);
            b->done = true;
        }
    }
    if (!b->done) {
        assign_slots(b, n_next);
        for (int j = 0; j < n_next; j++) { /* swap the token buffers: next becomes cur */
            beam t = b->cur[j];
            b->cur[j] = b->next[j];
            b->next[j] = t;
            b->n_fed[j] = -1;
        }
        b->n_cur = n_next;
    }
    *done = b->done;
    return GT_OK;
}

int gt_beam_n_results(const gt_beam *b) { return b->done ? b->n_hyp : 0; }

gt_status gt_beam_result_at(const gt_beam *b, int i, const int32_t **toks, int *n, double *score) {
    if (!b->done)
        return gt_fail(GT_ERR_INTERNAL, "beam search has no hypothesis yet (still searching)");
    if (i < 0 || i >= b->n_hyp)
        return gt_fail(GT_ERR_INTERNAL, "beam search has no hypothesis %d; it found %d", i,
                       b->n_hyp);
    *toks = b->hyp[i];
    *n = b->hyp_n[i];
    *score = b->hyp_score[i];
    return GT_OK;
}

gt_status gt_beam_result(const gt_beam *b, const int32_t **toks, int *n, double *score) {
    return gt_beam_result_at(b, 0, toks, n, score);
}
