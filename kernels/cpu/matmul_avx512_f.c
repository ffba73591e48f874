/* AVX-512 products of float panels (F32, F16, BF16 weights) with fp32
 * activations; exact fp32 FMA arithmetic (no activation rounding).
 *
 * Panels store 16 rows per k contiguously, so one load (+ one conversion
 * for F16/BF16) gives a zmm of 16 rows at one k, multiplied by a broadcast
 * x[t][k]. Decode (n_tok <= 4) walks up to four panels side by side, one
 * accumulator per panel and token, prefetching ahead on the panel streams.
 * Prefill uses a 32-row x 12-token register tile (24 zmm accumulators),
 * blocked over k so a 32-row weight slab (16 KiB of F16) sits in L1 while
 * all token tiles of a 192-token chunk pass over it. Both sum a row in one
 * order whatever the token count (batch invariance): an FMA chain over k
 * per 256-k block, the blocks added to y in order. */
#include <immintrin.h>

#include "kernels/cpu/matmul_avx512_util.h"
#include "kernels/cpu/matmul_internal.h"

GT_AI __m512 ldw(const gt_dtype type, const uint8_t *p) {
    if (type == GT_F32) return _mm512_loadu_ps((const float *)p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (type == GT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

#define KC GT_MM_PF_KC /* k block of the prefill tile: a widened panel slab is 16 KiB (L1) */

/* NP panels (16 rows each, pbytes apart) x NT tokens over all k. Each row is
 * summed exactly as the GEMM tile below sums it, so decode and prefill give
 * the same bits: one fp32 FMA chain over k inside each KC block, started
 * from zero, and the blocks' sums added to y in order. The NP x NT
 * independent chains (NP panels streamed side by side) hide the FMA
 * latency that four k phases used to. */
GT_AI void pf_gemv(const gt_dtype type, const int NT, const int NP, const uint8_t *wp,
                   size_t pbytes, int64_t n_in, const float *x, int64_t ldx, float *y,
                   int64_t ldy, const __mmask16 *mask) {
    const size_t es = type == GT_F32 ? 4 : 2, step = 16 * es;
    for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
        const int64_t k1 = n_in - k0 < KC ? n_in : k0 + KC;
        __m512 acc[4][4]; /* [panel][token] */
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++)
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) acc[p][t] = _mm512_setzero_ps();
        int64_t k = k0;
        for (; k + 4 <= k1; k += 4) {
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++)
                pf_weights(wp + p * pbytes + (size_t)k * step, 4 * step, pbytes - (size_t)k * step,
                           (NP - 1) * pbytes, PF_DECODE);
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++)
#pragma GCC unroll 4
                for (int p = 0; p < NP; p++) {
                    __m512 w = ldw(type, wp + p * pbytes + (size_t)(k + u) * step);
#pragma GCC unroll 4
                    for (int t = 0; t < NT; t++)
                        acc[p][t] =
                            _mm512_fmadd_ps(w, _mm512_set1_ps(x[t * ldx + k + u]), acc[p][t]);
                }
        }
        for (; k < k1; k++)
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) {
                __m512 w = ldw(type, wp + p * pbytes + (size_t)k * step);
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++)
                    acc[p][t] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t * ldx + k]), acc[p][t]);
            }
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++)
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                float *yt = y + t * ldy + p * 16;
                __m512 s = acc[p][t];
                if (k0 > 0) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(mask[p], yt));
                _mm512_mask_storeu_ps(yt, mask[p], s);
            }
    }
}

/* One panel (16 rows of fp32 weights w[k][16]) x NT tokens over k in
 * [0, kn); x is the packed tile xp[k][24] (NT <= 24 columns used). Each x
 * is used once per k, so it is an embedded-broadcast operand of its FMA:
 * the loop is one weight load and NT FMAs per k. Adds to y when accum. */
GT_AI void pf_gemm(const int NT, const float *w, int64_t kn, const float *xp, float *y,
                   int64_t ldy, __mmask16 m, int accum) {
    __m512 a[24];
#pragma GCC unroll 24
    for (int t = 0; t < NT; t++) a[t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kn; k++) {
        __m512 v = _mm512_load_ps(w + k * 16);
        const float *xk = xp + k * 24;
#pragma GCC unroll 24
        for (int t = 0; t < NT; t++) a[t] = _mm512_fmadd_ps(v, _mm512_set1_ps(xk[t]), a[t]);
    }
#pragma GCC unroll 24
    for (int t = 0; t < NT; t++) {
        float *yt = y + t * ldy;
        if (accum) a[t] = _mm512_add_ps(a[t], _mm512_maskz_loadu_ps(m, yt));
        _mm512_mask_storeu_ps(yt, m, a[t]);
    }
}

/* Any nt <= 24 as tiles of 24, 16, 8, 4, 2, 1 columns of the same xp. */
static void gemm_tile(int nt, const float *w, int64_t kn, const float *xp, float *y, int64_t ldy,
                      __mmask16 m, int accum) {
    while (nt > 0) {
        int n = nt >= 24 ? 24 : nt >= 16 ? 16 : nt >= 8 ? 8 : nt >= 4 ? 4 : nt >= 2 ? 2 : 1;
        switch (n) {
        case 24: pf_gemm(24, w, kn, xp, y, ldy, m, accum); break;
        case 16: pf_gemm(16, w, kn, xp, y, ldy, m, accum); break;
        case 8: pf_gemm(8, w, kn, xp, y, ldy, m, accum); break;
        case 4: pf_gemm(4, w, kn, xp, y, ldy, m, accum); break;
        case 2: pf_gemm(2, w, kn, xp, y, ldy, m, accum); break;
        default: pf_gemm(1, w, kn, xp, y, ldy, m, accum); break;
        }
        nt -= n;
        xp += n;
        y += n * ldy;
    }
}

#define GEMV_NT(T, NP)                                                                             \
    switch (nt) {                                                                                  \
    case 1: pf_gemv(T, 1, NP, wp, pbytes, n_in, x, ldx, y, ldy, mask); break;                      \
    case 2: pf_gemv(T, 2, NP, wp, pbytes, n_in, x, ldx, y, ldy, mask); break;                      \
    case 3: pf_gemv(T, 3, NP, wp, pbytes, n_in, x, ldx, y, ldy, mask); break;                      \
    default: pf_gemv(T, 4, NP, wp, pbytes, n_in, x, ldx, y, ldy, mask); break;                     \
    }

typedef void (*gemv_fn)(int, int, const uint8_t *, size_t, int64_t, const float *, int64_t,
                        float *, int64_t, const __mmask16 *);

/* np panels (4, 2 or 1) x nt tokens (1..4). */
#define DEFINE_TYPE(NAME, T)                                                                       \
    static void gemv_##NAME(int np, int nt, const uint8_t *wp, size_t pbytes, int64_t n_in,       \
                            const float *x, int64_t ldx, float *y, int64_t ldy,                    \
                            const __mmask16 *mask) {                                               \
        if (np == 4) GEMV_NT(T, 4) else if (np == 2) GEMV_NT(T, 2) else GEMV_NT(T, 1)              \
    }
DEFINE_TYPE(f32, GT_F32)
DEFINE_TYPE(f16, GT_F16)
DEFINE_TYPE(bf16, GT_BF16)

#define NT_GEMM 24      /* tokens per register tile */
#define TC GT_MM_PF_TC  /* tokens per chunk: the packed x of one k block (192 KiB) stays in L2 */
#define PG      GT_MM_PF_PG  /* panels per group, their running sums apart from y (GT_MM_PF_PG) */

/* Prefill order: token chunk -> panel group -> k block -> panel -> token
 * tile, the group's running sums in ys until its last k block. The chunk's
 * x for one k block is packed once into tiles xp[tile][k][24]; each panel's
 * k slab is widened to fp32 once (wf, 16 KiB, L1) and then every token tile
 * of the chunk passes over it, so weights come from memory once per chunk,
 * are converted once per chunk, and x comes from L2. */
void gt__mm_pf_avx512(gt_dtype type, const void *wpv, int64_t n_in, int64_t n_out,
                      const float *x, float *y, int64_t n_tok, int64_t p0, int64_t p1,
                      float *scratch) {
    const uint8_t *wp = wpv;
    size_t es = type == GT_F32 ? 4 : 2, panel_bytes = (size_t)n_in * 16 * es;
    const int64_t ldx = n_in, ldy = n_out;
    if (n_tok <= 4) {
        gemv_fn f = type == GT_F32 ? gemv_f32 : type == GT_F16 ? gemv_f16 : gemv_bf16;
        for (int64_t p = p0; p < p1;) {
            if (!rows_mask(n_out, p)) break;
            const int np = p1 - p >= 4 ? 4 : p1 - p >= 2 ? 2 : 1;
            __mmask16 mask[4];
            for (int i = 0; i < np; i++) mask[i] = rows_mask(n_out, p + i);
            f(np, (int)n_tok, wp + (size_t)p * panel_bytes, panel_bytes, n_in, x, ldx, y + p * 16,
              ldy, mask);
            p += np;
        }
        return;
    }
    float *xp = scratch;                   /* [TC / 24][KC][24] */
    float *wf = scratch + (size_t)KC * TC; /* [KC][16] */
    float *ys = wf + (size_t)KC * 16;      /* [PG][TC][16] */
    for (int64_t tc = 0; tc < n_tok; tc += TC) {
        int64_t tn = n_tok - tc < TC ? n_tok - tc : TC;
        for (int64_t g0 = p0; g0 < p1 && rows_mask(n_out, g0); g0 += PG) {
            const int64_t g1 = group_end(g0, PG, p1, n_out);
            for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
                int64_t kn = n_in - k0 < KC ? n_in - k0 : KC;
                for (int64_t t = 0; t < tn; t += NT_GEMM) {
                    int nt = (int)(tn - t < NT_GEMM ? tn - t : NT_GEMM);
                    float *xt = xp + (t / NT_GEMM) * KC * NT_GEMM;
                    for (int i = 0; i < nt; i++) {
                        const float *xs = x + (tc + t + i) * ldx + k0;
                        for (int64_t k = 0; k < kn; k++) xt[k * NT_GEMM + i] = xs[k];
                    }
                }
                for (int64_t p = g0; p < g1; p++) {
                    __mmask16 m = rows_mask(n_out, p);
                    const uint8_t *w = wp + (size_t)p * panel_bytes + (size_t)k0 * 16 * es;
                    const float *w32 = (const float *)w;
                    if (type != GT_F32) {
                        for (int64_t k = 0; k < kn; k++)
                            _mm512_store_ps(wf + k * 16, ldw(type, w + (size_t)k * 32));
                        w32 = wf;
                    }
                    for (int64_t t = 0; t < tn; t += NT_GEMM) {
                        int nt = (int)(tn - t < NT_GEMM ? tn - t : NT_GEMM);
                        gemm_tile(nt, w32, kn, xp + (t / NT_GEMM) * KC * NT_GEMM,
                                  ys + ((p - g0) * TC + t) * 16, 16, m, k0 > 0);
                    }
                }
            }
            store_group(ys, TC, g0, g1, n_out, y + tc * ldy, tn);
        }
    }
}
