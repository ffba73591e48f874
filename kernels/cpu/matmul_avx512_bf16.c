/* AVX-512 BF16 products of bf16 pair panels (F16 and BF16 weights) with
 * activations rounded to bf16: `vdpbf16ps`, 32 multiply-adds per
 * instruction against 16 for an fp32 FMA, fp32 accumulation.
 *
 * The weights are packed [panel][k/2][16 rows][2] (matmul_bf16.c), so one
 * load is two k of 16 rows and the activation operand is one 32-bit pair
 * broadcast to all lanes. Each row is summed in one order whatever the token
 * count (batch invariance), the order of the scalar reference
 * gt__mm_pb_ref_rows: a vdpbf16ps chain over the k pairs of each
 * GT_MM_PF_KC block from zero, the blocks' sums added to y in order.
 * Decode (n_tok <= 4) rounds each token's k block into a small stack
 * buffer and streams up to four panels side by side; prefill reads the
 * activations rounded and packed once per product (gt__mm_pb_pack_x_avx512,
 * in a region of their own before the panels', shared by every thread and
 * every weight of a gt_matmul_multi) as tiles xp[k block][24][KC/2]: each
 * token's pairs of a k block side by side, so packing is rounding alone.
 * A 16-row x 24-token register tile takes its broadcast pairs as memory
 * operands at constant offsets (token t at t * KC/2 pairs), so the inner
 * loop is one weight load and 24 vdpbf16ps; the first tile over a panel's
 * slab prefetches the next panel's. */
#include <immintrin.h>

#include "kernels/cpu/matmul_avx512_util.h"
#include "kernels/cpu/matmul_internal.h"

#define KC GT_MM_PF_KC /* k per block: 128 pairs, a 16-row slab is 8 KiB */
#define NT_GEMM GT_MM_PB_NT /* tokens per register tile: 24 */
/* Tokens per chunk: two tiles, so a chunk's packed activations of a k
 * block (24 KiB) stay near L1 beside the panel's 8 KiB slab; on Zen 4
 * faster than GT_MM_PF_TC (192: 96 KiB of activations read from L2 for
 * each panel). Tokens are independent, so the chunk length changes no
 * bits. */
#define TC GT_MM_PB_TC
#define PG GT_MM_PB_PG /* panels per group (store_group): 384 KiB of sums */
_Static_assert(TC % NT_GEMM == 0, "a chunk is whole register tiles");

/* x[0, n) (n even) rounded to bf16 pairs out[n/2]. */
static void round_pairs(const float *x, int64_t n, uint32_t *out) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void *)(out + i / 2), (__m512i)h);
    }
    if (i < n) {
        const int64_t r = n - i;
        __mmask16 m0 = (__mmask16)(r >= 16 ? 0xFFFF : (1u << r) - 1);
        __mmask16 m1 = (__mmask16)(r <= 16 ? 0 : (1u << (r - 16)) - 1);
        __m512bh h = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + i + 16),
                                         _mm512_maskz_loadu_ps(m0, x + i));
        _mm512_mask_storeu_epi32(out + i / 2, (__mmask16)((1u << (r / 2)) - 1), (__m512i)h);
    }
}

void gt__mm_pb_pack_x_avx512(const float *x, int64_t n_in, int64_t t0, int64_t t1, uint32_t *xp) {
    for (int64_t t = t0; t < t1; t++) {
        uint32_t *xt = xp + t / NT_GEMM * gt__mm_pb_tile_u32(n_in) + t % NT_GEMM * (KC / 2);
        for (int64_t k0 = 0; k0 < n_in; k0 += KC)
            round_pairs(x + t * n_in + k0, n_in - k0 < KC ? n_in - k0 : KC,
                        xt + k0 / KC * NT_GEMM * (KC / 2));
    }
}

GT_AI __m512 dp(__m512 acc, __m512i w, uint32_t xpair) {
    return _mm512_dpbf16_ps(acc, (__m512bh)w, (__m512bh)_mm512_set1_epi32((int)xpair));
}

/* NP panels (pw u32 apart) x NT tokens over all k. */
GT_AI void pb_gemv(const int NT, const int NP, const uint32_t *wp, size_t pw, int64_t n_in,
                   const float *x, int64_t ldx, float *y, int64_t ldy, const __mmask16 *mask) {
    uint32_t xb[4][KC / 2] __attribute__((aligned(64)));
    for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
        const int64_t kn = n_in - k0 < KC ? n_in - k0 : KC, np = kn / 2;
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) round_pairs(x + t * ldx + k0, kn, xb[t]);
        const uint32_t *w0 = wp + (size_t)(k0 / 2) * 16;
        __m512 acc[4][4]; /* [panel][token] */
#pragma GCC unroll 4
        for (int p = 0; p < NP; p++)
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) acc[p][t] = _mm512_setzero_ps();
        int64_t kp = 0;
        for (; kp + 4 <= np; kp += 4) {
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++)
                pf_weights(w0 + p * pw + (size_t)kp * 16, 4 * 64,
                           4 * pw - (size_t)(k0 / 2 + kp) * 64, (NP - 1) * 4 * pw, PF_DECODE_PB);
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++)
#pragma GCC unroll 4
                for (int p = 0; p < NP; p++) {
                    __m512i w = _mm512_loadu_si512((const void *)(w0 + p * pw + (size_t)(kp + u) * 16));
#pragma GCC unroll 4
                    for (int t = 0; t < NT; t++) acc[p][t] = dp(acc[p][t], w, xb[t][kp + u]);
                }
        }
        for (; kp < np; kp++)
#pragma GCC unroll 4
            for (int p = 0; p < NP; p++) {
                __m512i w = _mm512_loadu_si512((const void *)(w0 + p * pw + (size_t)kp * 16));
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++) acc[p][t] = dp(acc[p][t], w, xb[t][kp]);
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

/* One panel (w[kp][16] pairs) x NT tokens over np pairs of the packed tile
 * xp[24][KC/2]. Adds to y when accum. */
GT_AI void pb_gemm(const int NT, const uint32_t *w, int64_t np, const uint32_t *xp, float *y,
                   int64_t ldy, __mmask16 m, int accum, const char *pf) {
    __m512 a[24];
#pragma GCC unroll 24
    for (int t = 0; t < NT; t++) a[t] = _mm512_setzero_ps();
    for (int64_t kp = 0; kp < np; kp++) {
        if (pf) _mm_prefetch(pf + kp * 64, _MM_HINT_T0);
        __m512i v = _mm512_load_si512((const void *)(w + kp * 16));
        const uint32_t *xk = xp + kp;
#pragma GCC unroll 24
        for (int t = 0; t < NT; t++) a[t] = dp(a[t], v, xk[t * (KC / 2)]);
    }
#pragma GCC unroll 24
    for (int t = 0; t < NT; t++) {
        float *yt = y + t * ldy;
        if (accum) a[t] = _mm512_add_ps(a[t], _mm512_maskz_loadu_ps(m, yt));
        _mm512_mask_storeu_ps(yt, m, a[t]);
    }
}

/* Any nt <= 24 as tiles of 24, 16, 8, 4, 2, 1 columns of the same xp. */
static void gemm_tile(int nt, const uint32_t *w, int64_t np, const uint32_t *xp, float *y,
                      int64_t ldy, __mmask16 m, int accum, const char *pf) {
    while (nt > 0) {
        int n = nt >= 24 ? 24 : nt >= 16 ? 16 : nt >= 8 ? 8 : nt >= 4 ? 4 : nt >= 2 ? 2 : 1;
        switch (n) {
        case 24: pb_gemm(24, w, np, xp, y, ldy, m, accum, pf); break;
        case 16: pb_gemm(16, w, np, xp, y, ldy, m, accum, pf); break;
        case 8: pb_gemm(8, w, np, xp, y, ldy, m, accum, pf); break;
        case 4: pb_gemm(4, w, np, xp, y, ldy, m, accum, pf); break;
        case 2: pb_gemm(2, w, np, xp, y, ldy, m, accum, pf); break;
        default: pb_gemm(1, w, np, xp, y, ldy, m, accum, pf); break;
        }
        nt -= n;
        pf = NULL; /* the first tile fetches */
        xp += n * (KC / 2);
        y += n * ldy;
    }
}

#define GEMV_NT(NP)                                                                                \
    switch (nt) {                                                                                  \
    case 1: pb_gemv(1, NP, wp, pw, n_in, x, ldx, y, ldy, mask); break;                             \
    case 2: pb_gemv(2, NP, wp, pw, n_in, x, ldx, y, ldy, mask); break;                             \
    case 3: pb_gemv(3, NP, wp, pw, n_in, x, ldx, y, ldy, mask); break;                             \
    default: pb_gemv(4, NP, wp, pw, n_in, x, ldx, y, ldy, mask); break;                            \
    }

static void gemv(int np, int nt, const uint32_t *wp, size_t pw, int64_t n_in, const float *x,
                 int64_t ldx, float *y, int64_t ldy, const __mmask16 *mask) {
    if (np == 4) GEMV_NT(4) else if (np == 2) GEMV_NT(2) else GEMV_NT(1)
}

/* Prefill order as gt__mm_pf_avx512: token chunk -> panel group -> k block
 * -> panel -> token tile, the group's sums in ys (store_group); the weights
 * need no widening. */
void gt__mm_pb_avx512(const void *wpv, int64_t n_in, int64_t n_out, const float *x,
                      const uint32_t *xpk, float *y, int64_t n_tok, int64_t p0, int64_t p1,
                      float *scratch) {
    const uint32_t *wp = wpv;
    const size_t pw = (size_t)n_in * 8; /* u32 per panel: n_in/2 pairs x 16 rows */
    const int64_t ldx = n_in, ldy = n_out, tu = gt__mm_pb_tile_u32(n_in);
    if (n_tok <= 4) {
        for (int64_t p = p0; p < p1;) {
            if (!rows_mask(n_out, p)) break;
            const int np = p1 - p >= 4 ? 4 : p1 - p >= 2 ? 2 : 1;
            __mmask16 mask[4];
            for (int i = 0; i < np; i++) mask[i] = rows_mask(n_out, p + i);
            gemv(np, (int)n_tok, wp + (size_t)p * pw, pw, n_in, x, ldx, y + p * 16, ldy, mask);
            p += np;
        }
        return;
    }
    float *ys = scratch; /* [PG][TC][16] */
    for (int64_t tc = 0; tc < n_tok; tc += TC) {
        const int64_t tn = n_tok - tc < TC ? n_tok - tc : TC;
        for (int64_t g0 = p0; g0 < p1 && rows_mask(n_out, g0); g0 += PG) {
            const int64_t g1 = group_end(g0, PG, p1, n_out);
            for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
                const int64_t np = (n_in - k0 < KC ? n_in - k0 : KC) / 2;
                /* Tile t of the chunk, from k pair k0 / 2. */
                const uint32_t *xk = xpk + tc / NT_GEMM * tu + k0 / KC * NT_GEMM * (KC / 2);
                for (int64_t p = g0; p < g1; p++) {
                    const __mmask16 m = rows_mask(n_out, p);
                    const uint32_t *w = wp + (size_t)p * pw + (size_t)(k0 / 2) * 16;
                    /* The first tile fetches the next panel's slab, a line per pair. */
                    const char *pf = p + 1 < g1 ? (const char *)(w + pw) : NULL;
                    for (int64_t t = 0; t < tn; t += NT_GEMM) {
                        const int nt = (int)(tn - t < NT_GEMM ? tn - t : NT_GEMM);
                        gemm_tile(nt, w, np, xk + t / NT_GEMM * tu, ys + ((p - g0) * TC + t) * 16,
                                  16, m, k0 > 0, t == 0 ? pf : NULL);
                    }
                }
            }
            store_group(ys, TC, g0, g1, n_out, y + tc * ldy, tn);
        }
    }
}
