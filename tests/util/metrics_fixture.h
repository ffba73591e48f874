/* A gt_metrics_snapshot with known numbers, shared by tests/unit/test_metrics.c
 * and tests/util/metrics_dump.c (whose text tests/e2e/test_metrics_text.py
 * parses); the tests write the expected values out independently. */
#ifndef GT_METRICS_FIXTURE_H
#define GT_METRICS_FIXTURE_H

#include "coordinator/metrics.h"

static const double k_fix_bounds[3] = {0.005, 0.1, 2.5};
static const uint64_t k_fix_queue[4] = {3, 1, 0, 1};   /* count 5 */
static const uint64_t k_fix_ttft[4] = {0, 2, 2, 0};    /* count 4 */
static const uint64_t k_fix_itl[4] = {40, 7, 0, 0};    /* count 47 */
static const uint64_t k_fix_e2e[4] = {0, 0, 3, 1};     /* count 4 */
static const gt_metrics_rank k_fix_ranks[2] = {{12.5, 0.75, 1048576, 0}, {12.25, 1.5, 2048, 1024}};

static inline gt_metrics_snapshot gt_metrics_fixture(bool experts, int n_ranks) {
    gt_metrics_snapshot s = {
        .submitted = 7, .refused = 2, .preempted = 1,
        .finished = {3, 1, 1, 0},
        .prompt_tokens = 200, .generated_tokens = 51, .cached_tokens = 50,
        .queue = {k_fix_bounds, k_fix_queue, 3, 5, 3.25},
        .ttft = {k_fix_bounds, k_fix_ttft, 3, 4, 1.5},
        .itl = {k_fix_bounds, k_fix_itl, 3, 47, 0.25},
        .e2e = {k_fix_bounds, k_fix_e2e, 3, 4, 9.0},
        .waiting = 1, .running = 2,
        .kv_total_blocks = 64, .kv_used_blocks = 10, .kv_free_blocks = 50, .kv_cached_blocks = 4,
        .kv_host_blocks = 3, .kv_block_size = 16, .kv_to_host_bytes = 4096, .kv_from_host_bytes = 2048,
        .has_experts = experts, .expert_slots = 4, .expert_hits = 90, .expert_misses = 10,
        .expert_evictions = 6, .expert_bytes_copied = 123456789, .expert_prefetched = 8,
        .expert_prefetch_useful = 5, .expert_wait_s = 0.125,
        .n_ranks = n_ranks, .ranks = k_fix_ranks,
    };
    return s;
}

#endif
