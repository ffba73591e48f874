/* Predicted prefetch of offloaded experts.
 *
 * The router of layer L chooses its experts from L's ffn_norm of the
 * residual stream after attention of L; attention changes the stream
 * little, so the same norm and router applied to the stream as layer L-1
 * left it predict most of L's choices one block early. The predicted
 * experts go to the expert cache as a hint (gt_expert_cache_prefetch),
 * whose copies then run on the backend's copy thread (a copy stream on a
 * GPU) while attention of L runs. The prediction changes only which
 * experts are resident when L routes, never the math: the route that
 * follows decides, and a wrong guess costs one copy.
 *
 * Choices: all n rows are predicted (under --ep too, where a rank computes
 * the rows every member sends to its experts, so the whole batch decides
 * which of its experts are needed; the cache skips predicted experts this
 * rank does not own). Under sequence parallelism a rank holds only its
 * slice of the stream between blocks and predicts from that slice alone.
 * The buffers are the prediction's own (GT_SCR_PRED_*), so nothing of the
 * forward pass is overwritten. */
#include <stdio.h>

#include "common/timer.h"
#include "common/trace.h"
#include "worker/engine_internal.h"

gt_status gt__moe_prefetch(gt_engine *e, int il, int r0, int nr) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_fwd_scratch *s = &e->s;
    int D = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    if (nr <= 0 || !L->router_w.n_out) return GT_OK; /* no rows here, or a layer without a router */
    uint64_t t0 = gt_trace_enabled() ? gt_now_ns() : 0;
    /* pred_cur [nr, D] = ffn_norm of layer il over the rows; pred_router [nr, E]. */
    GT_TRY(gt_rmsnorm(e->k, s->x + (size_t)r0 * D, L->ffn_norm, s->pred_cur, nr, D, hp->norm_eps));
    GT_TRY(gt_matmul(e->k, &L->router_w, s->pred_cur, s->pred_router, nr));
    GT_TRY(
        gt_router_topk(e->k, s->pred_router, nr, E, K, hp->moe_norm_topk, s->pred_ids, s->pred_w));
    GT_TRY(gt_expert_cache_prefetch(e->xc, il, s->pred_ids, nr * K));
    if (t0) {
        char name[48];
        snprintf(name, sizeof name, "layer %d expert prefetch", e->w.layer0 + il);
        gt_trace_span("layer", name, t0);
    }
    return GT_OK;
}
