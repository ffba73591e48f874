/* Scalar reference attention over the paged KV cache.
 *
 * For each (query token, query head): one pass over the visible keys with an
 * online softmax (running max, running sum, rescaled accumulator), all in
 * double, reading each key/value row through the block table. Clear rather
 * than fast: it is the oracle for the SIMD versions. */
#include <math.h>

#include "kernels/cpu/ops.h"

size_t gt__attn_scratch_bytes_ref(const gt_attn_args *a, int64_t n_tok) {
    return (size_t)a->head_dim * (sizeof(double) + 2 * sizeof(float));
}

/* Element d of kv head g's key (V: value) at position p: its index in the
 * head's part of the block (gt_kv_k_index, gt_kv_v_index). */
static float kv_elem(const gt_attn_args *a, const void *const *blocks, int64_t p, int g, int d,
                     int is_v) {
    const size_t elem = gt_kv_elem_bytes(a->kv_type);
    const int r = (int)(p % a->block_size);
    const char *part =
        (const char *)blocks[p / a->block_size] +
        (size_t)g * gt_kv_head_stride(a->head_stride, a->block_size, a->head_dim, elem);
    const size_t i = is_v ? gt_kv_v_index(a->kv_type, r, d, a->block_size, a->head_dim)
                          : gt_kv_k_index(a->kv_type, r, d, a->block_size);
    if (a->kv_type == GT_F16) return gt_f16_to_f32(((const gt_f16 *)part)[i]);
    if (a->kv_type == GT_BF16) return gt_bf16_to_f32(((const gt_bf16 *)part)[i]);
    return ((const float *)part)[i];
}

/* Key p of kv head g as float. */
static void load_key(const gt_attn_args *a, int64_t p, int g, float *dst) {
    for (int d = 0; d < a->head_dim; d++) dst[d] = kv_elem(a, a->k_blocks, p, g, d, 0);
}

/* Value row p of kv head g as float. */
static void load_row(const gt_attn_args *a, int64_t p, int g, float *dst) {
    for (int d = 0; d < a->head_dim; d++) dst[d] = kv_elem(a, a->v_blocks, p, g, d, 1);
}

void gt__attention_ref(const gt_attn_args *a, int g, int g_next, int64_t t0, int64_t t1,
                       void *scratch) {
    (void)g_next;
    const int hd = a->head_dim, group = a->n_head / a->n_kv_head;
    double *acc = scratch;             /* [head_dim] */
    float *krow = (float *)(acc + hd); /* [head_dim] */
    float *vrow = krow + hd;           /* [head_dim] */
    for (int64_t t = t0; t < t1; t++) {
        const int64_t pos = a->pos[t], lo = gt__attn_first_key(a, pos);
        for (int h = g * group; h < (g + 1) * group; h++) {
            const float *q = a->q + ((size_t)t * a->n_head + h) * hd;
            float *out = a->out + ((size_t)t * a->n_head + h) * hd;
            double m = -INFINITY, l = 0;
            for (int d = 0; d < hd; d++) acc[d] = 0;
            for (int64_t p = lo; p <= pos; p++) {
                load_key(a, p, g, krow);
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)q[d] * krow[d];
                s *= a->scale;
                if (a->softcap > 0) s = a->softcap * tanh(s / a->softcap);
                const double m_new = s > m ? s : m;
                const double alpha = exp(m - m_new), w = exp(s - m_new);
                load_row(a, p, g, vrow);
                for (int d = 0; d < hd; d++) acc[d] = acc[d] * alpha + w * vrow[d];
                l = l * alpha + w;
                m = m_new;
            }
            for (int d = 0; d < hd; d++) out[d] = l > 0 ? (float)(acc[d] / l) : 0.f;
        }
    }
}
