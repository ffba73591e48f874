/* Private to parallel/: the expert-offload part of the memory planner
 * (plan_experts.c), called by plan.c. */
#ifndef GT_PLAN_EXPERTS_H
#define GT_PLAN_EXPERTS_H

#include "parallel/plan.h"

/* s->n_expert, s->n_expert_used and s->expert_slot_bytes for shard s. */
gt_status gt__plan_expert_slots(const gt_gguf *g, const gt_hparams *hp, const struct gt_kernels *k,
                                gt_shard *s);
/* Given s's weights, KV pool and activations: expert_slots, expert_pool_bytes,
 * device_min_bytes and (when experts are offloaded) total_bytes. */
void gt__plan_fill_experts(const gt_plan_config *cfg, gt_shard *s);

#endif
