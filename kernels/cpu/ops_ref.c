/* Scalar reference versions of the element-wise ops, rmsnorm and rope, and
 * the reference op table.
 *
 * These are the oracles: straightforward loops, reductions in double, the
 * textbook formulas (tanh-GELU through tanhf, SiLU through expf). The fast
 * tables are compared with them in tests/kernel/test_ops.c. */
#include <math.h>

#include "kernels/cpu/ops.h"

void gt__rmsnorm_ref(const float *x, const float *w, float *y, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps));
    for (int64_t i = 0; i < n; i++) y[i] = w ? x[i] * scale * w[i] : x[i] * scale;
}

void gt__rope_table(int32_t pos, const gt_rope_params *p, float *cos_t, float *sin_t) {
    for (int i = 0; i < p->n_rot / 2; i++) {
        const double theta = (double)pos * (double)p->freq_scale *
                             pow((double)p->freq_base, -2.0 * i / (double)p->n_rot);
        cos_t[i] = (float)cos(theta);
        sin_t[i] = (float)sin(theta);
    }
}

void gt__rope_ref(float *x, int64_t n_vec, int head_dim, int32_t pos, const gt_rope_params *p) {
    float c[GT_ROPE_MAX_ROT / 2], s[GT_ROPE_MAX_ROT / 2];
    gt__rope_table(pos, p, c, s);
    gt__rope_apply_ref(x, n_vec, head_dim, c, s, p);
}

void gt__rope_apply_ref(float *x, int64_t n_vec, int head_dim, const float *c, const float *s,
                        const gt_rope_params *p) {
    const int half = p->n_rot / 2;
    for (int64_t v = 0; v < n_vec; v++, x += head_dim) {
        for (int i = 0; i < half; i++) {
            const int i0 = p->neox ? i : 2 * i, i1 = p->neox ? i + half : 2 * i + 1;
            const float x0 = x[i0], x1 = x[i1];
            x[i0] = x0 * c[i] - x1 * s[i];
            x[i1] = x0 * s[i] + x1 * c[i];
        }
    }
}

void gt__swiglu_ref(const float *g, const float *u, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void gt__geglu_ref(const float *g, const float *u, float *out, int64_t n) {
    const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        out[i] = 0.5f * x * (1.0f + tanhf(k0 * (x + 0.044715f * x * x * x))) * u[i];
    }
}

void gt__add_ref(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

const struct gt_ops gt__ops_ref = {
    .name = "ref",
    .rmsnorm = gt__rmsnorm_ref,
    .rope = gt__rope_apply_ref,
    .swiglu = gt__swiglu_ref,
    .geglu = gt__geglu_ref,
    .add = gt__add_ref,
    .kv_store = gt__kv_store_ref,
    .attention = gt__attention_ref,
    .attn_scratch_bytes = gt__attn_scratch_bytes_ref,
    .attn_tile = 1,
};
