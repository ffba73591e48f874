/* Scalar codecs for GGUF element types: plain floats, the 32-element legacy
 * quants (Q4_0 .. Q8_1) and the 256-element K-quants (Q2_K .. Q8_K).
 *
 * The dequantizers define the formats: they follow ggml's dequantize_row_*
 * operation by operation (same element order, same float products in the same
 * order, no fused multiply-add) so that a real GGUF file decodes to the same
 * floats bit for bit. The quantizers are written after ggml's *_ref ones
 * (round-to-nearest per block; for K-quants a small search over sub-block
 * scales and mins); they need not match ggml byte for byte, only produce a
 * valid encoding with the expected error. Everything here is scalar and
 * stateless; speed matters only for tests and the synthetic-model writer. */
#include "common/quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Products must round like ggml's scalar code (a*b then -c, never fused). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define QK GT_QK4_0 /* 32: every legacy block */
#define KK GT_QK_K  /* 256: every K-quant super-block */

static inline int nearest_int(float x) {
    if (!(x > -4194303.f)) return -4194303; /* also NaN */
    if (x > 4194303.f) return 4194303;
    return (int)lrintf(x); /* round half to even, like ggml's magic-number trick */
}
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static inline float h2f(gt_f16 h) { return gt_f16_to_f32(h); }
static inline gt_f16 f2h(float f) { return gt_f32_to_f16(f); }

/* The value of largest magnitude, keeping its sign (first one on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    return max;
}

/* Importance weights (--imatrix): w_i = qw_i * sqrt(sigma2 + x_i^2), qw_i the
 * imatrix's mean square activation of column i, sigma2 a mean square of the
 * weights around (after llama.cpp's quantize_row_*_impl). */
static float sum_sq(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}
static inline float imatrix_weight(float qw, float sigma2, float x) {
    return qw * sqrtf(sigma2 + x * x);
}
static void fill_weights(const float *x, const float *qw, float sigma2, float *w, int n) {
    for (int i = 0; i < n; i++) w[i] = imatrix_weight(qw[i], sigma2, x[i]);
}

/* ---- legacy 32-element formats ---- */

static void quant_q4_0(const float *x, gt_block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        const float d = signed_absmax(x, QK) / -8.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[i].d = f2h(d);
        for (int j = 0; j < QK / 2; j++) {
            int q0 = clampi((int)(x[j] * id + 8.5f), 0, 15);
            int q1 = clampi((int)(x[j + QK / 2] * id + 8.5f), 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void dequant_q4_0(const gt_block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            y[j + QK / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void minmax(const float *x, int n, float *mn, float *mx) {
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

static void quant_q4_1(const float *x, gt_block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float mn, mx;
        minmax(x, QK, &mn, &mx);
        const float d = (mx - mn) / 15.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[i].d = f2h(d);
        y[i].m = f2h(mn);
        for (int j = 0; j < QK / 2; j++) {
            int q0 = clampi((int)((x[j] - mn) * id + 0.5f), 0, 15);
            int q1 = clampi((int)((x[j + QK / 2] - mn) * id + 0.5f), 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void dequant_q4_1(const gt_block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0f) * d + m;
            y[j + QK / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* 5-bit formats: low nibbles as Q4, bit j of the little-endian qh word is
 * the fifth bit of element j (elements 16..31 use bits 16..31). */
static void pack5(const int *q, uint8_t qs[16], uint8_t qh[4]) {
    uint32_t h = 0;
    for (int j = 0; j < QK / 2; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
        h |= (uint32_t)((q[j] >> 4) & 1) << j;
        h |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int b = 0; b < 4; b++) qh[b] = (uint8_t)(h >> (8 * b));
}

static void unpack5(const uint8_t qs[16], const uint8_t qh[4], int *q) {
    uint32_t h =
        (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < QK / 2; j++) {
        q[j] = (qs[j] & 0x0f) | (int)(((h >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((h >> (j + 16)) & 1) << 4);
    }
}

static void quant_q5_0(const float *x, gt_block_q5_0 *y, int64_t nb) {
    int q[QK];
    for (int64_t i = 0; i < nb; i++, x += QK) {
        const float d = signed_absmax(x, QK) / -16.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[i].d = f2h(d);
        for (int j = 0; j < QK; j++) q[j] = clampi((int)(x[j] * id + 16.5f), 0, 31);
        pack5(q, y[i].qs, y[i].qh);
    }
}

static void dequant_q5_0(const gt_block_q5_0 *x, float *y, int64_t nb) {
    int q[QK];
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = h2f(x[i].d);
        unpack5(x[i].qs, x[i].qh, q);
        for (int j = 0; j < QK; j++) y[j] = (float)(q[j] - 16) * d;
    }
}

static void quant_q5_1(const float *x, gt_block_q5_1 *y, int64_t nb) {
    int q[QK];
    for (int64_t i = 0; i < nb; i++, x += QK) {
        float mn, mx;
        minmax(x, QK, &mn, &mx);
        const float d = (mx - mn) / 31.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[i].d = f2h(d);
        y[i].m = f2h(mn);
        for (int j = 0; j < QK; j++) q[j] = clampi((int)((x[j] - mn) * id + 0.5f), 0, 31);
        pack5(q, y[i].qs, y[i].qh);
    }
}

static void dequant_q5_1(const gt_block_q5_1 *x, float *y, int64_t nb) {
    int q[QK];
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        unpack5(x[i].qs, x[i].qh, q);
        for (int j = 0; j < QK; j++) y[j] = (float)q[j] * d + m;
    }
}

/* Q8_0 and Q8_1 share the quants; Q8_1 also stores s = d * sum(q). */
static float quant8(const float *x, int8_t *qs, int *sum) {
    float amax = 0;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    int s = 0;
    for (int j = 0; j < QK; j++) {
        qs[j] = (int8_t)clampi((int)roundf(x[j] * id), -127, 127);
        s += qs[j];
    }
    *sum = s;
    return d;
}

static void quant_q8_0(const float *x, gt_block_q8_0 *y, int64_t nb) {
    int s;
    for (int64_t i = 0; i < nb; i++, x += QK) y[i].d = f2h(quant8(x, y[i].qs, &s));
}

static void quant_q8_1(const float *x, gt_block_q8_1 *y, int64_t nb) {
    int s;
    for (int64_t i = 0; i < nb; i++, x += QK) {
        const float d = quant8(x, y[i].qs, &s);
        y[i].d = f2h(d);
        y[i].s = f2h((float)s * d);
    }
}

static void dequant_q8_0(const gt_block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

static void dequant_q8_1(const gt_block_q8_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

/* ---- K-quants (256-element super-blocks) ---- */

/* Scale and min for x ≈ scale * L - min, L in 0..nmax, weighted error,
 * searching a few scales around the range (after ggml's make_qkx2_quants).
 * Returns the scale; *neg_min receives the (non-negative) min. */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, float rmin, float rdelta, int nstep, bool use_mad) {
    uint8_t Laux[32];
    float mn = x[0], mx = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        memset(L, 0, (size_t)n);
        *neg_min = -mn;
        return 0.f;
    }
    float iscale = (float)nmax / (mx - mn), scale = 1.f / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax);
        float diff = scale * L[i] + mn - x[i];
        best += w[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (mx - mn);
        float sl = 0, sl2 = 0, sxl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sl += w[i] * l;
            sl2 += w[i] * l * l;
            sxl += w[i] * l * x[i];
        }
        float D = sum_w * sl2 - sl * sl;
        if (D <= 0) continue;
        float this_scale = (sum_w * sxl - sum_x * sl) / D;
        float this_min = (sl2 * sum_x - sl * sxl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sxl / sl2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * (use_mad ? fabsf(diff) : diff * diff);
        }
        if (err < best) {
            memcpy(L, Laux, (size_t)n);
            best = err;
            scale = this_scale;
            mn = this_min;
        }
    }
    *neg_min = -mn;
    return scale;
}

/* Signed scale for x ≈ scale * (L - nmax), L in 0..2*nmax-1, weights x^2,
 * refined over a few candidate scales (after ggml's make_qx_quants). */
static float fit_scale_signed(int n, int nmax, const float *x, int8_t *L, const float *wt) {
    float max = signed_absmax(x, n);
    if (fabsf(max) < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -(float)nmax / max, slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = wt ? wt[i] : x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    float scale = sl2 != 0 ? slx / sl2 : 0.f, best = scale * slx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        slx = sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = wt ? wt[i] : x[i] * x[i];
            slx += w * x[i] * l;
            sl2 += w * l * l;
        }
        if (sl2 > 0 && slx * slx > best * sl2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = slx / sl2;
            best = scale * slx;
        }
    }
    return scale;
}

/* Packs four 2-bit planes of 32 values per 128 elements (Q2_K and Q3_K). */
static void pack2(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < KK; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

static void quant_q2_k(const float *x, gt_block_q2_K *y, int64_t nb, const float *qw) {
    uint8_t L[KK];
    float w[16], scales[16], mins[16];
    for (int64_t i = 0; i < nb; i++, x += KK) {
        float max_scale = 0, max_min = 0;
        const float sigma2 = qw ? sum_sq(x, KK) / KK : 0.f;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++)
                w[l] = qw ? imatrix_weight(qw[16 * j + l], sigma2, x[16 * j + l])
                          : fabsf(x[16 * j + l]);
            scales[j] =
                fit_scale_min(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            max_scale = fmaxf(max_scale, scales[j]);
            max_min = fmaxf(max_min, mins[j]);
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        y[i].d = f2h(max_scale > 0 ? max_scale / 15.f : 0.f);
        y[i].dmin = f2h(max_min > 0 ? max_min / 15.f : 0.f);
        for (int j = 0; j < 16; j++) {
            int ls = max_scale > 0 ? clampi(nearest_int(15.f / max_scale * scales[j]), 0, 15) : 0;
            int lm = max_min > 0 ? clampi(nearest_int(15.f / max_min * mins[j]), 0, 15) : 0;
            y[i].scales[j] = (uint8_t)(ls | (lm << 4));
        }
        for (int j = 0; j < 16; j++) {
            const float d = h2f(y[i].d) * (float)(y[i].scales[j] & 0xf);
            if (d == 0.f) continue;
            const float dm = h2f(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] = (uint8_t)clampi(nearest_int((x[16 * j + l] + dm) / d), 0, 3);
        }
        pack2(L, y[i].qs);
        if (qw) qw += KK;
    }
}

static void dequant_q2_k(const gt_block_q2_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(x[i].d), mn = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < KK; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xf), ml = mn * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
        }
    }
}

int gt_q3_k_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? s[j] & 0xf : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

static void quant_q3_k(const float *x, gt_block_q3_K *y, int64_t nb, const float *qw) {
    int8_t L8[KK];
    uint8_t L[KK];
    float scales[16], wt[KK];
    for (int64_t i = 0; i < nb; i++, x += KK) {
        float max_scale = 0, amax = 0;
        if (qw) fill_weights(x, qw + i * KK, 2.f * sum_sq(x, KK) / KK, wt, KK);
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_scale_signed(16, 4, x + 16 * j, L8 + 16 * j, qw ? wt + 16 * j : NULL);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        y[i].d = f2h(0.f);
        if (max_scale != 0.f) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = clampi(nearest_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xf);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
                y[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = f2h(1.f / iscale);
        }
        for (int j = 0; j < 16; j++) {
            const float d = h2f(y[i].d) * (float)gt_q3_k_scale(y[i].scales, j);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    d == 0.f ? 4 : (uint8_t)(clampi(nearest_int(x[16 * j + l] / d), -4, 3) + 4);
        }
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < KK; e++) {
            if (L[e] > 3) {
                y[i].hmask[e % 32] |= (uint8_t)(1u << (e / 32));
                L[e] -= 4;
            }
        }
        pack2(L, y[i].qs);
    }
}

static void dequant_q3_k(const gt_block_q3_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = h2f(x[i].d);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        int is = 0;
        unsigned m = 1;
        for (int n = 0; n < KK; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * (float)gt_q3_k_scale(x[i].scales, is++);
                    for (int l = 16 * half; l < 16 * half + 16; l++) {
                        int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

void gt_q4_k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void k4_set(int j, uint8_t *s, int ls, int lm) {
    if (j < 4) {
        s[j] = (uint8_t)ls;
        s[j + 4] = (uint8_t)lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): fills the scales, d, dmin and
 * the levels L[256]. */
static void quant_k45(const float *x, int nmax, uint8_t scales[12], gt_f16 *dh, gt_f16 *dminh,
                      uint8_t *L, const float *qw) {
    float w[32], sc[8], mins[8], max_scale = 0, max_min = 0;
    const float sigma2 = qw ? 2.f * sum_sq(x, KK) / KK : 0.f;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            w[l] = qw ? imatrix_weight(qw[32 * j + l], sigma2, x[32 * j + l])
                      : av_x + fabsf(x[32 * j + l]);
        sc[j] = fit_scale_min(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -1.f, 0.1f, 20, false);
        max_scale = fmaxf(max_scale, sc[j]);
        max_min = fmaxf(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++)
        k4_set(j, scales, clampi(nearest_int(inv_scale * sc[j]), 0, 63),
               clampi(nearest_int(inv_min * mins[j]), 0, 63));
    *dh = f2h(max_scale / 63.f);
    *dminh = f2h(max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        gt_q4_k_scale_min(j, scales, &s, &m);
        const float d = h2f(*dh) * (float)s;
        if (d == 0.f) continue;
        const float dm = h2f(*dminh) * (float)m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

static void quant_q4_k(const float *x, gt_block_q4_K *y, int64_t nb, const float *qw) {
    uint8_t L[KK];
    for (int64_t i = 0; i < nb; i++, x += KK) {
        quant_k45(x, 15, y[i].scales, &y[i].d, &y[i].dmin, L, qw ? qw + i * KK : NULL);
        for (int j = 0; j < KK; j += 64)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void dequant_q4_k(const gt_block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *q = x[i].qs;
        const float d = h2f(x[i].d), mn = h2f(x[i].dmin);
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            gt_q4_k_scale_min(is, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = mn * (float)m;
            gt_q4_k_scale_min(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = mn * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void quant_q5_k(const float *x, gt_block_q5_K *y, int64_t nb, const float *qw) {
    uint8_t L[KK];
    for (int64_t i = 0; i < nb; i++, x += KK) {
        quant_k45(x, 31, y[i].scales, &y[i].d, &y[i].dmin, L, qw ? qw + i * KK : NULL);
        memset(y[i].qh, 0, sizeof y[i].qh);
        uint8_t *ql = y[i].qs;
        unsigned m1 = 1, m2 = 2;
        for (int n = 0; n < KK; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    y[i].qh[j] |= (uint8_t)m1;
                }
                if (l2 > 15) {
                    l2 -= 16;
                    y[i].qh[j] |= (uint8_t)m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

static void dequant_q5_k(const gt_block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        const float d = h2f(x[i].d), mn = h2f(x[i].dmin);
        unsigned u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            gt_q4_k_scale_min(is, x[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = mn * (float)m;
            gt_q4_k_scale_min(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = mn * (float)m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 0xf) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

static void quant_q6_k(const float *x, gt_block_q6_K *y, int64_t nb, const float *qw) {
    int8_t L[KK];
    float scales[16], wt[KK];
    for (int64_t i = 0; i < nb; i++, x += KK) {
        float max_scale = 0, amax = 0;
        if (qw) fill_weights(x, qw + i * KK, 2.f * sum_sq(x, KK) / KK, wt, KK);
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = fit_scale_signed(16, 32, x + 16 * ib, L + 16 * ib, qw ? wt + 16 * ib : NULL);
            if (fabsf(scales[ib]) > amax) {
                amax = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        memset(&y[i], 0, sizeof y[i]);
        if (amax < 1e-15f) continue; /* all zero: d = 0 */
        const float iscale = -128.f / max_scale;
        y[i].d = f2h(1.f / iscale);
        for (int ib = 0; ib < 16; ib++)
            y[i].scales[ib] = (int8_t)clampi(nearest_int(iscale * scales[ib]), -128, 127);
        for (int j = 0; j < 16; j++) {
            const float d = h2f(y[i].d) * (float)y[i].scales[j];
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    d == 0.f ? 32 : (int8_t)(clampi(nearest_int(x[16 * j + l] / d), -32, 31) + 32);
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < KK; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0xf) | ((q3 & 0xf) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xf) | ((q4 & 0xf) << 4));
                qh[l] =
                    (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

static void dequant_q6_k(const gt_block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < KK; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* Q8_K: float d = -max/127 with max the signed value of largest magnitude
 * (ggml's current reference; older ggml used 128, which clips one value),
 * plus the sums of each 16 quants for the K-quant dot products. */
static void quant_q8_k(const float *x, gt_block_q8_K *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += KK) {
        memset(&y[i], 0, sizeof y[i]);
        const float max = signed_absmax(x, KK);
        if (max == 0.f) continue;
        const float iscale = -127.f / max;
        for (int j = 0; j < KK; j++)
            y[i].qs[j] = (int8_t)clampi(nearest_int(iscale * x[j]), -128, 127);
        for (int j = 0; j < KK / 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1.f / iscale;
    }
}

static void dequant_q8_k(const gt_block_q8_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < KK; j++) *y++ = x[i].d * (float)x[i].qs[j];
}

/* ---- dispatch ---- */

typedef struct {
    int qk;
    size_t bytes;
} codec_shape;

static bool codec_shape_of(gt_dtype type, codec_shape *s) {
    switch (type) {
    case GT_F32:
        *s = (codec_shape){1, 4};
        return true;
    case GT_F16:
        *s = (codec_shape){1, 2};
        return true;
    case GT_BF16:
        *s = (codec_shape){1, 2};
        return true;
    case GT_Q4_0:
        *s = (codec_shape){QK, sizeof(gt_block_q4_0)};
        return true;
    case GT_Q4_1:
        *s = (codec_shape){QK, sizeof(gt_block_q4_1)};
        return true;
    case GT_Q5_0:
        *s = (codec_shape){QK, sizeof(gt_block_q5_0)};
        return true;
    case GT_Q5_1:
        *s = (codec_shape){QK, sizeof(gt_block_q5_1)};
        return true;
    case GT_Q8_0:
        *s = (codec_shape){QK, sizeof(gt_block_q8_0)};
        return true;
    case GT_Q8_1:
        *s = (codec_shape){QK, sizeof(gt_block_q8_1)};
        return true;
    case GT_Q2_K:
        *s = (codec_shape){KK, sizeof(gt_block_q2_K)};
        return true;
    case GT_Q3_K:
        *s = (codec_shape){KK, sizeof(gt_block_q3_K)};
        return true;
    case GT_Q4_K:
        *s = (codec_shape){KK, sizeof(gt_block_q4_K)};
        return true;
    case GT_Q5_K:
        *s = (codec_shape){KK, sizeof(gt_block_q5_K)};
        return true;
    case GT_Q6_K:
        *s = (codec_shape){KK, sizeof(gt_block_q6_K)};
        return true;
    case GT_Q8_K:
        *s = (codec_shape){KK, sizeof(gt_block_q8_K)};
        return true;
    default:
        return false;
    }
}

static gt_status check_row(const char *what, gt_dtype type, int64_t n, int64_t *nb) {
    codec_shape s;
    if (!codec_shape_of(type, &s))
        return gt_fail(GT_ERR_UNSUPPORTED, "%s: element type %u has no codec", what,
                       (unsigned)type);
    if (n < 0 || n % s.qk != 0)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s: row of %lld elements is not a whole number of %d-element blocks "
                       "(type %u)",
                       what, (long long)n, s.qk, (unsigned)type);
    *nb = n / s.qk;
    return GT_OK;
}

gt_status gt_quantize_row(gt_dtype type, const float *x, void *out, int64_t n) {
    int64_t nb;
    GT_TRY(check_row("quantize", type, n, &nb));
    switch (type) {
    case GT_F32:
        memcpy(out, x, (size_t)n * 4);
        break;
    case GT_F16:
        for (int64_t i = 0; i < n; i++) ((gt_f16 *)out)[i] = gt_f32_to_f16(x[i]);
        break;
    case GT_BF16:
        for (int64_t i = 0; i < n; i++) ((gt_bf16 *)out)[i] = gt_f32_to_bf16(x[i]);
        break;
    case GT_Q4_0:
        quant_q4_0(x, out, nb);
        break;
    case GT_Q4_1:
        quant_q4_1(x, out, nb);
        break;
    case GT_Q5_0:
        quant_q5_0(x, out, nb);
        break;
    case GT_Q5_1:
        quant_q5_1(x, out, nb);
        break;
    case GT_Q8_0:
        quant_q8_0(x, out, nb);
        break;
    case GT_Q8_1:
        quant_q8_1(x, out, nb);
        break;
    case GT_Q2_K:
        quant_q2_k(x, out, nb, NULL);
        break;
    case GT_Q3_K:
        quant_q3_k(x, out, nb, NULL);
        break;
    case GT_Q4_K:
        quant_q4_k(x, out, nb, NULL);
        break;
    case GT_Q5_K:
        quant_q5_k(x, out, nb, NULL);
        break;
    case GT_Q6_K:
        quant_q6_k(x, out, nb, NULL);
        break;
    case GT_Q8_K:
        quant_q8_k(x, out, nb);
        break;
    default:
        return gt_fail(GT_ERR_INTERNAL, "quantize: type %u passed the check", type);
    }
    return GT_OK;
}

gt_status gt_dequantize_row(gt_dtype type, const void *in, float *y, int64_t n) {
    int64_t nb;
    GT_TRY(check_row("dequantize", type, n, &nb));
    switch (type) {
    case GT_F32:
        memcpy(y, in, (size_t)n * 4);
        break;
    case GT_F16:
        for (int64_t i = 0; i < n; i++) y[i] = gt_f16_to_f32(((const gt_f16 *)in)[i]);
        break;
    case GT_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = gt_bf16_to_f32(((const gt_bf16 *)in)[i]);
        break;
    case GT_Q4_0:
        dequant_q4_0(in, y, nb);
        break;
    case GT_Q4_1:
        dequant_q4_1(in, y, nb);
        break;
    case GT_Q5_0:
        dequant_q5_0(in, y, nb);
        break;
    case GT_Q5_1:
        dequant_q5_1(in, y, nb);
        break;
    case GT_Q8_0:
        dequant_q8_0(in, y, nb);
        break;
    case GT_Q8_1:
        dequant_q8_1(in, y, nb);
        break;
    case GT_Q2_K:
        dequant_q2_k(in, y, nb);
        break;
    case GT_Q3_K:
        dequant_q3_k(in, y, nb);
        break;
    case GT_Q4_K:
        dequant_q4_k(in, y, nb);
        break;
    case GT_Q5_K:
        dequant_q5_k(in, y, nb);
        break;
    case GT_Q6_K:
        dequant_q6_k(in, y, nb);
        break;
    case GT_Q8_K:
        dequant_q8_k(in, y, nb);
        break;
    default:
        return gt_fail(GT_ERR_INTERNAL, "dequantize: type %u passed the check", type);
    }
    return GT_OK;
}

/* ---- importance-weighted quantization (--imatrix) ---- */

/* Q4_0/Q5_0 with weights: the block scale d minimising
 * sum_i w_i (x_i - d q_i)^2 over a grid of 19 candidate inverse scales
 * -(nmax + 0.1 k) / max, k = -9..9 (max: the signed value of largest
 * magnitude), each with its least-squares d = sum w x q / sum w q^2; the
 * candidates are scored after d is rounded to f16, and the plain
 * round-to-nearest d = max / -nmax is one of them, so the weighted error
 * never exceeds RTN's. Levels q in -nmax..nmax-1; returns d and fills
 * q[32] with q + nmax. */
static float fit_legacy_weighted(const float *x, const float *w, int nmax, int *q) {
    const float max = signed_absmax(x, QK);
    if (max == 0.f) {
        for (int j = 0; j < QK; j++) q[j] = nmax;
        return 0.f;
    }
    float best_err = FLT_MAX, best_d = 0.f;
    for (int k = -10; k <= 9; k++) {
        float d;
        if (k == -10) { /* round-to-nearest, as quant_q4_0/quant_q5_0 */
            d = max / -(float)nmax;
        } else {
            const float iscale = -((float)nmax + 0.1f * (float)k) / max;
            float sxl = 0, sll = 0;
            for (int j = 0; j < QK; j++) {
                const int l = clampi(nearest_int(iscale * x[j]), -nmax, nmax - 1);
                sxl += w[j] * x[j] * (float)l;
                sll += w[j] * (float)(l * l);
            }
            if (sll <= 0) continue;
            d = sxl / sll;
        }
        d = h2f(f2h(d));
        if (d == 0.f) continue;
        const float id = 1.f / d;
        float err = 0;
        for (int j = 0; j < QK; j++) {
            const int l = clampi(nearest_int(x[j] * id), -nmax, nmax - 1);
            const float diff = x[j] - d * (float)l;
            err += w[j] * diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            best_d = d;
        }
    }
    const float id = best_d != 0.f ? 1.f / best_d : 0.f;
    for (int j = 0; j < QK; j++) q[j] = clampi(nearest_int(x[j] * id), -nmax, nmax - 1) + nmax;
    return best_d;
}

static void quant_legacy_weighted(gt_dtype type, const float *x, void *out, int64_t n,
                                  const float *qw) {
    float sigma2 = 0;
    for (int64_t j = 0; j < n; j++) sigma2 += x[j] * x[j];
    sigma2 /= (float)n;
    float w[QK];
    int q[QK];
    for (int64_t i = 0; i < n / QK; i++, x += QK, qw += QK) {
        fill_weights(x, qw, sigma2, w, QK);
        if (type == GT_Q4_0) {
            gt_block_q4_0 *y = (gt_block_q4_0 *)out + i;
            y->d = f2h(fit_legacy_weighted(x, w, 8, q));
            for (int j = 0; j < QK / 2; j++) y->qs[j] = (uint8_t)(q[j] | (q[j + QK / 2] << 4));
        } else {
            gt_block_q5_0 *y = (gt_block_q5_0 *)out + i;
            y->d = f2h(fit_legacy_weighted(x, w, 16, q));
            pack5(q, y->qs, y->qh);
        }
    }
}

bool gt_quant_uses_imatrix(gt_dtype type) {
    return type == GT_Q4_0 || type == GT_Q5_0 || (type >= GT_Q2_K && type <= GT_Q6_K);
}

gt_status gt_quantize_row_imatrix(gt_dtype type, const float *x, void *out, int64_t n,
                                  const float *qw) {
    if (!qw || !gt_quant_uses_imatrix(type)) return gt_quantize_row(type, x, out, n);
    int64_t nb = 0;
    GT_TRY(check_row("quantize", type, n, &nb));
    switch (type) {
    case GT_Q4_0:
    case GT_Q5_0:
        quant_legacy_weighted(type, x, out, n, qw);
        break;
    case GT_Q2_K:
        quant_q2_k(x, out, nb, qw);
        break;
    case GT_Q3_K:
        quant_q3_k(x, out, nb, qw);
        break;
    case GT_Q4_K:
        quant_q4_k(x, out, nb, qw);
        break;
    case GT_Q5_K:
        quant_q5_k(x, out, nb, qw);
        break;
    case GT_Q6_K:
        quant_q6_k(x, out, nb, qw);
        break;
    default:
        return gt_fail(GT_ERR_INTERNAL, "quantize: type %u has no weighted path", (unsigned)type);
    }
    return GT_OK;
}
