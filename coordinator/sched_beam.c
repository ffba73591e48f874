/* A beam-search request's rows in the scheduler's steps; see sched_beam.h. */
#include "coordinator/sched_beam.h"

#include <stdlib.h>
#include <string.h>

struct gt__sbeam {
    gt_beam *beam;
    int W;
    int slots[GT_BEAM_MAX_WIDTH];     /* local slot -> the coordinator's sequence */
    bool attached[GT_BEAM_MAX_WIDTH]; /* per live beam: its fork's slot was rebuilt */
    int32_t *full; /* [n_prompt + n_predict + 1] the prompt, then a beam's tokens */
    int n_prompt;
    int cached; /* -1 until the first attach */
};

gt_status gt__sbeam_create(const gt_beam_opts *o, const int *slots, const int32_t *prompt,
                           int n_prompt, gt__sbeam **out) {
    *out = NULL;
    gt__sbeam *b = calloc(1, sizeof *b);
    if (!b) return gt_fail(GT_ERR_NOMEM, "cannot allocate a beam request");
    gt_status st = gt_beam_create(o, &b->beam);
    if (st == GT_OK &&
        !(b->full = malloc(((size_t)n_prompt + (size_t)o->n_predict + 1) * sizeof *b->full)))
        st = gt_fail(GT_ERR_NOMEM, "cannot hold a beam of %d tokens", n_prompt + o->n_predict);
    if (st != GT_OK) {
        gt__sbeam_destroy(b);
        return st;
    }
    b->W = o->width;
    memcpy(b->slots, slots, (size_t)o->width * sizeof *slots);
    memcpy(b->full, prompt, (size_t)n_prompt * sizeof *prompt);
    b->n_prompt = n_prompt;
    b->cached = -1;
    *out = b;
    return GT_OK;
}

void gt__sbeam_destroy(gt__sbeam *b) {
    if (!b) return;
    gt_beam_destroy(b->beam);
    free(b->full);
    free(b);
}

int gt__sbeam_n_live(const gt__sbeam *b) { return gt_beam_n_live(b->beam); }
int gt__sbeam_cached(const gt__sbeam *b) { return b->cached > 0 ? b->cached : 0; }

gt_status gt__sbeam_rows(gt__sbeam *b, gt_coord *c, int n, int room, int32_t *seqs, int32_t *toks,
                         int8_t *want, int *added) {
    int m = 0;
    for (int j = 0; j < gt_beam_n_live(b->beam); j++) {
        gt_beam_live l = gt_beam_get(b->beam, j);
        int seq = b->slots[l.slot], len = b->n_prompt + l.n;
        memcpy(b->full + b->n_prompt, l.toks, (size_t)l.n * sizeof *l.toks);
        if (l.fork && !b->attached[j]) {
            int hit = 0;
            if (gt_coord_seq_len(c, seq)) GT_TRY(gt_coord_free_seq(c, seq));
            GT_TRY(gt_coord_attach_prefix(c, seq, b->full, len, &hit));
            if (b->cached < 0) b->cached = hit;
            b->attached[j] = true;
        }
        for (int p = (int)gt_coord_seq_len(c, seq); p < len && m < room; p++, m++) {
            seqs[n + m] = seq;
            toks[n + m] = b->full[p];
            want[n + m] = p == len - 1;
        }
    }
    *added = m;
    return GT_OK;
}

gt_status gt__sbeam_advance(gt__sbeam *b, gt_coord *c, gt_beam_eog_fn is_eog, void *user,
                            bool *done) {
    *done = false;
    int n_live = gt_beam_n_live(b->beam);
    for (int j = 0; j < n_live; j++) {
        gt_beam_live l = gt_beam_get(b->beam, j);
        if (gt_coord_seq_len(c, b->slots[l.slot]) != (uint32_t)(b->n_prompt + l.n))
            return GT_OK; /* not yet */
    }
    for (int j = 0; j < n_live; j++) {
        float lp;
        const gt_cand *top;
        int n_top;
        GT_TRY(
            gt_coord_next_logprobs(c, b->slots[gt_beam_get(b->beam, j).slot], &lp, &top, &n_top));
        GT_TRY(gt_beam_feed(b->beam, j, top, n_top));
    }
    GT_TRY(gt_beam_select(b->beam, is_eog, user, done));
    memset(b->attached, 0, sizeof b->attached);
    if (*done) return GT_OK;
    for (int i = 0; i < b->W; i++)
        if (!gt_beam_slot_used(b->beam, i) && gt_coord_seq_len(c, b->slots[i]))
            GT_TRY(gt_coord_free_seq(c, b->slots[i]));
    return GT_OK;
}

int gt__sbeam_n_results(const gt__sbeam *b) { return gt_beam_n_results(b->beam); }

gt_status gt__sbeam_result(const gt__sbeam *b, int i, const int32_t **toks, int *n, double *score) {
    return gt_beam_result_at(b->beam, i, toks, n, score);
}
