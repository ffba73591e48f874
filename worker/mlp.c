/* The gated MLP, down(act(gate(x)) * up(x)), shared by the dense layers
 * (forward.c) and every expert of the MoE layer (moe.c). It has a file of
 * its own so that those two files do not call each other. */
#include "worker/engine_internal.h"

gt_status gt__mlp(gt_engine *e, const gt_weight *gate, const gt_weight *up,
                  const gt_weight *down, const float *x, float *out, int n) {
    gt_fwd_scratch *s = &e->s;
    int64_t F = gate->n_out;
    GT_TRY(gt_matmul(e->k, gate, x, s->gate, n));
    GT_TRY(gt_matmul(e->k, up, x, s->up, n));
    if (e->hp.gelu) GT_TRY(gt_geglu(e->k, s->gate, s->up, s->gate, (int64_t)n * F));
    else GT_TRY(gt_swiglu(e->k, s->gate, s->up, s->gate, (int64_t)n * F));
    return gt_matmul(e->k, down, s->gate, out, n);
}
