/* AVX-512 VNNI decode (1 to 4 tokens) of Q4_0 panels (GT_MMQ_N4) and of the
 * nibble panels with a min (GT_MMQ_N4M: Q4_1, Q4_K): the same bits as the
 * generic tile of matmul_avx512_q.c, in fewer instructions.
 *
 * The generic tile spent more time per block than the memory takes to
 * deliver it at one thread (bench_gemv_cached: ~28 GB/s from L2, about the
 * read bandwidth of one core), so Q4_0 decode could not reach the roofline
 * even without fork-joins. Three changes, none of which touch the float
 * arithmetic:
 *  - the high nibbles are masked in place (r & 0xF0, i.e. 16 x the code)
 *    instead of shifted down, and their int32 dot is shifted right by 4
 *    once per token: vpsrlw runs on one port only, vpand on two, and the
 *    codes are loaded once instead of twice;
 *  - the eight vpdpbusd of a block run as two chains of four: the low
 *    nibbles' from the activation's correction c0, the high nibbles' from
 *    zero (c1 is 0 for this kind), added after the shift;
 *  - with two tokens, two panels share each activation broadcast.
 * The int32 dot of a block is a sum of exact integer terms, so regrouping it
 * gives the same int32 (vpdpbusd wraps, it does not saturate); the float
 * steps are the generic tile's, in its order: per block acc += float(s) *
 * (d_w * d_x) (N4M: then acc += m_w * d_x*sum(x)), per slice of 16 blocks
 * y = acc (+ y). */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/matmul_avx512_util.h"
#include "kernels/cpu/matmul_internal.h"

#define N4_KB 16 /* blocks per k slice, as in matmul_avx512_q.c */

/* Panels np (1 or 2, a compile-time constant) x NT tokens over blocks
 * [0, nb) of one slice; acc[p][t] gets the slice's sum. KIND is N4 (f16
 * d[16], u8 qs[4][64]) or N4M (f16 d[16], f16 m[16], u8 qs[4][64]). */
GT_AI void n4_slice(const int KIND, const int NP, const int NT, const uint8_t *w0, size_t pstride,
                    int64_t nb, const gt_mm_q8a *q, int64_t ldq, size_t left, __m512 acc[2][4]) {
    const int mins = KIND == GT_MMQ_N4M;
    const size_t bb = gt__mmq_block_bytes((gt_mm_qkind)KIND), qoff = mins ? 64 : 32;
    const __m512i m_lo = _mm512_set1_epi8(0x0F), m_hi = _mm512_set1_epi8((char)0xF0);
#pragma GCC unroll 2
    for (int p = 0; p < NP; p++)
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) acc[p][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512 dw[2], dm[2];
        __m512i lo[2][4], hi[2][4];
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) {
            const uint8_t *blk = w0 + (size_t)p * pstride + (size_t)b * bb;
            pf_weights(blk, bb, left - (size_t)b * bb, (NP - 1) * pstride, PF_DECODE_Q4);
            dw[p] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk));
            if (mins) dm[p] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 32)));
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                __m512i r = _mm512_loadu_si512(blk + qoff + 64 * i);
                lo[p][i] = _mm512_and_si512(r, m_lo);
                hi[p][i] = _mm512_and_si512(r, m_hi);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const gt_mm_q8a *a = q + t * ldq + b;
            pf_act(a);
            __m512 dx = _mm512_set1_ps(a->d);
            __m512i x[8];
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) x[c] = _mm512_set1_epi32(ld32(a->qs + 4 * c));
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) {
                __m512i s0 = _mm512_set1_epi32(a->c0), h0 = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    s0 = _mm512_dpbusd_epi32(s0, lo[p][c], x[c]);
                    h0 = _mm512_dpbusd_epi32(h0, hi[p][c], x[c + 4]);
                }
                __m512i s = _mm512_add_epi32(s0, _mm512_srai_epi32(h0, 4));
                acc[p][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[p], dx), acc[p][t]);
                if (mins) acc[p][t] = _mm512_fmadd_ps(dm[p], _mm512_set1_ps(a->ds), acc[p][t]);
            }
        }
    }
}

/* All slices of NP panels: y[t][16 rows of panel p] = sum over slices. */
GT_AI void n4_panels(const int KIND, const int NP, const int NT, const uint8_t *w0, size_t pstride,
                     int64_t nb, const gt_mm_q8a *q, int64_t ldq, float *y, int64_t ldy,
                     const __mmask16 mask[2]) {
    const size_t bb = gt__mmq_block_bytes((gt_mm_qkind)KIND);
    for (int64_t b0 = 0; b0 < nb; b0 += N4_KB) {
        int64_t bn = nb - b0 < N4_KB ? nb - b0 : N4_KB;
        __m512 acc[2][4];
        n4_slice(KIND, NP, NT, w0 + (size_t)b0 * bb, pstride, bn, q + b0, ldq,
                 (size_t)(nb - b0) * bb, acc);
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++)
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                float *yt = y + t * ldy + 16 * p;
                __m512 v = acc[p][t];
                if (b0 > 0) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask[p], yt));
                _mm512_mask_storeu_ps(yt, mask[p], v);
            }
    }
}

#define N4_CASE(NP, NT) n4_panels(KIND, NP, NT, w0, pstride, nb, q, nb, y, ldy, mask)

GT_AI void n4_run(const int KIND, int np, int nt, const uint8_t *w0, size_t pstride, int64_t nb,
                  const gt_mm_q8a *q, float *y, int64_t ldy, const __mmask16 mask[2]) {
    if (np == 2) {
        if (nt == 1)
            N4_CASE(2, 1);
        else
            N4_CASE(2, 2);
    } else {
        switch (nt) {
        case 1:
            N4_CASE(1, 1);
            break;
        case 2:
            N4_CASE(1, 2);
            break;
        case 3:
            N4_CASE(1, 3);
            break;
        default:
            N4_CASE(1, 4);
            break;
        }
    }
}

static void n4_run_n4(int np, int nt, const uint8_t *w0, size_t pstride, int64_t nb,
                      const gt_mm_q8a *q, float *y, int64_t ldy, const __mmask16 mask[2]) {
    n4_run(GT_MMQ_N4, np, nt, w0, pstride, nb, q, y, ldy, mask);
}
static void n4_run_n4m(int np, int nt, const uint8_t *w0, size_t pstride, int64_t nb,
                       const gt_mm_q8a *q, float *y, int64_t ldy, const __mmask16 mask[2]) {
    n4_run(GT_MMQ_N4M, np, nt, w0, pstride, nb, q, y, ldy, mask);
}

void gt__mm_n4_decode_avx512(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out,
                             const gt_mm_q8a *q, float *y, int64_t n_tok, int64_t p0, int64_t p1) {
    int64_t nb = n_in / 32;
    size_t panel_bytes = (size_t)nb * gt__mmq_block_bytes(kind);
    int nt = (int)n_tok;
    void (*run)(int, int, const uint8_t *, size_t, int64_t, const gt_mm_q8a *, float *, int64_t,
                const __mmask16 *) = kind == GT_MMQ_N4M ? n4_run_n4m : n4_run_n4;
    for (int64_t p = p0, np = 1; p < p1; p += np) {
        int64_t rows = n_out - p * 16;
        if (rows <= 0) break;
        /* With two tokens two panels share the activation broadcasts; with
         * one, a panel at a time keeps the weights one sequential stream,
         * which one core reads faster than two (Zen 4: 95-105% of the read
         * bandwidth against 70-86%); with 3 or 4 the registers hold one. */
        np = p + 1 < p1 && rows > 16 && nt == 2 ? 2 : 1;
        __mmask16 mask[2] = {rows_mask(n_out, p), rows_mask(n_out, p + 1)};
        run((int)np, nt, (const uint8_t *)wp + (size_t)p * panel_bytes, panel_bytes, nb, q,
            y + p * 16, n_out, mask);
    }
}
