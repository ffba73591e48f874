/* The forward pass of the llama family over one batch of tokens.
 *
 * All tokens of the batch go through every matrix together (one gt_matmul
 * per weight, so prefill is a GEMM and decode a GEMV); attention runs per
 * run of consecutive tokens of one sequence against that sequence's paged
 * KV cache. Architecture differences are feature flags in gt_hparams:
 * QKV bias (qwen2), QK-norm (qwen3, gemma3), post-norms, GELU, embedding
 * scale, sliding-window layers (gemma3) and MoE (Mixtral, qwen2moe). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/quant.h"
#include "common/timer.h"
#include "common/trace.h"
#include "worker/engine_internal.h"

static void add_bias(float *x, const float *b, int n_rows, int n) {
    for (int r = 0; r < n_rows; r++)
        for (int i = 0; i < n; i++) x[(size_t)r * n + i] += b[i];
}

/* Embedding rows for the batch's tokens, scaled for gemma. A rank holds the
 * rows of its vocabulary slice; the others are zero, and the stage group's
 * sum assembles every row (vocabulary-parallel embedding). */
static gt_status embed(gt_engine *e, const gt_batch *b) {
    const gt_tensor_info *t = e->w.tok_embd;
    size_t row_bytes;
    int D = (int)e->hp.n_embd;
    gt_dtype_row_bytes(t->type, D, &row_bytes);
    float scale = e->hp.embd_scale ? sqrtf((float)D) : 1.0f;
    int64_t v0 = e->w.vocab0, nv = e->w.n_vocab_local;
    for (int i = 0; i < b->n; i++) {
        float *x = e->s.x + (size_t)i * D;
        int64_t r = b->tokens[i] - v0;
        if (r < 0 || r >= nv) {
            memset(x, 0, (size_t)D * sizeof *x);
            continue;
        }
        GT_TRY(gt_dequantize_row(t->type, e->w.embd_rows + row_bytes * (size_t)r, x, D));
        if (scale != 1.0f)
            for (int j = 0; j < D; j++) x[j] *= scale;
    }
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
    if (sp->nr > 0) gt_rmsnorm(e->k, s->x + (size_t)sp->r0 * D, w, s->cur + (size_t)sp->r0 * D, sp->nr, (int64_t)D, e->hp.norm_eps);
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
        memset(s->out + (size_t)n * D, 0, (padded - (size_t)n) * D * sizeof(float));
        snprintf(label, sizeof label, "layer %d %s reduce-scatter", il, what);
        GT_TRY(gt_par_reduce_scatter(e->par, s->out, s->sp, (size_t)sp->chunk * D, label));
        out = s->sp;
    } else if (e->par && e->shard.grid.tp > 1) {
        snprintf(label, sizeof label, "layer %d %s allreduce", il, what);
        GT_TRY(gt_par_allreduce(e->par, s->out, (size_t)n * D, label));
    }
    if (sp->nr == 0) return GT_OK;
    if (post_norm) gt_rmsnorm(e->k, out, post_norm, out, sp->nr, (int64_t)D, e->hp.norm_eps);
    gt_add(e->k, s->x + (size_t)sp->r0 * D, out, (int64_t)sp->nr * (int64_t)D);
    return GT_OK;
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
    gt_matmul(k, &L->wq, s->cur, s->q, n);
    gt_matmul(k, &L->wk, s->cur, s->k, n);
    gt_matmul(k, &L->wv, s->cur, s->v, n);
    if (L->bq) {
        add_bias(s->q, L->bq, n, nq);
        add_bias(s->k, L->bk, n, nkv);
        add_bias(s->v, L->bv, n, nkv);
    }
    if (L->q_norm) {
        gt_rmsnorm(k, s->q, L->q_norm, s->q, (int64_t)n * nh, hd, hp->norm_eps);
        gt_rmsnorm(k, s->k, L->k_norm, s->k, (int64_t)n * nkh, hd, hp->norm_eps);
    }
    bool swa = gt_hparams_layer_is_swa(hp, (uint32_t)layer);
    gt_rope_params rp = {
        .freq_base = swa ? hp->rope_base_swa : hp->rope_base,
        .freq_scale = swa ? 1.0f : hp->rope_freq_scale,
        .n_rot = (int)hp->n_rot,
        .neox = hp->rope_neox,
    };
    gt_rope(k, s->q, n, nh, hd, b->pos, &rp);
    gt_rope(k, s->k, n, nkh, hd, b->pos, &rp);

    /* Store K/V, then attend, one run of a sequence's consecutive tokens at a time. */
    for (int i0 = 0; i0 < n;) {
        int seq = b->seq[i0], i1 = i0 + 1;
        while (i1 < n && b->seq[i1] == seq) i1++;
        gt_kv_cache_store(e->kv, il, seq, 0, b->pos + i0, s->k + (size_t)i0 * nkv, i1 - i0);
        gt_kv_cache_store(e->kv, il, seq, 1, b->pos + i0, s->v + (size_t)i0 * nkv, i1 - i0);
        i0 = i1;
    }
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
            .kv_type = gt_kv_cache_type(e->kv),
            .scale = 1.0f / sqrtf((float)hd),
            .window = swa ? (int)hp->sliding_window : 0,
            .softcap = 0.0f,
        };
        gt_attention(k, &a);
        i0 = i1;
    }
    gt_matmul(k, &L->wo, s->attn, s->out, n);
    (void)D;
    return block_out(e, sp, n, L->post_attn_norm, layer, "attn");
}

/* out[n, D] = down(act(gate(x)) * up(x)) for the n rows of x. */
static void mlp(gt_engine *e, const gt_weight *gate, const gt_weight *up, const gt_weight *down,
                const float *x, float *out, int n) {
    gt_fwd_scratch *s = &e->s;
    int64_t F = gate->n_out;
    gt_matmul(e->k, gate, x, s->gate, n);
    gt_matmul(e->k, up, x, s->up, n);
    if (e->hp.gelu) gt_geglu(e->k, s->gate, s->up, s->gate, (int64_t)n * F);
    else gt_swiglu(e->k, s->gate, s->up, s->gate, (int64_t)n * F);
    gt_matmul(e->k, down, s->gate, out, n);
}

/* Routes each token to its top experts and sums their weighted outputs
 * into s->out. Mixtral renormalises the chosen experts' probabilities;
 * qwen2moe keeps the full-softmax values and adds a gated shared expert. */
static void moe(gt_engine *e, int il, int n) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_fwd_scratch *s = &e->s;
    int D = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    bool renorm = hp->arch != GT_ARCH_QWEN2MOE;
    for (int t = 0; t < n; t++) {
        float *r = s->router + (size_t)t * E;
        const float *x = s->cur + (size_t)t * D;
        float max = -INFINITY;
        for (int ex = 0; ex < E; ex++) {
            double acc = 0;
            for (int j = 0; j < D; j++) acc += (double)x[j] * L->router[(size_t)ex * D + j];
            r[ex] = (float)acc;
            if (r[ex] > max) max = r[ex];
        }
        double sum = 0;
        for (int ex = 0; ex < E; ex++) sum += exp((double)(r[ex] - max));
        for (int ex = 0; ex < E; ex++) r[ex] = (float)(exp((double)(r[ex] - max)) / sum);
        int32_t *ids = s->moe_ids + (size_t)t * K;
        float *w = s->moe_w + (size_t)t * K, wsum = 0;
        for (int j = 0; j < K; j++) { /* selection of the K largest, lowest id on ties */
            int best = -1;
            for (int ex = 0; ex < E; ex++) {
                bool taken = false;
                for (int q = 0; q < j; q++) taken |= ids[q] == ex;
                if (!taken && (best < 0 || r[ex] > r[best])) best = ex;
            }
            ids[j] = best;
            w[j] = r[best];
            wsum += r[best];
        }
        if (renorm)
            for (int j = 0; j < K; j++) w[j] /= wsum;
    }
    memset(s->out, 0, (size_t)n * D * sizeof(float));
    for (int ex = 0; ex < E; ex++) {
        int m = 0;
        for (int t = 0; t < n; t++)
            for (int j = 0; j < K; j++)
                if (s->moe_ids[(size_t)t * K + j] == ex) {
                    s->moe_rows[m] = t;
                    s->moe_rw[m] = s->moe_w[(size_t)t * K + j];
                    memcpy(s->moe_x + (size_t)m * D, s->cur + (size_t)t * D, (size_t)D * sizeof(float));
                    m++;
                }
        if (!m) continue;
        const gt_expert_weights *X = &L->experts[ex];
        mlp(e, &X->gate, &X->up, &X->down, s->moe_x, s->moe_out, m);
        for (int i = 0; i < m; i++) {
            float *dst = s->out + (size_t)s->moe_rows[i] * D;
            const float *src = s->moe_out + (size_t)i * D;
            for (int j = 0; j < D; j++) dst[j] += s->moe_rw[i] * src[j];
        }
    }
    if (L->sh_gate.n_out) {
        mlp(e, &L->sh_gate, &L->sh_up, &L->sh_down, s->cur, s->moe_out, n);
        for (int t = 0; t < n; t++) {
            float g = 1.0f;
            if (L->sh_gate_inp) {
                double acc = 0;
                for (int j = 0; j < D; j++) acc += (double)s->cur[(size_t)t * D + j] * L->sh_gate_inp[j];
                g = (float)(1.0 / (1.0 + exp(-acc)));
            }
            for (int j = 0; j < D; j++) s->out[(size_t)t * D + j] += g * s->moe_out[(size_t)t * D + j];
        }
    }
}

static gt_status ffn_block(gt_engine *e, const gt_batch *b, const seq_split *sp, int il) {
    const gt_hparams *hp = &e->hp;
    const gt_layer_weights *L = &e->w.layers[il];
    gt_fwd_scratch *s = &e->s;
    int n = b->n, D = (int)hp->n_embd;
    GT_TRY(norm_in(e, sp, L->ffn_norm, e->w.layer0 + il, "ffn"));
    if (hp->n_expert) moe(e, il, n);
    else mlp(e, &L->gate, &L->up, &L->down, s->cur, s->out, n);
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
    for (int i = 0; i < b->n; i++) {
        bool want = b->want_logits ? b->want_logits[i] != 0 : i == b->n - 1;
        if (want) memcpy(s->cur + (size_t)m++ * D, s->x + (size_t)i * D, (size_t)D * sizeof(float));
    }
    if (m == 0) return GT_OK;
    gt_rmsnorm(e->k, s->cur, e->w.output_norm, s->cur, m, D, hp->norm_eps);
    gt_matmul(e->k, &e->w.output, s->cur, logits, m);
    if (hp->final_softcap > 0) {
        float c = hp->final_softcap;
        for (size_t i = 0; i < (size_t)m * (size_t)e->w.n_vocab_local; i++) logits[i] = c * tanhf(logits[i] / c);
    }
    return GT_OK;
}
