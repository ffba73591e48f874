/* Routed experts offloaded to host memory, behind a per-layer cache of
 * device slots (the plan's expert pool; parallel/plan_experts.c sizes it).
 *
 * The host copy of every expert is the prepared gt_weight the loader made
 * (worker/weights.c); a slot holds a byte copy of one expert's three
 * prepared matrices in one backend buffer, used through gt_weight_view, so
 * products read the same bytes and give bit-identical results.
 *
 * Per layer and step: the router's choice (gt_expert_cache_route) marks the
 * experts the batch needs and at once starts the copies of the misses of
 * the first wave (at most one wave of slots' worth of experts, in expert
 * order: a decoded token's n_expert_used experts are always one wave);
 * gt_expert_cache_get then hands out each expert in expert order, waiting
 * only for its own copy, so the copies of later experts overlap the
 * products of earlier ones, and starts the next wave when the batch needs
 * more experts than there are slots. Eviction: least recently used, never an
 * expert of the current wave. Hits and misses count each needed expert once
 * per layer and step.
 *
 * Predicted prefetch (gt_expert_cache_prefetch): before attention of layer
 * L, the engine runs L's router on the residual stream as layer L-1 left it
 * and hints the experts it predicts; their copies start at once and
 * overlap attention of L. The route then finds them held (a hit; counted
 * as prefetch_useful too); a wrong prediction costs a copy and may evict
 * an expert that would have hit. */
#ifndef GT_EXPERT_CACHE_H
#define GT_EXPERT_CACHE_H

#include "worker/weights.h"

typedef struct gt_expert_cache gt_expert_cache;

typedef struct gt_expert_cache_stats {
    uint64_t hits, misses, evictions;
    uint64_t bytes_copied; /* host -> device, after the initial fill */
    double wait_s;         /* time the forward pass waited for copies */
    uint64_t prefetched;      /* copies started by a prefetch (predicted misses) */
    uint64_t prefetch_useful; /* of those, experts then routed to: they count as hits */
} gt_expert_cache_stats;

/* A cache of s->expert_slots slots in each local layer of w, laid out by
 * gt_plan_expert_slot and filled with the hottest experts of each layer
 * (heat [w->n_layer, n_expert] counts; NULL: experts 0, 1, ...). */
gt_status gt_expert_cache_create(gt_kernels *k, const gt_gguf *g, const gt_hparams *hp, const gt_shard *s,
                                 const gt_model_weights *w, const uint64_t *heat, gt_expert_cache **out);
void gt_expert_cache_destroy(gt_expert_cache *c); /* waits for copies in flight; accepts NULL */
uint64_t gt_expert_cache_pool_bytes(const gt_expert_cache *c);
int gt_expert_cache_slots(const gt_expert_cache *c);

/* Under --ep the cache holds only this rank's experts; ids are the model's
 * expert numbers either way. */
/* Local layer il routed its batch to ids[n_pairs]: starts the first wave. */
gt_status gt_expert_cache_route(gt_expert_cache *c, int il, const int32_t *ids, int n_pairs);
/* A prediction of local layer il's coming route (gt__moe_prefetch's router
 * on the previous layer's output): starts the copies of the predicted
 * experts that are missing, in expert order, into the least recently used
 * slots, at most one slot each, without pinning them and without evicting
 * an expert the layer's current wave pins or another predicted one; stops
 * when no slot is left. Predicted experts already held are touched. ids
 * may name experts this rank does not own (under --ep); those are skipped.
 * Hits and misses are counted by the route that follows; a predicted
 * expert it routes to counts as a hit and as prefetch_useful. Call it
 * between two steps of the layer (after the last get, before the route). */
gt_status gt_expert_cache_prefetch(gt_expert_cache *c, int il, const int32_t *ids, int n_pairs);
/* The device copy of expert ex of local layer il, once its copy is done.
 * Call in increasing ex for the experts of the last route. */
gt_status gt_expert_cache_get(gt_expert_cache *c, int il, int ex, const gt_expert_weights **out);

/* Counters since creation: of local layer il, or of every layer (il < 0). */
gt_expert_cache_stats gt_expert_cache_stats_of(const gt_expert_cache *c, int il);

/* --expert-stats files: "gantry-expert-stats 1", "experts E", then one line
 * "layer L c0 c1 ... c(E-1)" per layer with the (token, choice) pairs
 * routed to each expert. Reading fills heat [n_layer, n_expert] for layers
 * [layer0, layer0 + n_layer) (zeros for a layer the file lacks). */
gt_status gt_expert_stats_read(const char *path, int layer0, int n_layer, int n_expert, uint64_t *heat);
gt_status gt_expert_stats_write(const char *path, int layer0, int n_layer, int n_expert,
                                const uint64_t *counts);

#endif
