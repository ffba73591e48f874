/* Aligned allocation and overflow-checked size arithmetic.
 *
 * All tensors and scratch buffers are 64-byte aligned (one cache line, one
 * AVX-512 register). Sizes coming from files or the network go through
 * gt_size_mul/gt_size_add before anything is allocated. */
#ifndef GT_ALLOC_H
#define GT_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GT_ALIGN 64

/* Returns NULL on failure or when bytes is 0. Free with gt_free. */
void *gt_alloc(size_t bytes);
/* Zero-filled gt_alloc. */
void *gt_calloc(size_t n, size_t elem_bytes);
void gt_free(void *p);

/* false when the result overflows size_t. */
static inline bool gt_size_mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool gt_size_add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline size_t gt_align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

#endif
