/* AVX-512 FP16 products of fp16 panels (F16 weights, BF16 weights that
 * fit) with activations scaled by a power of two per row and rounded to
 * fp16: `vfmadd231ph`, 32 multiply-adds per instruction against 16 for an
 * fp32 FMA, at the same issue rate.
 *
 * The arithmetic is the scalar reference's (gt__mm_ph_ref_rows, in
 * kernels/cpu/matmul_fp16.c, which explains the scales): per 32-row panel
 * and token an fp16 FMA chain over `chunk` k from +0, each chunk's sum
 * widened (vcvtph2psx, two zmm of 16 rows) and added to fp32 accumulators
 * that start at +0 in every GT_MM_PF_KC block; the block's sums times the
 * row's 2^-(e+sw) go to y, fused-multiply-added to it after the first
 * block. The tile (1 or 2 panels x 1..8 tokens) holds its fp16 and fp32
 * accumulators in registers (8 + 16 zmm at most); the activation operand is
 * an embedded {1to32} broadcast of one fp16 from the packed rows xh[t][KC].
 * Decode (n_tok <= 4) packs each token's k block into a stack buffer and
 * streams two panels side by side; prefill packs a 192-token chunk's block
 * once into the scratch and runs every 8-token tile of it over each panel's
 * 16 KiB slab (L1). Any token count gives the same bits per row.
 * Compiled with -mavx512fp16 where the compiler has it; else only the stub
 * at the end is built and the mode is unavailable. */
#include <immintrin.h>

#include "kernels/cpu/matmul_internal.h"

#if defined(__AVX512FP16__)

#define GT_AI static inline __attribute__((always_inline))

#define KC GT_MM_PF_KC /* k per block: a 32-row fp16 slab is 16 KiB */
#define TC GT_MM_PF_TC /* tokens per chunk */

bool gt__mm_ph_built(void) { return true; }

/* max |x[0, n)|. */
static float row_absmax(const float *x, int64_t n) {
    __m512 m = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    if (i < n)
        m = _mm512_max_ps(
            m, _mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1), x + i)));
    return _mm512_reduce_max_ps(m);
}

/* x[0, n) * s rounded to fp16 (nearest even) into out[0, n). */
static void pack_row(const float *x, int64_t n, float s, _Float16 *out) {
    const __m512 vs = _mm512_set1_ps(s);
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t r = n - i < 16 ? n - i : 16;
        const __mmask16 m = (__mmask16)(r == 16 ? 0xFFFF : (1u << r) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        __m256i h =
            _mm512_cvtps_ph(_mm512_mul_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_mask_storeu_epi16(out + i, m, h);
    }
}

/* NP panels (pw halves apart, each w[k][32]) x NT tokens over k in [0, kn)
 * of one block, chunk C; xh[t][KC] (a constant stride, so each token's
 * broadcast is a displacement off one pointer). y gets the block's sums
 * (accum: added). */
GT_AI void ph_tile(const int C, const int NP, const int NT, const _Float16 *w, size_t pw,
                   int64_t kn, const _Float16 *xh, const float *inv, float *y, int64_t ldy,
                   const __mmask16 *m, int accum) {
    __m512 a[2][8][2];
#pragma GCC unroll 2
    for (int p = 0; p < NP; p++)
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) a[p][t][0] = a[p][t][1] = _mm512_setzero_ps();
    for (int64_t c0 = 0; c0 < kn; c0 += C) {
        const int64_t c1 = kn - c0 < C ? kn : c0 + C;
        __m512h h[2][8];
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++)
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) h[p][t] = _mm512_setzero_ph();
        for (int64_t k = c0; k < c1; k++) {
            __m512h v[2];
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) v[p] = _mm512_load_ph(w + p * pw + k * 32);
            const _Float16 *xk = xh + k;
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const __m512h b = _mm512_set1_ph(xk[t * KC]);
#pragma GCC unroll 2
                for (int p = 0; p < NP; p++) h[p][t] = _mm512_fmadd_ph(v[p], b, h[p][t]);
            }
        }
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++)
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                const __m512i hi = _mm512_castph_si512(h[p][t]);
                a[p][t][0] =
                    _mm512_add_ps(a[p][t][0], _mm512_cvtxph_ps(_mm512_castph512_ph256(h[p][t])));
                a[p][t][1] = _mm512_add_ps(a[p][t][1], _mm512_cvtxph_ps(_mm256_castsi256_ph(
                                                           _mm512_extracti64x4_epi64(hi, 1))));
            }
    }
#pragma GCC unroll 2
    for (int p = 0; p < NP; p++)
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const __m512 s = _mm512_set1_ps(inv[t]);
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                float *yt = y + t * ldy + p * 32 + j * 16;
                const __mmask16 mk = m[2 * p + j];
                if (!mk) continue;
                __m512 r = accum ? _mm512_fmadd_ps(a[p][t][j], s, _mm512_maskz_loadu_ps(mk, yt))
                                 : _mm512_mul_ps(a[p][t][j], s);
                _mm512_mask_storeu_ps(yt, mk, r);
            }
        }
}

/* The instances: C in {16, 32, 64}; (NP, NT) in {1, 2} x {1, 2, 4, 8} and
 * (2, 3) for decode. */
typedef void (*tile_fn)(const _Float16 *, size_t, int64_t, const _Float16 *, const float *, float *,
                        int64_t, const __mmask16 *, int);
/* clang-format off */
#define TILE(C, NP, NT)                                                                            \
    static void tile_##C##_##NP##_##NT(const _Float16 *w, size_t pw, int64_t kn,                   \
                                       const _Float16 *xh, const float *inv, float *y,             \
                                       int64_t ldy, const __mmask16 *m, int accum) {               \
        ph_tile(C, NP, NT, w, pw, kn, xh, inv, y, ldy, m, accum);                                  \
    }
#define TILES(C)                                                                                   \
    TILE(C, 1, 1) TILE(C, 1, 2) TILE(C, 1, 3) TILE(C, 1, 4) TILE(C, 1, 8) TILE(C, 2, 1)            \
    TILE(C, 2, 2) TILE(C, 2, 3) TILE(C, 2, 4)                                                      \
    static const tile_fn k_tiles_##C[2][9] = {                                                     \
        {NULL, tile_##C##_1_1, tile_##C##_1_2, tile_##C##_1_3, tile_##C##_1_4, NULL, NULL, NULL,   \
         tile_##C##_1_8},                                                                          \
        {NULL, tile_##C##_2_1, tile_##C##_2_2, tile_##C##_2_3, tile_##C##_2_4, NULL, NULL, NULL,   \
         NULL}};
TILES(16)
TILES(32)
TILES(64)
/* clang-format on */

static const tile_fn (*tiles_for(int chunk))[9] {
    return chunk == 16 ? k_tiles_16 : chunk == 64 ? k_tiles_64 : k_tiles_32;
}

static void pair_masks(int64_t n_out, int64_t q, __mmask16 *m) {
    for (int j = 0; j < 2; j++) {
        const int64_t rows = n_out - (2 * q + j) * 16;
        m[j] = rows <= 0 ? 0 : rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rows) - 1);
    }
}

void gt__mm_ph_avx512(const void *wpv, int64_t n_in, int64_t n_out, const float *x, float *y,
                      int64_t n_tok, int64_t p0, int64_t p1, float *scratch) {
    const gt_mm_ph_head *h = wpv;
    const _Float16 *wp = (const _Float16 *)((const uint8_t *)wpv + GT_MM_PH_HEAD);
    const size_t pw = (size_t)n_in * 32; /* halves per 32-row panel */
    const tile_fn(*tiles)[9] = tiles_for(h->chunk);
    const int64_t q0 = p0 / 2, q1 = (p1 + 1) / 2, ldx = n_in, ldy = n_out;
    float s[TC], inv[TC];
    if (n_tok <= 4) {
        _Float16 xb[4 * KC] __attribute__((aligned(64)));
        for (int64_t t = 0; t < n_tok; t++)
            gt__mm_ph_row_scale(row_absmax(x + t * ldx, n_in), h, &s[t], &inv[t]);
        for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
            const int64_t kn = n_in - k0 < KC ? n_in - k0 : KC;
            for (int64_t t = 0; t < n_tok; t++) pack_row(x + t * ldx + k0, kn, s[t], xb + t * KC);
            for (int64_t q = q0; q < q1;) {
                __mmask16 m[4];
                pair_masks(n_out, q, m);
                if (!m[0]) break;
                pair_masks(n_out, q + 1, m + 2);
                const int np = q1 - q >= 2 && m[2] ? 2 : 1;
                tiles[np - 1][n_tok](wp + (size_t)q * pw + (size_t)k0 * 32, pw, kn, xb, inv,
                                     y + q * 32, ldy, m, k0 > 0);
                q += np;
            }
        }
        return;
    }
    _Float16 *xp = (_Float16 *)scratch; /* [TC][KC] */
    for (int64_t tc = 0; tc < n_tok; tc += TC) {
        const int64_t tn = n_tok - tc < TC ? n_tok - tc : TC;
        for (int64_t t = 0; t < tn; t++)
            gt__mm_ph_row_scale(row_absmax(x + (tc + t) * ldx, n_in), h, &s[t], &inv[t]);
        for (int64_t k0 = 0; k0 < n_in; k0 += KC) {
            const int64_t kn = n_in - k0 < KC ? n_in - k0 : KC;
            for (int64_t t = 0; t < tn; t++)
                pack_row(x + (tc + t) * ldx + k0, kn, s[t], xp + t * KC);
            for (int64_t q = q0; q < q1; q++) {
                __mmask16 m[2];
                pair_masks(n_out, q, m);
                if (!m[0]) break;
                const _Float16 *w = wp + (size_t)q * pw + (size_t)k0 * 32;
                for (int64_t t = 0; t < tn;) {
                    const int64_t left = tn - t;
                    const int nt = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
                    const _Float16 *xt = xp + t * KC;
                    tiles[0][nt](w, pw, kn, xt, inv + t, y + (tc + t) * ldy + q * 32, ldy, m,
                                 k0 > 0);
                    t += nt;
                }
            }
        }
    }
}

#else

bool gt__mm_ph_built(void) { return false; }

void gt__mm_ph_avx512(const void *wp, int64_t n_in, int64_t n_out, const float *x, float *y,
                      int64_t n_tok, int64_t p0, int64_t p1, float *scratch) {
    (void)wp, (void)n_in, (void)n_out, (void)x, (void)y, (void)n_tok, (void)p0, (void)p1,
        (void)scratch;
    __builtin_trap(); /* never chosen: the mode needs gt__mm_ph_built() */
}

#endif
