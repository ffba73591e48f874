/* The gated MLP, down(act(gate(x)) * up(x)), shared by the dense layers
 * (forward.c) and every expert of the MoE layer (moe.c, moe_ep.c). It has
 * a file of its own so that those files do not call each other. */
#include "worker/engine_internal.h"

/* out[n, D] for the n rows of x; zeros when this rank holds none of the
 * MLP's columns (an uneven block split). */
gt_status gt__mlp(gt_engine *e, const gt_weight *gate, const gt_weight *up,
                  const gt_weight *down, const float *x, float *out, int n) {
    gt_fwd_scratch *s = &e->s;
    int64_t F = gate->n_out;
    if (F == 0) return gt_zero(e->k, out, (int64_t)n * (int64_t)e->hp.n_embd);
    if (e->mm_hook) {
        gt__mm_hook_mlp(e, "ffn_gate", x, n, gate->n_in);
        gt__mm_hook_mlp(e, "ffn_up", x, n, up->n_in);
    }
    GT_TRY(gt_matmul(e->k, gate, x, s->gate, n));
    GT_TRY(gt_matmul(e->k, up, x, s->up, n));
    if (e->hp.gelu) GT_TRY(gt_geglu(e->k, s->gate, s->up, s->gate, (int64_t)n * F));
    else GT_TRY(gt_swiglu(e->k, s->gate, s->up, s->gate, (int64_t)n * F));
    if (e->mm_hook) gt__mm_hook_mlp(e, "ffn_down", s->gate, n, down->n_in);
    return gt_matmul(e->k, down, s->gate, out, n);
}
