/* Aligned allocation on top of posix_memalign. Large blocks (packed
 * weights, the KV cache, the bandwidth test's buffer) are 2 MiB aligned and
 * asked to live on transparent huge pages: a decode step streams every
 * weight once, and with 4 KiB pages that is a TLB miss every 4 KiB of the
 * stream. */
#include "common/alloc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_MIN   ((size_t)4 << 20) /* blocks from this size on */
#define HUGE_ALIGN ((size_t)2 << 20) /* x86-64's huge page */

void *gt_alloc(size_t bytes) {
    if (bytes == 0) return NULL;
    const size_t align = bytes >= HUGE_MIN ? HUGE_ALIGN : GT_ALIGN, len = gt_align_up(bytes, align);
    void *p = NULL;
    if (posix_memalign(&p, align, len) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    /* Advice only: where THP is off, or the call fails, the pages are small. */
    if (align == HUGE_ALIGN) (void)madvise(p, len, MADV_HUGEPAGE);
#endif
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
