/* Weight loading; see weights.h. Matrices stay in the mmap unless the
 * kernels repack them; only small vectors (to f32) and row-parallel column
 * slices (which are not contiguous in the file) are copied. Which part of a
 * tensor this rank holds comes from the sharding plan (parallel/plan.h), so
 * the bytes loaded are exactly the bytes `gantry plan` reports. */
#include "worker/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/quant.h"

typedef struct loader {
    const gt_gguf *g;
    const gt_hparams *hp;
    const gt_shard *shard; /* NULL: the whole model */
    gt_kernels *k;
    gt_model_weights *w;
    uint64_t bytes, expert_bytes;
} loader;

static gt_status find(const loader *L, const char *name, bool required, const gt_tensor_info **out) {
    *out = gt_gguf_find_tensor(L->g, name);
    if (!*out && required)
        return gt_fail(GT_ERR_NOT_FOUND, "%s: tensor %s is missing", gt_gguf_name(L->g), name);
    return GT_OK;
}

static gt_status check_shape(const loader *L, const gt_tensor_info *t, int64_t ne0, int64_t ne1,
                             int64_t ne2) {
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != ne2 || t->ne[3] != 1)
        return gt_fail(GT_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected "
                       "[%lld, %lld, %lld, 1]", gt_gguf_name(L->g), t->name, (long long)t->ne[0],
                       (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                       (long long)ne0, (long long)ne1, (long long)ne2);
    return GT_OK;
}

/* The slice of t this rank holds; the whole tensor without a shard. */
static gt_status slice_of(const loader *L, const gt_tensor_info *t, gt_tensor_slice *s) {
    if (L->shard) return gt_plan_tensor_slice(L->hp, L->shard, t, s);
    size_t row;
    gt_dtype_row_bytes(t->type, t->ne[0], &row);
    memset(s, 0, sizeof *s);
    s->split = GT_SPLIT_WHOLE;
    s->row_bytes = row;
    s->n_rows = (int64_t)(t->nbytes / row);
    s->nbytes = t->nbytes;
    return GT_OK;
}

static gt_status keep_owned(loader *L, void *p) {
    gt_model_weights *w = L->w;
    if (w->n_owned == w->cap_owned) {
        int cap = w->cap_owned ? 2 * w->cap_owned : 64;
        void **n = realloc(w->owned, (size_t)cap * sizeof *n);
        if (!n) {
            gt_free(p);
            return gt_fail(GT_ERR_NOMEM, "cannot track %d weight slices", cap);
        }
        w->owned = n;
        w->cap_owned = cap;
    }
    w->owned[w->n_owned++] = p;
    return GT_OK;
}

/* Copies elements [i0, i1) of each of n_rows rows (row-parallel slices are
 * strided in the file) into one contiguous buffer the weights own. */
static gt_status copy_cols(loader *L, const gt_tensor_info *t, const uint8_t *base, int64_t n_rows,
                           const gt_tensor_slice *s, const void **out) {
    size_t full;
    gt_dtype_row_bytes(t->type, t->ne[0], &full);
    uint8_t *buf = gt_alloc(s->row_bytes * (size_t)n_rows);
    if (!buf) return gt_fail(GT_ERR_NOMEM, "cannot copy a %zu-byte slice of %s", s->row_bytes * (size_t)n_rows, t->name);
    for (int64_t r = 0; r < n_rows; r++)
        memcpy(buf + (size_t)r * s->row_bytes, base + (size_t)r * full + s->row_offset_bytes, s->row_bytes);
    GT_TRY(keep_owned(L, buf));
    *out = buf;
    return GT_OK;
}

/* A 1-D tensor (norm, bias) as a new f32 array of its held elements; NULL
 * when optional and absent. */
static gt_status load_vec(loader *L, const char *name, int64_t n, bool required, float **out) {
    *out = NULL;
    const gt_tensor_info *t;
    GT_TRY(find(L, name, required, &t));
    if (!t) return GT_OK;
    GT_TRY(check_shape(L, t, n, 1, 1));
    gt_tensor_slice s;
    GT_TRY(slice_of(L, t, &s));
    int64_t i0 = s.split == GT_SPLIT_COLS ? s.i0 : 0, i1 = s.split == GT_SPLIT_COLS ? s.i1 : n;
    float *full = gt_alloc((size_t)n * sizeof *full);
    if (!full) return gt_fail(GT_ERR_NOMEM, "cannot allocate %lld floats for %s", (long long)n, name);
    gt_status st = gt_dequantize_row(t->type, t->data, full, n);
    if (st != GT_OK) {
        gt_free(full);
        return gt_fail(st, "%s: tensor %s has type %s, which Gantry cannot read", gt_gguf_name(L->g),
                       name, gt_dtype_name(t->type));
    }
    if (i0 > 0) memmove(full, full + i0, (size_t)(i1 - i0) * sizeof *full);
    *out = full;
    return GT_OK;
}

static gt_status init_weight(loader *L, const gt_tensor_info *t, int64_t n_in, int64_t n_out,
                             const void *data, size_t bytes, gt_weight *w) {
    gt_status st = gt_weight_init(L->k, t->type, n_in, n_out, data, w);
    if (st != GT_OK)
        return gt_fail(st, "%s: tensor %s (%s, [%lld, %lld]): %s", gt_gguf_name(L->g), t->name,
                       gt_dtype_name(t->type), (long long)n_in, (long long)n_out, gt_last_error());
    L->bytes += bytes;
    return GT_OK;
}

/* The held part of matrix e of t ([n_in, n_out] or stacked [n_in, n_out, E]). */
static gt_status load_part(loader *L, const gt_tensor_info *t, int e, gt_weight *w, uint64_t *acct) {
    gt_tensor_slice s;
    GT_TRY(slice_of(L, t, &s));
    /* A rank may hold no column of an MLP split in whole blocks: *w stays
     * empty (n_in = n_out = 0) and the forward pass adds nothing for it. */
    if ((s.split == GT_SPLIT_ROWS || s.split == GT_SPLIT_COLS) && s.i1 == s.i0) {
        memset(w, 0, sizeof *w);
        return GT_OK;
    }
    size_t full;
    gt_dtype_row_bytes(t->type, t->ne[0], &full);
    const uint8_t *base = (const uint8_t *)t->data + full * (size_t)t->ne[1] * (size_t)e;
    uint64_t before = L->bytes;
    switch (s.split) {
    case GT_SPLIT_WHOLE:
        GT_TRY(init_weight(L, t, t->ne[0], t->ne[1], base, full * (size_t)t->ne[1], w));
        break;
    case GT_SPLIT_ROWS:
        GT_TRY(init_weight(L, t, t->ne[0], s.i1 - s.i0, base + full * (size_t)s.i0,
                           full * (size_t)(s.i1 - s.i0), w));
        break;
    case GT_SPLIT_COLS: {
        const void *buf = NULL;
        GT_TRY(copy_cols(L, t, base, t->ne[1], &s, &buf));
        GT_TRY(init_weight(L, t, s.i1 - s.i0, t->ne[1], buf, s.row_bytes * (size_t)t->ne[1], w));
        break;
    }
    default:
        return gt_fail(GT_ERR_INTERNAL, "%s: tensor %s is not held by this rank", gt_gguf_name(L->g), t->name);
    }
    if (acct) { /* experts are counted apart: a token reads only the chosen ones */
        *acct += L->bytes - before;
        L->bytes = before;
    }
    return GT_OK;
}

static gt_status load_mat(loader *L, const char *name, int64_t n_in, int64_t n_out, bool required,
                          gt_weight *w) {
    memset(w, 0, sizeof *w);
    const gt_tensor_info *t;
    GT_TRY(find(L, name, required, &t));
    if (!t) return GT_OK;
    GT_TRY(check_shape(L, t, n_in, n_out, 1));
    return load_part(L, t, 0, w, NULL);
}

static gt_status load_moe(loader *L, int il, gt_layer_weights *lw) {
    const gt_hparams *hp = L->hp;
    char n[96];
    const gt_tensor_info *tg, *tu, *td, *tr;
    int64_t E = hp->n_expert, D = hp->n_embd, F = hp->n_ff_exp;
    snprintf(n, sizeof n, "blk.%d.ffn_gate_inp.weight", il);
    GT_TRY(find(L, n, true, &tr));
    GT_TRY(check_shape(L, tr, D, E, 1));
    lw->router = gt_alloc((size_t)(D * E) * sizeof(float));
    if (!lw->router) return gt_fail(GT_ERR_NOMEM, "cannot allocate the router of layer %d", il);
    size_t row;
    gt_dtype_row_bytes(tr->type, D, &row);
    for (int64_t e = 0; e < E; e++)
        GT_TRY(gt_dequantize_row(tr->type, (const uint8_t *)tr->data + row * (size_t)e, lw->router + e * D, D));
    GT_TRY(gt_weight_init_invariant(L->k, GT_F32, D, E, lw->router, &lw->router_w));
    L->bytes += (uint64_t)(D * E) * sizeof(float); /* every token reads the whole router */
    snprintf(n, sizeof n, "blk.%d.ffn_gate_exps.weight", il);
    GT_TRY(find(L, n, true, &tg));
    GT_TRY(check_shape(L, tg, D, F, E));
    snprintf(n, sizeof n, "blk.%d.ffn_up_exps.weight", il);
    GT_TRY(find(L, n, true, &tu));
    GT_TRY(check_shape(L, tu, D, F, E));
    snprintf(n, sizeof n, "blk.%d.ffn_down_exps.weight", il);
    GT_TRY(find(L, n, true, &td));
    GT_TRY(check_shape(L, td, F, D, E));
    lw->experts = calloc((size_t)E, sizeof *lw->experts);
    if (!lw->experts) return gt_fail(GT_ERR_NOMEM, "cannot allocate %lld experts", (long long)E);
    /* Expert parallelism: only the shard's experts are prepared; the others
     * stay zeroed views (n_out 0) that the forward pass never reads. */
    int64_t e0 = L->shard ? L->shard->experts.begin : 0, e1 = L->shard ? L->shard->experts.end : E;
    for (int e = (int)e0; e < (int)e1; e++) {
        gt_expert_weights *X = &lw->experts[e];
        GT_TRY(load_part(L, tg, e, &X->gate, &X->bytes));
        GT_TRY(load_part(L, tu, e, &X->up, &X->bytes));
        GT_TRY(load_part(L, td, e, &X->down, &X->bytes));
        L->expert_bytes += X->bytes;
    }
    if (hp->n_ff_shexp) {
        int64_t S = hp->n_ff_shexp;
        snprintf(n, sizeof n, "blk.%d.ffn_gate_shexp.weight", il);
        GT_TRY(load_mat(L, n, D, S, true, &lw->sh_gate));
        snprintf(n, sizeof n, "blk.%d.ffn_up_shexp.weight", il);
        GT_TRY(load_mat(L, n, D, S, true, &lw->sh_up));
        snprintf(n, sizeof n, "blk.%d.ffn_down_shexp.weight", il);
        GT_TRY(load_mat(L, n, S, D, true, &lw->sh_down));
        snprintf(n, sizeof n, "blk.%d.ffn_gate_inp_shexp.weight", il);
        GT_TRY(load_vec(L, n, D, false, &lw->sh_gate_inp));
        if (lw->sh_gate_inp) {
            GT_TRY(gt_weight_init_invariant(L->k, GT_F32, D, 1, lw->sh_gate_inp, &lw->sh_gate_inp_w));
            L->bytes += (uint64_t)D * sizeof(float);
        }
    }
    return GT_OK;
}

static gt_status load_layer(loader *L, int il, gt_layer_weights *lw) {
    const gt_hparams *hp = L->hp;
    char n[96];
    int64_t D = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim,
            KV = (int64_t)hp->n_head_kv * hp->head_dim;
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%d." suffix, il), n)
    GT_TRY(load_vec(L, NAME("attn_norm.weight"), D, true, &lw->attn_norm));
    GT_TRY(load_mat(L, NAME("attn_q.weight"), D, Q, true, &lw->wq));
    GT_TRY(load_mat(L, NAME("attn_k.weight"), D, KV, true, &lw->wk));
    GT_TRY(load_mat(L, NAME("attn_v.weight"), D, KV, true, &lw->wv));
    GT_TRY(load_mat(L, NAME("attn_output.weight"), Q, D, true, &lw->wo));
    GT_TRY(load_vec(L, NAME("attn_q.bias"), Q, hp->qkv_bias, &lw->bq));
    GT_TRY(load_vec(L, NAME("attn_k.bias"), KV, hp->qkv_bias, &lw->bk));
    GT_TRY(load_vec(L, NAME("attn_v.bias"), KV, hp->qkv_bias, &lw->bv));
    GT_TRY(load_vec(L, NAME("attn_q_norm.weight"), hp->head_dim, hp->qk_norm, &lw->q_norm));
    GT_TRY(load_vec(L, NAME("attn_k_norm.weight"), hp->head_dim, hp->qk_norm, &lw->k_norm));
    GT_TRY(load_vec(L, NAME("post_attention_norm.weight"), D, hp->post_norms, &lw->post_attn_norm));
    GT_TRY(load_vec(L, NAME("ffn_norm.weight"), D, true, &lw->ffn_norm));
    GT_TRY(load_vec(L, NAME("post_ffw_norm.weight"), D, hp->post_norms, &lw->post_ffn_norm));
    if (hp->n_expert) {
        GT_TRY(load_moe(L, il, lw));
    } else {
        GT_TRY(load_mat(L, NAME("ffn_gate.weight"), D, hp->n_ff, true, &lw->gate));
        GT_TRY(load_mat(L, NAME("ffn_up.weight"), D, hp->n_ff, true, &lw->up));
        GT_TRY(load_mat(L, NAME("ffn_down.weight"), hp->n_ff, D, true, &lw->down));
    }
#undef NAME
    return GT_OK;
}

/* Embedding rows and the output head: the vocabulary slice of this rank. */
static gt_status load_vocab(loader *L) {
    gt_model_weights *w = L->w;
    const gt_hparams *hp = L->hp;
    bool first = !L->shard || L->shard->first_stage, last = !L->shard || L->shard->last_stage;
    w->vocab0 = L->shard ? L->shard->vocab.begin : 0;
    w->n_vocab_local = L->shard ? gt_range_len(L->shard->vocab) : hp->n_vocab;
    GT_TRY(find(L, "token_embd.weight", true, &w->tok_embd));
    GT_TRY(check_shape(L, w->tok_embd, hp->n_embd, hp->n_vocab, 1));
    size_t row;
    gt_dtype_row_bytes(w->tok_embd->type, hp->n_embd, &row);
    w->embd_rows = (const uint8_t *)w->tok_embd->data + row * (size_t)w->vocab0;
    if (!last) return GT_OK;
    (void)first;
    GT_TRY(load_vec(L, "output_norm.weight", hp->n_embd, true, &w->output_norm));
    if (hp->tied_output)
        return init_weight(L, w->tok_embd, hp->n_embd, w->n_vocab_local, w->embd_rows,
                           row * (size_t)w->n_vocab_local, &w->output);
    return load_mat(L, "output.weight", hp->n_embd, hp->n_vocab, true, &w->output);
}

gt_status gt_weights_load(const gt_gguf *g, const gt_hparams *hp, const gt_shard *shard,
                          gt_kernels *k, gt_model_weights *w) {
    memset(w, 0, sizeof *w);
    loader L = {g, hp, shard, k, w, 0, 0};
    gt_status st = GT_OK;
    GT_TRY_GOTO(load_vocab(&L), st, fail);
    w->layer0 = shard ? (int)shard->layers.begin : 0;
    w->n_layer = shard ? (int)gt_range_len(shard->layers) : (int)hp->n_layer;
    w->n_expert = (int)hp->n_expert;
    if (w->n_layer > 0) {
        w->layers = calloc((size_t)w->n_layer, sizeof *w->layers);
        if (!w->layers) {
            st = gt_fail(GT_ERR_NOMEM, "cannot allocate %d layers", w->n_layer);
            goto fail;
        }
    }
    for (int i = 0; i < w->n_layer; i++)
        GT_TRY_GOTO(load_layer(&L, w->layer0 + i, &w->layers[i]), st, fail);
    /* A decoded token reads every dense matrix (the routers and shared
     * experts included) and n_expert_used of the experts per layer (under
     * --ep: of the ones this rank holds, on average). */
    int64_t n_held = shard ? gt_range_len(shard->experts) : (int64_t)hp->n_expert;
    w->dense_bytes = L.bytes;
    w->expert_bytes = L.expert_bytes;
    w->matmul_bytes = L.bytes + (hp->n_expert && n_held > 0
                                     ? L.expert_bytes / (uint64_t)n_held * hp->n_expert_used : 0);
    return GT_OK;
fail:
    gt_weights_free(w);
    return st;
}

static void free_layer(gt_layer_weights *lw, int n_expert) {
    float *vecs[] = {lw->attn_norm, lw->bq, lw->bk, lw->bv, lw->q_norm, lw->k_norm,
                     lw->post_attn_norm, lw->ffn_norm, lw->post_ffn_norm, lw->router, lw->sh_gate_inp};
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) gt_free(vecs[i]);
    gt_weight *mats[] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->gate, &lw->up, &lw->down,
                         &lw->sh_gate, &lw->sh_up, &lw->sh_down, &lw->router_w, &lw->sh_gate_inp_w};
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) gt_weight_free(mats[i]);
    if (lw->experts) {
        for (int e = 0; e < n_expert; e++) {
            gt_weight_free(&lw->experts[e].gate);
            gt_weight_free(&lw->experts[e].up);
            gt_weight_free(&lw->experts[e].down);
        }
        free(lw->experts);
    }
}

void gt_weights_free(gt_model_weights *w) {
    if (!w) return;
    if (w->layers)
        for (int il = 0; il < w->n_layer; il++) free_layer(&w->layers[il], w->n_expert);
    free(w->layers);
    gt_free(w->output_norm);
    gt_weight_free(&w->output);
    for (int i = 0; i < w->n_owned; i++) gt_free(w->owned[i]);
    free(w->owned);
    memset(w, 0, sizeof *w);
}

static int64_t longer(int64_t a, const gt_weight *w) { return w->n_in > a ? w->n_in : a; }

int64_t gt_weights_max_n_in(const gt_model_weights *w) {
    int64_t n = longer(0, &w->output);
    for (int il = 0; il < w->n_layer; il++) {
        const gt_layer_weights *lw = &w->layers[il];
        const gt_weight *mats[] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->gate, &lw->up,
                                   &lw->down, &lw->sh_gate, &lw->sh_up, &lw->sh_down,
                                   &lw->router_w, &lw->sh_gate_inp_w};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) n = longer(n, mats[i]);
        if (lw->experts)
            for (int e = 0; e < w->n_expert; e++) {
                n = longer(n, &lw->experts[e].gate);
                n = longer(n, &lw->experts[e].up);
                n = longer(n, &lw->experts[e].down);
            }
    }
    return n;
}
