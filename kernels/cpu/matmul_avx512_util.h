/* Small helpers shared by the AVX-512 quantized-panel files: unaligned loads
 * of the packed codes and bit planes, and the prefetch distance of the
 * weight streams. Only for files compiled with AVX-512 enabled. */
#ifndef GT_MATMUL_AVX512_UTIL_H
#define GT_MATMUL_AVX512_UTIL_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define GT_AI static inline __attribute__((always_inline))

/* Bytes ahead of the current block that the quantized kernels prefetch. */
#define PF_BYTES 1536

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
