/* A fixed thread pool for data-parallel kernels.
 *
 * gt_pool_run() runs fn(arg, ith, nth) on all nth threads, the caller being
 * thread 0, and returns when every thread has finished: a fork-join barrier.
 * Workers spin briefly on an atomic generation counter before sleeping, so
 * the per-call cost stays around a microsecond in the decode loop, where one
 * token makes a hundred or more calls, without burning cores when idle.
 *
 * One caller at a time: gt_pool_run is not reentrant and not thread-safe. */
#ifndef GT_POOL_H
#define GT_POOL_H

#include "common/status.h"

typedef struct gt_pool gt_pool;
typedef void (*gt_pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 counts the caller. GT_ERR_INVALID_ARG, GT_ERR_NOMEM. */
gt_status gt_pool_create(int n_threads, gt_pool **out);
void gt_pool_destroy(gt_pool *pool); /* accepts NULL */
int gt_pool_size(const gt_pool *pool);
void gt_pool_run(gt_pool *pool, gt_pool_fn fn, void *arg);

/* The [begin, end) share of n items for thread ith of nth, in chunks that are
 * multiples of `align` (except the last). */
static inline void gt_pool_split(long n, long align, int ith, int nth, long *begin, long *end) {
    long chunks = (n + align - 1) / align;
    long per = chunks / nth, extra = chunks % nth;
    long c0 = ith * per + (ith < extra ? ith : extra);
    long c1 = c0 + per + (ith < extra ? 1 : 0);
    *begin = c0 * align < n ? c0 * align : n;
    *end = c1 * align < n ? c1 * align : n;
}

#endif
