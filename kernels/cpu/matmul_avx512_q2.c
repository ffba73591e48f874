/* AVX-512 VNNI prefill (GEMM) of quant panels: 32 output rows (two panels)
 * x up to 6 tokens per register tile.
 *
 * Design: the decode tile (matmul_avx512_q.c) spends one activation
 * broadcast per vpdpbusd; here each broadcast of 4 activation bytes feeds the
 * same k of both panels, halving the broadcasts per multiply-add. Inside a
 * 32-k block the loop runs chunk by chunk (4 k at a time): the chunk's two
 * weight registers are unpacked once, then every token's two int32 chains
 * advance, so 12 independent vpdpbusd chains hide the latency. At the end
 * of the block each chain is converted and scaled by d_w * d_x into an fp32
 * accumulator (plus m_w * d_x*sum(x) for the kinds with a min), exactly as
 * the decode tile does, and with the same 16-block k slices, so both paths
 * give the same bits for a row (batch invariance). Kinds B8, N4, N4M, N5
 * and N5M; the half kinds (two scales per block) keep the one-panel tile. Loop order and L1/L2
 * blocking as in the caller: token chunk -> panel pair -> 16-block k slice -> token tile. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/matmul_avx512_util.h"
#include "kernels/cpu/matmul_internal.h"


#define NT2 6

/* Panels at w0 and w0 + pstride, blocks [0, nb), tokens [0, NT). */
GT_AI void pq_tile2(const gt_mm_qkind kind, const int NT, const uint8_t *w0, size_t pstride,
                    int64_t nb, const gt_mm_q8a *q, int64_t ldq, float *y, int64_t ldy,
                    __mmask16 m0, __mmask16 m1, int accum) {
    const size_t bb = gt__mmq_block_bytes(kind), qoff = 32 * (size_t)gt__mmq_scales(kind);
    __m512 a0[NT2], a1[NT2];
#pragma GCC unroll 6
    for (int t = 0; t < NT; t++) a0[t] = a1[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *b0 = w0 + (size_t)b * bb, *b1 = b0 + pstride;
#pragma GCC unroll 9
        for (size_t l = 0; l < bb; l += 64) {
            _mm_prefetch((const char *)b0 + PF_BYTES + l, _MM_HINT_T0);
            _mm_prefetch((const char *)b1 + PF_BYTES + l, _MM_HINT_T0);
        }
        __m512i s0[NT2], s1[NT2];
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) s0[t] = s1[t] = _mm512_set1_epi32(q[t * ldq + b].c0);
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            const __m512i v0 = gt__mmq_chunk_avx512(kind, b0 + qoff, c),
                          v1 = gt__mmq_chunk_avx512(kind, b1 + qoff, c);
#pragma GCC unroll 6
            for (int t = 0; t < NT; t++) {
                __m512i xb = _mm512_set1_epi32(ld32(q[t * ldq + b].qs + 4 * c));
                s0[t] = _mm512_dpbusd_epi32(s0[t], v0, xb);
                s1[t] = _mm512_dpbusd_epi32(s1[t], v1, xb);
            }
        }
        __m512 d0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b0));
        __m512 d1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b1));
#pragma GCC unroll 6
        for (int t = 0; t < NT; t++) {
            const gt_mm_q8a *a = q + t * ldq + b;
            __m512 dx = _mm512_set1_ps(a->d);
            a0[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0[t]), _mm512_mul_ps(d0, dx), a0[t]);
            a1[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[t]), _mm512_mul_ps(d1, dx), a1[t]);
            if (gt__mmq_min(kind)) {
                __m512 ds = _mm512_set1_ps(a->ds);
                a0[t] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b0 + 32))), ds, a0[t]);
                a1[t] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b1 + 32))), ds, a1[t]);
            }
        }
    }
#pragma GCC unroll 6
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

#define T2_CASE(KIND, N)                                                                           \
    case N: pq_tile2(KIND, N, w0, pstride, nb, q, ldq, y, ldy, m0, m1, accum); break;
#define T2_DEFINE(NAME, KIND)                                                                      \
    static void NAME(int nt, const uint8_t *w0, size_t pstride, int64_t nb, const gt_mm_q8a *q,  \
                     int64_t ldq, float *y, int64_t ldy, __mmask16 m0, __mmask16 m1, int accum) { \
        switch (nt) {                                                                              \
            T2_CASE(KIND, 1) T2_CASE(KIND, 2) T2_CASE(KIND, 3) T2_CASE(KIND, 4) T2_CASE(KIND, 5)   \
        default: pq_tile2(KIND, NT2, w0, pstride, nb, q, ldq, y, ldy, m0, m1, accum); break;     \
        }                                                                                          \
    }
T2_DEFINE(tile2_b8, GT_MMQ_B8)
T2_DEFINE(tile2_n4, GT_MMQ_N4)
T2_DEFINE(tile2_n4m, GT_MMQ_N4M)
T2_DEFINE(tile2_n5, GT_MMQ_N5)
T2_DEFINE(tile2_n5m, GT_MMQ_N5M)

#define CHUNK_BYTES (512 * 1024) /* activations of a token chunk kept in L2 */
#define KB 16                    /* blocks per k slice: 2 x 16 x 288 B of Q4_0 in L1 */

void gt__mm_pq2_avx512(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out,
                       const gt_mm_q8a *q, float *y, int64_t n_tok, int64_t p0, int64_t p1) {
    void (*tile)(int, const uint8_t *, size_t, int64_t, const gt_mm_q8a *, int64_t, float *,
                 int64_t, __mmask16, __mmask16, int) = kind == GT_MMQ_B8    ? tile2_b8
                                                       : kind == GT_MMQ_N4  ? tile2_n4
                                                       : kind == GT_MMQ_N5  ? tile2_n5
                                                       : kind == GT_MMQ_N5M ? tile2_n5m
                                                                            : tile2_n4m;
    int64_t nb = n_in / 32;
    size_t bb = gt__mm_qblock_bytes(kind), panel_bytes = (size_t)nb * bb;
    int64_t chunk = CHUNK_BYTES / (nb * (int64_t)sizeof(gt_mm_q8a)) / NT2 * NT2;
    chunk = chunk < 4 * NT2 ? 4 * NT2 : chunk > 252 ? 252 : chunk;
    for (int64_t tc = 0; tc < n_tok; tc += chunk) {
        int64_t tc1 = tc + chunk < n_tok ? tc + chunk : n_tok;
        for (int64_t p = p0; p < p1; p += 2) {
            __mmask16 m0 = rows_mask(n_out, p), m1 = rows_mask(n_out, p + 1);
            if (!m0) break;
            const uint8_t *pw = (const uint8_t *)wp + (size_t)p * panel_bytes;
            for (int64_t b0 = 0; b0 < nb; b0 += KB) {
                int64_t bn = nb - b0 < KB ? nb - b0 : KB;
                for (int64_t t = tc; t < tc1; t += NT2) {
                    int nt = (int)(tc1 - t < NT2 ? tc1 - t : NT2);
                    tile(nt, pw + (size_t)b0 * bb, panel_bytes, bn, q + t * nb + b0, nb,
                         y + t * n_out + p * 16, n_out, m0, m1, b0 > 0);
                }
            }
        }
    }
}
