/* The routed experts' outputs summed into their tokens' rows slot by slot
 * (j = 0..K-1), the one order that the single-rank MoE layer (moe.c) and
 * expert parallelism (moe_ep.c) share, so that a token's sum is the same
 * bits whichever ranks computed its experts. Its own file so that neither
 * of the two calls the other for it. */
#include "worker/engine_internal.h"

gt_status gt__moe_combine(gt_engine *e, const float *y, const int32_t *pos, const float *w, int nt,
                          int t0) {
    gt_fwd_scratch *s = &e->s;
    int D = (int)e->hp.n_embd, K = (int)e->hp.n_expert_used;
    if (nt <= 0) return GT_OK;
    for (int j = 0; j < K; j++) {
        for (int t = 0; t < nt; t++) {
            s->moe_rows[t] = pos[(size_t)t * K + j];
            s->moe_rw[t] = w[(size_t)t * K + j];
        }
        GT_TRY(gt_gather_rows(e->k, y, s->moe_rows, nt, D, s->moe_x));
        for (int t = 0; t < nt; t++) s->moe_rows[t] = t0 + t;
        GT_TRY(gt_scatter_add_rows(e->k, s->moe_x, s->moe_rows, s->moe_rw, nt, D, s->out));
    }
    return GT_OK;
}
