/* Small helpers shared by the AVX-512 quantized-panel files: unaligned
 * loads, a block's code chunks with their bit planes, and the prefetch
 * distance of the weight streams. Only for files compiled with AVX-512
 * enabled. */
#ifndef GT_MATMUL_AVX512_UTIL_H
#define GT_MATMUL_AVX512_UTIL_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/matmul_internal.h"

#define GT_AI static inline __attribute__((always_inline))

/* Panel p's rows that exist, of n_out rows in all. */
GT_AI __mmask16 rows_mask(int64_t n_out, int64_t p) {
    int64_t rows = n_out - p * 16;
    if (rows <= 0) return 0;
    return rows >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rows) - 1);
}

/* The float GEMMs keep a panel group's running sums over the k blocks in
 * ys[panel - g0][token][16] (a token's 16 rows one line, the group in L2)
 * instead of in y: y's rows are n_out floats apart, a multiple of 4 KiB in
 * most models, so the lines of a token tile all fall into one L1 set, and
 * adding each k block's sums into y itself cost 15% of the products
 * (docs/benchmarks.md). The sums are added in the same order either way.
 * The cost: each group packs its k blocks' activations again (1-3% of the
 * products at these group sizes; the measured gains are net of it).
 * group_end: the group from g0 of at most pg panels, within p1 and the
 * panels that have rows. store_group: its sums for tokens [0, tn) (each
 * panel's rows `per_panel` tokens long, the chunk capacity) into
 * y[t][n_out]. */
GT_AI int64_t group_end(int64_t g0, int64_t pg, int64_t p1, int64_t n_out) {
    int64_t g1 = g0 + pg < p1 ? g0 + pg : p1;
    while (g1 > g0 && !rows_mask(n_out, g1 - 1)) g1--;
    return g1;
}
GT_AI void store_group(const float *ys, int64_t per_panel, int64_t g0, int64_t g1, int64_t n_out,
                       float *y, int64_t tn) {
    for (int64_t p = g0; p < g1; p++) {
        const __mmask16 m = rows_mask(n_out, p);
        const float *yp = ys + (p - g0) * per_panel * 16;
        for (int64_t t = 0; t < tn; t++)
            _mm512_mask_storeu_ps(y + t * n_out + p * 16, m, _mm512_load_ps(yp + t * 16));
    }
}

/* Bytes ahead of the current block that the prefill tiles prefetch (L1). */
#define PF_BYTES 1536

/* Decode weight streams are prefetched into L2 only, this far ahead of the
 * block being read: on Zen 4 at one thread a prefetch into L1 (the earlier
 * 1536-2048 bytes) took the fill buffers the hardware prefetcher needs, and
 * none at all left the stream to restart at every panel. Q4_0 does the most
 * work per byte and does best a little closer (docs/benchmarks.md). */
#define PF_DECODE    2048
#define PF_DECODE_Q4 1536
/* The bf16 pair panels' GEMV (F16/BF16 weights, four panels side by side):
 * measured in one process, alternating (1 thread, 512 MiB of copies),
 * 1024 against 2048: 2048x8192 +3-10%, 8192x2048 +3-10%, 2 threads +2-7%;
 * 1536 about the same as 1024, 512 and 3072 or more worse. */
#define PF_DECODE_PB 1024
/* The generic tile's kinds with packed codes (nibbles, crumbs, bit planes:
 * Q4_1, Q4_K, Q5_x, Q2_K, Q3_K, Q6_K) stalled on the first load of each
 * block at 2048 bytes; 8192 took them from 42-53% to 64-83% of the read
 * bandwidth at one thread (bench_matmul), while Q8_0's bytes lost at that
 * distance (84-101% -> 63-71%) and keep PF_DECODE. */
#define PF_DECODE_PACKED 8192

/* Prefetches into L2 the `bytes` of a weight stream that lie `dist` ahead of
 * p. `left` is what remains of p's panel; a distance that passes it lands
 * `skip` bytes further on, in the panel this stream reads next when NP
 * panels are walked side by side ((NP - 1) panels on), not in the
 * neighbouring panel that another stream reads now. */
GT_AI void pf_weights(const void *p, size_t bytes, size_t left, size_t skip, size_t dist) {
    /* Every line the span touches: a span that starts inside a line ends
     * in one more (Q2_K's 160-byte blocks, and the 64-byte head of each
     * super block, did: without it 1 line in 21 reached the tile cold, and
     * its GEMV read 10 GB/s instead of 17). */
    const uintptr_t f = (uintptr_t)p + dist + (dist >= left ? skip : 0);
    for (uintptr_t l = f & ~(uintptr_t)63; l < f + bytes; l += 64)
        _mm_prefetch((const char *)l, _MM_HINT_T1);
}

/* Decode's quantized activations: the block PF_ACT ahead of a, into L1.
 * A row's activations (48 B per 32 k: 12 KiB at n_in 8192) are read once
 * per panel, and the weights streaming through L1 in between evict them,
 * so without this each block's first broadcast waits on L2. Measured in
 * one process, alternating with and without (1 thread, 512 MiB of
 * copies): Q4_0 8192x2048 +9%, Q8_0 +4%, the 2048-long rows +0-1%;
 * 6 or 8 blocks ahead gained nothing. */
#define PF_ACT 4
GT_AI void pf_act(const gt_mm_q8a *a) { _mm_prefetch((const char *)(a + PF_ACT), _MM_HINT_T0); }

static inline int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Chunk c (k 4c..4c+3 of 16 rows) of a quant panel block's codes, whose qs
 * section starts at qs, as unsigned bytes: loaded (8-bit), split from
 * nibbles or crumbs, plus bit 4 (crumbs: bit 2) and N6H's bit 5 from the
 * planes, where byte i's bit c is chunk c's (a shift and one vpternlogd per
 * plane; no mask registers). KIND is a compile-time constant. */
GT_AI __m512i gt__mmq_chunk_avx512(const int kind, const uint8_t *qs, const int c) {
    const int bits = gt__mmq_bits((gt_mm_qkind)kind), regs = bits == 8 ? 8 : bits;
    __m512i r = _mm512_loadu_si512(qs + 64 * (c % regs));
    if (bits == 8) return r;
    if (c >= regs) r = _mm512_srli_epi16(r, bits * (c / regs));
    r = _mm512_and_si512(r, _mm512_set1_epi8((char)((1 << bits) - 1)));
#pragma GCC unroll 2
    for (int pl = 0; pl < gt__mmq_planes((gt_mm_qkind)kind); pl++) {
        const int T = bits + pl;
        const __m512i p = _mm512_loadu_si512(qs + 64 * bits + 64 * pl);
        const __m512i sh = c <= T ? _mm512_slli_epi16(p, (unsigned)(T - c))
                                  : _mm512_srli_epi16(p, (unsigned)(c - T));
        r = _mm512_ternarylogic_epi32(r, sh, _mm512_set1_epi8((char)(1 << T)),
                                      0xF8); /* r | (sh & bit) */
    }
    return r;
}

#endif
