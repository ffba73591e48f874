/* AVX-512 products of float panels (F32, F16, BF16 weights) with fp32
 * activations; exact fp32 FMA arithmetic (no activation rounding).
 *
 * Panels store 16 rows per k contiguously, so one load (+ one conversion
 * for F16/BF16) gives a zmm of 16 rows at one k, multiplied by a broadcast
 * x[t][k]. Decode (n_tok <= 4) walks one panel with four independent
 * k-phase accumulators per token to hide FMA latency, prefetching ahead on
 * the panel stream. Prefill uses a 32-row x 12-token register tile (24 zmm
 * accumulators), blocked over k so a 32-row weight slab (16 KiB of F16) sits
 * in L1 while all token tiles of the chunk pass over it. */
#include <immintrin.h>

#include "kernels/cpu/matmul_internal.h"

#define GT_AI static inline __attribute__((always_inline))

GT_AI __m512 ldw(const gt_dtype type, const uint8_t *p) {
    if (type == GT_F32) return _mm512_loadu_ps((const float *)p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (type == GT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

#define PF_BYTES 2048

/* One panel (16 rows) x NT tokens over all k. */
GT_AI void pf_gemv(const gt_dtype type, const int NT, const uint8_t *wp, int64_t n_in,
                   const float *x, int64_t ldx, float *y, int64_t ldy, __mmask16 mask) {
    const size_t es = type == GT_F32 ? 4 : 2, step = 16 * es;
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int u = 0; u < 4; u++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[u][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 4 <= n_in; k += 4) {
        const uint8_t *p = wp + (size_t)k * step;
#pragma GCC unroll 4
        for (size_t l = 0; l < 4 * step; l += 64) _mm_prefetch((const char *)p + PF_BYTES + l, _MM_HINT_T0);
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
            __m512 w = ldw(type, p + u * step);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++)
                acc[u][t] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t * ldx + k + u]), acc[u][t]);
        }
    }
    for (; k < n_in; k++) {
        __m512 w = ldw(type, wp + (size_t)k * step);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
            acc[0][t] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t * ldx + k]), acc[0][t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        __m512 s = _mm512_add_ps(_mm512_add_ps(acc[0][t], acc[1][t]), _mm512_add_ps(acc[2][t], acc[3][t]));
        _mm512_mask_storeu_ps(y + t * ldy, mask, s);
    }
}

/* Two panels (32 rows) x NT tokens over k in [0, kn); x is the packed tile
 * xp[k][12]; adds to y when accum. */
GT_AI void pf_gemm(const gt_dtype type, const int NT, const uint8_t *w0, const uint8_t *w1,
                   int64_t kn, const float *xp, float *y, int64_t ldy, __mmask16 m0,
                   __mmask16 m1, int accum) {
    const size_t step = 16 * (type == GT_F32 ? 4 : 2);
    __m512 a0[12], a1[12];
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++) a0[t] = a1[t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kn; k++) {
        __m512 v0 = ldw(type, w0 + (size_t)k * step), v1 = ldw(type, w1 + (size_t)k * step);
        const float *xk = xp + k * 12;
#pragma GCC unroll 12
        for (int t = 0; t < NT; t++) {
            __m512 xb = _mm512_set1_ps(xk[t]);
            a0[t] = _mm512_fmadd_ps(v0, xb, a0[t]);
            a1[t] = _mm512_fmadd_ps(v1, xb, a1[t]);
        }
    }
#pragma GCC unroll 12
    for (int t = 0; t < NT; t++) {
        float *yt = y + t * ldy;
        if (accum) {
            a0[t] = _mm512_add_ps(a0[t], _mm512_maskz_loadu_ps(m0, yt));
            a1[t] = _mm512_add_ps(a1[t], _mm512_maskz_loadu_ps(m1, yt + 16));
        }
        _mm512_mask_storeu_ps(yt, m0, a0[t]);
        _mm512_mask_storeu_ps(yt + 16, m1, a1[t]);
    }
}

#define GEMM_CASE(T, N)                                                                            \
    case N: pf_gemm(T, N, w0, w1, kn, xp, y, ldy, m0, m1, accum); break;
#define GEMM_SWITCH(T)                                                                             \
    switch (nt) {                                                                                  \
        GEMM_CASE(T, 1) GEMM_CASE(T, 2) GEMM_CASE(T, 3) GEMM_CASE(T, 4) GEMM_CASE(T, 5)            \
        GEMM_CASE(T, 6) GEMM_CASE(T, 7) GEMM_CASE(T, 8) GEMM_CASE(T, 9) GEMM_CASE(T, 10)           \
        GEMM_CASE(T, 11) default : pf_gemm(T, 12, w0, w1, kn, xp, y, ldy, m0, m1, accum);      \
    }
#define GEMV_SWITCH(T)                                                                             \
    switch (nt) {                                                                                  \
    case 1: pf_gemv(T, 1, wp, n_in, x, ldx, y, ldy, mask); break;                                  \
    case 2: pf_gemv(T, 2, wp, n_in, x, ldx, y, ldy, mask); break;                                  \
    case 3: pf_gemv(T, 3, wp, n_in, x, ldx, y, ldy, mask); break;                                  \
    default: pf_gemv(T, 4, wp, n_in, x, ldx, y, ldy, mask); break;                                 \
    }

typedef void (*gemm_fn)(int, const uint8_t *, const uint8_t *, int64_t, const float *, float *,
                        int64_t, __mmask16, __mmask16, int);
typedef void (*gemv_fn)(int, const uint8_t *, int64_t, const float *, int64_t, float *, int64_t,
                        __mmask16);

#define DEFINE_TYPE(NAME, T)                                                                       \
    static void gemm_##NAME(int nt, const uint8_t *w0, const uint8_t *w1, int64_t kn,            \
                            const float *xp, float *y, int64_t ldy, __mmask16 m0,                \
                            __mmask16 m1, int accum) {                                             \
        GEMM_SWITCH(T)                                                                             \
    }                                                                                              \
    static void gemv_##NAME(int nt, const uint8_t *wp, int64_t n_in, const float *x, int64_t ldx, \
                            float *y, int64_t ldy, __mmask16 mask) {                               \
        GEMV_SWITCH(T)                                                                             \
    }
DEFINE_TYPE(f32, GT_F32)
DEFINE_TYPE(f16, GT_F16)
DEFINE_TYPE(bf16, GT_BF16)

static __mmask16 rows_mask(int64_t n_out, int64_t p) {
    int64_t rows = n_out - p * 16;
    if (rows <= 0) return 0;
    return rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rows) - 1);
}

#define KC 256 /* k block of the prefill tile */
#define NT_GEMM 12

void gt__mm_pf_avx512(gt_dtype type, const void *wpv, int64_t n_in, int64_t n_out,
                      const float *x, float *y, int64_t n_tok, int64_t p0, int64_t p1) {
    const uint8_t *wp = wpv;
    size_t es = type == GT_F32 ? 4 : 2, panel_bytes = (size_t)n_in * 16 * es;
    const int64_t ldx = n_in, ldy = n_out;
    if (n_tok <= 4) {
        gemv_fn f = type == GT_F32 ? gemv_f32 : type == GT_F16 ? gemv_f16 : gemv_bf16;
        for (int64_t p = p0; p < p1; p++) {
            __mmask16 mask = rows_mask(n_out, p);
            if (!mask) break;
            f((int)n_tok, wp + (size_t)p * panel_bytes, n_in, x, ldx, y + p * 16, ldy, mask);
        }
        return;
    }
    gemm_fn f = type == GT_F32 ? gemm_f32 : type == GT_F16 ? gemm_f16 : gemm_bf16;
    float xp[KC * NT_GEMM] __attribute__((aligned(64))); /* [k][12] packed token tile */
    for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
        int64_t kn = n_in - k0 < KC ? n_in - k0 : KC;
        for (int64_t t = 0; t < n_tok; t += NT_GEMM) {
            int nt = (int)(n_tok - t < NT_GEMM ? n_tok - t : NT_GEMM);
            for (int i = 0; i < nt; i++)
                for (int64_t k = 0; k < kn; k++) xp[k * NT_GEMM + i] = x[(t + i) * ldx + k0 + k];
            for (int64_t p = p0; p < p1; p += 2) {
                __mmask16 m0 = rows_mask(n_out, p), m1 = rows_mask(n_out, p + 1);
                if (!m0) break;
                const uint8_t *w0 = wp + (size_t)p * panel_bytes + (size_t)k0 * 16 * es;
                f(nt, w0, w0 + panel_bytes, kn, xp, y + t * ldy + p * 16, ldy, m0, m1, k0 > 0);
            }
        }
    }
}
