/* AVX2 products of float panels (F32, F16, BF16 weights) with fp32
 * activations; exact fp32 FMA arithmetic (no activation rounding).
 *
 * Design: the AVX-512 float kernels' arithmetic on half-width registers. A
 * panel's 16 rows at one k are two ymm (one load, or an F16C/shift
 * widening, each), multiplied by a broadcast x[t][k]. Decode (n_tok <= 4)
 * walks up to four panels side by side per token (8 independent FMA
 * chains); the accumulators a second token would need do not fit AVX2's
 * 16 registers, so further tokens re-read the panels from L2. Decode and
 * prefill sum a row in the same order (batch invariance): one FMA chain over
 * k per 256-k block, the blocks added to y in order. Prefill uses a
 * 16-row x 6-token register tile (12 accumulators), blocked over k by 256
 * as the AVX-512 GEMM is (so both sum in the same order): a panel's k slab
 * is widened to fp32 once into the scratch (16 KiB, L1) and every token
 * tile of a 192-token chunk passes over it, reading x straight from its
 * rows (a 6-token x slice is 6 KiB). */
#include <immintrin.h>

#include "kernels/cpu/matmul_avx2.h"

#define GT_AI static inline __attribute__((always_inline))

/* The 16 rows at one k of a panel: w[0] rows 0-7, w[1] rows 8-15. */
GT_AI void ldw(const gt_dtype type, const uint8_t *p, __m256 w[2]) {
    if (type == GT_F32) {
        w[0] = _mm256_loadu_ps((const float *)p);
        w[1] = _mm256_loadu_ps((const float *)p + 8);
        return;
    }
    __m128i h0 = _mm_loadu_si128((const __m128i *)p),
            h1 = _mm_loadu_si128((const __m128i *)(p + 16));
    if (type == GT_F16) {
        w[0] = _mm256_cvtph_ps(h0);
        w[1] = _mm256_cvtph_ps(h1);
        return;
    }
    w[0] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h0), 16));
    w[1] = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h1), 16));
}

/* y[0..rows) (+)= the 16 rows in a0, a1. */
GT_AI void store16(float *y, __m256 a0, __m256 a1, int rows, int accum) {
    if (rows >= 16) {
        if (accum) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(y));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(y + 8));
        }
        _mm256_storeu_ps(y, a0);
        _mm256_storeu_ps(y + 8, a1);
        return;
    }
    float tmp[16];
    _mm256_storeu_ps(tmp, a0);
    _mm256_storeu_ps(tmp + 8, a1);
    for (int r = 0; r < rows; r++) y[r] = accum ? tmp[r] + y[r] : tmp[r];
}

#define PF_BYTES 2048

#define KC GT_MM_PF_KC /* k block of the prefill tile: a widened panel slab is 16 KiB (L1) */

/* NP panels (16 rows each, pbytes apart; rows[p] of each are real) x one
 * token x[0..n_in). Each row is summed exactly as the GEMM tile sums it, so
 * decode and prefill give the same bits: one FMA chain over k inside each
 * KC block, from zero, the blocks' sums added to y in order. The 2 x NP
 * chains (NP panels side by side) hide the FMA latency. */
GT_AI void pf_gemv(const gt_dtype type, const int NP, const uint8_t *wp, size_t pbytes,
                   int64_t n_in, const float *x, float *y, const int *rows) {
    const size_t step = type == GT_F32 ? 64 : 32; /* bytes per k */
    for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
        const int64_t k1 = n_in - k0 < KC ? n_in : k0 + KC;
        __m256 acc[4][2]; /* [panel][half] */
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++) acc[p][0] = acc[p][1] = _mm256_setzero_ps();
        int64_t k = k0;
        for (; k + 4 <= k1; k += 4) {
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) {
                const char *pf = (const char *)wp + p * pbytes + (size_t)k * step + PF_BYTES;
#pragma GCC unroll 4
                for (size_t l = 0; l < 4 * step; l += 64) _mm_prefetch(pf + l, _MM_HINT_T0);
            }
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                const __m256 xs = _mm256_set1_ps(x[k + u]);
#pragma GCC unroll 4
                for (int p = 0; p < NP; p++) {
                    __m256 w[2];
                    ldw(type, wp + p * pbytes + (size_t)(k + u) * step, w);
                    acc[p][0] = _mm256_fmadd_ps(w[0], xs, acc[p][0]);
                    acc[p][1] = _mm256_fmadd_ps(w[1], xs, acc[p][1]);
                }
            }
        }
        for (; k < k1; k++) {
            const __m256 xs = _mm256_set1_ps(x[k]);
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) {
                __m256 w[2];
                ldw(type, wp + p * pbytes + (size_t)k * step, w);
                acc[p][0] = _mm256_fmadd_ps(w[0], xs, acc[p][0]);
                acc[p][1] = _mm256_fmadd_ps(w[1], xs, acc[p][1]);
            }
        }
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++)
            if (rows[p] > 0) store16(y + p * 16, acc[p][0], acc[p][1], rows[p], k0 > 0);
    }
}

#define GEMV_DEFINE(NAME, T)                                                                       \
    static void NAME(int np, const uint8_t *wp, size_t pbytes, int64_t n_in, const float *x,      \
                     float *y, const int *rows) {                                                  \
        if (np == 4)                                                                               \
            pf_gemv(T, 4, wp, pbytes, n_in, x, y, rows);                                           \
        else if (np == 2)                                                                          \
            pf_gemv(T, 2, wp, pbytes, n_in, x, y, rows);                                           \
        else                                                                                       \
            pf_gemv(T, 1, wp, pbytes, n_in, x, y, rows);                                           \
    }
GEMV_DEFINE(gemv_f32, GT_F32)
GEMV_DEFINE(gemv_f16, GT_F16)
GEMV_DEFINE(gemv_bf16, GT_BF16)

#define NTG 6 /* tokens per prefill register tile */

/* One panel of fp32 weights w[k][16] x NT tokens (x[t * ldx + k]) over
 * k in [0, kn); writes (accum: adds to) y[t * ldy + r], r < rows. */
GT_AI void pf_gemm(const int NT, const float *w, int64_t kn, const float *x, int64_t ldx, float *y,
                   int64_t ldy, int rows, int accum) {
    __m256 a[NTG][2];
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++) a[t][0] = a[t][1] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kn; k++) {
        const __m256 v0 = _mm256_loadu_ps(w + k * 16), v1 = _mm256_loadu_ps(w + k * 16 + 8);
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) {
            const __m256 xs = _mm256_broadcast_ss(x + t * ldx + k);
            a[t][0] = _mm256_fmadd_ps(v0, xs, a[t][0]);
            a[t][1] = _mm256_fmadd_ps(v1, xs, a[t][1]);
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++) store16(y + t * ldy, a[t][0], a[t][1], rows, accum);
}

/* nt is 1..NTG. */
static void gemm_tile(int nt, const float *w, int64_t kn, const float *x, int64_t ldx, float *y,
                      int64_t ldy, int rows, int accum) {
    switch (nt) {
    case 1:
        pf_gemm(1, w, kn, x, ldx, y, ldy, rows, accum);
        break;
    case 2:
        pf_gemm(2, w, kn, x, ldx, y, ldy, rows, accum);
        break;
    case 3:
        pf_gemm(3, w, kn, x, ldx, y, ldy, rows, accum);
        break;
    case 4:
        pf_gemm(4, w, kn, x, ldx, y, ldy, rows, accum);
        break;
    case 5:
        pf_gemm(5, w, kn, x, ldx, y, ldy, rows, accum);
        break;
    default:
        pf_gemm(NTG, w, kn, x, ldx, y, ldy, rows, accum);
        break;
    }
}

#define TC GT_MM_PF_TC /* tokens per chunk: their x over one k block (192 KiB) stays in L2 */

/* Prefill order: token chunk -> k block -> panel -> token tile. */
void gt__mm_pf_avx2(gt_dtype type, const void *wpv, int64_t n_in, int64_t n_out, const float *x,
                    float *y, int64_t n_tok, int64_t p0, int64_t p1, float *scratch) {
    const uint8_t *wp = wpv;
    size_t es = type == GT_F32 ? 4 : 2, panel_bytes = (size_t)n_in * 16 * es;
    const int64_t ldx = n_in, ldy = n_out;
    if (n_tok <= 4) {
        void (*f)(int, const uint8_t *, size_t, int64_t, const float *, float *, const int *) =
            type == GT_F32 ? gemv_f32 : type == GT_F16 ? gemv_f16 : gemv_bf16;
        for (int64_t p = p0; p < p1;) {
            if (n_out - p * 16 <= 0) break;
            const int np = p1 - p >= 4 ? 4 : p1 - p >= 2 ? 2 : 1;
            int rows[4];
            for (int i = 0; i < np; i++) {
                const int64_t r = n_out - (p + i) * 16;
                rows[i] = r > 16 ? 16 : r < 0 ? 0 : (int)r;
            }
            for (int64_t t = 0; t < n_tok; t++)
                f(np, wp + (size_t)p * panel_bytes, panel_bytes, n_in, x + t * ldx,
                  y + t * ldy + p * 16, rows);
            p += np;
        }
        return;
    }
    float *wf = scratch; /* [KC][16] */
    for (int64_t tc = 0; tc < n_tok; tc += TC) {
        int64_t tn = n_tok - tc < TC ? n_tok - tc : TC;
        for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
            int64_t kn = n_in - k0 < KC ? n_in - k0 : KC;
            for (int64_t p = p0; p < p1; p++) {
                int64_t rows = n_out - p * 16;
                if (rows <= 0) break;
                const uint8_t *w = wp + (size_t)p * panel_bytes + (size_t)k0 * 16 * es;
                const float *w32 = (const float *)w;
                if (type != GT_F32) {
                    for (int64_t k = 0; k < kn; k++) {
                        __m256 v[2];
                        ldw(type, w + (size_t)k * 32, v);
                        _mm256_storeu_ps(wf + k * 16, v[0]);
                        _mm256_storeu_ps(wf + k * 16 + 8, v[1]);
                    }
                    w32 = wf;
                }
                for (int64_t t = 0; t < tn; t += NTG) {
                    int nt = (int)(tn - t < NTG ? tn - t : NTG);
                    gemm_tile(nt, w32, kn, x + (tc + t) * ldx + k0, ldx,
                              y + (tc + t) * ldy + p * 16, ldy, rows > 16 ? 16 : (int)rows, k0 > 0);
                }
            }
        }
    }
}
