/* The non-matmul op table of the CPU backend.
 *
 * One `struct gt_ops` per instruction set (scalar reference, AVX2, AVX-512),
 * chosen once in gt_kernels_create. Every entry works on a slice that one
 * thread owns; kernels/cpu/backend.c splits the work over the pool and calls these. The
 * scalar `_ref` functions are always compiled and are the oracle that tests
 * compare the fast tables with. No entry allocates: scratch comes from the
 * caller, sized by attn_scratch_bytes. */
#ifndef GT_KERNELS_CPU_OPS_H
#define GT_KERNELS_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Largest rotated dimension count rope accepts (a table row computed per
 * call lives on the stack); model loaders refuse larger heads. */
#define GT_ROPE_MAX_ROT 1024

/* The SIMD attention (kernels/cpu/ops_simd.h): keys per softmax step (a
 * multiple of the vector width) and query tokens per work item at most
 * (a tile's queries share each pass over a chunk's keys; fewer when the
 * tiles would not give every thread several items: cpu_attention). */
#define GT_ATTN_CHUNK 64
#define GT_ATTN_TILE  16
/* Its scratch for n_tok query tokens of `group` heads sharing a kv head, with
 * vectors of vw floats; baseline code (kernels/cpu/workspace.c), so that the
 * workspace can be sized on any CPU. */
size_t gt__attn_simd_scratch_bytes(int head_dim, int group, int64_t n_tok, int vw);

struct gt_ops {
    const char *name;
    /* y[n] = x[n] / sqrt(mean(x^2) + eps) * w[n] (w may be NULL); one row; x, y may alias. */
    void (*rmsnorm)(const float *x, const float *w, float *y, int64_t n, float eps);
    /* Rotates n_vec consecutive vectors x[n_vec, head_dim] of one token by
     * its table cos_t[n_rot/2], sin_t[n_rot/2] (gt__rope_table). */
    void (*rope)(float *x, int64_t n_vec, int head_dim, const float *cos_t, const float *sin_t,
                 const gt_rope_params *p);
    /* out[i] = silu(g[i]) * u[i];  out[i] = gelu_tanh(g[i]) * u[i];  y[i] += x[i]. */
    void (*swiglu)(const float *g, const float *u, float *out, int64_t n);
    void (*geglu)(const float *g, const float *u, float *out, int64_t n);
    void (*add)(float *y, const float *x, int64_t n);
    /* gt_kv_store's rows into the cache (type and block size checked by the
     * caller); F16 rounding as gt_f32_to_f16, bit for bit. */
    gt_status (*kv_store)(const gt_kv_store_args *a);
    /* Attention for query tokens [t0, t1) and the n_head/n_kv_head query heads
     * of kv head `g`; writes a->out for exactly those (token, head) pairs.
     * `scratch` holds attn_scratch_bytes(a, t1 - t0) bytes, 64-byte aligned.
     * g_next: the kv head of the calling thread's next item on the same
     * tokens, or -1; a table may read its first keys ahead (no effect on
     * the results). */
    void (*attention)(const gt_attn_args *a, int g, int g_next, int64_t t0, int64_t t1,
                      void *scratch);
    size_t (*attn_scratch_bytes)(const gt_attn_args *a, int64_t n_tok);
    /* Query tokens per attention work item this table prefers (>= 1). */
    int attn_tile;
};

extern const struct gt_ops gt__ops_ref;
extern const struct gt_ops gt__ops_avx2;
extern const struct gt_ops gt__ops_avx512;

/* The scalar references (kernels/cpu/ops_ref.c, attn_ref.c). */
void gt__rmsnorm_ref(const float *x, const float *w, float *y, int64_t n, float eps);
void gt__rope_apply_ref(float *x, int64_t n_vec, int head_dim, const float *cos_t,
                        const float *sin_t, const gt_rope_params *p);
/* The oracle of the whole op for one token: gt__rope_table, then the above. */
void gt__rope_ref(float *x, int64_t n_vec, int head_dim, int32_t pos, const gt_rope_params *p);
void gt__swiglu_ref(const float *g, const float *u, float *out, int64_t n);
void gt__geglu_ref(const float *g, const float *u, float *out, int64_t n);
void gt__add_ref(float *y, const float *x, int64_t n);
void gt__attention_ref(const gt_attn_args *a, int g, int g_next, int64_t t0, int64_t t1,
                       void *scratch);
size_t gt__attn_scratch_bytes_ref(const gt_attn_args *a, int64_t n_tok);

/* The scalar versions of the small ops (kernels/cpu/ops_misc_ref.c); the
 * meaning of each is the public op of the same name (kernels/kernels.h). */
void gt__add_bias_ref(float *y, const float *b, int64_t n_rows, int64_t n);
void gt__scale_ref(float *y, float s, int64_t n);
void gt__softcap_ref(float *y, float c, int64_t n);
gt_status gt__embed_ref(const gt_embed_args *a);
void gt__router_topk_ref(float *probs, int64_t n_tok, int n_expert, int k_used, bool renorm,
                         int32_t *ids, float *w);
/* The router the CPU backend runs (kernels/cpu/ops_router.c): bit for bit
 * gt__router_topk_ref, with each exp taken once and top-k in one pass. */
void gt__router_topk(float *probs, int64_t n_tok, int n_expert, int k_used, bool renorm,
                     int32_t *ids, float *w);
void gt__gather_rows_ref(const float *src, const int32_t *rows, int64_t m, int64_t n, float *dst);
void gt__scatter_add_rows_ref(const float *src, const int32_t *rows, const float *w, int64_t m,
                              int64_t n, float *dst);
void gt__sigmoid_gate_add_ref(const float *gate, const float *src, float *dst, int64_t n_tok,
                              int64_t n);
gt_status gt__kv_store_ref(const gt_kv_store_args *a);

/* cos/sin of theta_i = pos * freq_scale * freq_base^(-2i/n_rot) for
 * i < n_rot/2, computed in double; shared by every rope so that the tables
 * agree exactly and the fast versions differ only in the rotation. */
void gt__rope_table(int32_t pos, const gt_rope_params *p, float *cos_t, float *sin_t);

/* First visible key of a query at position pos (causal, optional window). */
static inline int64_t gt__attn_first_key(const gt_attn_args *a, int64_t pos) {
    int64_t lo = a->window > 0 ? pos - a->window + 1 : 0;
    return lo < 0 ? 0 : lo;
}

#endif
