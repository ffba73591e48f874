/* AVX2 products of quant panels with Q8 activations (no VNNI), and the
 * activation quantizer.
 *
 * Design: the panels and activation blocks of the AVX-512 path
 * (matmul_internal.h) unchanged; a 16-row panel is two ymm halves (rows
 * 0-7 and 8-15, bytes 0-31 and 32-63 of each 64-byte chunk). vpdpbusd is
 * replaced by vpmaddubsw (u8 x s8, pairs summed to int16, saturating) and
 * vpmaddwd against ones (int16 pairs to int32), arranged so that no int16
 * ever saturates, which keeps the integer dot exact and equal to the
 * AVX-512 one:
 *  - nibble kinds: codes <= 15, |x| <= 127, a pair <= 3810, so all 8 chunks
 *    of a block add up in int16 (<= 30480) before one vpmaddwd; N5 (codes
 *    <= 31) adds 4 chunks, N6H (<= 63) 2 chunks per vpmaddwd;
 *  - B8 (code = q + 128 up to 255) would overflow, so it uses the signed
 *    form: |q| (<= 128, unsigned) times x with q's sign (vpsignb), a pair
 *    <= 32512, one vpmaddwd per chunk. That is sum(q*x) directly, which is
 *    exactly the AVX-512 u8 dot plus its correction c0 = -128*sum(x), so c0
 *    is not added for B8.
 * The planes' bits (bit 4, 5 of N5/N5M/N6H, bit 2 of C3H) come back with a
 * shift and a mask per plane and chunk; the crumb kinds (C3H, C2HM) split
 * 2-bit codes as the nibble kinds split 4-bit ones. Per block and token the
 * int32 sum is converted and FMA'd with d_w * d_x (plus m_w * d_x*sum(x)
 * for min kinds; two half-block scales for N6H) in the AVX-512 order, and
 * the k slicing of the AVX-512 driver is kept (16-block slices summed
 * alone and accumulated in y, for decode and prefill alike, so a row's
 * result does not depend on the token count), so the results match it to
 * the bit.
 * AVX2 has 16 vector registers: decode tiles are one panel x 1..4 tokens,
 * prefill tiles half a panel (8 rows) x 1..5 tokens. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/matmul_avx2.h"

#define GT_AI static inline __attribute__((always_inline))

/* ---- activation quantization ---- */

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int32_t hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

void gt__mm_quantize_avx2(gt_mm_qkind kind, const float *x, int64_t n_in, int64_t t0, int64_t t1,
                          int64_t b0, int64_t b1, gt_mm_q8a *q) {
    int64_t nb = n_in / 32;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    /* vpackssdw + vpacksswb interleave the four vectors' 4-lane groups per
     * 128-bit lane; this dword permutation restores element order. */
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t t = t0; t < t1; t++)
        for (int64_t b = b0; b < b1; b++) {
            const float *xs = x + t * n_in + 32 * b; /* [32] */
            gt_mm_q8a *o = q + t * nb + b;
            __m256 v0 = _mm256_loadu_ps(xs), v1 = _mm256_loadu_ps(xs + 8);
            __m256 v2 = _mm256_loadu_ps(xs + 16), v3 = _mm256_loadu_ps(xs + 24);
            __m256 a = _mm256_max_ps(
                _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
            float amax = hmax8(a);
            float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
            const __m256 vid = _mm256_set1_ps(id);
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            _mm256_storeu_si256((__m256i *)o->qs, _mm256_permutevar8x32_epi32(p, perm));
            int32_t s0 = hsum8i(_mm256_add_epi32(i0, i1)), s1 = hsum8i(_mm256_add_epi32(i2, i3));
            o->d = d;
            o->ds = d * (float)(s0 + s1);
            gt__mm_q8a_corrections(kind, s0, s1, o);
        }
}

/* ---- tile kernel ---- */

static inline int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Codes of chunk c (k 4c..4c+3), half h (rows 8h..8h+7) as 32 u8; for B8
 * the signed q (code - 128). */
GT_AI __m256i wchunk(const gt_mm_qkind kind, const uint8_t *qs, int c, int h) {
    if (kind == GT_MMQ_B8)
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(qs + 64 * c + 32 * h)),
                                _mm256_set1_epi8((char)0x80));
    const int bits = gt__mmq_bits(kind), regs = bits; /* code registers: 4 or 2 */
    __m256i r = _mm256_loadu_si256((const __m256i *)(qs + 64 * (c % regs) + 32 * h));
    if (c >= regs) r = _mm256_srli_epi16(r, bits * (c / regs));
    r = _mm256_and_si256(r, _mm256_set1_epi8((char)((1 << bits) - 1)));
#pragma GCC unroll 2
    for (int pl = 0; pl < gt__mmq_planes(kind); pl++) { /* bit c of a plane byte: chunk c's */
        const int T = bits + pl;
        const __m256i p = _mm256_loadu_si256((const __m256i *)(qs + 64 * bits + 64 * pl + 32 * h));
        const __m256i sh = c <= T ? _mm256_slli_epi16(p, T - c) : _mm256_srli_epi16(p, c - T);
        r = _mm256_or_si256(r, _mm256_and_si256(sh, _mm256_set1_epi8((char)(1 << T))));
    }
    return r;
}

/* C2HM, rows 8h..8h+7: d * sc of half sec of block b, or (min) dmin * m,
 * from the super block's d, dmin and the block's scale|min bytes; the
 * products the AVX-512 tile forms. */
GT_AI __m256 c2_scale(const uint8_t *wp, int64_t b, const uint8_t *blk, int sec, int h, int min) {
    const uint8_t *sup = gt__mmq_c2_super(wp, b);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sup + 32 * min + 16 * h)));
    __m256i sm = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 16 * sec + 8 * h)));
    sm = min ? _mm256_srli_epi32(sm, 4) : _mm256_and_si256(sm, _mm256_set1_epi32(15));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(sm));
}

/* y[0..rows) (+)= a for 8 rows (rows 1..8). */
GT_AI void store8(float *y, __m256 a, int rows, int accum) {
    if (rows >= 8) {
        if (accum) a = _mm256_add_ps(a, _mm256_loadu_ps(y));
        _mm256_storeu_ps(y, a);
        return;
    }
    float tmp[8];
    _mm256_storeu_ps(tmp, a);
    for (int r = 0; r < rows; r++) y[r] = accum ? tmp[r] + y[r] : tmp[r];
}

#define PF_BYTES 1536

/* One panel (blocks [0, nb) at wp), halves h0 .. h0 + H - 1, x NT tokens
 * (q[t * ldq + b]); writes (accum: adds to) y[t * ldy + r] for the panel's
 * rows r < rows. Decode takes both halves (H = 2: one pass over memory);
 * prefill one half at a time (H = 1), which leaves registers for 4-5
 * tokens: the two halves' weight bytes are disjoint, so nothing is decoded
 * twice, only the activation broadcasts are repeated. */
GT_AI void pq_tile(const gt_mm_qkind kind, const int NT, const int H, const uint8_t *wp, int64_t nb,
                   const gt_mm_q8a *q, int64_t ldq, float *y, int64_t ldy, int h0, int rows,
                   int accum) {
    const size_t bb = gt__mmq_block_bytes(kind), qoff = 32 * (size_t)gt__mmq_scales(kind);
    const int half = gt__mmq_half(kind), c2 = kind == GT_MMQ_C2HM;
    /* Chunks summed in int16 before vpmaddwd (see the file comment); the
     * half kinds flush every 4 chunks. */
    const int G = kind == GT_MMQ_B8                                 ? 1
                  : kind == GT_MMQ_N6H                              ? 2
                  : kind == GT_MMQ_N5 || kind == GT_MMQ_N5M || half ? 4
                                                                    : 8;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[5][2];
#pragma GCC unroll 5
    for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = gt__mmq_blk(kind, wp, b), *qs = blk + qoff;
#pragma GCC unroll 9
        for (size_t l = 0; l < bb; l += 64)
            _mm_prefetch((const char *)blk + PF_BYTES + l, _MM_HINT_T0);
        __m256i s[5][2], s16[5][2];
#pragma GCC unroll 5
        for (int t = 0; t < NT; t++)
            s[t][0] = s[t][1] = s16[t][0] = s16[t][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            __m256i w[2], wa[2];
#pragma GCC unroll 2
            for (int hh = 0; hh < H; hh++) {
                w[hh] = wchunk(kind, qs, c, h0 + hh);
                wa[hh] = kind == GT_MMQ_B8 ? _mm256_abs_epi8(w[hh]) : w[hh];
            }
#pragma GCC unroll 5
            for (int t = 0; t < NT; t++) {
                const __m256i xb = _mm256_set1_epi32(ld32(q[t * ldq + b].qs + 4 * c));
#pragma GCC unroll 2
                for (int hh = 0; hh < H; hh++) {
                    if (kind == GT_MMQ_B8) {
                        __m256i p = _mm256_maddubs_epi16(wa[hh], _mm256_sign_epi8(xb, w[hh]));
                        s[t][hh] = _mm256_add_epi32(s[t][hh], _mm256_madd_epi16(p, ones));
                        continue;
                    }
                    __m256i p = _mm256_maddubs_epi16(w[hh], xb);
                    s16[t][hh] = c % G == 0 ? p : _mm256_add_epi16(s16[t][hh], p);
                    if (c % G == G - 1)
                        s[t][hh] = _mm256_add_epi32(s[t][hh], _mm256_madd_epi16(s16[t][hh], ones));
                }
            }
            if (half && (c == 3 || c == 7)) {
                /* A half block is done: scale it by its own d (d0 for k
                 * 0-15, d1 for k 16-31, in that order, as AVX-512 does;
                 * then C2HM's two min terms). */
                const int sec = c == 7;
#pragma GCC unroll 2
                for (int hh = 0; hh < H; hh++) {
                    const __m256 dh = c2 ? c2_scale(wp, b, blk, sec, h0 + hh, 0)
                                         : _mm256_cvtph_ps(_mm_loadu_si128(
                                               (const __m128i *)(blk + 32 * sec + 16 * (h0 + hh))));
#pragma GCC unroll 5
                    for (int t = 0; t < NT; t++) {
                        const gt_mm_q8a *a = q + t * ldq + b;
                        __m256i si = s[t][hh];
                        if (!c2) si = _mm256_add_epi32(si, _mm256_set1_epi32(sec ? a->c1 : a->c0));
                        acc[t][hh] =
                            _mm256_fmadd_ps(_mm256_cvtepi32_ps(si),
                                            _mm256_mul_ps(dh, _mm256_set1_ps(a->d)), acc[t][hh]);
                        s[t][hh] = _mm256_setzero_si256();
                        if (c2 && sec)
#pragma GCC unroll 2
                            for (int mi = 0; mi < 2; mi++) {
                                const __m256 mh = c2_scale(wp, b, blk, mi, h0 + hh, 1);
                                const float ds = a->d * (float)(mi ? a->c1 : a->c0);
                                acc[t][hh] = _mm256_fnmadd_ps(mh, _mm256_set1_ps(ds), acc[t][hh]);
                            }
                    }
                }
            }
        }
        if (half) continue;
#pragma GCC unroll 2
        for (int hh = 0; hh < H; hh++) {
            const __m256 dw =
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16 * (h0 + hh))));
#pragma GCC unroll 5
            for (int t = 0; t < NT; t++) {
                const gt_mm_q8a *a = q + t * ldq + b;
                __m256i si = s[t][hh];
                if (kind != GT_MMQ_B8) si = _mm256_add_epi32(si, _mm256_set1_epi32(a->c0));
                acc[t][hh] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si),
                                             _mm256_mul_ps(dw, _mm256_set1_ps(a->d)), acc[t][hh]);
                if (gt__mmq_min(kind)) {
                    const __m256 m = _mm256_cvtph_ps(
                        _mm_loadu_si128((const __m128i *)(blk + 32 + 16 * (h0 + hh))));
                    acc[t][hh] = _mm256_fmadd_ps(m, _mm256_set1_ps(a->ds), acc[t][hh]);
                }
            }
        }
    }
#pragma GCC unroll 2
    for (int hh = 0; hh < H; hh++) {
        int r = rows - 8 * (h0 + hh);
        if (r <= 0) break;
#pragma GCC unroll 5
        for (int t = 0; t < NT; t++) store8(y + t * ldy + 8 * (h0 + hh), acc[t][hh], r, accum);
    }
}

typedef void (*tile_fn)(int nt, const uint8_t *wp, int64_t nb, const gt_mm_q8a *q, int64_t ldq,
                        float *y, int64_t ldy, int rows, int accum);

/* Decode tiles: both halves, nt = 1..4 tokens. Prefill tiles: the halves
 * one after the other, nt = 1..NT_PF tokens. */
#define NT_PF 5
#define TILE_DEFINE(NAME, KIND)                                                                    \
    static void NAME(int nt, const uint8_t *wp, int64_t nb, const gt_mm_q8a *q, int64_t ldq,       \
                     float *y, int64_t ldy, int rows, int accum) {                                 \
        switch (nt) {                                                                              \
        case 1:                                                                                    \
            pq_tile(KIND, 1, 2, wp, nb, q, ldq, y, ldy, 0, rows, accum);                           \
            break;                                                                                 \
        case 2:                                                                                    \
            pq_tile(KIND, 2, 2, wp, nb, q, ldq, y, ldy, 0, rows, accum);                           \
            break;                                                                                 \
        case 3:                                                                                    \
            pq_tile(KIND, 3, 2, wp, nb, q, ldq, y, ldy, 0, rows, accum);                           \
            break;                                                                                 \
        default:                                                                                   \
            pq_tile(KIND, 4, 2, wp, nb, q, ldq, y, ldy, 0, rows, accum);                           \
            break;                                                                                 \
        }                                                                                          \
    }                                                                                              \
    static void NAME##_pf(int nt, const uint8_t *wp, int64_t nb, const gt_mm_q8a *q, int64_t ldq,  \
                          float *y, int64_t ldy, int rows, int accum) {                            \
        for (int h = 0; h < 2 && 8 * h < rows; h++) switch (nt) {                                  \
            case 1:                                                                                \
                pq_tile(KIND, 1, 1, wp, nb, q, ldq, y, ldy, h, rows, accum);                       \
                break;                                                                             \
            case 2:                                                                                \
                pq_tile(KIND, 2, 1, wp, nb, q, ldq, y, ldy, h, rows, accum);                       \
                break;                                                                             \
            case 3:                                                                                \
                pq_tile(KIND, 3, 1, wp, nb, q, ldq, y, ldy, h, rows, accum);                       \
                break;                                                                             \
            case 4:                                                                                \
                pq_tile(KIND, 4, 1, wp, nb, q, ldq, y, ldy, h, rows, accum);                       \
                break;                                                                             \
            default:                                                                               \
                pq_tile(KIND, NT_PF, 1, wp, nb, q, ldq, y, ldy, h, rows, accum);                   \
                break;                                                                             \
            }                                                                                      \
    }
TILE_DEFINE(tile_b8, GT_MMQ_B8)
TILE_DEFINE(tile_n4, GT_MMQ_N4)
TILE_DEFINE(tile_n4m, GT_MMQ_N4M)
TILE_DEFINE(tile_n5, GT_MMQ_N5)
TILE_DEFINE(tile_n6h, GT_MMQ_N6H)
TILE_DEFINE(tile_n5m, GT_MMQ_N5M)
TILE_DEFINE(tile_c3h, GT_MMQ_C3H)
TILE_DEFINE(tile_c2hm, GT_MMQ_C2HM)

/* Tokens per prefill chunk: its activations (48 B per 32 k) stay in L2
 * (about 512 KiB of them), 16 to 256 tokens. */
#define CHUNK_BYTES (512 * 1024)
#define KB          16 /* blocks per prefill k slice (as the AVX-512 driver: same sums) */
/* Loop order: token chunk -> panel -> k slice -> token tile, so a panel's
 * k slice (16 blocks, <= 8.7 KiB) sits in L1 while the chunk's tokens pass. */
void gt__mm_pq_avx2(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out,
                    const gt_mm_q8a *q, float *y, int64_t n_tok, int64_t p0, int64_t p1) {
    const int dec = n_tok <= 4;
    tile_fn tile = kind == GT_MMQ_B8     ? (dec ? tile_b8 : tile_b8_pf)
                   : kind == GT_MMQ_N4   ? (dec ? tile_n4 : tile_n4_pf)
                   : kind == GT_MMQ_N4M  ? (dec ? tile_n4m : tile_n4m_pf)
                   : kind == GT_MMQ_N5   ? (dec ? tile_n5 : tile_n5_pf)
                   : kind == GT_MMQ_N5M  ? (dec ? tile_n5m : tile_n5m_pf)
                   : kind == GT_MMQ_C3H  ? (dec ? tile_c3h : tile_c3h_pf)
                   : kind == GT_MMQ_C2HM ? (dec ? tile_c2hm : tile_c2hm_pf)
                                         : (dec ? tile_n6h : tile_n6h_pf);
    const int ntm = dec ? 4 : NT_PF;
    int64_t nb = n_in / 32;
    if (nb <= 0) return;
    size_t bb = gt__mm_qblock_bytes(kind), panel_bytes = (size_t)nb * bb;
    int64_t chunk = CHUNK_BYTES / (nb * (int64_t)sizeof(gt_mm_q8a)) / ntm * ntm;
    chunk = chunk < 4 * ntm ? 4 * ntm : chunk > 255 ? 255 : chunk;
    /* 16-block k slices for decode too: a row sums in the same order
     * whatever the token count (batch invariance). */
    const int64_t kb = KB;
    for (int64_t tc = 0; tc < n_tok; tc += chunk) {
        int64_t tc1 = tc + chunk < n_tok ? tc + chunk : n_tok;
        for (int64_t p = p0; p < p1; p++) {
            int64_t rows = n_out - p * 16;
            if (rows <= 0) break;
            const uint8_t *pw = (const uint8_t *)wp + (size_t)p * panel_bytes;
            for (int64_t b0 = 0; b0 < nb; b0 += kb) {
                int64_t bn = nb - b0 < kb ? nb - b0 : kb;
                for (int64_t t = tc; t < tc1; t += ntm) {
                    int nt = (int)(tc1 - t < ntm ? tc1 - t : ntm);
                    tile(nt, pw + (size_t)b0 * bb, bn, q + t * nb + b0, nb, y + t * n_out + p * 16,
                         n_out, rows > 16 ? 16 : (int)rows, b0 > 0);
                }
            }
        }
    }
}
