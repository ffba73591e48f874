/* The Mixture-of-Experts feed-forward layer (Mixtral, qwen2moe, qwen3moe).
 *
 * The router is one matrix product; one counting pass over the (token, slot)
 * choices then lists every expert's rows, and each expert multiplies the
 * tokens routed to it as one gathered batch (a GEMM in prefill; at decode
 * only the chosen experts' weights are read: each expert is its own
 * gt_weight and an expert no token chose is skipped), and the weighted
 * outputs are scattered back into the residual rows, expert by expert and
 * in token order within an expert, so every row's sum has a fixed order. */
#include <assert.h>

#include "worker/engine_internal.h"

void gt__moe_bucket(const int32_t *ids, const float *w, int n, int K, int E, int32_t *start,
                    int32_t *rows, float *rw) {
    for (int ex = 0; ex <= E; ex++) start[ex] = 0;
    for (int i = 0; i < n * K; i++) {
        assert(ids[i] >= 0 && ids[i] < E); /* gt_router_topk's contract */
        start[ids[i] + 1]++;
    }
    for (int ex = 0; ex < E; ex++) start[ex + 1] += start[ex];
    /* start[ex] is now ex's first slot; it walks to ex's end as rows land,
     * and is put back by one shift at the end. */
    for (int t = 0; t < n; t++)
        for (int j = 0; j < K; j++) {
            const int i = t * K + j, at = start[ids[i]]++;
            rows[at] = t;
            rw[at] = w[i];
        }
    for (int ex = E; ex > 0; ex--) start[ex] = start[ex - 1];
    start[0] = 0;
}

/* Routes each token to its top experts and sums their weighted outputs
 * into s->out. Mixtral and qwen3moe renormalise the chosen experts'
 * probabilities (hp->moe_norm_topk); qwen2moe keeps the full-softmax values
 * and adds a gated shared expert. */
gt_status gt__moe(gt_engine *e, int il, int n) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_kernels *k = e->k;
    gt_fwd_scratch *s = &e->s;
    int D = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    GT_TRY(gt_matmul(k, &L->router_w, s->cur, s->router, n));
    GT_TRY(gt_router_topk(k, s->router, n, E, K, hp->moe_norm_topk, s->moe_ids, s->moe_w));
    GT_TRY(gt_zero(k, s->out, (int64_t)n * D));
    gt__moe_bucket(s->moe_ids, s->moe_w, n, K, E, s->moe_start, s->moe_rows, s->moe_rw);
    for (int ex = 0; ex < E; ex++) {
        const int r0 = s->moe_start[ex], m = s->moe_start[ex + 1] - r0;
        if (!m) continue; /* not chosen: its weights are not read */
        const gt_expert_weights *X = &L->experts[ex];
        GT_TRY(gt_gather_rows(k, s->cur, s->moe_rows + r0, m, D, s->moe_x));
        GT_TRY(gt__mlp(e, &X->gate, &X->up, &X->down, s->moe_x, s->moe_out, m));
        GT_TRY(gt_scatter_add_rows(k, s->moe_out, s->moe_rows + r0, s->moe_rw + r0, m, D, s->out));
        e->expert_bytes_read += X->bytes;
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
