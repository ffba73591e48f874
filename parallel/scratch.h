/* The memory of one rank's forward pass, laid out once: every activation
 * buffer of the engine, the rank's logits rows and the KV block tables, each
 * at a 64-byte aligned offset of one allocation.
 *
 * One function computes it from the hyper-parameters, the rank's shard and
 * the job's limits, together with the kernels' workspace request for the
 * same shard; the plan (gantry plan, --mem-budget) sums both and the engine
 * allocates both, so the two cannot disagree. */
#ifndef GT_SCRATCH_H
#define GT_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/arch.h"
#include "parallel/plan.h"

typedef enum gt_scratch_buf {
    GT_SCR_X = 0,    /* [B, n_embd] residual stream */
    GT_SCR_CUR,      /* [B, n_embd] normed input of a block */
    GT_SCR_Q,        /* [B, local heads × head_dim] */
    GT_SCR_K,        /* [B, local kv heads × head_dim] */
    GT_SCR_V,        /* [B, local kv heads × head_dim] */
    GT_SCR_ATTN,     /* [B, local heads × head_dim] attention output */
    GT_SCR_OUT,      /* [B, n_embd] block output */
    GT_SCR_GATE,     /* [B, widest local MLP] */
    GT_SCR_UP,       /* [B, widest local MLP] */
    GT_SCR_MOE_X,    /* [B, n_embd] tokens gathered for one expert (MoE) */
    GT_SCR_MOE_OUT,  /* [B, n_embd] */
    GT_SCR_ROUTER,   /* [B, n_expert] router probabilities */
    GT_SCR_MOE_W,    /* [B, n_expert_used] chosen experts' weights */
    GT_SCR_MOE_IDS,  /* [B, n_expert_used] i32 chosen experts */
    GT_SCR_MOE_ROWS, /* [B, n_expert_used] i32 every expert's rows, expert by expert */
    GT_SCR_MOE_RW,   /* [B, n_expert_used] their weights */
    GT_SCR_MOE_START, /* [n_expert + 1] i32 where each expert's rows start in MOE_ROWS */
    GT_SCR_SP,       /* [B / tp + 1, n_embd] this rank's rows under sequence parallelism */
    GT_SCR_KBLOCKS,  /* [blocks per sequence] pointers: one sequence's K blocks */
    GT_SCR_VBLOCKS,  /* [blocks per sequence] pointers: its V blocks */
    GT_SCR_LOGITS,   /* [out rows, local vocab] f32 logits rows (last stage) */
    GT_SCR_MB_WANT,  /* [B] i8 which rows of a pipeline micro-batch want logits */
    GT_SCR_MOE_Y,    /* [B × n_expert_used, n_embd] every (token, slot)'s expert output (MoE) */
    GT_SCR_MOE_POS,  /* [B × n_expert_used] i32 row of MOE_Y (or EP_SEND) per (token, slot) */
    GT_SCR_EP_SEND,  /* [B × n_expert_used, n_embd] rows sent to their experts, then their
                        outputs back (expert parallelism) */
    GT_SCR_EP_RECV,  /* [B × n_expert_used, n_embd] rows received for this rank's experts */
    GT_SCR_EP_ROWS,  /* [B × n_expert_used] i32 token rows in send order, or received rows of
                        one expert */
    GT_SCR_PRED_CUR,    /* [B, n_embd] rows normed for the predicted prefetch (MoE) */
    GT_SCR_PRED_ROUTER, /* [B, n_expert] its router probabilities */
    GT_SCR_PRED_W,      /* [B, n_expert_used] its chosen experts' weights (unused) */
    GT_SCR_PRED_IDS,    /* [B, n_expert_used] i32 its predicted experts */
    GT_SCR_COUNT
} gt_scratch_buf;

typedef struct gt_scratch_config {
    int max_batch_tokens; /* tokens per forward call */
    int max_out_rows;     /* logits rows one step returns */
    uint32_t n_ctx;       /* positions per sequence */
    int kv_block_size;
    int n_threads;        /* for the kernels' workspace */
} gt_scratch_config;

typedef struct gt_scratch_layout {
    size_t offset[GT_SCR_COUNT]; /* from the start of the allocation, 64-byte aligned */
    size_t bytes[GT_SCR_COUNT];  /* 0 when the rank has no such buffer */
    size_t total_bytes;          /* of the one scratch buffer */
    int64_t rows;                /* B: batch rows, padded for sequence parallelism */
    gt_workspace_req ws;         /* what the kernels reserve for this shard */
    size_t workspace_bytes;      /* gt_kernels_workspace_bytes(&ws) */
} gt_scratch_layout;

/* Fills *out for shard s (the whole model on one rank). Pure. */
void gt_scratch_layout_compute(const gt_hparams *hp, const gt_shard *s, const gt_scratch_config *c,
                               gt_scratch_layout *out);
/* Name of a buffer ("residual stream"), for messages and `gantry plan`. */
const char *gt_scratch_buf_name(gt_scratch_buf b);

#endif
