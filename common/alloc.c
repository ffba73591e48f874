/* Aligned allocation on top of posix_memalign. */
#include "common/alloc.h"

#include <stdlib.h>
#include <string.h>

void *gt_alloc(size_t bytes) {
    if (bytes == 0) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, GT_ALIGN, gt_align_up(bytes, GT_ALIGN)) != 0) return NULL;
    return p;
}

void *gt_calloc(size_t n, size_t elem_bytes) {
    size_t bytes;
    if (!gt_size_mul(n, elem_bytes, &bytes)) return NULL;
    void *p = gt_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void gt_free(void *p) { free(p); }
