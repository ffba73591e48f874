/* The Mixture-of-Experts feed-forward layer (Mixtral, qwen2moe, qwen3moe).
 *
 * The router is one matrix product; each expert then multiplies the tokens
 * routed to it as one gathered batch (a GEMM in prefill; at decode only the
 * chosen experts' weights are read), and the weighted outputs are scattered
 * back into the residual rows. */
#include "worker/engine_internal.h"

/* Routes each token to its top experts and sums their weighted outputs
 * into s->out. Mixtral renormalises the chosen experts' probabilities;
 * qwen2moe keeps the full-softmax values and adds a gated shared expert. */
gt_status gt__moe(gt_engine *e, int il, int n) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_kernels *k = e->k;
    gt_fwd_scratch *s = &e->s;
    int D = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    bool renorm = hp->arch != GT_ARCH_QWEN2MOE;
    GT_TRY(gt_matmul(k, &L->router_w, s->cur, s->router, n));
    GT_TRY(gt_router_topk(k, s->router, n, E, K, renorm, s->moe_ids, s->moe_w));
    if (e->expert_counts)
        for (int i = 0; i < n * K; i++) e->expert_counts[(size_t)il * (size_t)E + (size_t)s->moe_ids[i]]++;
    /* Offloaded experts: the router's choice starts this layer's copies now. */
    if (e->xc) GT_TRY(gt_expert_cache_route(e->xc, il, s->moe_ids, n * K));
    GT_TRY(gt_zero(k, s->out, (int64_t)n * D));
    for (int ex = 0; ex < E; ex++) {
        int m = 0; /* the (token, slot) pairs routed to ex, in token order */
        for (int t = 0; t < n; t++)
            for (int j = 0; j < K; j++)
                if (s->moe_ids[(size_t)t * K + j] == ex) {
                    s->moe_rows[m] = t;
                    s->moe_rw[m] = s->moe_w[(size_t)t * K + j];
                    m++;
                }
        if (!m) continue;
        const gt_expert_weights *X = &L->experts[ex];
        if (e->xc) GT_TRY(gt_expert_cache_get(e->xc, il, ex, &X)); /* its device copy */
        GT_TRY(gt_gather_rows(k, s->cur, s->moe_rows, m, D, s->moe_x));
        GT_TRY(gt__mlp(e, &X->gate, &X->up, &X->down, s->moe_x, s->moe_out, m));
        GT_TRY(gt_scatter_add_rows(k, s->moe_out, s->moe_rows, s->moe_rw, m, D, s->out));
    }
    if (L->sh_gate.n_out) {
        GT_TRY(gt__mlp(e, &L->sh_gate, &L->sh_up, &L->sh_down, s->cur, s->moe_out, n));
        /* The gate logits [n] reuse the router's scratch, whose probabilities are spent. */
        const float *gate = NULL;
        if (L->sh_gate_inp) {
            GT_TRY(gt_matmul(k, &L->sh_gate_inp_w, s->cur, s->router, n));
            gate = s->router;
        }
        GT_TRY(gt_sigmoid_gate_add(k, gate, s->moe_out, s->out, n, D));
    }
    return GT_OK;
}
