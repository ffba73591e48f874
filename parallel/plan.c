/* Building the sharding plan; see plan.h for the splitting rules. The layout
 * checks run once, before any shard is computed, so that an impossible grid
 * is refused with the one sentence that names the numbers; then every
 * tensor of the file is sliced for every rank and its bytes added up. */
#include "parallel/plan.h"
#include "parallel/scratch.h"
#include "parallel/plan_experts.h"

#include <stdlib.h>
#include <string.h>

#define F32_BYTES 4 /* activations and collectives run in f32 */

static gt_status check_config(gt_plan_config *c) {
    if (c->world == 0) c->world = c->tp * c->pp;
    if (c->n_seqs < 1 || c->n_seqs > 65536)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence count %d is outside 1..65536", c->n_seqs);
    if (c->kv_block_size < 1 || c->kv_block_size > 4096)
        return gt_fail(GT_ERR_INVALID_ARG, "KV block size %d is outside 1..4096", c->kv_block_size);
    if (c->max_batch_tokens < 1 || c->max_batch_tokens > 16384)
        return gt_fail(GT_ERR_INVALID_ARG, "batch size %d is outside 1..16384",
                       c->max_batch_tokens);
    if (c->kv_type != GT_F16 && c->kv_type != GT_F32 && c->kv_type != GT_BF16)
        return gt_fail(GT_ERR_INVALID_ARG, "KV cache type %s is not f16, bf16 or f32",
                       gt_dtype_name(c->kv_type));
    if (c->kv_type == GT_BF16 && c->kv_block_size % 2)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "a BF16 KV cache stores pairs of positions: block size %d is odd",
                       c->kv_block_size);
    return GT_OK;
}

/* Expert parallelism: whole experts per EP rank, EP inside the stage group. */
static gt_status check_ep(const gt_hparams *hp, int tp, int ep) {
    if (ep <= 1) return GT_OK;
    if (!hp->n_expert)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "--ep %d asks for expert parallelism, but this %s model is dense (it has no "
                       "experts)",
                       ep, hp->arch_name);
    if (hp->n_expert_used > hp->n_expert)
        return gt_fail(GT_ERR_INVALID_ARG, "top-k %u is larger than the expert count %u",
                       hp->n_expert_used, hp->n_expert);
    if (hp->n_expert % (uint32_t)ep)
        return gt_fail(GT_ERR_INVALID_ARG, "%u experts do not divide over --ep %d", hp->n_expert,
                       ep);
    if (tp % ep)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "--ep %d does not divide the stage group of tp %d ranks (ep must be a "
                       "divisor of tp)",
                       ep, tp);
    return GT_OK;
}

/* The layout checks that do not depend on one rank. */
static gt_status check_layout(const gt_hparams *hp, int tp, int pp, int ep) {
    GT_TRY(check_ep(hp, tp, ep));
    if ((uint32_t)pp > hp->n_layer)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "pp %d asks for more pipeline stages than the model's %u layers", pp,
                       hp->n_layer);
    if (hp->n_head % (uint32_t)tp)
        return gt_fail(GT_ERR_INVALID_ARG, "%u attention heads do not divide over tp %d",
                       hp->n_head, tp);
    if ((uint32_t)tp <= hp->n_head_kv && hp->n_head_kv % (uint32_t)tp)
        return gt_fail(GT_ERR_INVALID_ARG, "%u kv heads do not divide over tp %d", hp->n_head_kv,
                       tp);
    if ((uint32_t)tp > hp->n_head_kv && (uint32_t)tp % hp->n_head_kv)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%u kv heads cannot be replicated over tp %d: tp must be a multiple of the "
                       "kv head count",
                       hp->n_head_kv, tp);
    if (hp->n_vocab < (uint32_t)tp)
        return gt_fail(GT_ERR_INVALID_ARG, "a vocabulary of %u tokens cannot be split over tp %d",
                       hp->n_vocab, tp);
    return GT_OK;
}

static gt_status shard_ranges(const gt_hparams *hp, const gt_plan_config *cfg,
                              const gt_ff_split ff[GT_FF_DIMS], int rank, gt_shard *s) {
    memset(s, 0, sizeof *s);
    GT_TRY(gt_grid_init(cfg->world, cfg->tp, cfg->pp, rank, &s->grid));
    GT_TRY(gt_grid_set_ep(&s->grid, cfg->ep));
    const int tp = cfg->tp, p = s->grid.tp_rank, st = s->grid.stage;
    s->first_stage = gt_grid_first_stage(&s->grid);
    s->last_stage = gt_grid_last_stage(&s->grid);

    /* Layers: earlier stages take the extra one. */
    int64_t L = hp->n_layer, base = L / cfg->pp, extra = L % cfg->pp;
    s->layers.begin = st * base + (st < extra ? st : extra);
    s->layers.end = s->layers.begin + base + (st < extra ? 1 : 0);

    int64_t hq = hp->n_head / tp;
    s->heads = (gt_range){p * hq, (p + 1) * hq};
    if ((uint32_t)tp <= hp->n_head_kv) {
        int64_t k = hp->n_head_kv / tp;
        s->kv_heads = (gt_range){p * k, (p + 1) * k};
        s->kv_copies = 1;
    } else {
        s->kv_copies = tp / (int)hp->n_head_kv;
        int64_t kv = p / s->kv_copies;
        s->kv_heads = (gt_range){kv, kv + 1};
    }
    /* Every query head of the rank must find its kv head on the rank. */
    int64_t group = hp->n_head / hp->n_head_kv;
    int64_t need0 = s->heads.begin / group, need1 = (s->heads.end - 1) / group + 1;
    if (need0 != s->kv_heads.begin || need1 != s->kv_heads.end)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "tp %d: rank %d's query heads [%lld, %lld) use kv heads [%lld, %lld) but it "
                       "would hold [%lld, %lld)",
                       tp, rank, (long long)s->heads.begin, (long long)s->heads.end,
                       (long long)need0, (long long)need1, (long long)s->kv_heads.begin,
                       (long long)s->kv_heads.end);

    /* MLP columns: even, or whole blocks where even would cut one
     * (plan_split.c). Under EP an expert's columns are split over the
     * tp / ep ranks that share its range, and the experts over ep. */
    const gt_grid *g = &s->grid;
    s->ff = gt_plan_ff_range(&ff[GT_FF_DENSE], p, tp);
    s->ff_exp = gt_plan_ff_range(&ff[GT_FF_EXPERT], g->ep_col, g->ep_cols);
    s->ff_shexp = gt_plan_ff_range(&ff[GT_FF_SHARED], p, tp);
    if (hp->n_expert)
        s->experts = (gt_range){(int64_t)hp->n_expert * g->ep_rank / g->ep,
                                (int64_t)hp->n_expert * (g->ep_rank + 1) / g->ep};
    int64_t vb = hp->n_vocab / tp;
    s->vocab = (gt_range){p * vb, p == tp - 1 ? (int64_t)hp->n_vocab : (p + 1) * vb};
    return GT_OK;
}

static gt_status shard_weights(const gt_gguf *g, const gt_hparams *hp, gt_shard *s) {
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        gt_tensor_slice sl;
        GT_TRY(gt_plan_tensor_slice(hp, s, gt_gguf_tensor_at(g, i), &sl));
        if (sl.split == GT_SPLIT_NONE) continue;
        uint64_t *dst[] = {&s->embd_bytes, &s->head_bytes,   &s->attn_bytes,
                           &s->ffn_bytes,  &s->expert_bytes, &s->replicated_bytes};
        *dst[sl.wclass] += sl.nbytes;
        s->weight_bytes += sl.nbytes;
    }
    return GT_OK;
}

/* The forward pass's scratch, laid out as the engine allocates it. */
static uint64_t shard_activations(const gt_hparams *hp, const gt_plan_config *cfg,
                                  const gt_shard *s) {
    gt_scratch_config sc = {cfg->max_batch_tokens, cfg->max_out_rows, cfg->n_ctx, cfg->kv_block_size,
                            cfg->n_threads};
    gt_scratch_layout L;
    gt_scratch_layout_compute(hp, s, &sc, &L);
    return L.total_bytes + L.workspace_bytes;
}

void gt_plan_fill_memory(const gt_plan_config *cfg, gt_shard *s) {
    uint64_t blocks_per_seq = (cfg->n_ctx + (uint64_t)cfg->kv_block_size - 1) / cfg->kv_block_size;
    uint64_t pool_blocks = cfg->kv_blocks > 0 ? (uint64_t)cfg->kv_blocks : blocks_per_seq * (uint64_t)cfg->n_seqs;
    s->kv_block_bytes = s->kv_bytes_per_token * (uint64_t)cfg->kv_block_size;
    s->kv_bytes = pool_blocks * s->kv_block_bytes;
    s->kv_host_bytes = s->kv_block_bytes ? cfg->kv_host_bytes / s->kv_block_bytes * s->kv_block_bytes : 0;
    s->total_bytes = s->weight_bytes + s->kv_bytes + s->act_bytes;
    s->offload_bytes = s->offload_expert_bytes = 0;
    s->weights_fit = true;
    if (!cfg->mem_budget_bytes) {
        s->kv_blocks_fit = (int64_t)pool_blocks;
    } else {
        uint64_t need = s->weight_bytes + s->act_bytes;
        if (need > cfg->mem_budget_bytes) {
            s->weights_fit = false;
            s->offload_bytes = need - cfg->mem_budget_bytes;
            s->offload_expert_bytes =
                s->expert_bytes < s->offload_bytes ? s->expert_bytes : s->offload_bytes;
            s->kv_blocks_fit = 0;
        } else {
            uint64_t rest = cfg->mem_budget_bytes - need;
            s->kv_blocks_fit = s->kv_block_bytes ? (int64_t)(rest / s->kv_block_bytes) : 0;
        }
    }
    s->kv_tokens_fit = s->kv_blocks_fit * cfg->kv_block_size;
    gt__plan_fill_experts(cfg, s);
}

gt_status gt_plan_build(const gt_gguf *g, const gt_plan_config *cfg_in, gt_plan *out) {
    memset(out, 0, sizeof *out);
    gt_plan_config cfg = *cfg_in;
    gt_hparams hp;
    gt_grid g0;
    GT_TRY(check_config(&cfg));
    GT_TRY(gt_grid_init(cfg.world, cfg.tp, cfg.pp, 0, &g0));
    GT_TRY(gt_hparams_load(g, &hp));
    if (!cfg.n_ctx) cfg.n_ctx = gt_hparams_default_ctx(&hp);
    if (!cfg.max_out_rows) cfg.max_out_rows = cfg.n_seqs;
    if (cfg.ep < 0 || cfg.ep > 65536)
        return gt_fail(GT_ERR_INVALID_ARG, "--ep %d is outside 1..65536", cfg.ep);
    if (cfg.ep == 0) cfg.ep = 1;
    GT_TRY(check_layout(&hp, cfg.tp, cfg.pp, cfg.ep));
    gt_ff_split ff[GT_FF_DIMS];
    for (int d = 0; d < GT_FF_DIMS; d++) /* experts' columns are split over tp / ep ranks */
        GT_TRY(gt_plan_ff_split_init(g, &hp, (gt_ff_dim)d, d == GT_FF_EXPERT ? cfg.tp / cfg.ep : cfg.tp,
                                     &ff[d]));

    gt_shard *shards = calloc((size_t)cfg.world, sizeof *shards);
    if (!shards) return gt_fail(GT_ERR_NOMEM, "cannot allocate the plans of %d ranks", cfg.world);
    const uint64_t kv_elem = cfg.kv_type == GT_F32 ? 4 : 2;
    gt_status st = GT_OK;
    for (int r = 0; r < cfg.world; r++) {
        gt_shard *s = &shards[r];
        GT_TRY_GOTO(shard_ranges(&hp, &cfg, ff, r, s), st, fail);
        GT_TRY_GOTO(shard_weights(g, &hp, s), st, fail);
        /* K [head_dim] and V [head_dim_v] per local kv head, per local layer. */
        s->kv_bytes_per_token = (uint64_t)gt_range_len(s->layers) *
                                (uint64_t)gt_range_len(s->kv_heads) *
                                (hp.head_dim + hp.head_dim_v) * kv_elem;
        s->act_bytes = shard_activations(&hp, &cfg, s);
        if (cfg.device_mem_bytes) GT_TRY_GOTO(gt__plan_expert_slots(g, &hp, cfg.kernels, s), st, fail);
        gt_plan_fill_memory(&cfg, s);
    }
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++)
        out->model_bytes += gt_gguf_tensor_at(g, i)->nbytes;
    if (cfg.tp > 1) {
        /* Per layer: after wo and after down; plus the vocab-parallel embedding. */
        out->tp_allreduces = 2 * (int)hp.n_layer + 1;
        out->tp_allreduce_bytes = (uint64_t)out->tp_allreduces * hp.n_embd * F32_BYTES;
        /* Sampling gathers each rank's best (logit, id) pairs, not the
         * logits: 40 candidates (the default top-k) of 8 bytes per rank. */
        out->logits_gather_bytes = (uint64_t)cfg.tp * 40 * 8;
    }
    out->pp_send_bytes = (uint64_t)(cfg.pp - 1) * hp.n_embd * F32_BYTES;
    out->cfg = cfg;
    out->hp = hp;
    memcpy(out->ff_split, ff, sizeof ff);
    out->n_ranks = cfg.world;
    out->shards = shards;
    return GT_OK;
fail:
    free(shards);
    memset(out, 0, sizeof *out);
    return st;
}

void gt_plan_free(gt_plan *p) {
    if (!p) return;
    free(p->shards);
    memset(p, 0, sizeof *p);
}
