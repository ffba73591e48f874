/* Expert offload in the memory planner.
 *
 * With a device budget (--device-mem), a rank keeps its dense weights, its
 * KV pool and its activations on the device; when the routed experts do
 * not fit beside them, they stay in host memory and the device holds a pool
 * of expert slots: the same number of slots in every local layer, as many
 * as the rest of the budget holds, each the size of one expert's three
 * matrices as the kernels prepare them (so a device copy is the host's
 * prepared bytes, and products with it are bit-identical). The engine fills
 * the slots with the hottest experts first and runs them as an LRU cache
 * (worker/expert_cache.c).
 *
 * The minimum is n_expert_used slots per layer: a decoded token needs that
 * many experts of a layer at once, and with fewer its layer could not start
 * all its copies when the router has chosen (the prefetch) nor, on a GPU,
 * run its experts as one grouped product. A prefill batch that routes to
 * more experts than there are slots runs them in waves of at most that
 * many, in expert order. */
#include "parallel/plan_experts.h"

#include <stdio.h>
#include <string.h>

#include "common/bytes.h"
#include "kernels/kernels.h"

#define SLOT_ALIGN 64

static size_t align_up(size_t n) { return (n + SLOT_ALIGN - 1) & ~(size_t)(SLOT_ALIGN - 1); }

/* Prepared bytes of an [n_in, n_out] matrix of type t. */
static size_t prepared(const struct gt_kernels *k, gt_dtype t, int64_t n_in, int64_t n_out) {
    if (k) return gt_weight_prepared_bytes(k, t, n_in, n_out);
    size_t row;
    if (!gt_dtype_row_bytes(t, n_in, &row)) return 0;
    return row * (size_t)n_out;
}

gt_status gt_plan_expert_slot(const gt_gguf *g, const gt_hparams *hp, const gt_shard *s,
                              const struct gt_kernels *k, int layer, gt_expert_slot *out) {
    memset(out, 0, sizeof *out);
    static const char *const names[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
    int64_t D = hp->n_embd, F = gt_range_len(s->ff_exp);
    /* gate and up: [D] -> [F local]; down: [F local] -> [D]. */
    const int64_t n_in[3] = {D, D, F}, n_out[3] = {F, F, D};
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        char n[96];
        snprintf(n, sizeof n, "blk.%d.%s.weight", layer, names[i]);
        const gt_tensor_info *t = gt_gguf_find_tensor(g, n);
        if (!t) return gt_fail(GT_ERR_NOT_FOUND, "%s: tensor %s is missing", gt_gguf_name(g), n);
        size_t b = prepared(k, t->type, n_in[i], n_out[i]);
        if (!b)
            return gt_fail(GT_ERR_UNSUPPORTED, "%s: tensor %s (%s, [%lld, %lld]) has no matrix product to "
                           "size an expert slot with", gt_gguf_name(g), n, gt_dtype_name(t->type),
                           (long long)n_in[i], (long long)n_out[i]);
        out->off[i] = off;
        out->bytes[i] = b;
        off += align_up(b);
    }
    out->slot_bytes = off;
    return GT_OK;
}

gt_status gt__plan_expert_slots(const gt_gguf *g, const gt_hparams *hp, const struct gt_kernels *k,
                                gt_shard *s) {
    s->n_expert = (int)gt_range_len(s->experts); /* the experts this rank owns (all without --ep) */
    s->n_expert_used = (int)hp->n_expert_used;
    s->expert_slot_bytes = 0;
    /* A rank with no expert columns (an uneven block split) has nothing to offload. */
    if (!hp->n_expert || !gt_range_len(s->ff_exp)) return GT_OK;
    for (int64_t il = s->layers.begin; il < s->layers.end; il++) {
        gt_expert_slot slot;
        GT_TRY(gt_plan_expert_slot(g, hp, s, k, (int)il, &slot));
        s->expert_slot_bytes += slot.slot_bytes;
    }
    return GT_OK;
}

void gt__plan_fill_experts(const gt_plan_config *cfg, gt_shard *s) {
    s->expert_slots = 0;
    s->expert_pool_bytes = 0;
    s->device_min_bytes = 0;
    if (!cfg->device_mem_bytes || !s->expert_bytes || !s->expert_slot_bytes) return;
    uint64_t fixed = s->weight_bytes - s->expert_bytes + s->kv_bytes + s->act_bytes;
    s->device_min_bytes = fixed + (uint64_t)s->n_expert_used * s->expert_slot_bytes;
    if (s->total_bytes <= cfg->device_mem_bytes) return; /* every expert fits: no cache */
    uint64_t slots = cfg->device_mem_bytes > fixed ? (cfg->device_mem_bytes - fixed) / s->expert_slot_bytes : 0;
    if (slots > (uint64_t)s->n_expert) slots = (uint64_t)s->n_expert;
    /* Below the minimum the plan still says how short it is; gt_plan_check_device refuses it. */
    s->expert_slots = (int)slots;
    s->expert_pool_bytes = slots * s->expert_slot_bytes;
    s->total_bytes = fixed + s->expert_pool_bytes;
}

gt_status gt_plan_check_device(const gt_plan *p) {
    uint64_t budget = p->cfg.device_mem_bytes;
    if (!budget) return GT_OK;
    for (int i = 0; i < p->n_ranks; i++) {
        const gt_shard *s = &p->shards[i];
        uint64_t need = s->device_min_bytes ? s->device_min_bytes : s->total_bytes;
        if (need <= budget) continue;
        char b[32], n[32], w[32], kv[32], a[32], x[32];
        uint64_t dense = s->weight_bytes - s->expert_bytes;
        if (!s->device_min_bytes)
            return gt_fail(GT_ERR_RANGE, "rank %d needs %s of device memory (weights %s, KV cache %s, "
                           "activations %s), more than --device-mem %s", i, gt_format_bytes(need, n, sizeof n),
                           gt_format_bytes(dense, w, sizeof w), gt_format_bytes(s->kv_bytes, kv, sizeof kv),
                           gt_format_bytes(s->act_bytes, a, sizeof a), gt_format_bytes(budget, b, sizeof b));
        return gt_fail(GT_ERR_RANGE, "--device-mem %s (%llu bytes) is too small for rank %d, which needs "
                       "at least %llu bytes (%s: dense weights %s, KV cache %s, activations %s and %d "
                       "experts per layer in %s)", gt_format_bytes(budget, b, sizeof b),
                       (unsigned long long)budget, i, (unsigned long long)need,
                       gt_format_bytes(need, n, sizeof n), gt_format_bytes(dense, w, sizeof w),
                       gt_format_bytes(s->kv_bytes, kv, sizeof kv), gt_format_bytes(s->act_bytes, a, sizeof a),
                       s->n_expert_used,
                       gt_format_bytes((uint64_t)s->n_expert_used * s->expert_slot_bytes, x, sizeof x));
    }
    return GT_OK;
}
