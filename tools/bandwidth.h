/* STREAM-style memory read bandwidth, measured with the same threads the
 * engine uses, so that decode speed can be reported as a fraction of the
 * roofline measured in the same run. */
#ifndef GT_BANDWIDTH_H
#define GT_BANDWIDTH_H

#include <stddef.h>

#include "common/pool.h"
#include "common/status.h"

typedef struct gt_bandwidth {
    void *buf;
    size_t bytes;
} gt_bandwidth;

/* Allocates and touches a buffer of `bytes` (make it much larger than the
 * last-level cache). */
gt_status gt_bandwidth_init(gt_bandwidth *bw, size_t bytes);
void gt_bandwidth_free(gt_bandwidth *bw);
/* Reads the whole buffer `passes` times on the pool's threads; returns the
 * best pass in bytes per second. */
double gt_bandwidth_read(gt_bandwidth *bw, gt_pool *pool, int passes);

#endif
