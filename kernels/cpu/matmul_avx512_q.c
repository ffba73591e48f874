/* AVX-512 VNNI products of quant panels with Q8 activations.
 *
 * The decode tile: 16 output rows (one zmm) x NT tokens (NT = 1, 2, 3, 4,
 * 6, 8, 16, a compile-time constant per instantiation); prefill (n_tok > 4)
 * of every kind but N6H goes to the two-panel tile of matmul_avx512_q2.c,
 * which needs half the activation broadcasts. Per 32-k
 * block and token: the int32 dot of the u8 weight codes with the s8
 * activation (8 vpdpbusd, started from the activation's integer offset
 * correction), converted once and FMA'd with d_w * d_x into an fp32
 * accumulator; for min types one more FMA with m_w * d_x*sum(x). Decode
 * (NT <= 2) splits each block into two independent vpdpbusd chains so that
 * latency does not bound a memory-bound loop; a software prefetch runs a few
 * blocks ahead on the panel stream. The wider codes (N5, N6H) are nibbles
 * plus bit planes, restored with one masked byte add per plane and chunk,
 * so decode reads no more than the GGUF bytes (+ f16 scales). N6H prefill
 * walks tokens in chunks so the quantized activations of a chunk stay in L2
 * while panels stream by. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/matmul_avx512_util.h"
#include "kernels/cpu/matmul_internal.h"


/* ---- activation quantization ---- */

void gt__mm_quantize_avx512(gt_mm_qkind kind, const float *x, int64_t n_in, int64_t t0,
                            int64_t t1, int64_t b0, int64_t b1, gt_mm_q8a *q) {
    int64_t nb = n_in / 32;
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t t = t0; t < t1; t++)
        for (int64_t b = b0; b < b1; b++) {
            const float *xs = x + t * n_in + 32 * b; /* [32] */
            gt_mm_q8a *o = q + t * nb + b;
            __m512 v0 = _mm512_loadu_ps(xs), v1 = _mm512_loadu_ps(xs + 16);
            __m512 a = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
            float amax = _mm512_reduce_max_ps(a);
            float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
            __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
            __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
            _mm_storeu_si128((__m128i *)o->qs, _mm512_cvtepi32_epi8(i0));
            _mm_storeu_si128((__m128i *)(o->qs + 16), _mm512_cvtepi32_epi8(i1));
            int32_t s0 = _mm512_reduce_add_epi32(i0), s1 = _mm512_reduce_add_epi32(i1);
            o->d = d;
            o->ds = d * (float)(s0 + s1);
            gt__mm_q8a_corrections(kind, s0, s1, o);
        }
}

/* ---- tile kernel ---- */

GT_AI void pq_tile(const gt_mm_qkind kind, const int NT, const uint8_t *wp, int64_t nb,
                   const gt_mm_q8a *q, int64_t ldq, float *y, int64_t ldy, __mmask16 mask,
                   int accum) {
    const size_t bb = gt__mmq_block_bytes(kind), qoff = 32 * (size_t)gt__mmq_scales(kind);
    const int half = gt__mmq_half(kind), c2 = kind == GT_MMQ_C2HM;
    __m512 acc[16];
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = gt__mmq_blk(kind, wp, b);
        /* one panel: its stream runs on into the next */
        pf_weights(blk, bb, SIZE_MAX, 0, kind == GT_MMQ_B8 ? PF_DECODE : PF_DECODE_PACKED);
        /* d (d0), then m or d1; C2HM: d*sc and dmin*m of each half from the
         * super block's d, dmin and the block's 4-bit scale|min bytes (exact
         * products in fp32) */
        __m512 dw, d1 = _mm512_setzero_ps(), m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
        if (c2) {
            const uint8_t *sup = gt__mmq_c2_super(wp, b);
            const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)sup)),
                         dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sup + 32)));
            const __m512i sm0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)blk)),
                          sm1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 16))),
                          lo4 = _mm512_set1_epi32(15);
            dw = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(sm0, lo4)));
            d1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_and_si512(sm1, lo4)));
            m0 = _mm512_mul_ps(dm, _mm512_cvtepi32_ps(_mm512_srli_epi32(sm0, 4)));
            m1 = _mm512_mul_ps(dm, _mm512_cvtepi32_ps(_mm512_srli_epi32(sm1, 4)));
        } else {
            dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk));
            if (gt__mmq_scales(kind) >= 2)
                d1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 32)));
        }
        __m512i w[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) w[c] = gt__mmq_chunk_avx512(kind, blk + qoff, c);
#pragma GCC unroll 16
        for (int t = 0; t < NT; t++) {
            const gt_mm_q8a *a = q + t * ldq + b;
            if (NT <= 4) pf_act(a);
            __m512 dx = _mm512_set1_ps(a->d);
            if (half || NT <= 4) {
                __m512i s0 = c2 ? _mm512_setzero_si512() : _mm512_set1_epi32(a->c0),
                        s1 = c2 ? _mm512_setzero_si512() : _mm512_set1_epi32(a->c1);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    s0 = _mm512_dpbusd_epi32(s0, w[c], _mm512_set1_epi32(ld32(a->qs + 4 * c)));
                    s1 = _mm512_dpbusd_epi32(s1, w[c + 4], _mm512_set1_epi32(ld32(a->qs + 16 + 4 * c)));
                }
                if (half) {
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(dw, dx), acc[t]);
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(d1, dx), acc[t]);
                    if (c2) { /* value d*sc*q - dmin*m */
                        acc[t] = _mm512_fnmadd_ps(m0, _mm512_set1_ps(a->d * (float)a->c0), acc[t]);
                        acc[t] = _mm512_fnmadd_ps(m1, _mm512_set1_ps(a->d * (float)a->c1), acc[t]);
                    }
                } else {
                    __m512i s = _mm512_add_epi32(s0, s1);
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc[t]);
                }
            } else {
                __m512i s = _mm512_set1_epi32(a->c0);
#pragma GCC unroll 8
                for (int c = 0; c < 8; c++)
                    s = _mm512_dpbusd_epi32(s, w[c], _mm512_set1_epi32(ld32(a->qs + 4 * c)));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc[t]);
            }
            if (gt__mmq_min(kind) && !half)
                acc[t] = _mm512_fmadd_ps(d1, _mm512_set1_ps(a->ds), acc[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < NT; t++) {
        if (accum) acc[t] = _mm512_add_ps(acc[t], _mm512_maskz_loadu_ps(mask, y + t * ldy));
        _mm512_mask_storeu_ps(y + t * ldy, mask, acc[t]);
    }
}

/* Tiles of 16, 8, 4, 3, 2 and 1 tokens cover any count (the half kinds: 6
 * at most, their two chains per token need more registers). */
#define PQ_SWITCH(KIND)                                                                            \
    while (nt > 0) {                                                                               \
        int n = nt >= 16 && !gt__mmq_half(KIND)  ? 16                                              \
                : nt >= 8 && !gt__mmq_half(KIND) ? 8                                               \
                : nt >= 6 && gt__mmq_half(KIND)  ? 6                                               \
                : nt >= 4                        ? 4                                               \
                                                 : nt;                                                                    \
        switch (n) {                                                                               \
        case 16:                                                                                   \
            pq_tile(KIND, 16, wp, nb, q, ldq, y, ldy, mask, accum);                                \
            break;                                                                                 \
        case 8:                                                                                    \
            pq_tile(KIND, 8, wp, nb, q, ldq, y, ldy, mask, accum);                                 \
            break;                                                                                 \
        case 6:                                                                                    \
            pq_tile(KIND, 6, wp, nb, q, ldq, y, ldy, mask, accum);                                 \
            break;                                                                                 \
        case 4:                                                                                    \
            pq_tile(KIND, 4, wp, nb, q, ldq, y, ldy, mask, accum);                                 \
            break;                                                                                 \
        case 3:                                                                                    \
            pq_tile(KIND, 3, wp, nb, q, ldq, y, ldy, mask, accum);                                 \
            break;                                                                                 \
        case 2:                                                                                    \
            pq_tile(KIND, 2, wp, nb, q, ldq, y, ldy, mask, accum);                                 \
            break;                                                                                 \
        default:                                                                                   \
            pq_tile(KIND, 1, wp, nb, q, ldq, y, ldy, mask, accum);                                 \
            break;                                                                                 \
        }                                                                                          \
        nt -= n;                                                                                   \
        q += n * ldq;                                                                              \
        y += n * ldy;                                                                              \
    }

#define PQ_TILE_DEFINE(NAME, KIND)                                                                 \
    static void NAME(int nt, const uint8_t *wp, int64_t nb, const gt_mm_q8a *q, int64_t ldq,       \
                     float *y, int64_t ldy, __mmask16 mask, int accum) {                           \
        PQ_SWITCH(KIND)                                                                            \
    }
PQ_TILE_DEFINE(tile_b8, GT_MMQ_B8)
PQ_TILE_DEFINE(tile_n4, GT_MMQ_N4)
PQ_TILE_DEFINE(tile_n4m, GT_MMQ_N4M)
PQ_TILE_DEFINE(tile_n5, GT_MMQ_N5)
PQ_TILE_DEFINE(tile_n6h, GT_MMQ_N6H)
PQ_TILE_DEFINE(tile_n5m, GT_MMQ_N5M)
PQ_TILE_DEFINE(tile_c3h, GT_MMQ_C3H)
PQ_TILE_DEFINE(tile_c2hm, GT_MMQ_C2HM)

/* Tokens per prefill chunk: its activations (48 B per 32 k) stay in L2
 * (about 512 KiB of them), 16 to 256 tokens. */
#define CHUNK_BYTES (512 * 1024)
#define KB 16 /* blocks per prefill k slice */
#define NT_MAX 8

void gt__mm_pq_avx512(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out,
                      const gt_mm_q8a *q, float *y, int64_t n_tok, int64_t p0, int64_t p1) {
    void (*tile)(int, const uint8_t *, int64_t, const gt_mm_q8a *, int64_t, float *, int64_t,
                 __mmask16, int) = kind == GT_MMQ_B8     ? tile_b8
                                   : kind == GT_MMQ_N4   ? tile_n4
                                   : kind == GT_MMQ_N4M  ? tile_n4m
                                   : kind == GT_MMQ_N5   ? tile_n5
                                   : kind == GT_MMQ_N5M  ? tile_n5m
                                   : kind == GT_MMQ_C3H  ? tile_c3h
                                   : kind == GT_MMQ_C2HM ? tile_c2hm
                                                         : tile_n6h;
    if (n_tok <= 4 && (kind == GT_MMQ_N4 || kind == GT_MMQ_N4M)) { /* matmul_avx512_q4dec.c */
        gt__mm_n4_decode_avx512(kind, wp, n_in, n_out, q, y, n_tok, p0, p1);
        return;
    }
    if (n_tok > 4 && gt__mm_pq2_kind(kind)) {
        gt__mm_pq2_avx512(kind, wp, n_in, n_out, q, y, n_tok, p0, p1);
        return;
    }
    int64_t nb = n_in / 32;
    size_t bb = gt__mm_qblock_bytes(kind), panel_bytes = (size_t)nb * bb;
    int64_t chunk = CHUNK_BYTES / (nb * (int64_t)sizeof(gt_mm_q8a)) / NT_MAX * NT_MAX;
    chunk = chunk < NT_MAX ? NT_MAX : chunk > 256 ? 256 : chunk;
    for (int64_t tc = 0; tc < n_tok; tc += chunk) {
        int64_t tc1 = tc + chunk < n_tok ? tc + chunk : n_tok;
        for (int64_t p = p0; p < p1; p++) {
            int64_t rows = n_out - p * 16;
            if (rows <= 0) break;
            __mmask16 mask = rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rows) - 1);
            const uint8_t *pw = (const uint8_t *)wp + (size_t)p * panel_bytes;
            /* k slices of KB blocks, each summed on its own and then added
             * to y in order, for decode as for prefill (and as the panel-pair
             * GEMM does): a row's sum does not depend on the token count.
             * For prefill the slice also stays in L1 across the chunk's
             * token tiles. */
            for (int64_t b0 = 0; b0 < nb; b0 += KB) {
                int64_t bn = nb - b0 < KB ? nb - b0 : KB;
                for (int64_t t = tc; t < tc1; t += NT_MAX) {
                    int nt = (int)(tc1 - t < NT_MAX ? tc1 - t : NT_MAX);
                    tile(nt, pw + (size_t)b0 * bb, bn, q + t * nb + b0, nb, y + t * n_out + p * 16,
                         n_out, mask, b0 > 0);
                }
            }
        }
    }
}
