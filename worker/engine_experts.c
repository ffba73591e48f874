/* The engine's side of expert offload: creating the expert cache its shard
 * plans for, the routing counts behind --expert-stats-out, and the counters
 * logged when the engine ends. */
#include <stdlib.h>

#include "common/bytes.h"
#include "common/log.h"
#include "worker/engine_internal.h"

gt_status gt__engine_experts_init(gt_engine *e) {
    const gt_hparams *hp = &e->hp;
    if (!hp->n_expert || e->w.n_layer < 1) return GT_OK;
    size_t n = (size_t)e->w.n_layer * hp->n_expert;
    e->expert_counts = calloc(n, sizeof *e->expert_counts);
    if (!e->expert_counts) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu expert counters", n);
    if (e->shard.expert_slots <= 0) return GT_OK;
    uint64_t *heat = NULL;
    if (e->cfg.expert_stats_path) {
        heat = calloc(n, sizeof *heat);
        if (!heat) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu expert counters", n);
        gt_status st = gt_expert_stats_read(e->cfg.expert_stats_path, e->w.layer0, e->w.n_layer,
                                            (int)hp->n_expert, heat);
        if (st != GT_OK) {
            free(heat);
            return st;
        }
    }
    gt_status st = gt_expert_cache_create(e->k, e->g, hp, &e->shard, &e->w, heat, &e->xc);
    free(heat);
    if (st != GT_OK) return st;
    char b[32];
    GT_LOG_INFO(GT_SUB_WORKER, "expert offload: %d of %d experts per layer on the device (%s pool), the "
                "rest in host memory%s; predicted prefetch %s", e->shard.expert_slots, e->shard.n_expert,
                gt_format_bytes(gt_expert_cache_pool_bytes(e->xc), b, sizeof b),
                e->cfg.expert_stats_path ? ", hottest first" : "", e->cfg.no_expert_prefetch ? "off" : "on");
    return GT_OK;
}

void gt__moe_count_routes(gt_engine *e, int il, const int32_t *ids, int n_pairs) {
    if (!e->expert_counts) return;
    uint64_t *c = e->expert_counts + (size_t)il * e->hp.n_expert;
    for (int i = 0; i < n_pairs; i++) c[ids[i]]++;
}

void gt__engine_experts_free(gt_engine *e) {
    if (e->xc) {
        for (int il = 0; il < e->w.n_layer; il++) {
            gt_expert_cache_stats s = gt_expert_cache_stats_of(e->xc, il);
            GT_LOG_INFO(GT_SUB_WORKER, "expert cache layer %d: %llu hits, %llu misses, %llu evictions, "
                        "%llu bytes copied, %.6f s waiting, %llu prefetched, %llu prefetch useful",
                        e->w.layer0 + il, (unsigned long long)s.hits, (unsigned long long)s.misses,
                        (unsigned long long)s.evictions, (unsigned long long)s.bytes_copied, s.wait_s,
                        (unsigned long long)s.prefetched, (unsigned long long)s.prefetch_useful);
        }
        gt_expert_cache_stats s = gt_expert_cache_stats_of(e->xc, -1);
        GT_LOG_INFO(GT_SUB_WORKER, "expert cache total: %llu hits, %llu misses, %llu evictions, "
                    "%llu bytes copied, %.6f s waiting, %llu prefetched, %llu prefetch useful",
                    (unsigned long long)s.hits, (unsigned long long)s.misses, (unsigned long long)s.evictions,
                    (unsigned long long)s.bytes_copied, s.wait_s, (unsigned long long)s.prefetched,
                    (unsigned long long)s.prefetch_useful);
    }
    gt_expert_cache_destroy(e->xc);
    e->xc = NULL;
    free(e->expert_counts);
    e->expert_counts = NULL;
}

gt_engine_expert_stats gt_engine_experts(const gt_engine *e, int il) {
    gt_expert_cache_stats s = gt_expert_cache_stats_of(e->xc, il);
    return (gt_engine_expert_stats){gt_expert_cache_slots(e->xc), e->w.n_layer, e->w.layer0, s.hits,
                                    s.misses, s.evictions, s.bytes_copied, s.wait_s, s.prefetched,
                                    s.prefetch_useful};
}

const uint64_t *gt_engine_expert_counts(const gt_engine *e, int *layer0, int *n_layer, int *n_expert) {
    *layer0 = e->w.layer0;
    *n_layer = e->w.n_layer;
    *n_expert = (int)e->hp.n_expert;
    return e->expert_counts;
}
