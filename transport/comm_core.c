/* What every transport backend shares below comm.c: element sizes, the
 * group's reduction scratch and its allocator. Kept apart from comm.c so
 * that the backends never call back up into the file that dispatches to
 * them (see internal.h for the order of the files). */
#include "common/alloc.h"
#include "transport/internal.h"

size_t gt__dtype_bytes(gt_dtype dt) {
    switch (dt) {
    case GT_F32:
    case GT_I32:
        return 4;
    case GT_F16:
    case GT_BF16:
        return 2;
    default:
        return 0;
    }
}

static void *host_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    return gt_alloc(bytes);
}

static void host_free(void *ctx, void *p) {
    (void)ctx;
    gt_free(p);
}

gt_comm_allocator gt__comm_host_allocator(void) {
    return (gt_comm_allocator){host_alloc, host_free, NULL};
}

void *gt__comm_scratch(gt_comm *c, size_t bytes) {
    if (bytes <= c->scratch_bytes) return c->scratch;
    void *p = c->alloc.alloc(c->alloc.ctx, bytes);
    if (!p) {
        gt_fail(GT_ERR_NOMEM, "group '%s': cannot allocate %zu bytes of reduction scratch", c->name,
                bytes);
        return NULL;
    }
    gt__comm_scratch_release(c);
    c->scratch = p;
    c->scratch_bytes = bytes;
    return p;
}

void gt__comm_scratch_release(gt_comm *c) {
    if (c->scratch) c->alloc.free(c->alloc.ctx, c->scratch);
    c->scratch = NULL;
    c->scratch_bytes = 0;
}
