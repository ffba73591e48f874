/* Engine lifecycle and batch validation; the math is in forward.c.
 * Scratch buffers are sized once for max_batch_tokens so that the forward
 * pass never allocates. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "worker/engine_internal.h"

/* Every scratch buffer of the forward pass, at its offset of one
 * allocation laid out by parallel/scratch.c, the same function that sizes
 * the plan's activations. */
static gt_status alloc_scratch(gt_engine *e) {
    const gt_scratch_layout *L = &e->layout;
    GT_TRY(gt_buffer_alloc(e->k, L->total_bytes, &e->scratch));
    char *base = gt_buffer_addr(e->scratch);
    void *p[GT_SCR_COUNT];
    for (int i = 0; i < GT_SCR_COUNT; i++) p[i] = L->bytes[i] ? base + L->offset[i] : NULL;
    gt_fwd_scratch *s = &e->s;
    s->x = p[GT_SCR_X];
    s->cur = p[GT_SCR_CUR];
    s->q = p[GT_SCR_Q];
    s->k = p[GT_SCR_K];
    s->v = p[GT_SCR_V];
    s->attn = p[GT_SCR_ATTN];
    s->out = p[GT_SCR_OUT];
    s->gate = p[GT_SCR_GATE];
    s->up = p[GT_SCR_UP];
    s->moe_x = p[GT_SCR_MOE_X];
    s->moe_out = p[GT_SCR_MOE_OUT];
    s->router = p[GT_SCR_ROUTER];
    s->moe_w = p[GT_SCR_MOE_W];
    s->moe_ids = p[GT_SCR_MOE_IDS];
    s->moe_rows = p[GT_SCR_MOE_ROWS];
    s->moe_rw = p[GT_SCR_MOE_RW];
    s->moe_start = p[GT_SCR_MOE_START];
    s->sp = p[GT_SCR_SP];
    s->kblocks = p[GT_SCR_KBLOCKS];
    s->vblocks = p[GT_SCR_VBLOCKS];
    s->logits = p[GT_SCR_LOGITS];
    s->mb_want = p[GT_SCR_MB_WANT];
    s->moe_y = p[GT_SCR_MOE_Y];
    s->moe_pos = p[GT_SCR_MOE_POS];
    s->ep_send = p[GT_SCR_EP_SEND];
    s->ep_recv = p[GT_SCR_EP_RECV];
    s->ep_rows = p[GT_SCR_EP_ROWS];
    s->pred_cur = p[GT_SCR_PRED_CUR];
    s->pred_router = p[GT_SCR_PRED_ROUTER];
    s->pred_w = p[GT_SCR_PRED_W];
    s->pred_ids = p[GT_SCR_PRED_IDS];
    return GT_OK;
}

static gt_status check_config(const gt_engine_config *c) {
    if (!c->model_path && !c->gguf) return gt_fail(GT_ERR_INVALID_ARG, "no model file given");
    if (c->max_seqs < 1 || c->max_seqs > 65536)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence count %d is outside 1..65536", c->max_seqs);
    if (c->kv_block_size < 1 || c->kv_block_size > 4096)
        return gt_fail(GT_ERR_INVALID_ARG, "KV block size %d is outside 1..4096", c->kv_block_size);
    if (c->kv_blocks < 0)
        return gt_fail(GT_ERR_INVALID_ARG, "KV pool of %d blocks is negative", c->kv_blocks);
    if (c->max_out_rows < 0)
        return gt_fail(GT_ERR_INVALID_ARG, "output rows %d is negative", c->max_out_rows);
    if (c->max_batch_tokens < 1 || c->max_batch_tokens > 16384)
        return gt_fail(GT_ERR_INVALID_ARG, "batch size %d is outside 1..16384", c->max_batch_tokens);
    return GT_OK;
}

gt_status gt_engine_create(const gt_engine_config *cfg, gt_engine **out) {
    *out = NULL;
    GT_TRY(check_config(cfg));
    gt_engine *e = calloc(1, sizeof *e);
    if (!e) return gt_fail(GT_ERR_NOMEM, "cannot allocate an engine");
    e->cfg = *cfg;
    if (!e->cfg.max_out_rows) e->cfg.max_out_rows = cfg->max_seqs;
    gt_status st;
    if (cfg->gguf) {
        e->g = cfg->gguf;
    } else {
        GT_TRY_GOTO(gt_gguf_open(cfg->model_path, &e->g_owned), st, fail);
        e->g = e->g_owned;
    }
    GT_TRY_GOTO(gt_hparams_load(e->g, &e->hp), st, fail);
    if (cfg->kernels) {
        e->k = cfg->kernels;
    } else {
        gt_kernels_config kc = GT_KERNELS_CONFIG_INIT;
        kc.n_threads = cfg->n_threads;
        kc.isa = cfg->isa;
        kc.bf16 = cfg->bf16;
        kc.backend = cfg->backend;
        GT_TRY_GOTO(gt_kernels_create(&kc, &e->k_owned), st, fail);
        e->k = e->k_owned;
    }
    e->par = cfg->par;
    /* Every size comes from the shard of a plan: the caller's (a rank of a
     * grid) or a one-rank plan of the whole model built here. */
    if (cfg->shard) {
        e->shard = *cfg->shard;
        e->n_ctx = cfg->n_ctx ? cfg->n_ctx : gt_hparams_default_ctx(&e->hp);
    } else {
        gt_plan_config pc = GT_PLAN_CONFIG_INIT;
        pc.n_ctx = cfg->n_ctx;
        pc.n_seqs = cfg->max_seqs;
        pc.kv_block_size = cfg->kv_block_size;
        pc.kv_type = cfg->kv_type;
        pc.max_batch_tokens = cfg->max_batch_tokens;
        pc.max_out_rows = cfg->max_out_rows;
        pc.kv_host_bytes = cfg->kv_host_bytes;
        pc.kv_blocks = cfg->kv_blocks;
        pc.device_mem_bytes = cfg->device_mem_bytes;
        pc.kernels = e->k;
        pc.n_threads = gt_kernels_n_threads(e->k);
        gt_plan plan;
        GT_TRY_GOTO(gt_plan_build(e->g, &pc, &plan), st, fail);
        st = gt_plan_check_device(&plan);
        if (st != GT_OK) {
            gt_plan_free(&plan);
            goto fail;
        }
        e->shard = plan.shards[0];
        e->n_ctx = plan.cfg.n_ctx;
        /* An early exit: the first max_layers layers only (their weights,
         * KV and scratch; the layout below sizes itself from the shard). */
        if (cfg->max_layers > 0 && cfg->max_layers < e->shard.layers.end) e->shard.layers.end = cfg->max_layers;
        gt_plan_free(&plan);
    }
    e->n_head = (int)gt_range_len(e->shard.heads);
    e->n_head_kv = (int)gt_range_len(e->shard.kv_heads);
    GT_TRY_GOTO(gt_weights_load(e->g, &e->hp, &e->shard, e->k, &e->w), st, fail);

    if (e->n_ctx > e->hp.n_ctx_train)
        GT_LOG_WARN(GT_SUB_WORKER, "context %u is longer than the model's training context %u",
                    e->n_ctx, e->hp.n_ctx_train);
    e->max_seq_blocks = (int)((e->n_ctx + (uint32_t)cfg->kv_block_size - 1) / (uint32_t)cfg->kv_block_size);
    gt_kv_cache_config kv = {
        .n_layer = e->w.n_layer > 0 ? e->w.n_layer : 1,
        .row_elems = (int)((uint32_t)e->n_head_kv * e->hp.head_dim),
        .n_kv_head = (int)e->n_head_kv,
        .block_size = cfg->kv_block_size,
        .n_blocks = cfg->kv_blocks > 0 ? cfg->kv_blocks : e->max_seq_blocks * cfg->max_seqs,
        .max_seqs = cfg->max_seqs,
        .max_seq_blocks = e->max_seq_blocks,
        .type = cfg->kv_type,
        .n_host_blocks = 0,
    };
    if (cfg->kv_host_bytes) {
        /* A host block holds K and V of every local layer. */
        uint64_t per = 2 * (uint64_t)kv.n_layer * (uint64_t)kv.row_elems * (uint64_t)kv.block_size *
                       gt_kv_elem_bytes(cfg->kv_type);
        uint64_t n = cfg->kv_host_bytes / per;
        kv.n_host_blocks = n > (uint64_t)INT32_MAX ? INT32_MAX : (int)n;
    }
    /* The scratch layout and the kernels' workspace, from the one function
     * that also sizes the plan. */
    gt_scratch_config sc = {cfg->max_batch_tokens, e->cfg.max_out_rows, e->n_ctx, cfg->kv_block_size,
                            gt_kernels_n_threads(e->k)};
    gt_scratch_layout_compute(&e->hp, &e->shard, &sc, &e->layout);
    if (gt_weights_max_n_in(&e->w) > e->layout.ws.max_n_in) {
        st = gt_fail(GT_ERR_INTERNAL, "a weight row of %lld elements is longer than the %lld the scratch "
                     "layout allows for", (long long)gt_weights_max_n_in(&e->w),
                     (long long)e->layout.ws.max_n_in);
        goto fail;
    }
    GT_TRY_GOTO(gt_kernels_reserve(e->k, &e->layout.ws), st, fail);
    GT_TRY_GOTO(gt_kv_cache_create(e->k, &kv, &e->kv), st, fail);
    GT_TRY_GOTO(alloc_scratch(e), st, fail);
    GT_TRY_GOTO(gt__engine_experts_init(e), st, fail);
    if (e->shard.grid.ep > 1) GT_TRY_GOTO(gt__moe_ep_init(e), st, fail);
    GT_LOG_INFO(GT_SUB_WORKER, "%s: %s, %u layers, %u embd, %u heads (%u kv), vocab %u, ctx %u, "
                "kernels %s x%d (F16/BF16 products: %s), KV %zu MiB", gt_gguf_name(e->g),
                e->hp.arch_name, e->hp.n_layer, e->hp.n_embd, e->hp.n_head, e->hp.n_head_kv,
                e->hp.n_vocab, e->n_ctx, gt_kernels_isa(e->k), gt_kernels_n_threads(e->k),
                gt_kernels_half(e->k), gt_kv_cache_bytes(e->kv) >> 20);
    *out = e;
    return GT_OK;
fail:
    gt_engine_destroy(e);
    return st;
}

void gt_engine_destroy(gt_engine *e) {
    if (!e) return;
    gt__engine_experts_free(e);
    gt__moe_ep_free(e);
    gt_buffer_free(e->scratch);
    gt_kv_cache_destroy(e->kv);
    gt_weights_free(&e->w);
    gt_kernels_destroy(e->k_owned);
    gt_gguf_close(e->g_owned);
    free(e);
}

const gt_hparams *gt_engine_hparams(const gt_engine *e) { return &e->hp; }
const gt_gguf *gt_engine_gguf(const gt_engine *e) { return e->g; }
gt_kernels *gt_engine_kernels(gt_engine *e) { return e->k; }
uint32_t gt_engine_n_ctx(const gt_engine *e) { return e->n_ctx; }
float *gt_engine_logits(gt_engine *e) { return e->s.logits; }

gt_engine_memory gt_engine_memory_used(const gt_engine *e) {
    return (gt_engine_memory){e->layout.total_bytes + e->layout.workspace_bytes, gt_kv_cache_bytes(e->kv),
                              gt_kv_cache_host_bytes(e->kv), gt_expert_cache_pool_bytes(e->xc)};
}
uint64_t gt_engine_weight_bytes(const gt_engine *e) { return e->w.matmul_bytes; }
void gt_engine_moe_bytes(const gt_engine *e, uint64_t *dense, uint64_t *experts_held,
                         uint64_t *experts_read) {
    *dense = e->w.dense_bytes;
    *experts_held = e->w.expert_bytes;
    *experts_read = e->expert_bytes_read;
}

bool gt_engine_kv_full(const gt_engine *e) { return e->kv_full; }

gt_engine_ep_stats gt_engine_ep(const gt_engine *e) {
    gt_engine_ep_stats s = {0, 0, NULL, NULL};
    if (e->shard.grid.ep <= 1 || !e->ep.rows) return s;
    s.n_layer = e->w.n_layer;
    s.layer0 = e->w.layer0;
    s.rows = e->ep.rows;
    s.a2a_bytes = e->ep.a2a_bytes;
    return s;
}

void gt_engine_reset_ep_stats(gt_engine *e) {
    if (!e->ep.rows) return;
    memset(e->ep.rows, 0, (size_t)e->w.n_layer * sizeof *e->ep.rows);
    memset(e->ep.a2a_bytes, 0, (size_t)e->w.n_layer * sizeof *e->ep.a2a_bytes);
}

gt_engine_kv_stats gt_engine_kv(const gt_engine *e) {
    gt_engine_kv_stats s = {gt_kv_cache_n_host(e->kv), gt_kv_cache_n_cached(e->kv), gt_kv_cache_n_free(e->kv),
                            gt_kv_cache_n_blocks(e->kv), gt_kv_cache_block_size(e->kv), 0, 0};
    gt_kv_cache_host_traffic(e->kv, &s.to_host_bytes, &s.from_host_bytes);
    return s;
}

void gt_engine_vocab_slice(const gt_engine *e, int64_t *v0, int64_t *n) {
    *v0 = e->w.vocab0;
    *n = e->w.n_vocab_local;
}

bool gt_engine_has_logits(const gt_engine *e) { return e->shard.last_stage; }

uint32_t gt_engine_seq_len(const gt_engine *e, int seq) {
    if (seq < 0 || seq >= e->cfg.max_seqs) return 0;
    return gt_kv_cache_seq_len(e->kv, seq);
}

void gt_engine_seq_clear(gt_engine *e, int seq) {
    if (seq >= 0 && seq < e->cfg.max_seqs) gt_kv_cache_clear(e->kv, seq);
}

gt_status gt_engine_seq_truncate(gt_engine *e, int seq, uint32_t n) {
    if (seq < 0 || seq >= e->cfg.max_seqs)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence %d to truncate is outside 0..%d", seq, e->cfg.max_seqs - 1);
    return gt_kv_cache_truncate(e->kv, seq, n);
}

/* Checks ids, sequences and positions, and reserves KV blocks. Positions of
 * a sequence must continue its cache without gaps. */
static gt_status check_batch(gt_engine *e, const gt_batch *b) {
    if (b->n < 1) return gt_fail(GT_ERR_INVALID_ARG, "empty batch");
    if (b->n > e->cfg.max_batch_tokens)
        return gt_fail(GT_ERR_RANGE, "batch of %d tokens exceeds the engine's limit of %d", b->n,
                       e->cfg.max_batch_tokens);
    for (int i = 0; i < b->n; i++) {
        if (b->tokens[i] < 0 || (uint32_t)b->tokens[i] >= e->hp.n_vocab)
            return gt_fail(GT_ERR_INVALID_ARG, "token id %d at batch index %d is outside the "
                           "vocabulary of %u", b->tokens[i], i, e->hp.n_vocab);
        if (b->seq[i] < 0 || b->seq[i] >= e->cfg.max_seqs)
            return gt_fail(GT_ERR_INVALID_ARG, "sequence %d at batch index %d is outside 0..%d",
                           b->seq[i], i, e->cfg.max_seqs - 1);
        if (b->pos[i] < 0 || (uint32_t)b->pos[i] >= e->n_ctx)
            return gt_fail(GT_ERR_RANGE, "position %d of sequence %d is beyond the context of %u "
                           "tokens", b->pos[i], b->seq[i], e->n_ctx);
    }
    /* Token i must sit at its sequence's cached length plus the number of
     * earlier batch tokens of the same sequence. Nothing changes until the
     * whole batch is known to be valid. */
    for (int i = 0; i < b->n; i++) {
        int seq = b->seq[i];
        uint32_t want = gt_kv_cache_seq_len(e->kv, seq);
        for (int j = 0; j < i; j++) want += b->seq[j] == seq;
        if ((uint32_t)b->pos[i] != want)
            return gt_fail(GT_ERR_INVALID_ARG, "token %d of the batch is at position %d of sequence "
                           "%d, but that sequence continues at position %u", i, b->pos[i], seq, want);
    }
    e->kv_full = false;
    for (int i = 0; i < b->n; i++) {
        gt_status st = gt_kv_cache_reserve(e->kv, b->seq[i], (uint32_t)b->pos[i] + 1);
        if (st != GT_OK) {
            e->kv_full = gt_kv_cache_n_free(e->kv) == 0 && gt_kv_cache_n_cached(e->kv) == 0;
            return st;
        }
    }
    for (int i = 0; i < b->n; i++) gt_kv_cache_set_seq_len(e->kv, b->seq[i], (uint32_t)b->pos[i] + 1);
    return GT_OK;
}

/* The batch's tokens enter their sequences' prefix chains (full blocks
 * become reusable by later sequences with the same prefix). */
static void note_tokens(gt_engine *e, const gt_batch *b) {
    for (int i = 0; i < b->n; i++) gt_kv_cache_note_tokens(e->kv, b->seq[i], b->tokens + i, 1);
}

gt_status gt_engine_decode(gt_engine *e, const gt_batch *b, float *logits) {
    if ((e->shard.grid.tp > 1 || e->shard.grid.pp > 1) && !e->par)
        return gt_fail(GT_ERR_INVALID_ARG, "a shard of a %d x %d grid needs the grid's communicators",
                       e->shard.grid.tp, e->shard.grid.pp);
    GT_TRY(check_batch(e, b));
    int pp = e->shard.grid.pp;
    if (pp == 1 || b->n < 2) {
        GT_TRY(gt__forward(e, b, logits));
        note_tokens(e, b);
        return GT_OK;
    }
    /* Pipeline: cut the batch into pp micro-batches so that stage s works on
     * micro-batch m while stage s + 1 works on m - 1. Every stage processes
     * them in order, so each sequence's KV cache still grows in order. */
    int n_mb = b->n < pp ? b->n : pp;
    float *out = logits;
    for (int m = 0; m < n_mb; m++) {
        int i0 = (int)((int64_t)b->n * m / n_mb), i1 = (int)((int64_t)b->n * (m + 1) / n_mb);
        gt_batch mb = {i1 - i0, b->tokens + i0, b->pos + i0, b->seq + i0,
                       b->want_logits ? b->want_logits + i0 : NULL};
        /* Without want_logits only the batch's last token is wanted. */
        if (!b->want_logits) {
            memset(e->s.mb_want, 0, (size_t)(i1 - i0));
            if (m == n_mb - 1) e->s.mb_want[i1 - i0 - 1] = 1;
            mb.want_logits = e->s.mb_want;
        }
        gt_status st = gt__forward(e, &mb, out);
        int wanted = 0;
        for (int i = 0; i < mb.n; i++) wanted += mb.want_logits[i] != 0;
        GT_TRY(st);
        if (gt_engine_has_logits(e)) out += (size_t)wanted * (size_t)e->w.n_vocab_local;
    }
    note_tokens(e, b);
    return GT_OK;
}

uint32_t gt_engine_prefix_fit(const gt_engine *e, const int32_t *toks, int n, int *spare_free) {
    int bs = gt_kv_cache_block_size(e->kv);
    int whole = n > 0 ? (n - 1) / bs : 0;
    if (whole > e->max_seq_blocks) whole = e->max_seq_blocks;
    return (uint32_t)gt_kv_cache_prefix_fit(e->kv, toks, whole, spare_free) * (uint32_t)bs;
}

uint32_t gt_engine_prefix_cached(const gt_engine *e, const int32_t *toks, int n) {
    int bs = gt_kv_cache_block_size(e->kv);
    int whole = n > 0 ? (n - 1) / bs : 0; /* the last token is always computed */
    if (whole > e->max_seq_blocks) whole = e->max_seq_blocks;
    return (uint32_t)gt_kv_cache_prefix_blocks(e->kv, toks, whole) * (uint32_t)bs;
}

gt_status gt_engine_seq_attach(gt_engine *e, int seq, const int32_t *toks, uint32_t n_tokens) {
    int bs = gt_kv_cache_block_size(e->kv);
    if (seq < 0 || seq >= e->cfg.max_seqs)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence %d is outside 0..%d", seq, e->cfg.max_seqs - 1);
    if (n_tokens % (uint32_t)bs)
        return gt_fail(GT_ERR_INVALID_ARG, "a cached prefix of %u tokens is not whole blocks of %d", n_tokens,
                       bs);
    return gt_kv_cache_attach(e->kv, seq, toks, (int)(n_tokens / (uint32_t)bs));
}
