/* Engine lifecycle and batch validation; the math is in forward.c.
 * Scratch buffers are sized once for max_batch_tokens so that the forward
 * pass never allocates. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "worker/engine_internal.h"

static gt_status alloc_f32(float **p, size_t n, const char *what) {
    *p = gt_alloc(n * sizeof(float));
    if (!*p) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu floats for %s", n, what);
    return GT_OK;
}

static gt_status alloc_scratch(gt_engine *e) {
    const gt_hparams *hp = &e->hp;
    gt_fwd_scratch *s = &e->s;
    /* Rows are padded to a multiple of tp under sequence parallelism. */
    size_t tp = e->sharded ? (size_t)e->shard.grid.tp : 1;
    size_t B = (size_t)e->cfg.max_batch_tokens + tp, D = hp->n_embd;
    size_t Q = (size_t)e->n_head * hp->head_dim, KV = (size_t)e->n_head_kv * hp->head_dim;
    size_t F = hp->n_ff;
    if (hp->n_ff_exp > F) F = hp->n_ff_exp;
    if (hp->n_ff_shexp > F) F = hp->n_ff_shexp;
    GT_TRY(alloc_f32(&s->x, B * D, "the residual stream"));
    GT_TRY(alloc_f32(&s->cur, B * D, "normed activations"));
    GT_TRY(alloc_f32(&s->q, B * Q, "queries"));
    GT_TRY(alloc_f32(&s->k, B * KV, "keys"));
    GT_TRY(alloc_f32(&s->v, B * KV, "values"));
    GT_TRY(alloc_f32(&s->attn, B * Q, "attention output"));
    GT_TRY(alloc_f32(&s->out, B * D, "block output"));
    GT_TRY(alloc_f32(&s->gate, B * F, "the MLP gate"));
    GT_TRY(alloc_f32(&s->up, B * F, "the MLP up projection"));
    if (hp->n_expert) {
        size_t E = hp->n_expert, K = hp->n_expert_used;
        GT_TRY(alloc_f32(&s->moe_x, B * D, "expert inputs"));
        GT_TRY(alloc_f32(&s->moe_out, B * D, "expert outputs"));
        GT_TRY(alloc_f32(&s->router, B * E, "router probabilities"));
        GT_TRY(alloc_f32(&s->moe_w, B * K, "expert weights"));
        GT_TRY(alloc_f32(&s->moe_rw, B, "expert row weights"));
        s->moe_ids = gt_alloc(B * K * sizeof(int32_t));
        s->moe_rows = gt_alloc(B * sizeof(int32_t));
        if (!s->moe_ids || !s->moe_rows) return gt_fail(GT_ERR_NOMEM, "cannot allocate expert routing");
    }
    if (tp > 1) GT_TRY(alloc_f32(&s->sp, (B / tp + 1) * D, "sequence-parallel rows"));
    s->kblocks = calloc((size_t)e->max_seq_blocks, sizeof *s->kblocks);
    s->vblocks = calloc((size_t)e->max_seq_blocks, sizeof *s->vblocks);
    if (!s->kblocks || !s->vblocks) return gt_fail(GT_ERR_NOMEM, "cannot allocate block tables");
    return GT_OK;
}

static void free_scratch(gt_fwd_scratch *s) {
    float *f[] = {s->x, s->cur, s->q, s->k, s->v, s->attn, s->out, s->gate, s->up,
                  s->moe_x, s->moe_out, s->router, s->moe_w, s->moe_rw, s->sp};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) gt_free(f[i]);
    gt_free(s->moe_ids);
    gt_free(s->moe_rows);
    free(s->kblocks);
    free(s->vblocks);
    memset(s, 0, sizeof *s);
}

static gt_status check_config(const gt_engine_config *c) {
    if (!c->model_path) return gt_fail(GT_ERR_INVALID_ARG, "no model file given");
    if (c->max_seqs < 1 || c->max_seqs > 65536)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence count %d is outside 1..65536", c->max_seqs);
    if (c->kv_block_size < 1 || c->kv_block_size > 4096)
        return gt_fail(GT_ERR_INVALID_ARG, "KV block size %d is outside 1..4096", c->kv_block_size);
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
    gt_status st;
    GT_TRY_GOTO(gt_gguf_open(cfg->model_path, &e->g), st, fail);
    GT_TRY_GOTO(gt_hparams_load(e->g, &e->hp), st, fail);
    gt_kernels_config kc = GT_KERNELS_CONFIG_INIT;
    kc.n_threads = cfg->n_threads;
    kc.isa = cfg->isa;
    GT_TRY_GOTO(gt_kernels_create(&kc, &e->k), st, fail);
    e->par = cfg->par;
    e->sharded = cfg->shard != NULL;
    e->n_head = (int)e->hp.n_head;
    e->n_head_kv = (int)e->hp.n_head_kv;
    if (cfg->shard) {
        e->shard = *cfg->shard;
        e->n_head = (int)gt_range_len(e->shard.heads);
        e->n_head_kv = (int)gt_range_len(e->shard.kv_heads);
        if ((e->shard.grid.tp > 1 || e->shard.grid.pp > 1) && !cfg->par) {
            st = gt_fail(GT_ERR_INVALID_ARG, "a shard of a %d x %d grid needs the grid's communicators",
                         e->shard.grid.tp, e->shard.grid.pp);
            goto fail;
        }
    }
    GT_TRY_GOTO(gt_weights_load(e->g, &e->hp, cfg->shard, e->k, &e->w), st, fail);

    e->n_ctx = cfg->n_ctx ? cfg->n_ctx : (e->hp.n_ctx_train < 4096 ? e->hp.n_ctx_train : 4096);
    if (e->n_ctx > e->hp.n_ctx_train)
        GT_LOG_WARN(GT_SUB_WORKER, "context %u is longer than the model's training context %u",
                    e->n_ctx, e->hp.n_ctx_train);
    e->max_seq_blocks = (int)((e->n_ctx + (uint32_t)cfg->kv_block_size - 1) / (uint32_t)cfg->kv_block_size);
    gt_kv_cache_config kv = {
        .n_layer = e->w.n_layer > 0 ? e->w.n_layer : 1,
        .row_elems = (int)((uint32_t)e->n_head_kv * e->hp.head_dim),
        .block_size = cfg->kv_block_size,
        .n_blocks = e->max_seq_blocks * cfg->max_seqs,
        .max_seqs = cfg->max_seqs,
        .max_seq_blocks = e->max_seq_blocks,
        .type = cfg->kv_type,
    };
    /* The kernels' workspace, once: rows padded by tp as alloc_scratch pads them. */
    gt_workspace_req wr = {
        .max_tokens = (int64_t)cfg->max_batch_tokens + (e->sharded ? e->shard.grid.tp : 1),
        .max_n_in = gt_weights_max_n_in(&e->w),
        .max_heads = e->n_head,
        .head_dim = (int)e->hp.head_dim,
        .max_kv = e->n_ctx,
        .n_threads = cfg->n_threads,
    };
    GT_TRY_GOTO(gt_kernels_reserve(e->k, &wr), st, fail);
    GT_TRY_GOTO(gt_kv_cache_create(e->k, &kv, &e->kv), st, fail);
    GT_TRY_GOTO(alloc_scratch(e), st, fail);
    GT_LOG_INFO(GT_SUB_WORKER, "%s: %s, %u layers, %u embd, %u heads (%u kv), vocab %u, ctx %u, "
                "kernels %s x%d, KV %zu MiB", gt_gguf_name(e->g), e->hp.arch_name, e->hp.n_layer,
                e->hp.n_embd, e->hp.n_head, e->hp.n_head_kv, e->hp.n_vocab, e->n_ctx,
                gt_kernels_isa(e->k), gt_kernels_n_threads(e->k), gt_kv_cache_bytes(e->kv) >> 20);
    *out = e;
    return GT_OK;
fail:
    gt_engine_destroy(e);
    return st;
}

void gt_engine_destroy(gt_engine *e) {
    if (!e) return;
    free_scratch(&e->s);
    gt_kv_cache_destroy(e->kv);
    gt_weights_free(&e->w);
    gt_kernels_destroy(e->k);
    gt_gguf_close(e->g);
    free(e);
}

const gt_hparams *gt_engine_hparams(const gt_engine *e) { return &e->hp; }
const gt_gguf *gt_engine_gguf(const gt_engine *e) { return e->g; }
gt_kernels *gt_engine_kernels(gt_engine *e) { return e->k; }
uint32_t gt_engine_n_ctx(const gt_engine *e) { return e->n_ctx; }
uint64_t gt_engine_weight_bytes(const gt_engine *e) { return e->w.matmul_bytes; }

void gt_engine_vocab_slice(const gt_engine *e, int64_t *v0, int64_t *n) {
    *v0 = e->w.vocab0;
    *n = e->w.n_vocab_local;
}

bool gt_engine_has_logits(const gt_engine *e) { return !e->sharded || e->shard.last_stage; }

uint32_t gt_engine_seq_len(const gt_engine *e, int seq) {
    if (seq < 0 || seq >= e->cfg.max_seqs) return 0;
    return gt_kv_cache_seq_len(e->kv, seq);
}

void gt_engine_seq_clear(gt_engine *e, int seq) {
    if (seq >= 0 && seq < e->cfg.max_seqs) gt_kv_cache_clear(e->kv, seq);
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
    for (int i = 0; i < b->n; i++) GT_TRY(gt_kv_cache_reserve(e->kv, b->seq[i], (uint32_t)b->pos[i] + 1));
    for (int i = 0; i < b->n; i++) gt_kv_cache_set_seq_len(e->kv, b->seq[i], (uint32_t)b->pos[i] + 1);
    return GT_OK;
}

gt_status gt_engine_decode(gt_engine *e, const gt_batch *b, float *logits) {
    GT_TRY(check_batch(e, b));
    int pp = e->sharded ? e->shard.grid.pp : 1;
    if (pp == 1 || b->n < 2) return gt__forward(e, b, logits);
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
        int8_t *want = NULL;
        if (!b->want_logits) {
            want = calloc((size_t)(i1 - i0), 1);
            if (!want) return gt_fail(GT_ERR_NOMEM, "cannot allocate a micro-batch");
            if (m == n_mb - 1) want[i1 - i0 - 1] = 1;
            mb.want_logits = want;
        }
        gt_status st = gt__forward(e, &mb, out);
        int wanted = 0;
        for (int i = 0; i < mb.n; i++) wanted += mb.want_logits[i] != 0;
        free(want);
        GT_TRY(st);
        if (gt_engine_has_logits(e)) out += (size_t)wanted * (size_t)e->w.n_vocab_local;
    }
    return GT_OK;
}
