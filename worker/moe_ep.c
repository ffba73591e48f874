/* Expert parallelism for the MoE layer: each rank of an expert group owns
 * whole experts (a contiguous range), and tokens travel to them.
 *
 * After the attention block every rank of the stage group holds the same
 * rows, so rank i of the ep ranks takes the i-th slice of the batch as its
 * own ("home") tokens: it routes only them, sends each (token, slot) row to
 * the rank owning the chosen expert with all-to-all-v (the counts per
 * (member, expert) first, then the rows, grouped by member, expert, token),
 * computes the rows it received for its own experts (each expert's rows as
 * one gathered batch, whoever sent them), sends the outputs back the same
 * way, and sums them into its slice's rows in slot order
 * (gt__moe_combine). The other rows stay zero, so the stage group's
 * all-reduce (or reduce-scatter) that follows the FFN block anyway also
 * assembles the slices: no extra collective. With ep < tp there are
 * tp / ep expert groups, one per column part of the experts; each handles
 * every token with its columns, and the same reduction adds the parts. */
#include <stdio.h>
#include <stdlib.h>

#include "worker/engine_internal.h"

gt_status gt__moe_ep_init(gt_engine *e) {
    int P = e->shard.grid.ep, E = (int)e->hp.n_expert, L = e->w.n_layer > 0 ? e->w.n_layer : 1;
    gt_ep_state *x = &e->ep;
    x->send_cnt = calloc((size_t)E, sizeof *x->send_cnt);
    x->recv_cnt = calloc((size_t)E, sizeof *x->recv_cnt);
    x->send_floats = calloc((size_t)P, sizeof *x->send_floats);
    x->recv_floats = calloc((size_t)P, sizeof *x->recv_floats);
    x->rows = calloc((size_t)L, sizeof *x->rows);
    x->a2a_bytes = calloc((size_t)L, sizeof *x->a2a_bytes);
    x->owned_ids = calloc((size_t)(E / P > 0 ? E / P : 1), sizeof *x->owned_ids);
    if (!x->owned_ids || !x->send_cnt || !x->recv_cnt || !x->send_floats || !x->recv_floats || !x->rows || !x->a2a_bytes)
        return gt_fail(GT_ERR_NOMEM, "cannot allocate the expert-parallel counts for %d experts", E);
    return GT_OK;
}

void gt__moe_ep_free(gt_engine *e) {
    gt_ep_state *x = &e->ep;
    free(x->send_cnt);
    free(x->recv_cnt);
    free(x->send_floats);
    free(x->recv_floats);
    free(x->rows);
    free(x->a2a_bytes);
    free(x->owned_ids);
}

/* Routes the home slice [t0, t0 + nt) and lays out the rows to send:
 * ep_rows[m] is the token of send row m, moe_pos[t * K + j] the send row of
 * (token t0 + t, slot j), send_cnt[q * El + l] the rows for member q's
 * local expert l. Returns the number of send rows. */
static gt_status dispatch_plan(gt_engine *e, int il, int t0, int nt, int *n_send) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_fwd_scratch *s = &e->s;
    int D = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    if (nt > 0) {
        GT_TRY(gt_matmul(e->k, &L->router_w, s->cur + (size_t)t0 * D, s->router, nt));
        GT_TRY(gt_router_topk(e->k, s->router, nt, E, K, hp->moe_norm_topk, s->moe_ids, s->moe_w));
        gt__moe_count_routes(e, il, s->moe_ids, nt * K);
    }
    /* Members own consecutive expert ranges, so expert order is member order:
     * the bucketed rows are the send rows. */
    gt__moe_bucket(s->moe_ids, nt, K, E, s->moe_start, s->ep_rows, s->moe_pos);
    int m = nt * K;
    for (int i = 0; i < m; i++) s->ep_rows[i] += t0;
    for (int ex = 0; ex < E; ex++) e->ep.send_cnt[ex] = s->moe_start[ex + 1] - s->moe_start[ex];
    *n_send = m;
    return GT_OK;
}

/* Computes the received rows for this rank's experts into s->moe_y, at the
 * row each arrived in. Returns the number of received rows. */
static gt_status compute_received(gt_engine *e, int il, int n_recv) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_fwd_scratch *s = &e->s;
    const gt_grid *g = &e->shard.grid;
    int D = (int)hp->n_embd, P = g->ep, El = (int)hp->n_expert / P;
    const int32_t *rc = e->ep.recv_cnt;
    if (n_recv == 0) return GT_OK;
    if (e->xc) { /* offloaded experts: the experts that received rows start their copies */
        int n_owned = 0;
        for (int l = 0; l < El; l++) {
            int c = 0;
            for (int q = 0; q < P; q++) c += rc[q * El + l];
            if (c) e->ep.owned_ids[n_owned++] = g->ep_rank * El + l;
        }
        GT_TRY(gt_expert_cache_route(e->xc, il, e->ep.owned_ids, n_owned));
    }
    GT_TRY(gt_zero(e->k, s->moe_y, (int64_t)n_recv * D));
    for (int l = 0; l < El; l++) {
        /* Expert l's rows: in member q's block, after its rows for experts < l. */
        int m = 0, base = 0;
        for (int q = 0; q < P; q++) {
            int at = base;
            for (int l2 = 0; l2 < l; l2++) at += rc[q * El + l2];
            for (int i = 0; i < rc[q * El + l]; i++) {
                s->moe_rows[m] = at + i;
                s->moe_rw[m] = 1.0f;
                m++;
            }
            for (int l2 = 0; l2 < El; l2++) base += rc[q * El + l2];
        }
        if (!m) continue;
        const gt_expert_weights *X = &L->experts[g->ep_rank * El + l];
        e->expert_bytes_read += X->bytes;
        if (e->xc) GT_TRY(gt_expert_cache_get(e->xc, il, g->ep_rank * El + l, &X));
        GT_TRY(gt_gather_rows(e->k, s->ep_recv, s->moe_rows, m, D, s->moe_x));
        GT_TRY(gt__mlp(e, &X->gate, &X->up, &X->down, s->moe_x, s->moe_out, m));
        /* Each output row lands once on a zero row: an exact copy. */
        GT_TRY(gt_scatter_add_rows(e->k, s->moe_out, s->moe_rows, s->moe_rw, m, D, s->moe_y));
    }
    return GT_OK;
}

gt_status gt__moe_ep(gt_engine *e, int il, int n) {
    const gt_hparams *hp = &e->hp;
    gt_fwd_scratch *s = &e->s;
    const gt_grid *g = &e->shard.grid;
    gt_ep_state *x = &e->ep;
    int D = (int)hp->n_embd, P = g->ep, El = (int)hp->n_expert / P, me = g->ep_rank;
    int layer = e->w.layer0 + il;
    int t0 = (int)((int64_t)n * me / P), t1 = (int)((int64_t)n * (me + 1) / P), nt = t1 - t0;
    char label[64];

    int n_send = 0;
    GT_TRY(dispatch_plan(e, il, t0, nt, &n_send));
    snprintf(label, sizeof label, "layer %d expert counts all-to-all", layer);
    GT_TRY(gt_par_ep_counts(e->par, x->send_cnt, x->recv_cnt, (size_t)El, label));
    int n_recv = 0;
    size_t away = 0;
    for (int q = 0; q < P; q++) {
        size_t sr = 0, rr = 0;
        for (int l = 0; l < El; l++) {
            sr += (size_t)x->send_cnt[q * El + l];
            rr += (size_t)x->recv_cnt[q * El + l];
        }
        x->send_floats[q] = sr * (size_t)D;
        x->recv_floats[q] = rr * (size_t)D;
        n_recv += (int)rr;
        if (q != me) away += sr + rr; /* rows out now, and outputs back later */
    }
    if (n_send > 0) GT_TRY(gt_gather_rows(e->k, s->cur, s->ep_rows, n_send, D, s->ep_send));
    snprintf(label, sizeof label, "layer %d expert dispatch all-to-all", layer);
    GT_TRY(gt_par_ep_alltoallv(e->par, s->ep_send, x->send_floats, s->ep_recv, x->recv_floats, label));
    GT_TRY(compute_received(e, il, n_recv));
    snprintf(label, sizeof label, "layer %d expert combine all-to-all", layer);
    GT_TRY(gt_par_ep_alltoallv(e->par, s->moe_y, x->recv_floats, s->ep_send, x->send_floats, label));
    x->rows[il] += (uint64_t)n_recv;
    x->a2a_bytes[il] += (uint64_t)away * (uint64_t)D * sizeof(float);
    return gt__moe_combine(e, s->ep_send, s->moe_pos, s->moe_w, nt, t0);
}
