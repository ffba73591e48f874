/* Private to worker/: the engine's state, shared by engine.c (lifecycle,
 * batch validation) and forward.c (the layer math). */
#ifndef GT_ENGINE_INTERNAL_H
#define GT_ENGINE_INTERNAL_H

#include "parallel/scratch.h"
#include "worker/engine.h"
#include "worker/kv_cache.h"
#include "worker/weights.h"

typedef struct gt_fwd_scratch {
    float *x;     /* [B, n_embd] residual stream */
    float *cur;   /* [B, n_embd] normed input of a block */
    float *q;     /* [B, n_head * head_dim] */
    float *k;     /* [B, n_kv * head_dim] */
    float *v;     /* [B, n_kv * head_dim] */
    float *attn;  /* [B, n_head * head_dim] */
    float *out;   /* [B, n_embd] block output */
    float *gate;  /* [B, n_ff_max] */
    float *up;    /* [B, n_ff_max] */
    float *moe_x;   /* [B, n_embd] tokens gathered for one expert */
    float *moe_out; /* [B, n_embd] */
    float *router;  /* [B, n_expert] */
    int32_t *moe_ids;  /* [B, n_expert_used] */
    float *moe_w;      /* [B, n_expert_used] */
    int32_t *moe_rows;  /* [B, n_expert_used] every expert's rows, expert by expert */
    float *moe_rw;      /* [B, n_expert_used] their weights */
    int32_t *moe_start; /* [n_expert + 1] expert ex's rows are [moe_start[ex], moe_start[ex + 1]) */
    float *sp;    /* [B / tp + 1, n_embd] this rank's rows under sequence parallelism */
    const void **kblocks, **vblocks; /* [max_seq_blocks] */
    float *logits; /* [max_out_rows, local vocab] the step's logits rows (last stage) */
    int8_t *mb_want; /* [B] a pipeline micro-batch's wanted rows */
} gt_fwd_scratch;

struct gt_engine {
    gt_engine_config cfg;
    const gt_gguf *g;
    gt_gguf *g_owned;       /* the file when the engine opened it itself */
    gt_hparams hp;
    gt_kernels *k;
    gt_model_weights w;
    gt_kv_cache *kv;
    uint32_t n_ctx;
    int max_seq_blocks;
    gt_shard shard;         /* this rank's part (the whole model on one rank) */
    gt_par *par;            /* borrowed; NULL on one rank */
    int n_head, n_head_kv;  /* local heads */
    gt_fwd_scratch s;       /* pointers into scratch_mem */
    gt_scratch_layout layout;
    gt_buffer *scratch;     /* the one buffer behind s */
    gt_kernels *k_owned;    /* the kernels when the engine created them itself */
    bool kv_full;           /* the last decode found no KV block left */
    uint64_t expert_bytes_read; /* routed experts run so far: each expert's bytes once per
                                   layer and forward call in which any token chose it */
};

/* Runs the layers and the head for a validated batch whose positions are
 * reserved in the KV cache. */
gt_status gt__forward(gt_engine *e, const gt_batch *b, float *logits);

/* out[n, D] = down(act(gate(x)) * up(x)) for the n rows of x (mlp.c). */
gt_status gt__mlp(gt_engine *e, const gt_weight *gate, const gt_weight *up, const gt_weight *down,
                  const float *x, float *out, int n);

/* Lists every expert's rows in one counting pass over the n tokens' K
 * choices (ids, w: [n, K], ids within 0..E-1): expert ex's rows are
 * rows[start[ex] .. start[ex + 1]) in token order, with their weights in rw
 * (start: [E + 1]; rows, rw: [n * K]). O(n K + E) (moe.c). */
void gt__moe_bucket(const int32_t *ids, const float *w, int n, int K, int E, int32_t *start,
                    int32_t *rows, float *rw);

/* The MoE feed-forward of layer il for the batch's n rows of s->cur, into
 * s->out (moe.c). */
gt_status gt__moe(gt_engine *e, int il, int n);

#endif
