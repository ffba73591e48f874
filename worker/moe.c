/* The Mixture-of-Experts feed-forward layer (Mixtral, qwen2moe, qwen3moe).
 *
 * The router is one matrix product; one counting pass over the (token, slot)
 * choices lists every expert's rows (gt__moe_bucket), and each expert
 * multiplies the tokens routed to it as one gathered batch (a GEMM in
 * prefill; at decode only the chosen experts' weights are read: each expert
 * is its own gt_weight and an expert no token chose is skipped). The
 * outputs are kept per (token, slot) and summed into the residual rows slot
 * by slot (gt__moe_combine), the one order that expert parallelism
 * (moe_ep.c) can reproduce bit for bit when the experts of a token were
 * computed on different ranks. */
#include "worker/engine_internal.h"

/* Every expert of the layer on this rank (whole, or a column slice of each
 * under tensor parallelism): their outputs, expert after expert, into
 * s->moe_y (row pos[t * K + j] for token t's slot j), then the slot-ordered
 * sum. */
static gt_status routed_local(gt_engine *e, int il, int n) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_kernels *k = e->k;
    gt_fwd_scratch *s = &e->s;
    int D = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    GT_TRY(gt_matmul(k, &L->router_w, s->cur, s->router, n));
    GT_TRY(gt_router_topk(k, s->router, n, E, K, hp->moe_norm_topk, s->moe_ids, s->moe_w));
    gt__moe_count_routes(e, il, s->moe_ids, n * K);
    /* Offloaded experts: the router's choice starts this layer's copies now. */
    if (e->xc) GT_TRY(gt_expert_cache_route(e->xc, il, s->moe_ids, n * K));
    gt__moe_bucket(s->moe_ids, n, K, E, s->moe_start, s->moe_rows, s->moe_pos);
    for (int ex = 0; ex < E; ex++) {
        const int r0 = s->moe_start[ex], m = s->moe_start[ex + 1] - r0;
        if (!m) continue; /* not chosen: its weights are not read */
        const gt_expert_weights *X = &L->experts[ex];
        e->expert_bytes_read += X->bytes;
        if (e->xc) GT_TRY(gt_expert_cache_get(e->xc, il, ex, &X)); /* its device copy */
        GT_TRY(gt_gather_rows(k, s->cur, s->moe_rows + r0, m, D, s->moe_x));
        e->hook_mlp = "_exps";
        e->hook_expert = ex;
        GT_TRY(gt__mlp(e, &X->gate, &X->up, &X->down, s->moe_x, s->moe_y + (size_t)r0 * D, m));
    }
    return gt__moe_combine(e, s->moe_y, s->moe_pos, s->moe_w, n, 0);
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
    int D = (int)hp->n_embd;
    GT_TRY(gt_zero(k, s->out, (int64_t)n * D));
    if (e->shard.grid.ep > 1) GT_TRY(gt__moe_ep(e, il, n));
    else GT_TRY(routed_local(e, il, n));
    if (L->sh_gate.n_out) {
        e->hook_mlp = "_shexp";
        e->hook_expert = -1;
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
