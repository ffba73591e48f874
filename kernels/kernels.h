/* The math of a forward pass, behind one op table.
 *
 * A gt_kernels is a backend instance: an op table chosen once at creation
 * (from CPU features, or forced with cfg.isa) plus the thread pool the ops
 * run on. Every op has a scalar `_ref` version that is always compiled and is
 * the oracle for the fast ones; see kernels/ops.h for the table itself.
 *
 * Calls on one gt_kernels must come from one thread at a time (the pool is
 * fork-join). Shapes are row-major; the fastest-varying index is last in the
 * shape comments. Nothing here knows about ranks, files or models. */
#ifndef GT_KERNELS_H
#define GT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/pool.h"
#include "common/status.h"

typedef struct gt_kernels gt_kernels;

typedef struct gt_kernels_config {
    int n_threads;   /* >= 1, counts the calling thread */
    const char *isa; /* NULL or "auto": best available; "ref", "avx2", "avx512" */
} gt_kernels_config;
#define GT_KERNELS_CONFIG_INIT {1, NULL}

/* GT_ERR_INVALID_ARG (bad thread count, unknown isa), GT_ERR_UNSUPPORTED (isa
 * not available on this CPU), GT_ERR_NOMEM. */
gt_status gt_kernels_create(const gt_kernels_config *cfg, gt_kernels **out);
void gt_kernels_destroy(gt_kernels *k); /* accepts NULL */
const char *gt_kernels_isa(const gt_kernels *k); /* "avx512", "avx2", "ref" */
int gt_kernels_n_threads(const gt_kernels *k);
gt_pool *gt_kernels_pool(gt_kernels *k);

/* ---- weights ---- */

/* A weight matrix W[n_out, n_in] (GGUF ne = {n_in, n_out}) prepared for the
 * backend: the rows as stored, or a repacked copy when the backend's kernels
 * prefer another layout. */
typedef struct gt_weight {
    gt_dtype type;
    int64_t n_in;     /* row length */
    int64_t n_out;    /* number of rows */
    const void *data; /* borrowed GGUF rows (mmap), or == owned when repacked */
    void *owned;      /* backend-owned copy, NULL when borrowed */
    int layout;       /* 0: GGUF rows; other values are backend-private */
} gt_weight;

/* True when gt_matmul computes with this type. */
bool gt_kernels_matmul_supports(const gt_kernels *k, gt_dtype type);
/* Prepares W; may repack (allocating). GT_ERR_UNSUPPORTED for a type without
 * a matmul, GT_ERR_INVALID_ARG when n_in is not a multiple of the block size,
 * GT_ERR_NOMEM. */
gt_status gt_weight_init(gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                         const void *data, gt_weight *w);
void gt_weight_free(gt_weight *w); /* frees only what it owns; accepts NULL */

/* ---- ops (all threaded on the kernels' pool) ---- */

/* y[n_tok, n_out] = x[n_tok, n_in] · W^T, fp32 accumulation. Activations may
 * be quantized on the fly (to Q8) where the weight type has integer dot
 * products. x and y must not overlap. */
void gt_matmul(gt_kernels *k, const gt_weight *w, const float *x, float *y, int64_t n_tok);

/* y[r] = x[r] / rms(x[r]) * w  for each of n_rows rows of n; w may be NULL
 * (no scale). x and y may alias. */
void gt_rmsnorm(gt_kernels *k, const float *x, const float *w, float *y, int64_t n_rows,
                int64_t n, float eps);

typedef struct gt_rope_params {
    float freq_base;  /* theta */
    float freq_scale; /* 1 / linear scaling factor (1 when none) */
    int n_rot;        /* rotated dims per head (<= head_dim, even) */
    bool neox;        /* NeoX order pairs (i, i + n_rot/2); else adjacent (2i, 2i+1) */
} gt_rope_params;

/* Rotates x[n_tok, n_head, head_dim] in place; pos[n_tok]. */
void gt_rope(gt_kernels *k, float *x, int64_t n_tok, int n_head, int head_dim,
             const int32_t *pos, const gt_rope_params *p);

/* out[i] = silu(gate[i]) * up[i]; out may alias gate or up. */
void gt_swiglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n);
/* out[i] = gelu_tanh(gate[i]) * up[i] (exact tanh formula in fp32). */
void gt_geglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n);
/* y[i] += x[i] */
void gt_add(gt_kernels *k, float *y, const float *x, int64_t n);

/* Attention of n_tok queries of one sequence against its paged KV cache.
 * Key/value position p lives in block p / block_size, row p % block_size;
 * a block holds [block_size, n_kv_head, head_dim] elements of kv_type (F32 or
 * F16). Query i sees keys 0..pos[i] (causal), and only the last `window` of
 * them when window > 0. GQA: query head h reads kv head h / (n_head / n_kv_head). */
typedef struct gt_attn_args {
    const float *q;          /* [n_tok, n_head, head_dim] */
    float *out;              /* [n_tok, n_head, head_dim] */
    const int32_t *pos;      /* [n_tok] */
    int64_t n_tok;
    int n_head, n_kv_head, head_dim;
    const void *const *k_blocks; /* [n_blocks] borrowed */
    const void *const *v_blocks; /* [n_blocks] borrowed */
    int block_size;
    gt_dtype kv_type;
    float scale;   /* usually 1/sqrt(head_dim) */
    int window;    /* 0: no sliding window */
    float softcap; /* 0: none; else logits = softcap * tanh(logits / softcap) */
} gt_attn_args;
void gt_attention(gt_kernels *k, const gt_attn_args *a);

#endif
