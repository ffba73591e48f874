/* FP16 matrix products of F16 (and BF16) weights: the weight check and
 * header, the load-time repacking into 32-row fp16 panels, the per-row
 * activation scale and the scalar reference of the AVX-512 FP16 kernels
 * (kernels/cpu/matmul_avx512_fp16.c). Baseline code.
 *
 * Design: `vfmadd231ph` does 32 fp16 multiply-adds per instruction at the
 * fp32 FMA's issue rate, so it doubles the products per cycle, but it
 * rounds every sum to fp16 (11 bits, max 65504). So:
 *  - the weights are fp16 as stored (F16), or BF16 values scaled by one
 *    power of two per matrix (2^sw) when every scaled value is exactly an
 *    fp16 (else the weight keeps the fp32 float panels);
 *  - each activation row is multiplied by a power of two 2^e (exact) and
 *    rounded to fp16 (nearest even), e the largest with
 *    max|x| 2^e * wmax 2^sw * chunk <= 2^14, so no partial sum of a chunk
 *    can pass a quarter of the fp16 range;
 *  - products are summed in fp16 over `chunk` consecutive k only (an fp16
 *    FMA chain from +0, one rounding per step, as the instruction does);
 *    each chunk's sum is widened to fp32 and added to an fp32 accumulator
 *    that starts at +0 at every GT_MM_PF_KC block; a block's sum times
 *    2^-(e+sw) (exact) is stored to y (first block) or fused-multiply-added
 *    to it (later blocks), in k order.
 * The panel is 32 rows ([pair][k][32 rows] halves: one zmm is one k of 32
 * rows), after a 64-byte header (gt_mm_ph_head). The reference below does
 * the same arithmetic in the same order, with the fp16 FMA computed exactly
 * in double (the product of two fp16 values is exact there, and where the
 * sum is not, the smaller term lies far below the larger's half-ulp, so one
 * more rounding to fp16 gives the correctly rounded fused result). Any row
 * count and thread count computes a row the same way: batch invariant. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/matmul_internal.h"

/* The fp16 sum bound of a chunk: 2^14, a quarter of the largest fp16. */
#define PH_BOUND_LOG2 14

static int chunk_log2(int chunk) { return chunk == 16 ? 4 : chunk == 64 ? 6 : 5; }

int gt__mm_ph_chunk(void) {
    const char *s = getenv("GANTRY_FP16_CHUNK");
    int c = s ? atoi(s) : 0;
    return c == 16 || c == 32 || c == 64 ? c : GT_MM_PH_CHUNK;
}

bool gt__mm_ph_ok(gt_dtype type, int64_t n_in) {
    return (type == GT_F16 || type == GT_BF16) && n_in > 0;
}

bool gt__mm_ph_head_init(gt_dtype type, int64_t n_in, int64_t n_out, const void *src,
                         gt_mm_ph_head *h) {
    memset(h, 0, sizeof *h);
    h->chunk = gt__mm_ph_chunk();
    const uint16_t *w = src;
    const size_t n = (size_t)n_in * (size_t)n_out;
    if (type == GT_F16) { /* fp16 already: the largest magnitude, from the bits */
        uint16_t m = 0;
        for (size_t i = 0; i < n; i++) {
            uint16_t a = w[i] & 0x7fff;
            m = a > m ? a : m;
        }
        if (m >= 0x7c00) return false; /* inf or nan */
        h->wmax = gt_f16_to_f32(m);
        h->sw = 0;
        return true;
    }
    uint16_t m = 0; /* BF16: the scale that puts the largest in [2^7, 2^8) */
    for (size_t i = 0; i < n; i++) {
        uint16_t a = w[i] & 0x7fff;
        m = a > m ? a : m;
    }
    if (m >= 0x7f80) return false;
    int ew = 0;
    if (m) (void)frexpf(gt_bf16_to_f32(m), &ew); /* m in [2^(ew-1), 2^ew) */
    h->sw = m ? 8 - ew : 0;
    if (h->sw < -60 || h->sw > 60) return false;
    for (size_t i = 0; i < n; i++) {
        float v = ldexpf(gt_bf16_to_f32(w[i]), h->sw);
        if (gt_f16_to_f32(gt_f32_to_f16(v)) != v) return false; /* not exactly an fp16 */
    }
    h->wmax = ldexpf(gt_bf16_to_f32(m), h->sw);
    return true;
}

/* The weight as the kernels use it: fp16 bits of value * 2^sw. */
static uint16_t weight_h(gt_dtype type, const uint8_t *row, int64_t k, int sw) {
    uint16_t h;
    memcpy(&h, row + 2 * k, 2);
    if (type == GT_F16) return h;
    return gt_f32_to_f16(ldexpf(gt_bf16_to_f32(h), sw));
}

void gt__mm_pack_ph(gt_dtype type, int64_t n_in, int64_t n_out, const void *src, void *dst,
                    int64_t p0, int64_t p1) {
    const gt_mm_ph_head *h = dst;
    const size_t rb = (size_t)n_in * 2;
    uint16_t *panels = (uint16_t *)((uint8_t *)dst + GT_MM_PH_HEAD);
    for (int64_t p = p0; p < p1; p++) {
        uint16_t *o = panels + (size_t)(p / 2) * (size_t)n_in * 32 + (p % 2) * 16; /* [k][32] */
        for (int r = 0; r < 16; r++) {
            const int64_t row = p * 16 + r;
            const uint8_t *in = row < n_out ? (const uint8_t *)src + (size_t)row * rb : NULL;
            for (int64_t k = 0; k < n_in; k++)
                o[k * 32 + r] = in ? weight_h(type, in, k, h->sw) : 0;
        }
    }
}

void gt__mm_ph_row_scale(float xmax, const gt_mm_ph_head *h, float *scale, float *inv) {
    const double p = (double)xmax * (double)h->wmax; /* exact: two 24-bit significands */
    int e = 0;
    if (p > 0 && isfinite(p)) {
        int q;
        (void)frexp(p, &q); /* p in [2^(q-1), 2^q): p 2^e <= 2^b exactly when q + e <= b */
        e = PH_BOUND_LOG2 - chunk_log2(h->chunk) - q;
        e = e < -100 ? -100 : e > 100 ? 100 : e;
    }
    *scale = ldexpf(1.0f, e);
    *inv = ldexpf(1.0f, -(e + h->sw));
}

/* Round to the nearest fp16, ties to even (the fp16 FMA's one rounding). */
static uint16_t double_to_half(double d) {
    const uint16_t sign = signbit(d) ? 0x8000 : 0;
    double a = fabs(d);
    if (isnan(d)) return 0x7e00;
    if (a >= 65520.0) return sign | 0x7c00;
    if (a == 0) return sign;
    int e;
    (void)frexp(a, &e);                          /* a in [2^(e-1), 2^e) */
    int lsb = (e - 1 < -14 ? -14 : e - 1) - 10;  /* fp16 spacing at a */
    double r = ldexp(rint(ldexp(a, -lsb)), lsb); /* exact scalings; rint: nearest even */
    return sign | gt_f32_to_f16((float)r);       /* r is an fp16 value: exact */
}

static uint16_t fma16(uint16_t w, uint16_t x, uint16_t acc) {
    return double_to_half((double)gt_f16_to_f32(w) * (double)gt_f16_to_f32(x) +
                          (double)gt_f16_to_f32(acc));
}

void gt__mm_ph_ref_rows(gt_dtype type, const void *w, const gt_mm_ph_head *h, int64_t n_in,
                        int64_t n_out, const float *x, float *y, int64_t n_tok, int64_t r0,
                        int64_t r1) {
    const size_t rb = (size_t)n_in * 2;
    const int64_t C = h->chunk;
    for (int64_t t = 0; t < n_tok; t++) {
        const float *xt = x + t * n_in; /* [n_in] */
        float xmax = 0, s, inv;
        for (int64_t k = 0; k < n_in; k++) xmax = fabsf(xt[k]) > xmax ? fabsf(xt[k]) : xmax;
        gt__mm_ph_row_scale(xmax, h, &s, &inv);
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *wr = (const uint8_t *)w + (size_t)r * rb;
            float sum = 0;
            for (int64_t k0 = 0; k0 < n_in; k0 += GT_MM_PF_KC) {
                const int64_t k1 = n_in - k0 < GT_MM_PF_KC ? n_in : k0 + GT_MM_PF_KC;
                float acc = 0;
                for (int64_t c0 = k0; c0 < k1; c0 += C) {
                    const int64_t c1 = k1 - c0 < C ? k1 : c0 + C;
                    uint16_t part = 0;
                    for (int64_t k = c0; k < c1; k++)
                        part = fma16(weight_h(type, wr, k, h->sw), gt_f32_to_f16(xt[k] * s), part);
                    acc += gt_f16_to_f32(part);
                }
                sum = k0 == 0 ? acc * inv : fmaf(acc, inv, sum);
            }
            y[t * n_out + r] = sum;
        }
    }
}
