/* Small helpers shared by the AVX-512 quantized-panel files: unaligned loads
 * of the packed codes and bit planes, and the prefetch distance of the
 * weight streams. Only for files compiled with AVX-512 enabled. */
#ifndef GT_MATMUL_AVX512_UTIL_H
#define GT_MATMUL_AVX512_UTIL_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define GT_AI static inline __attribute__((always_inline))

/* Bytes ahead of the current block that the prefill tiles prefetch (L1). */
#define PF_BYTES 1536

/* Decode weight streams are prefetched into L2 only, this far ahead of the
 * block being read: on Zen 4 at one thread a prefetch into L1 (the earlier
 * 1536-2048 bytes) took the fill buffers the hardware prefetcher needs, and
 * none at all left the stream to restart at every panel. Q4_0 does the most
 * work per byte and does best a little closer (docs/benchmarks.md). */
#define PF_DECODE    2048
#define PF_DECODE_Q4 1536

/* Prefetches into L2 the `bytes` of a weight stream that lie `dist` ahead of
 * p. `left` is what remains of p's panel; a distance that passes it lands
 * `skip` bytes further on, in the panel this stream reads next when NP
 * panels are walked side by side ((NP - 1) panels on), not in the
 * neighbouring panel that another stream reads now. */
GT_AI void pf_weights(const void *p, size_t bytes, size_t left, size_t skip, size_t dist) {
    const char *f = (const char *)p + dist + (dist >= left ? skip : 0);
    for (size_t l = 0; l < bytes; l += 64) _mm_prefetch(f + l, _MM_HINT_T1);
}

static inline int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __mmask64 ld_mask(const void *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return (__mmask64)v;
}

#endif
