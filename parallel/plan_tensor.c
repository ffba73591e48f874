/* Per-tensor slicing: which part of each GGUF tensor a shard holds.
 *
 * One table maps a layer tensor's name suffix to how it is split (whole, by
 * rows, by columns) and along which model dimension (query heads, kv heads,
 * MLP columns...). The byte totals of the plan and the engine's loader both
 * go through gt_plan_tensor_slice(), so they cannot disagree. A tensor the
 * table does not know is held whole when that is safe (tp 1, or a 1-D
 * tensor) and refused otherwise, rather than guessed at. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/plan.h"
#include "parallel/plan_internal.h"

/* The model dimension a split runs along. */
typedef enum dim_kind {
    DIM_NONE, /* whole tensor */
    DIM_Q,    /* query heads × head_dim */
    DIM_K,    /* kv heads × head_dim */
    DIM_V,    /* kv heads × head_dim_v */
    DIM_O,    /* query heads × head_dim_v (input of wo) */
    DIM_FF,   /* dense MLP columns */
    DIM_FFE,  /* routed expert columns */
    DIM_FFS,  /* shared expert columns */
} dim_kind;

typedef struct layer_tensor {
    const char *suffix; /* after "blk.N." */
    gt_split split;
    dim_kind dim;
    gt_weight_class wclass;
} layer_tensor;

static const layer_tensor k_layer_tensors[] = {
    {"attn_norm.weight", GT_SPLIT_WHOLE, DIM_NONE, GT_WCLASS_REPLICATED},
    {"ffn_norm.weight", GT_SPLIT_WHOLE, DIM_NONE, GT_WCLASS_REPLICATED},
    {"post_attention_norm.weight", GT_SPLIT_WHOLE, DIM_NONE, GT_WCLASS_REPLICATED},
    {"post_ffw_norm.weight", GT_SPLIT_WHOLE, DIM_NONE, GT_WCLASS_REPLICATED},
    {"attn_q_norm.weight", GT_SPLIT_WHOLE, DIM_NONE, GT_WCLASS_REPLICATED},
    {"attn_k_norm.weight", GT_SPLIT_WHOLE, DIM_NONE, GT_WCLASS_REPLICATED},
    {"ffn_gate_inp.weight", GT_SPLIT_WHOLE, DIM_NONE, GT_WCLASS_REPLICATED},
    {"ffn_gate_inp_shexp.weight", GT_SPLIT_WHOLE, DIM_NONE, GT_WCLASS_REPLICATED},
    /* Column-parallel: whole rows of the output dimension. */
    {"attn_q.weight", GT_SPLIT_ROWS, DIM_Q, GT_WCLASS_ATTN},
    {"attn_k.weight", GT_SPLIT_ROWS, DIM_K, GT_WCLASS_ATTN},
    {"attn_v.weight", GT_SPLIT_ROWS, DIM_V, GT_WCLASS_ATTN},
    {"ffn_gate.weight", GT_SPLIT_ROWS, DIM_FF, GT_WCLASS_FFN},
    {"ffn_up.weight", GT_SPLIT_ROWS, DIM_FF, GT_WCLASS_FFN},
    {"ffn_gate_exps.weight", GT_SPLIT_ROWS, DIM_FFE, GT_WCLASS_EXPERT},
    {"ffn_up_exps.weight", GT_SPLIT_ROWS, DIM_FFE, GT_WCLASS_EXPERT},
    {"ffn_gate_shexp.weight", GT_SPLIT_ROWS, DIM_FFS, GT_WCLASS_FFN},
    {"ffn_up_shexp.weight", GT_SPLIT_ROWS, DIM_FFS, GT_WCLASS_FFN},
    /* Biases of column-parallel outputs: 1-D, the elements of the held rows. */
    {"attn_q.bias", GT_SPLIT_COLS, DIM_Q, GT_WCLASS_ATTN},
    {"attn_k.bias", GT_SPLIT_COLS, DIM_K, GT_WCLASS_ATTN},
    {"attn_v.bias", GT_SPLIT_COLS, DIM_V, GT_WCLASS_ATTN},
    /* Row-parallel: a column range of every row; the outputs end in allreduce. */
    {"attn_output.weight", GT_SPLIT_COLS, DIM_O, GT_WCLASS_ATTN},
    {"ffn_down.weight", GT_SPLIT_COLS, DIM_FF, GT_WCLASS_FFN},
    {"ffn_down_exps.weight", GT_SPLIT_COLS, DIM_FFE, GT_WCLASS_EXPERT},
    {"ffn_down_shexp.weight", GT_SPLIT_COLS, DIM_FFS, GT_WCLASS_FFN},
};

static const layer_tensor *find_layer_tensor(const char *suffix) {
    for (size_t i = 0; i < sizeof k_layer_tensors / sizeof k_layer_tensors[0]; i++)
        if (strcmp(suffix, k_layer_tensors[i].suffix) == 0) return &k_layer_tensors[i];
    return NULL;
}

bool gt__plan_tensor_cuts_ff(const char *name, gt_ff_dim *d) {
    unsigned il;
    int used = 0;
    if (sscanf(name, "blk.%u.%n", &il, &used) != 1 || used == 0) return false;
    const layer_tensor *lt = find_layer_tensor(name + used);
    if (!lt || lt->split != GT_SPLIT_COLS) return false;
    switch (lt->dim) {
    case DIM_FF:
        *d = GT_FF_DENSE;
        return true;
    case DIM_FFE:
        *d = GT_FF_EXPERT;
        return true;
    case DIM_FFS:
        *d = GT_FF_SHARED;
        return true;
    default:
        return false;
    }
}

/* The shard's range along `dim` and the full extent it is taken from. */
static void dim_range(const gt_hparams *hp, const gt_shard *s, dim_kind dim, int64_t *i0,
                      int64_t *i1, int64_t *full) {
    int64_t hd = hp->head_dim, hdv = hp->head_dim_v;
    gt_range r = {0, 0};
    int64_t unit = 1;
    switch (dim) {
    case DIM_Q:
        r = s->heads, unit = hd, *full = (int64_t)hp->n_head * hd;
        break;
    case DIM_K:
        r = s->kv_heads, unit = hd, *full = (int64_t)hp->n_head_kv * hd;
        break;
    case DIM_V:
        r = s->kv_heads, unit = hdv, *full = (int64_t)hp->n_head_kv * hdv;
        break;
    case DIM_O:
        r = s->heads, unit = hdv, *full = (int64_t)hp->n_head * hdv;
        break;
    case DIM_FF:
        r = s->ff, *full = hp->n_ff;
        break;
    case DIM_FFE:
        r = s->ff_exp, *full = hp->n_ff_exp;
        break;
    case DIM_FFS:
        r = s->ff_shexp, *full = hp->n_ff_shexp;
        break;
    case DIM_NONE:
        *full = 0;
        break;
    }
    *i0 = r.begin * unit;
    *i1 = r.end * unit;
}

gt_status gt__plan_dtype_of(const gt_tensor_info *t, const gt_dtype_info **out) {
    *out = gt_dtype_get(t->type);
    if (!*out)
        return gt_fail(GT_ERR_UNSUPPORTED, "%s has type %s, whose block layout Gantry does not know",
                       t->name, gt_dtype_name(t->type));
    return GT_OK;
}

gt_status gt_plan_slice_cols(const gt_tensor_info *t, int64_t c0, int64_t c1,
                             size_t *row_offset_bytes, size_t *row_bytes) {
    const gt_dtype_info *di;
    GT_TRY(gt__plan_dtype_of(t, &di));
    int64_t blk = di->block_elems;
    if (c0 < 0 || c1 < c0 || c1 > t->ne[0])
        return gt_fail(GT_ERR_INVALID_ARG,
                       "columns [%lld, %lld) are outside the %lld columns of %s", (long long)c0,
                       (long long)c1, (long long)t->ne[0], t->name);
    if (c0 % blk || c1 % blk)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s is %s (%lld-element blocks); columns [%lld, %lld) of its %lld do not "
                       "start and end on a block",
                       t->name, di->name, (long long)blk, (long long)c0, (long long)c1,
                       (long long)t->ne[0]);
    *row_offset_bytes = (size_t)(c0 / blk) * di->block_bytes;
    *row_bytes = (size_t)((c1 - c0) / blk) * di->block_bytes;
    return GT_OK;
}

static int64_t outer_rows(const gt_tensor_info *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

static gt_status slice_whole(const gt_tensor_info *t, bool replicated, gt_tensor_slice *out) {
    out->split = GT_SPLIT_WHOLE;
    out->i0 = 0;
    out->i1 = t->ne[0];
    out->replicated = replicated;
    out->n_rows = outer_rows(t);
    out->row_bytes = out->n_rows ? t->nbytes / (size_t)out->n_rows : 0;
    out->nbytes = t->nbytes;
    return GT_OK;
}

static gt_status slice_rows(const gt_tensor_info *t, int64_t r0, int64_t r1, bool replicated,
                            gt_tensor_slice *out) {
    size_t rb;
    if (!gt_dtype_row_bytes(t->type, t->ne[0], &rb))
        return gt_fail(GT_ERR_FORMAT, "%s: rows of %lld elements are not whole %s blocks", t->name,
                       (long long)t->ne[0], gt_dtype_name(t->type));
    out->split = GT_SPLIT_ROWS;
    out->i0 = r0;
    out->i1 = r1;
    out->replicated = replicated;
    out->row_bytes = rb;
    out->n_rows = (r1 - r0) * t->ne[2] * t->ne[3];
    out->nbytes = (size_t)out->n_rows * rb;
    return GT_OK;
}

static gt_status slice_cols(const gt_tensor_info *t, int tp, int64_t c0, int64_t c1,
                            bool replicated, gt_tensor_slice *out) {
    const gt_dtype_info *di = gt_dtype_get(t->type);
    if (di && di->block_elems > 1 && (c0 % di->block_elems || c1 % di->block_elems)) {
        /* The tp-level sentence: the slice boundary that falls inside a block. */
        long long at = c0 % di->block_elems ? (long long)c0 : (long long)c1;
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s is %s (%d-element blocks); tp %d would slice its %lld columns at %lld",
                       t->name, di->name, di->block_elems, tp, (long long)t->ne[0], at);
    }
    size_t off, rb;
    GT_TRY(gt_plan_slice_cols(t, c0, c1, &off, &rb));
    out->split = GT_SPLIT_COLS;
    out->i0 = c0;
    out->i1 = c1;
    out->replicated = replicated;
    out->row_offset_bytes = off;
    out->row_bytes = rb;
    out->n_rows = outer_rows(t);
    out->nbytes = (size_t)out->n_rows * rb;
    return GT_OK;
}

/* A tensor the table does not know: whole where that is safe. */
static gt_status slice_unknown(const gt_shard *s, const gt_tensor_info *t, gt_tensor_slice *out) {
    if (s->grid.tp > 1 && t->n_dims > 1)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "tensor %s is not one the sharding plan knows how to split over tp %d",
                       t->name, s->grid.tp);
    out->wclass = GT_WCLASS_REPLICATED;
    return slice_whole(t, s->grid.tp > 1, out);
}

/* The vocabulary-sliced matrices: token_embd (look-ups) and output (LM head). */
static gt_status slice_vocab(const gt_hparams *hp, const gt_shard *s, const gt_tensor_info *t,
                             gt_tensor_slice *out) {
    if (t->ne[1] != (int64_t)hp->n_vocab)
        return gt_fail(GT_ERR_FORMAT, "tensor %s has %lld rows, expected the vocabulary of %u",
                       t->name, (long long)t->ne[1], hp->n_vocab);
    return slice_rows(t, s->vocab.begin, s->vocab.end, false, out);
}

static gt_status slice_top(const gt_hparams *hp, const gt_shard *s, const gt_tensor_info *t,
                           gt_tensor_slice *out) {
    if (strcmp(t->name, "token_embd.weight") == 0) {
        /* Tied heads reuse the embedding, so the last stage holds its rows too. */
        bool held = s->first_stage || (hp->tied_output && s->last_stage);
        if (!held) return GT_OK;
        out->wclass = s->first_stage ? GT_WCLASS_EMBD : GT_WCLASS_HEAD;
        return slice_vocab(hp, s, t, out);
    }
    if (strcmp(t->name, "output.weight") == 0) {
        if (!s->last_stage) return GT_OK;
        out->wclass = GT_WCLASS_HEAD;
        return slice_vocab(hp, s, t, out);
    }
    if (strcmp(t->name, "output_norm.weight") == 0) {
        if (!s->last_stage) return GT_OK;
        out->wclass = GT_WCLASS_REPLICATED;
        return slice_whole(t, s->grid.tp > 1, out);
    }
    return slice_unknown(s, t, out);
}

/* A stacked routed-expert tensor [ne0, ne1, n_expert]: only the shard's
 * experts count (expert parallelism gives each rank a range of them). */
static gt_status held_experts(const gt_shard *s, const gt_tensor_info *t, gt_tensor_slice *out) {
    if (s->experts.begin < 0 || s->experts.end > t->ne[2] || s->experts.end < s->experts.begin)
        return gt_fail(GT_ERR_FORMAT, "tensor %s stacks %lld experts, but the shard holds [%lld, %lld)",
                       t->name, (long long)t->ne[2], (long long)s->experts.begin,
                       (long long)s->experts.end);
    out->e0 = s->experts.begin;
    out->e1 = s->experts.end;
    int64_t per = out->split == GT_SPLIT_ROWS ? out->i1 - out->i0 : t->ne[1];
    out->n_rows = per * (out->e1 - out->e0) * t->ne[3];
    out->nbytes = (size_t)out->n_rows * out->row_bytes;
    return GT_OK;
}

gt_status gt_plan_tensor_slice(const gt_hparams *hp, const gt_shard *s, const gt_tensor_info *t,
                               gt_tensor_slice *out) {
    memset(out, 0, sizeof *out);
    out->split = GT_SPLIT_NONE;
    unsigned il;
    int used = 0;
    if (sscanf(t->name, "blk.%u.%n", &il, &used) != 1 || used == 0) return slice_top(hp, s, t, out);
    if (il >= hp->n_layer)
        return gt_fail(GT_ERR_FORMAT, "tensor %s belongs to layer %u of a %u-layer model", t->name,
                       il, hp->n_layer);
    if ((int64_t)il < s->layers.begin || (int64_t)il >= s->layers.end) return GT_OK;
    const char *suffix = t->name + used;
    const layer_tensor *lt = find_layer_tensor(suffix);
    if (!lt) return slice_unknown(s, t, out);
    out->wclass = lt->wclass;
    if (lt->split == GT_SPLIT_WHOLE) return slice_whole(t, s->grid.tp > 1, out);

    int64_t i0, i1, full = 0;
    dim_range(hp, s, lt->dim, &i0, &i1, &full);
    /* K and V rows are shared when tp > n_head_kv. */
    bool replicated = (lt->dim == DIM_K || lt->dim == DIM_V) && s->kv_copies > 1;
    int64_t have = lt->split == GT_SPLIT_ROWS ? t->ne[1] : t->ne[0];
    if (have != full)
        return gt_fail(GT_ERR_FORMAT,
                       "tensor %s has %lld %s, expected %lld from the model's "
                       "hyper-parameters",
                       t->name, (long long)have, lt->split == GT_SPLIT_ROWS ? "rows" : "columns",
                       (long long)full);
    if (lt->split == GT_SPLIT_ROWS) GT_TRY(slice_rows(t, i0, i1, replicated, out));
    else GT_TRY(slice_cols(t, s->grid.tp, i0, i1, replicated, out));
    if (lt->dim == DIM_FFE) return held_experts(s, t, out);
    return GT_OK;
}
