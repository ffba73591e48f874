/* The forward pass of the llama family over one batch of tokens.
 *
 * All tokens of the batch go through every matrix together (one gt_matmul
 * per weight, so prefill is a GEMM and decode a GEMV); attention runs per
 * run of consecutive tokens of one sequence against that sequence's paged
 * KV cache. Architecture differences are feature flags in gt_hparams:
 * QKV bias (qwen2), QK-norm (qwen3, gemma3), post-norms, GELU, embedding
 * scale, sliding-window layers (gemma3) and MoE (Mixtral, qwen2moe,
 * qwen3moe: moe.c); the gated MLP both use is mlp.c.
 * Every piece of math is an op of the kernels' backend (kernels/kernels.h);
 * this file only does the index bookkeeping between them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/timer.h"
#include "common/trace.h"
#include "worker/engine_internal.h"

/* Embedding rows for the batch's tokens, scaled for gemma. A rank holds the
 * rows of its vocabulary slice; the others are zero, and the stage group's
 * sum assembles every row (vocabulary-parallel embedding). */
static gt_status embed(gt_engine *e, const gt_batch *b) {
    int D = (int)e->hp.n_embd;
    int64_t nv = e->w.n_vocab_local;
    gt_embed_args a = {
        .type = e->w.tok_embd->type,
        .rows = e->w.embd_rows,
        .v0 = e->w.vocab0,
        .n_rows = nv,
        .n = D,
        .scale = e->hp.embd_scale ? sqrtf((float)D) : 1.0f,
        .ids = b->tokens,
        .n_ids = b->n,
        .out = e->s.x,
    };
    GT_TRY(gt_embed(e->k, &a));
    if (e->par && nv < (int64_t)e->hp.n_vocab)
        GT_TRY(gt_par_allreduce(e->par, e->s.x, (size_t)b->n * D, "embedding allreduce"));
    return GT_OK;
}

/* Sequence parallelism: for a long prompt on a stage group, each rank keeps
 * only its slice of the residual stream's rows between the matrices (norms
 * and residual adds run on the slice); the normed slice is all-gathered
 * before the column-parallel matrices, and the row-parallel partial sums are
 * reduce-scattered back to slices instead of all-reduced. The matrices and
 * the KV cache stay split by heads and columns, so decode continues with
 * plain tensor parallelism. Rows are padded to a multiple of tp. */
typedef struct seq_split {
    bool on;
    int chunk;  /* rows per rank, padded */
    int r0, nr; /* this rank's rows [r0, r0 + nr) of the batch */
} seq_split;

static seq_split split_rows(const gt_engine *e, int n) {
    seq_split sp = {false, n, 0, n};
    int tp = e->par ? e->shard.grid.tp : 1;
    if (tp == 1 || e->cfg.sp_min_tokens <= 0 || n < e->cfg.sp_min_tokens) return sp;
    sp.on = true;
    sp.chunk = (n + tp - 1) / tp;
    sp.r0 = e->shard.grid.tp_rank * sp.chunk;
    sp.nr = sp.r0 >= n ? 0 : (n - sp.r0 < sp.chunk ? n - sp.r0 : sp.chunk);
    return sp;
}

/* Normalises the rows this rank holds into s->cur and, under sequence
 * parallelism, gathers every rank's rows so that s->cur holds all of them. */
static gt_status norm_in(gt_engine *e, const seq_split *sp, const float *w, int il, const char *what) {
    gt_fwd_scratch *s = &e->s;
    size_t D = e->hp.n_embd;
    if (sp->nr > 0)
        GT_TRY(gt_rmsnorm(e->k, s->x + (size_t)sp->r0 * D, w, s->cur + (size_t)sp->r0 * D, sp->nr,
                          (int64_t)D, e->hp.norm_eps));
    if (!sp->on) return GT_OK;
    char label[64];
    snprintf(label, sizeof label, "layer %d %s allgather", il, what);
    return gt_par_allgather(e->par, s->cur, (size_t)sp->chunk * D, label);
}

/* Finishes a block whose row-parallel partial sums are in s->out [n, D]:
 * sums them over the stage group (all-reduce, or reduce-scatter to this
 * rank's rows), applies the optional post-norm and adds the residual. */
static gt_status block_out(gt_engine *e, const seq_split *sp, int n, const float *post_norm, int il,
                           const char *what) {
    gt_fwd_scratch *s = &e->s;
    size_t D = e->hp.n_embd;
    char label[64];
    float *out = s->out;
    if (sp->on) {
        size_t padded = (size_t)sp->chunk * (size_t)e->shard.grid.tp;
        GT_TRY(gt_zero(e->k, s->out + (size_t)n * D, (int64_t)((padded - (size_t)n) * D)));
        snprintf(label, sizeof label, "layer %d %s reduce-scatter", il, what);
        GT_TRY(gt_par_reduce_scatter(e->par, s->out, s->sp, (size_t)sp->chunk * D, label));
        out = s->sp;
    } else if (e->par && e->shard.grid.tp > 1) {
        snprintf(label, sizeof label, "layer %d %s allreduce", il, what);
        GT_TRY(gt_par_allreduce(e->par, s->out, (size_t)n * D, label));
    }
    if (sp->nr == 0) return GT_OK;
    if (post_norm) GT_TRY(gt_rmsnorm(e->k, out, post_norm, out, sp->nr, (int64_t)D, e->hp.norm_eps));
    return gt_add(e->k, s->x + (size_t)sp->r0 * D, out, (int64_t)sp->nr * (int64_t)D);
}

/* il: the local layer index (the KV cache's); the model's layer is
 * layer0 + il. */
static gt_status attention_block(gt_engine *e, const gt_batch *b, const seq_split *sp, int il) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_kernels *k = e->k;
    gt_fwd_scratch *s = &e->s;
    int n = b->n, hd = (int)hp->head_dim, D = (int)hp->n_embd, layer = e->w.layer0 + il;
    int nh = e->n_head, nkh = e->n_head_kv;
    int nq = nh * hd, nkv = nkh * hd;

    GT_TRY(norm_in(e, sp, L->attn_norm, layer, "attn"));
    if (e->mm_hook) {
        gt__mm_hook(e, layer, "attn_q", -1, s->cur, n, L->wq.n_in);
        gt__mm_hook(e, layer, "attn_k", -1, s->cur, n, L->wk.n_in);
        gt__mm_hook(e, layer, "attn_v", -1, s->cur, n, L->wv.n_in);
    }
    /* q, k and v in one parallel region (each bit-identical to its own product) */
    gt_matmul_item qkv[3] = {{&L->wq, s->q}, {&L->wk, s->k}, {&L->wv, s->v}};
    GT_TRY(gt_matmul_multi(k, qkv, 3, s->cur, n));
    if (L->bq) {
        GT_TRY(gt_add_bias(k, s->q, L->bq, n, nq));
        GT_TRY(gt_add_bias(k, s->k, L->bk, n, nkv));
        GT_TRY(gt_add_bias(k, s->v, L->bv, n, nkv));
    }
    if (L->q_norm) {
        GT_TRY(gt_rmsnorm(k, s->q, L->q_norm, s->q, (int64_t)n * nh, hd, hp->norm_eps));
        GT_TRY(gt_rmsnorm(k, s->k, L->k_norm, s->k, (int64_t)n * nkh, hd, hp->norm_eps));
    }
    bool swa = gt_hparams_layer_is_swa(hp, (uint32_t)layer);
    gt_rope_params rp = {
        .freq_base = swa ? hp->rope_base_swa : hp->rope_base,
        .freq_scale = swa ? 1.0f : hp->rope_freq_scale,
        .n_rot = (int)hp->n_rot,
        .neox = hp->rope_neox,
    };
    GT_TRY(gt_rope(k, s->q, n, nh, hd, b->pos, &rp));
    GT_TRY(gt_rope(k, s->k, n, nkh, hd, b->pos, &rp));

    /* Store K/V, then attend, one run of a sequence's consecutive tokens at a time. */
    for (int i0 = 0; i0 < n;) {
        int seq = b->seq[i0], i1 = i0 + 1;
        while (i1 < n && b->seq[i1] == seq) i1++;
        GT_TRY(gt_kv_cache_store(e->kv, il, seq, 0, b->pos + i0, s->k + (size_t)i0 * nkv, i1 - i0));
        GT_TRY(gt_kv_cache_store(e->kv, il, seq, 1, b->pos + i0, s->v + (size_t)i0 * nkv, i1 - i0));
        i0 = i1;
    }
    /* The attention over the cache is its own span in a trace (category
     * "kernel", inside the layer's): bench/decode_account.py sets its time
     * against the K and V bytes it reads, apart from the projections. */
    const uint64_t t_attn = gt_trace_enabled() ? gt_now_ns() : 0;
    for (int i0 = 0; i0 < n;) {
        int seq = b->seq[i0], i1 = i0 + 1;
        while (i1 < n && b->seq[i1] == seq) i1++;
        uint32_t n_kv_tok = (uint32_t)b->pos[i1 - 1] + 1;
        gt_kv_cache_blocks(e->kv, il, seq, 0, n_kv_tok, s->kblocks);
        gt_kv_cache_blocks(e->kv, il, seq, 1, n_kv_tok, s->vblocks);
        gt_attn_args a = {
            .q = s->q + (size_t)i0 * nq,
            .out = s->attn + (size_t)i0 * nq,
            .pos = b->pos + i0,
            .n_tok = i1 - i0,
            .n_head = nh,
            .n_kv_head = nkh,
            .head_dim = hd,
            .k_blocks = s->kblocks,
            .v_blocks = s->vblocks,
            .block_size = gt_kv_cache_block_size(e->kv),
            .head_stride = gt_kv_cache_head_stride(e->kv),
            .kv_type = gt_kv_cache_type(e->kv),
            .scale = 1.0f / sqrtf((float)hd),
            .window = swa ? (int)hp->sliding_window : 0,
            .softcap = 0.0f,
        };
        GT_TRY(gt_attention(k, &a));
        i0 = i1;
    }
    if (t_attn) {
        char name[40];
        snprintf(name, sizeof name, "layer %d kv attention", layer);
        gt_trace_span("kernel", name, t_attn);
    }
    if (e->mm_hook) gt__mm_hook(e, layer, "attn_output", -1, s->attn, n, L->wo.n_in);
    GT_TRY(gt_matmul(k, &L->wo, s->attn, s->out, n));
    (void)D;
    return block_out(e, sp, n, L->post_attn_norm, layer, "attn");
}

static gt_status ffn_block(gt_engine *e, const gt_batch *b, const seq_split *sp, int il) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_fwd_scratch *s = &e->s;
    int n = b->n, D = (int)hp->n_embd;
    GT_TRY(norm_in(e, sp, L->ffn_norm, e->w.layer0 + il, "ffn"));
    e->hook_layer = e->w.layer0 + il;
    e->hook_mlp = "";
    e->hook_expert = -1;
    if (hp->n_expert) GT_TRY(gt__moe(e, il, n));
    else GT_TRY(gt__mlp(e, &L->gate, &L->up, &L->down, s->cur, s->out, n));
    (void)D;
    return block_out(e, sp, n, L->post_ffn_norm, e->w.layer0 + il, "ffn");
}

gt_status gt__forward(gt_engine *e, const gt_batch *b, float *logits) {
    const gt_hparams *hp = &e->hp;
    gt_fwd_scratch *s = &e->s;
    int D = (int)hp->n_embd;
    bool first = e->shard.first_stage, last = e->shard.last_stage;
    if (first) GT_TRY(embed(e, b));
    else GT_TRY(gt_par_recv_prev(e->par, s->x, (size_t)b->n * D, "activations from the previous stage"));
    seq_split sp = split_rows(e, b->n);
    for (int il = 0; il < e->w.n_layer; il++) {
        /* Offloaded experts: predict this layer's experts from the stream the
         * previous layer left, so their copies overlap attention (the first
         * local layer has no previous layer here). */
        if (e->xc && il > 0 && !e->cfg.no_expert_prefetch) GT_TRY(gt__moe_prefetch(e, il, sp.r0, sp.nr));
        uint64_t t0 = gt_trace_enabled() ? gt_now_ns() : 0;
        GT_TRY(attention_block(e, b, &sp, il));
        if (t0) {
            char name[32];
            snprintf(name, sizeof name, "layer %d attention", e->w.layer0 + il);
            gt_trace_span("layer", name, t0);
            t0 = gt_now_ns();
        }
        GT_TRY(ffn_block(e, b, &sp, il));
        if (t0) {
            char name[32];
            snprintf(name, sizeof name, "layer %d ffn", e->w.layer0 + il);
            gt_trace_span("layer", name, t0);
        }
    }
    if (sp.on) /* every rank's rows back into the whole residual stream */
        GT_TRY(gt_par_allgather(e->par, s->x, (size_t)sp.chunk * D, "sequence-parallel allgather"));
    if (!last) return gt_par_send_next(e->par, s->x, (size_t)b->n * D, "activations to the next stage");
    /* Gather the rows whose logits are wanted, then norm and project them. */
    int m = 0;
    for (int32_t i = 0; i < b->n; i++) {
        bool want = b->want_logits ? b->want_logits[i] != 0 : i == b->n - 1;
        if (want) GT_TRY(gt_gather_rows(e->k, s->x, &i, 1, D, s->cur + (size_t)m++ * D));
    }
    if (m == 0) return GT_OK;
    GT_TRY(gt_rmsnorm(e->k, s->cur, e->w.output_norm, s->cur, m, D, hp->norm_eps));
    if (e->mm_hook)
        gt__mm_hook(e, -1, gt_gguf_find_tensor(e->g, "output.weight") ? "output" : "token_embd", -1,
                    s->cur, m, e->w.output.n_in);
    GT_TRY(gt_matmul(e->k, &e->w.output, s->cur, logits, m));
    if (hp->final_softcap > 0)
        GT_TRY(gt_softcap(e->k, logits, hp->final_softcap, (int64_t)m * e->w.n_vocab_local));
    return GT_OK;
}
