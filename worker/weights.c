/* Weight loading; see weights.h. Matrices stay in the mmap unless the
 * kernels repack them; only the small vectors are copied (to f32). */
#include "worker/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/quant.h"

static gt_status find(const gt_gguf *g, const char *name, bool required, const gt_tensor_info **out) {
    *out = gt_gguf_find_tensor(g, name);
    if (!*out && required)
        return gt_fail(GT_ERR_NOT_FOUND, "%s: tensor %s is missing", gt_gguf_name(g), name);
    return GT_OK;
}

static gt_status check_shape(const gt_gguf *g, const gt_tensor_info *t, int64_t ne0, int64_t ne1,
                             int64_t ne2) {
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != ne2 || t->ne[3] != 1)
        return gt_fail(GT_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected "
                       "[%lld, %lld, %lld, 1]", gt_gguf_name(g), t->name, (long long)t->ne[0],
                       (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                       (long long)ne0, (long long)ne1, (long long)ne2);
    return GT_OK;
}

/* A 1-D tensor of n elements as a new f32 array (NULL when optional and absent). */
static gt_status load_vec(const gt_gguf *g, const char *name, int64_t n, bool required, float **out) {
    *out = NULL;
    const gt_tensor_info *t;
    GT_TRY(find(g, name, required, &t));
    if (!t) return GT_OK;
    GT_TRY(check_shape(g, t, n, 1, 1));
    float *v = gt_alloc((size_t)n * sizeof *v);
    if (!v) return gt_fail(GT_ERR_NOMEM, "cannot allocate %lld floats for %s", (long long)n, name);
    gt_status st = gt_dequantize_row(t->type, t->data, v, n);
    if (st != GT_OK) {
        gt_free(v);
        return gt_fail(st, "%s: tensor %s has type %s, which Gantry cannot read", gt_gguf_name(g),
                       name, gt_dtype_name(t->type));
    }
    *out = v;
    return GT_OK;
}

static gt_status load_mat(const gt_gguf *g, gt_kernels *k, const char *name, int64_t n_in,
                          int64_t n_out, bool required, gt_weight *w, uint64_t *bytes) {
    memset(w, 0, sizeof *w);
    const gt_tensor_info *t;
    GT_TRY(find(g, name, required, &t));
    if (!t) return GT_OK;
    GT_TRY(check_shape(g, t, n_in, n_out, 1));
    gt_status st = gt_weight_init(k, t->type, n_in, n_out, t->data, w);
    if (st != GT_OK)
        return gt_fail(st, "%s: tensor %s (%s, [%lld, %lld]): %s", gt_gguf_name(g), name,
                       gt_dtype_name(t->type), (long long)n_in, (long long)n_out, gt_last_error());
    *bytes += t->nbytes;
    return GT_OK;
}

/* Expert e of a stacked [n_in, n_out, n_expert] tensor, as one matrix view. */
static gt_status load_expert(const gt_gguf *g, gt_kernels *k, const gt_tensor_info *t, int e,
                             gt_weight *w, uint64_t *bytes) {
    size_t per = t->nbytes / (size_t)t->ne[2];
    gt_status st = gt_weight_init(k, t->type, t->ne[0], t->ne[1], (const uint8_t *)t->data + per * (size_t)e, w);
    if (st != GT_OK)
        return gt_fail(st, "%s: tensor %s expert %d: %s", gt_gguf_name(g), t->name, e, gt_last_error());
    *bytes += per;
    return GT_OK;
}

static gt_status load_moe(const gt_gguf *g, const gt_hparams *hp, gt_kernels *k, int il,
                          gt_layer_weights *L, uint64_t *expert_bytes, uint64_t *bytes) {
    char n[96];
    const gt_tensor_info *tg, *tu, *td, *tr;
    int64_t E = hp->n_expert, D = hp->n_embd, F = hp->n_ff_exp;
    snprintf(n, sizeof n, "blk.%d.ffn_gate_inp.weight", il);
    GT_TRY(find(g, n, true, &tr));
    GT_TRY(check_shape(g, tr, D, E, 1));
    L->router = gt_alloc((size_t)(D * E) * sizeof(float));
    if (!L->router) return gt_fail(GT_ERR_NOMEM, "cannot allocate the router of layer %d", il);
    for (int64_t e = 0; e < E; e++) {
        size_t row;
        gt_dtype_row_bytes(tr->type, D, &row);
        GT_TRY(gt_dequantize_row(tr->type, (const uint8_t *)tr->data + row * (size_t)e,
                                 L->router + e * D, D));
    }
    snprintf(n, sizeof n, "blk.%d.ffn_gate_exps.weight", il);
    GT_TRY(find(g, n, true, &tg));
    GT_TRY(check_shape(g, tg, D, F, E));
    snprintf(n, sizeof n, "blk.%d.ffn_up_exps.weight", il);
    GT_TRY(find(g, n, true, &tu));
    GT_TRY(check_shape(g, tu, D, F, E));
    snprintf(n, sizeof n, "blk.%d.ffn_down_exps.weight", il);
    GT_TRY(find(g, n, true, &td));
    GT_TRY(check_shape(g, td, F, D, E));
    L->experts = calloc((size_t)E, sizeof *L->experts);
    if (!L->experts) return gt_fail(GT_ERR_NOMEM, "cannot allocate %lld experts", (long long)E);
    for (int e = 0; e < E; e++) {
        GT_TRY(load_expert(g, k, tg, e, &L->experts[e].gate, expert_bytes));
        GT_TRY(load_expert(g, k, tu, e, &L->experts[e].up, expert_bytes));
        GT_TRY(load_expert(g, k, td, e, &L->experts[e].down, expert_bytes));
    }
    if (hp->n_ff_shexp) {
        int64_t S = hp->n_ff_shexp;
        snprintf(n, sizeof n, "blk.%d.ffn_gate_shexp.weight", il);
        GT_TRY(load_mat(g, k, n, D, S, true, &L->sh_gate, bytes));
        snprintf(n, sizeof n, "blk.%d.ffn_up_shexp.weight", il);
        GT_TRY(load_mat(g, k, n, D, S, true, &L->sh_up, bytes));
        snprintf(n, sizeof n, "blk.%d.ffn_down_shexp.weight", il);
        GT_TRY(load_mat(g, k, n, S, D, true, &L->sh_down, bytes));
        snprintf(n, sizeof n, "blk.%d.ffn_gate_inp_shexp.weight", il);
        GT_TRY(load_vec(g, n, D, false, &L->sh_gate_inp));
    }
    return GT_OK;
}

static gt_status load_layer(const gt_gguf *g, const gt_hparams *hp, gt_kernels *k, int il,
                            gt_layer_weights *L, uint64_t *bytes, uint64_t *expert_bytes) {
    char n[96];
    int64_t D = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
            KV = (int64_t)hp->n_head_kv * hp->head_dim;
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, il), n)
    GT_TRY(load_vec(g, NAME("attn_norm.weight"), D, true, &L->attn_norm));
    GT_TRY(load_mat(g, k, NAME("attn_q.weight"), D, Q, true, &L->wq, bytes));
    GT_TRY(load_mat(g, k, NAME("attn_k.weight"), D, KV, true, &L->wk, bytes));
    GT_TRY(load_mat(g, k, NAME("attn_v.weight"), D, KV, true, &L->wv, bytes));
    GT_TRY(load_mat(g, k, NAME("attn_output.weight"), Q, D, true, &L->wo, bytes));
    GT_TRY(load_vec(g, NAME("attn_q.bias"), Q, hp->qkv_bias, &L->bq));
    GT_TRY(load_vec(g, NAME("attn_k.bias"), KV, hp->qkv_bias, &L->bk));
    GT_TRY(load_vec(g, NAME("attn_v.bias"), KV, hp->qkv_bias, &L->bv));
    GT_TRY(load_vec(g, NAME("attn_q_norm.weight"), hp->head_dim, hp->qk_norm, &L->q_norm));
    GT_TRY(load_vec(g, NAME("attn_k_norm.weight"), hp->head_dim, hp->qk_norm, &L->k_norm));
    GT_TRY(load_vec(g, NAME("post_attention_norm.weight"), D, hp->post_norms, &L->post_attn_norm));
    GT_TRY(load_vec(g, NAME("ffn_norm.weight"), D, true, &L->ffn_norm));
    GT_TRY(load_vec(g, NAME("post_ffw_norm.weight"), D, hp->post_norms, &L->post_ffn_norm));
    if (hp->n_expert) {
        GT_TRY(load_moe(g, hp, k, il, L, expert_bytes, bytes));
    } else {
        GT_TRY(load_mat(g, k, NAME("ffn_gate.weight"), D, hp->n_ff, true, &L->gate, bytes));
        GT_TRY(load_mat(g, k, NAME("ffn_up.weight"), D, hp->n_ff, true, &L->up, bytes));
        GT_TRY(load_mat(g, k, NAME("ffn_down.weight"), hp->n_ff, D, true, &L->down, bytes));
    }
#undef NAME
    return GT_OK;
}

gt_status gt_weights_load(const gt_gguf *g, const gt_hparams *hp, gt_kernels *k,
                          gt_model_weights *w) {
    memset(w, 0, sizeof *w);
    gt_status st = GT_OK;
    uint64_t bytes = 0, expert_bytes = 0;
    GT_TRY_GOTO(find(g, "token_embd.weight", true, &w->tok_embd), st, fail);
    GT_TRY_GOTO(check_shape(g, w->tok_embd, hp->n_embd, hp->n_vocab, 1), st, fail);
    GT_TRY_GOTO(load_vec(g, "output_norm.weight", hp->n_embd, true, &w->output_norm), st, fail);
    if (hp->tied_output) {
        st = gt_weight_init(k, w->tok_embd->type, hp->n_embd, hp->n_vocab, w->tok_embd->data,
                            &w->output);
        if (st != GT_OK) {
            gt_fail(st, "%s: token_embd.weight as the output head: %s", gt_gguf_name(g), gt_last_error());
            goto fail;
        }
        bytes += w->tok_embd->nbytes;
    } else {
        GT_TRY_GOTO(load_mat(g, k, "output.weight", hp->n_embd, hp->n_vocab, true, &w->output, &bytes),
                    st, fail);
    }
    w->n_layer = (int)hp->n_layer;
    w->n_expert = (int)hp->n_expert;
    w->layers = calloc(hp->n_layer, sizeof *w->layers);
    if (!w->layers) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate %u layers", hp->n_layer);
        goto fail;
    }
    for (uint32_t il = 0; il < hp->n_layer; il++)
        GT_TRY_GOTO(load_layer(g, hp, k, (int)il, &w->layers[il], &bytes, &expert_bytes), st, fail);
    /* A decoded token reads every dense matrix and n_expert_used of n_expert experts. */
    w->matmul_bytes = bytes + (hp->n_expert ? expert_bytes / hp->n_expert * hp->n_expert_used : 0);
    return GT_OK;
fail:
    gt_weights_free(w);
    return st;
}

static void free_layer(gt_layer_weights *L, int n_expert) {
    gt_free(L->attn_norm);
    gt_free(L->bq);
    gt_free(L->bk);
    gt_free(L->bv);
    gt_free(L->q_norm);
    gt_free(L->k_norm);
    gt_free(L->post_attn_norm);
    gt_free(L->ffn_norm);
    gt_free(L->post_ffn_norm);
    gt_free(L->router);
    gt_free(L->sh_gate_inp);
    gt_weight *mats[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down,
                         &L->sh_gate, &L->sh_up, &L->sh_down};
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) gt_weight_free(mats[i]);
    if (L->experts) {
        for (int e = 0; e < n_expert; e++) {
            gt_weight_free(&L->experts[e].gate);
            gt_weight_free(&L->experts[e].up);
            gt_weight_free(&L->experts[e].down);
        }
        free(L->experts);
    }
}

void gt_weights_free(gt_model_weights *w) {
    if (!w) return;
    if (w->layers)
        for (int il = 0; il < w->n_layer; il++) free_layer(&w->layers[il], w->n_expert);
    free(w->layers);
    gt_free(w->output_norm);
    gt_weight_free(&w->output);
    memset(w, 0, sizeof *w);
}
