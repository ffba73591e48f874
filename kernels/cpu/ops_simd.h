/* The SIMD bodies of the non-matmul ops, written once over a small vector
 * vocabulary and included by ops_avx2.c (8 floats) and ops_avx512.c (16
 * floats), which define that vocabulary first:
 *
 *   vf, VW, v_zero, v_set1, v_load, v_load_n, v_store, v_store_n, v_load_h,
 *   v_load_h_n, v_add, v_sub, v_mul, v_div, v_fma (a*b+c), v_fnma (c-a*b),
 *   v_max, v_min, v_abs, v_hsum, v_hmax, v_hsum_lanes (lane j = sum of
 *   vector j of VW vectors), v_swap_pairs, v_round,
 *   v_pow2i (2^n for integral n in [-126, 127]), v_select_lt (x < y ? a : b),
 *   v_copysign (|mag| with the sign of s).
 *
 * The _n forms handle a partial vector of n < VW lanes (zero-filled loads),
 * so every loop ends with a masked step rather than a scalar tail and the
 * tail lanes see the same math as the rest.
 *
 * exp is Cephes' single-precision polynomial (about 1 ulp on [-87, 88], 0
 * below); tanh uses Cephes' odd polynomial for |x| < 0.625 and 1 - 2/(e^2x+1)
 * above, so small arguments keep their relative accuracy.
 *
 * Attention works on one kv head and a tile of query tokens: all the query
 * heads that share the kv head (GQA) and the tile's tokens read each K/V row
 * once per 64-key chunk (converted from F16 once), scores are kept per chunk
 * and folded into an online softmax, and the P·V product runs with the
 * output accumulators in registers. The chunks are aligned to multiples of
 * 64 key positions, so a query's result is the same bits whatever tile it is
 * computed in. */
#ifndef GT_OPS_SIMD_H
#define GT_OPS_SIMD_H

#include <math.h>

#include "kernels/cpu/ops.h"

/* ---- transcendental functions ---- */

static inline vf v_exp(vf x) {
    const vf lo = v_set1(-87.33654f);
    vf xc = v_min(v_max(x, lo), v_set1(88.0f));
    vf fx = v_round(v_mul(xc, v_set1(1.44269504088896341f)));
    xc = v_fnma(fx, v_set1(0.693359375f), xc);
    xc = v_fnma(fx, v_set1(-2.12194440e-4f), xc);
    vf y = v_set1(1.9875691500E-4f);
    y = v_fma(y, xc, v_set1(1.3981999507E-3f));
    y = v_fma(y, xc, v_set1(8.3334519073E-3f));
    y = v_fma(y, xc, v_set1(4.1665795894E-2f));
    y = v_fma(y, xc, v_set1(1.6666665459E-1f));
    y = v_fma(y, xc, v_set1(5.0000001201E-1f));
    y = v_fma(y, v_mul(xc, xc), v_add(xc, v_set1(1.0f)));
    y = v_mul(y, v_pow2i(fx));
    return v_select_lt(x, lo, v_zero(), y);
}

static inline vf v_tanh(vf x) {
    const vf z = v_abs(x);
    /* large: 1 - 2 / (exp(2z) + 1) */
    const vf e = v_exp(v_add(z, z));
    const vf big = v_sub(v_set1(1.0f), v_div(v_set1(2.0f), v_add(e, v_set1(1.0f))));
    /* small: x + x^3 P(x^2) */
    const vf s = v_mul(x, x);
    vf p = v_set1(-5.70498872745E-3f);
    p = v_fma(p, s, v_set1(2.06390887954E-2f));
    p = v_fma(p, s, v_set1(-5.37397155531E-2f));
    p = v_fma(p, s, v_set1(1.33314422036E-1f));
    p = v_fma(p, s, v_set1(-3.33332819422E-1f));
    const vf small = v_fma(v_mul(p, s), x, x);
    return v_select_lt(z, v_set1(0.625f), small, v_copysign(big, x));
}

/* ---- element-wise ---- */

static inline vf silu_mul(vf g, vf u) {
    return v_mul(v_div(g, v_add(v_set1(1.0f), v_exp(v_sub(v_zero(), g)))), u);
}

/* gelu_tanh(g) = 0.5 g (1 + tanh(k)) = g / (1 + exp(-2k)): the same function,
 * evaluated without the cancellation of 1 + tanh(k) for negative g. */
static inline vf gelu_mul(vf g, vf u) {
    const vf g3 = v_mul(v_mul(g, g), g);
    const vf k = v_mul(v_set1(0.7978845608028654f), v_fma(v_set1(0.044715f), g3, g));
    const vf e = v_exp(v_mul(v_set1(-2.0f), k));
    return v_mul(v_div(g, v_add(v_set1(1.0f), e)), u);
}

static void simd_swiglu(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) v_store(out + i, silu_mul(v_load(g + i), v_load(u + i)));
    if (i < n) {
        const int r = (int)(n - i);
        v_store_n(out + i, silu_mul(v_load_n(g + i, r), v_load_n(u + i, r)), r);
    }
}

static void simd_geglu(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) v_store(out + i, gelu_mul(v_load(g + i), v_load(u + i)));
    if (i < n) {
        const int r = (int)(n - i);
        v_store_n(out + i, gelu_mul(v_load_n(g + i, r), v_load_n(u + i, r)), r);
    }
}

static void simd_add(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) v_store(y + i, v_add(v_load(y + i), v_load(x + i)));
    if (i < n) {
        const int r = (int)(n - i);
        v_store_n(y + i, v_add(v_load_n(y + i, r), v_load_n(x + i, r)), r);
    }
}

static void simd_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps) {
    vf s0 = v_zero(), s1 = v_zero();
    int64_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        const vf a = v_load(x + i), b = v_load(x + i + VW);
        s0 = v_fma(a, a, s0);
        s1 = v_fma(b, b, s1);
    }
    for (; i < n; i += VW) {
        const int r = n - i < VW ? (int)(n - i) : VW;
        const vf a = v_load_n(x + i, r);
        s0 = v_fma(a, a, s0);
    }
    const double ss = (double)v_hsum(v_add(s0, s1));
    const vf scale = v_set1((float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps)));
    for (i = 0; i < n; i += VW) {
        const int r = n - i < VW ? (int)(n - i) : VW;
        vf v = v_mul(v_load_n(x + i, r), scale);
        if (w) v = v_mul(v, v_load_n(w + i, r));
        v_store_n(y + i, v, r);
    }
}

static void simd_rope(float *x, int64_t n_vec, int head_dim, int32_t pos, const gt_rope_params *p) {
    float c[GT_ROPE_MAX_ROT], s[GT_ROPE_MAX_ROT];
    const int half = p->n_rot / 2;
    gt__rope_table(pos, p, c, s);
    if (p->neox) {
        for (int64_t v = 0; v < n_vec; v++, x += head_dim) {
            for (int i = 0; i < half; i += VW) {
                const int r = half - i < VW ? half - i : VW;
                const vf cv = v_load_n(c + i, r), sv = v_load_n(s + i, r);
                const vf x0 = v_load_n(x + i, r), x1 = v_load_n(x + half + i, r);
                v_store_n(x + i, v_fnma(x1, sv, v_mul(x0, cv)), r);
                v_store_n(x + half + i, v_fma(x1, cv, v_mul(x0, sv)), r);
            }
        }
        return;
    }
    /* Adjacent pairs: expand to per-lane tables (cos, cos) and (-sin, +sin)
     * so that out = x * c2 + swap_pairs(x) * s2. Expanded in place, from the
     * top down. */
    for (int i = half - 1; i >= 0; i--) {
        const float ci = c[i], si = s[i];
        c[2 * i] = c[2 * i + 1] = ci;
        s[2 * i] = -si;
        s[2 * i + 1] = si;
    }
    for (int64_t v = 0; v < n_vec; v++, x += head_dim) {
        for (int i = 0; i < p->n_rot; i += VW) {
            const int r = p->n_rot - i < VW ? p->n_rot - i : VW;
            const vf xv = v_load_n(x + i, r);
            const vf out =
                v_fma(v_swap_pairs(xv), v_load_n(s + i, r), v_mul(xv, v_load_n(c + i, r)));
            v_store_n(x + i, out, r);
        }
    }
}

/* ---- attention ---- */

#define ATTN_CHUNK GT_ATTN_CHUNK /* keys per softmax step; a multiple of VW */
#define ATTN_TILE  GT_ATTN_TILE  /* query tokens per work item */

typedef struct {
    int hd, group, m;
    size_t acc_stride; /* floats per accumulator row, a multiple of VW */
} attn_dims;

static attn_dims attn_dims_of(const gt_attn_args *a, int64_t n_tok) {
    attn_dims d;
    d.hd = a->head_dim;
    d.group = a->n_head / a->n_kv_head;
    d.m = (int)n_tok * d.group;
    d.acc_stride = ((size_t)d.hd + VW - 1) / VW * VW;
    return d;
}

static size_t simd_attn_scratch_bytes(const gt_attn_args *a, int64_t n_tok) {
    return gt__attn_simd_scratch_bytes(a->head_dim, a->n_head / a->n_kv_head, n_tok, VW);
}

static inline float dot_n(const float *a, const float *b, int n) {
    vf s0 = v_zero(), s1 = v_zero();
    int i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        s0 = v_fma(v_load(a + i), v_load(b + i), s0);
        s1 = v_fma(v_load(a + i + VW), v_load(b + i + VW), s1);
    }
    for (; i < n; i += VW) {
        const int r = n - i < VW ? n - i : VW;
        s0 = v_fma(v_load_n(a + i, r), v_load_n(b + i, r), s0);
    }
    return v_hsum(v_add(s0, s1));
}

/* Four dot products of q with k0..k3 sharing the loads of q. */
static inline void dot4(const float *q, const float *const *k, int n, float *out) {
    vf s0 = v_zero(), s1 = v_zero(), s2 = v_zero(), s3 = v_zero();
    for (int i = 0; i < n; i += VW) {
        const int r = n - i < VW ? n - i : VW;
        const vf qv = v_load_n(q + i, r);
        s0 = v_fma(qv, v_load_n(k[0] + i, r), s0);
        s1 = v_fma(qv, v_load_n(k[1] + i, r), s1);
        s2 = v_fma(qv, v_load_n(k[2] + i, r), s2);
        s3 = v_fma(qv, v_load_n(k[3] + i, r), s3);
    }
    out[0] = v_hsum(s0);
    out[1] = v_hsum(s1);
    out[2] = v_hsum(s2);
    out[3] = v_hsum(s3);
}

/* VW dot products of q with k[0..VW), returned as one vector: the partial
 * sums stay in VW registers and are reduced together (v_hsum_lanes), which
 * costs a few shuffles per key instead of a full horizontal sum each. */
static inline vf dot_lanes(const float *q, const float *const *k, int n) {
    vf acc[VW];
    for (int j = 0; j < VW; j++) acc[j] = v_zero();
    int i = 0;
    for (; i + VW <= n; i += VW) {
        const vf qv = v_load(q + i);
        for (int j = 0; j < VW; j++) acc[j] = v_fma(qv, v_load(k[j] + i), acc[j]);
    }
    if (i < n) {
        const int r = n - i;
        const vf qv = v_load_n(q + i, r);
        for (int j = 0; j < VW; j++) acc[j] = v_fma(qv, v_load_n(k[j] + i, r), acc[j]);
    }
    return v_hsum_lanes(acc);
}

/* Rows ahead of the one being converted that are prefetched. A kv head's
 * rows are contiguous inside a block, but blocks lie anywhere in the pool,
 * where the hardware prefetchers do not follow. */
#define STAGE_PF_ROWS 16

/* Rows [c0, c0 + nc) of kv head g as f32 row pointers: borrowed from the
 * cache for F32, converted into buf for F16. Rows up to `last` exist and
 * may be prefetched. */
static void stage_rows(const gt_attn_args *a, const void *const *blocks, int g, int64_t c0, int nc,
                       int64_t last, float *buf, size_t stride, const float **rows) {
    const int hd = a->head_dim, bs = a->block_size;
    const size_t esz = a->kv_type == GT_F16 ? 2 : 4, slice = (size_t)hd * esz;
    int64_t b = c0 / bs, r = c0 % bs; /* walked, not divided per row */
    for (int c = 0; c < nc; c++, r++) {
        if (r == bs) {
            b++;
            r = 0;
        }
        const int64_t ahead = c0 + c + STAGE_PF_ROWS;
        if (ahead <= last) {
            const char *pf = gt__kv_row(a, blocks, ahead, g);
            for (size_t o = 0; o < slice; o += 64) __builtin_prefetch(pf + o, 0, 3);
        }
        const void *src = (const char *)blocks[b] + gt_kv_offset(r, g, bs, hd, esz);
        if (a->kv_type == GT_F32) {
            rows[c] = src;
            continue;
        }
        float *dst = buf + (size_t)c * stride;
        const gt_f16 *h = src;
        int i = 0;
        for (; i + VW <= hd; i += VW) v_store(dst + i, v_load_h(h + i));
        if (i < hd) v_store_n(dst + i, v_load_h_n(h + i, hd - i), hd - i);
        rows[c] = dst;
    }
}

/* Read-ahead of a later chunk's K and V rows of kv head g, a few rows at a
 * time between the current chunk's dot products: the memory then works
 * while the core computes. Staging's own prefetch runs only a few hundred
 * cycles ahead of its loads, less than one trip to DRAM, so without this
 * every chunk waited for its rows (the KV cache of a long context is far
 * larger than L2, and each chunk of a kv head touches several blocks). */
typedef struct {
    const gt_attn_args *a;
    int g;
    int64_t next, end; /* rows [next, end) are still to be prefetched */
} kv_readahead;

static inline void kv_readahead_rows(kv_readahead *r, int rows) {
    const size_t slice = (size_t)r->a->head_dim * (r->a->kv_type == GT_F16 ? 2 : 4);
    for (; rows > 0 && r->next < r->end; rows--, r->next++) {
        const char *k = gt__kv_row(r->a, r->a->k_blocks, r->next, r->g);
        const char *v = gt__kv_row(r->a, r->a->v_blocks, r->next, r->g);
        for (size_t o = 0; o < slice; o += 64) {
            __builtin_prefetch(k + o, 0, 2);
            __builtin_prefetch(v + o, 0, 2);
        }
    }
}

/* acc_i[0..hd) = acc_i * alpha_i + sum_c p_i[c] * v[c] for N queries (1..4,
 * a compile-time constant) that see the same keys, as GQA's query heads of
 * one token do: each V row is loaded once for all N. Slabs of four vectors
 * of each accumulator stay in registers across the keys; a query's result
 * does not depend on the others sharing the call (each element's chain is
 * the same). A zero probability is multiplied like any other (the rows
 * in [0, nc) are visible, written keys: finite), no branch per key. */
static inline __attribute__((always_inline)) void pv_accumulate_n(const int N, float *const *acc,
                                                                  int hd, const float *alpha,
                                                                  const float *const *p,
                                                                  const float *const *v, int nc) {
    int d0 = 0;
    for (; d0 + 4 * VW <= hd; d0 += 4 * VW) {
        vf a[4][4];
        for (int i = 0; i < N; i++) {
            const vf al = v_set1(alpha[i]);
            for (int j = 0; j < 4; j++) a[i][j] = v_mul(v_load(acc[i] + d0 + j * VW), al);
        }
        for (int c = 0; c < nc; c++) {
            const float *vr = v[c] + d0;
            const vf v0 = v_load(vr), v1 = v_load(vr + VW), v2 = v_load(vr + 2 * VW),
                     v3 = v_load(vr + 3 * VW);
            for (int i = 0; i < N; i++) {
                const vf pc = v_set1(p[i][c]);
                a[i][0] = v_fma(pc, v0, a[i][0]);
                a[i][1] = v_fma(pc, v1, a[i][1]);
                a[i][2] = v_fma(pc, v2, a[i][2]);
                a[i][3] = v_fma(pc, v3, a[i][3]);
            }
        }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < 4; j++) v_store(acc[i] + d0 + j * VW, a[i][j]);
    }
    for (int i = 0; i < N; i++) /* the last hd % (4 VW) elements, a vector at a time */
        for (int d = d0; d < hd; d += VW) {
            const int r = hd - d < VW ? hd - d : VW;
            vf a0 = v_mul(v_load_n(acc[i] + d, r), v_set1(alpha[i]));
            for (int c = 0; c < nc; c++) a0 = v_fma(v_set1(p[i][c]), v_load_n(v[c] + d, r), a0);
            v_store_n(acc[i] + d, a0, r);
        }
}

/* n queries (any count) in calls of up to four. */
static void pv_accumulate_group(float *const *acc, int n, int hd, const float *alpha,
                                const float *const *p, const float *const *v, int nc) {
    for (int i = 0, k; i < n; i += k) {
        k = n - i < 4 ? n - i : 4;
        if (k == 4)
            pv_accumulate_n(4, acc + i, hd, alpha + i, p + i, v, nc);
        else if (k == 3)
            pv_accumulate_n(3, acc + i, hd, alpha + i, p + i, v, nc);
        else if (k == 2)
            pv_accumulate_n(2, acc + i, hd, alpha + i, p + i, v, nc);
        else
            pv_accumulate_n(1, acc + i, hd, alpha + i, p + i, v, nc);
    }
}

static void simd_attention(const gt_attn_args *a, int g, int64_t t0, int64_t t1, void *scratch) {
    const attn_dims dm = attn_dims_of(a, t1 - t0);
    const int hd = dm.hd, M = dm.m;
    const size_t st = dm.acc_stride;
    float *acc = scratch;                                      /* [M, st] */
    float *sc = acc + (size_t)M * st;                          /* [M, ATTN_CHUNK] */
    float *mrow = sc + (size_t)M * ATTN_CHUNK;                 /* [M] */
    float *lrow = mrow + M;                                    /* [M] */
    float *kbuf = lrow + M;                                    /* [ATTN_CHUNK, st] */
    float *vbuf = kbuf + (size_t)ATTN_CHUNK * st;              /* [ATTN_CHUNK, st] */
    int64_t *lo = (int64_t *)(vbuf + (size_t)ATTN_CHUNK * st); /* [M] */
    int64_t *hi = lo + M;                                      /* [M] */
    const float *krows[ATTN_CHUNK], *vrows[ATTN_CHUNK];
    const float *qs[64];
    const float **qrow = M <= 64 ? qs : NULL;
    int64_t kmin = INT64_MAX, kmax = -1;
    for (int i = 0; i < M; i++) {
        const int64_t t = t0 + i / dm.group;
        hi[i] = a->pos[t];
        lo[i] = gt__attn_first_key(a, hi[i]);
        kmin = lo[i] < kmin ? lo[i] : kmin;
        kmax = hi[i] > kmax ? hi[i] : kmax;
        mrow[i] = -INFINITY;
        lrow[i] = 0;
        for (size_t d = 0; d < st; d++) acc[(size_t)i * st + d] = 0;
        if (qrow) qrow[i] = a->q + ((size_t)t * a->n_head + g * dm.group + i % dm.group) * hd;
    }
    const vf cap = v_set1(a->softcap), inv_cap = v_set1(a->softcap > 0 ? 1.0f / a->softcap : 0);
    /* Chunks lie on a fixed grid of key positions (multiples of
     * ATTN_CHUNK), not from the tile's first key: a query's scores, maxima
     * and sums then fall into the same chunks, and reduce in the same order,
     * whichever other queries share its tile (batch invariance; it matters
     * with a sliding window, where the first keys differ per query). */
    for (int64_t c0 = kmin - kmin % ATTN_CHUNK; c0 <= kmax; c0 += ATTN_CHUNK) {
        const int nc = kmax + 1 - c0 < ATTN_CHUNK ? (int)(kmax + 1 - c0) : ATTN_CHUNK;
        stage_rows(a, a->k_blocks, g, c0, nc, kmax, kbuf, st, krows);
        stage_rows(a, a->v_blocks, g, c0, nc, kmax, vbuf, st, vrows);
        /* the rows of the chunk after next (the next one's are on their
         * way), spread over this chunk's M x ATTN_CHUNK / VW dot products */
        const int64_t ra0 = c0 + 2 * ATTN_CHUNK, ra1 = ra0 + ATTN_CHUNK;
        kv_readahead ra = {a, g, ra0, ra1 <= kmax + 1 ? ra1 : kmax + 1};
        const int ra_rows = (VW + M - 1) / M;
        /* The weighted sums of V rows wait until up to four queries of one
         * token (which see the same keys) have their probabilities, then run
         * together (pv_accumulate_group: each V row loaded once for them). */
        float *pend_acc[4], pend_alpha[4];
        const float *pend_p[4];
        int n_pend = 0;
        for (int i = 0; i < M; i++) {
            const int64_t cl64 = (lo[i] > c0 ? lo[i] : c0) - c0;
            const int64_t ch64 = (hi[i] < c0 + nc - 1 ? hi[i] : c0 + nc - 1) - c0;
            if (cl64 > ch64) continue; /* no visible key in this chunk */
            const int cl = (int)cl64, ch = (int)ch64;
            const int64_t t = t0 + i / dm.group;
            const float *q =
                qrow ? qrow[i] : a->q + ((size_t)t * a->n_head + g * dm.group + i % dm.group) * hd;
            float *s = sc + (size_t)i * ATTN_CHUNK;
            int c = cl;
            for (; c + VW <= ch + 1; c += VW) {
                kv_readahead_rows(&ra, ra_rows);
                v_store(s + c, dot_lanes(q, krows + c, hd));
            }
            for (; c + 4 <= ch + 1; c += 4) dot4(q, krows + c, hd, s + c);
            for (; c <= ch; c++) s[c] = dot_n(q, krows[c], hd);
            /* scale, softcap, mask and the chunk maximum */
            vf vmax = v_set1(-INFINITY);
            for (int c1 = 0; c1 < ATTN_CHUNK; c1 += VW) {
                vf x = v_mul(v_load(s + c1), v_set1(a->scale));
                if (a->softcap > 0) x = v_mul(cap, v_tanh(v_mul(x, inv_cap)));
                v_store(s + c1, x);
            }
            for (int c1 = 0; c1 < cl; c1++) s[c1] = -INFINITY;
            for (int c1 = ch + 1; c1 < ATTN_CHUNK; c1++) s[c1] = -INFINITY;
            for (int c1 = 0; c1 < ATTN_CHUNK; c1 += VW) vmax = v_max(vmax, v_load(s + c1));
            const float m_new = fmaxf(mrow[i], v_hmax(vmax));
            const float alpha = mrow[i] == -INFINITY ? 0.f : expf(mrow[i] - m_new);
            vf vsum = v_zero();
            const vf mv = v_set1(m_new);
            for (int c1 = 0; c1 < ATTN_CHUNK; c1 += VW) {
                const vf pr = v_exp(v_sub(v_load(s + c1), mv));
                vsum = v_add(vsum, pr);
                v_store(s + c1, pr);
            }
            lrow[i] = lrow[i] * alpha + v_hsum(vsum);
            mrow[i] = m_new;
            pend_acc[n_pend] = acc + (size_t)i * st;
            pend_alpha[n_pend] = alpha;
            pend_p[n_pend++] = s + cl;
            if (n_pend == 4 || (i + 1) % dm.group == 0) { /* M is a whole number of groups */
                pv_accumulate_group(pend_acc, n_pend, hd, pend_alpha, pend_p, vrows + cl,
                                    ch - cl + 1);
                n_pend = 0;
            }
        }
    }
    for (int i = 0; i < M; i++) {
        const int64_t t = t0 + i / dm.group;
        float *out = a->out + ((size_t)t * a->n_head + g * dm.group + i % dm.group) * hd;
        const vf inv = v_set1(lrow[i] > 0 ? 1.0f / lrow[i] : 0.f);
        for (int d = 0; d < hd; d += VW) {
            const int r = hd - d < VW ? hd - d : VW;
            v_store_n(out + d, v_mul(v_load_n(acc + (size_t)i * st + d, r), inv), r);
        }
    }
}

#endif
