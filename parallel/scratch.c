/* The forward pass's memory layout; see scratch.h. */
#include "parallel/scratch.h"

#include <string.h>

static const char *const k_names[GT_SCR_COUNT] = {
    "residual stream", "normed activations", "queries", "keys", "values", "attention output",
    "block output", "MLP gate", "MLP up projection", "expert inputs", "expert outputs",
    "router probabilities", "expert weights", "expert choices", "expert rows", "expert row weights",
    "expert row starts",
    "sequence-parallel rows", "K block table", "V block table", "logits rows", "micro-batch rows",
    "expert outputs by slot", "expert output rows", "expert-parallel send rows",
    "expert-parallel received rows", "expert-parallel row indices", "prefetch normed rows",
    "prefetch router probabilities", "prefetch expert weights", "prefetch expert choices",
};

const char *gt_scratch_buf_name(gt_scratch_buf b) {
    return (unsigned)b < GT_SCR_COUNT ? k_names[b] : "?";
}

void gt_scratch_layout_compute(const gt_hparams *hp, const gt_shard *s, const gt_scratch_config *c,
                               gt_scratch_layout *out) {
    memset(out, 0, sizeof *out);
    size_t tp = (size_t)s->grid.tp;
    /* Rows are padded to a multiple of tp under sequence parallelism. */
    size_t B = (size_t)c->max_batch_tokens + tp, D = hp->n_embd, f = sizeof(float);
    size_t Q = (size_t)gt_range_len(s->heads) * hp->head_dim;
    size_t KV = (size_t)gt_range_len(s->kv_heads) * hp->head_dim;
    size_t F = (size_t)gt_range_len(s->ff);
    if ((size_t)gt_range_len(s->ff_exp) > F) F = (size_t)gt_range_len(s->ff_exp);
    if ((size_t)gt_range_len(s->ff_shexp) > F) F = (size_t)gt_range_len(s->ff_shexp);
    size_t *n = out->bytes;
    n[GT_SCR_X] = n[GT_SCR_CUR] = n[GT_SCR_OUT] = B * D * f;
    n[GT_SCR_Q] = n[GT_SCR_ATTN] = B * Q * f;
    n[GT_SCR_K] = n[GT_SCR_V] = B * KV * f;
    n[GT_SCR_GATE] = n[GT_SCR_UP] = B * F * f;
    if (hp->n_expert) {
        size_t E = hp->n_expert, K = hp->n_expert_used;
        n[GT_SCR_MOE_X] = n[GT_SCR_MOE_OUT] = B * D * f;
        n[GT_SCR_ROUTER] = B * E * f;
        n[GT_SCR_MOE_W] = B * K * f;
        n[GT_SCR_MOE_IDS] = B * K * sizeof(int32_t);
        n[GT_SCR_MOE_ROWS] = B * K * sizeof(int32_t);
        n[GT_SCR_MOE_RW] = B * K * f;
        n[GT_SCR_MOE_START] = (E + 1) * sizeof(int32_t);
        n[GT_SCR_MOE_Y] = B * K * D * f;
        n[GT_SCR_MOE_POS] = B * K * sizeof(int32_t);
        if (s->grid.ep > 1) {
            /* A rank sends at most its tokens' K rows and receives at most
             * one row per token for each of its experts (top-k is distinct). */
            n[GT_SCR_EP_SEND] = n[GT_SCR_EP_RECV] = B * K * D * f;
            n[GT_SCR_EP_ROWS] = B * K * sizeof(int32_t);
        }
        /* The predicted prefetch of offloaded experts (worker/moe_prefetch.c).
         * Whether experts are offloaded is decided after the activations
         * are sized (the slots take what they leave), so every MoE shard
         * has these. */
        n[GT_SCR_PRED_CUR] = B * D * f;
        n[GT_SCR_PRED_ROUTER] = B * E * f;
        n[GT_SCR_PRED_W] = B * K * f;
        n[GT_SCR_PRED_IDS] = B * K * sizeof(int32_t);
    }
    if (tp > 1) n[GT_SCR_SP] = (B / tp + 1) * D * f;
    size_t blocks = ((size_t)c->n_ctx + (size_t)c->kv_block_size - 1) / (size_t)c->kv_block_size;
    n[GT_SCR_KBLOCKS] = n[GT_SCR_VBLOCKS] = blocks * sizeof(void *);
    if (s->last_stage) {
        size_t rows = (size_t)c->max_out_rows;
        if (rows > (size_t)c->max_batch_tokens) rows = (size_t)c->max_batch_tokens;
        n[GT_SCR_LOGITS] = rows * (size_t)gt_range_len(s->vocab) * f;
    }
    n[GT_SCR_MB_WANT] = B;
    size_t off = 0;
    for (int i = 0; i < GT_SCR_COUNT; i++) {
        out->offset[i] = off;
        off += (n[i] + 63) & ~(size_t)63;
    }
    out->total_bytes = off;
    out->rows = (int64_t)B;
    /* The longest matmul row of the shard: the hidden size (wq wk wv gate
     * up, router, head), the local heads (wo) or the widest local MLP
     * (down of the dense, expert and shared MLPs). */
    size_t n_in = D;
    size_t Qv = (size_t)gt_range_len(s->heads) * (hp->head_dim_v > hp->head_dim ? hp->head_dim_v : hp->head_dim);
    if (Qv > n_in) n_in = Qv;
    if (F > n_in) n_in = F;
    out->ws = (gt_workspace_req){
        .max_tokens = (int64_t)B,
        .max_n_in = (int64_t)n_in,
        .max_heads = (int)gt_range_len(s->heads),
        .head_dim = (int)hp->head_dim,
        .max_kv = c->n_ctx,
        .n_threads = c->n_threads > 0 ? c->n_threads : 1,
    };
    out->workspace_bytes = gt_kernels_workspace_bytes(&out->ws);
}
