/* The rows of every expert in one counting pass over the router's choices
 * (gt__moe_bucket, engine_internal.h), shared by the one-rank MoE layer
 * (moe.c) and expert parallelism's dispatch (moe_ep.c). */
#include <assert.h>

#include "worker/engine_internal.h"

void gt__moe_bucket(const int32_t *ids, int n, int K, int E, int32_t *start, int32_t *rows, int32_t *pos) {
    for (int ex = 0; ex <= E; ex++) start[ex] = 0;
    for (int i = 0; i < n * K; i++) {
        assert(ids[i] >= 0 && ids[i] < E); /* gt_router_topk's contract */
        start[ids[i] + 1]++;
    }
    for (int ex = 0; ex < E; ex++) start[ex + 1] += start[ex];
    /* start[ex] is now ex's first row; it walks to ex's end as rows land,
     * and is put back by one shift at the end. */
    for (int t = 0; t < n; t++)
        for (int j = 0; j < K; j++) {
            const int i = t * K + j, at = start[ids[i]]++;
            rows[at] = t;
            pos[i] = at;
        }
    for (int ex = E; ex > 0; ex--) start[ex] = start[ex - 1];
    start[0] = 0;
}
