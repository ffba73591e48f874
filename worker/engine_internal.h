/* Private to worker/: the engine's state, shared by engine.c (lifecycle,
 * batch validation) and forward.c (the layer math). */
#ifndef GT_ENGINE_INTERNAL_H
#define GT_ENGINE_INTERNAL_H

#include "parallel/scratch.h"
#include "worker/engine.h"
#include "worker/expert_cache.h"
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
    float *moe_y;      /* [B * n_expert_used, n_embd] expert outputs (one rank: by expert;
                          EP: of the rows this rank's experts received) */
    int32_t *moe_pos;  /* [B * n_expert_used] row of the output of (token, slot) */
    float *ep_send;    /* [B * n_expert_used, n_embd] EP: rows out to the experts, outputs back */
    float *ep_recv;    /* [B * n_expert_used, n_embd] EP: rows in for this rank's experts */
    int32_t *ep_rows;  /* [B * n_expert_used] EP: the token row of each sent row */
    float *pred_cur;    /* [B, n_embd] predicted prefetch: rows normed with the next layer's ffn_norm */
    float *pred_router; /* [B, n_expert] its router probabilities */
    float *pred_w;      /* [B, n_expert_used] its chosen experts' weights (unused) */
    int32_t *pred_ids;  /* [B, n_expert_used] its predicted experts */
} gt_fwd_scratch;

/* Expert parallelism: the all-to-all's counts and this rank's counters. */
typedef struct gt_ep_state {
    int32_t *send_cnt, *recv_cnt; /* [n_expert]: rows per (member, its local expert) */
    size_t *send_floats, *recv_floats; /* [ep] floats per member */
    uint64_t *rows;      /* [n_layer local] rows this rank's experts computed */
    uint64_t *a2a_bytes; /* [n_layer local] bytes this rank sent in the layer's all-to-alls */
    int32_t *owned_ids;  /* [n_expert / ep] this rank's experts that received rows (expert cache) */
} gt_ep_state;

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
    gt_expert_cache *xc;    /* offloaded experts; NULL: all resident */
    uint64_t *expert_counts; /* [n_layer local, n_expert] routed pairs (MoE) */
    gt_ep_state ep;         /* expert parallelism (zeroed without it) */
    uint64_t expert_bytes_read; /* routed experts run so far: each expert's bytes once per
                                   layer and forward call in which any token chose it */
    gt_engine_mm_hook_fn mm_hook; /* matrix-input observer (imatrix); NULL: off */
    void *mm_hook_ctx;
    int hook_layer;              /* the model layer of the MLP gt__mlp runs next */
    const char *hook_mlp;        /* its name suffix: "", "_exps", "_shexp" */
    int hook_expert;             /* its expert, or -1 */
};

/* Reports rows x[n, n_in] going into blk.<layer>.<what>.weight (layer < 0:
 * <what>.weight) to the matrix-input hook (mm_hook.c); call only when
 * e->mm_hook is set. */
void gt__mm_hook(gt_engine *e, int layer, const char *what, int expert, const float *x, int n,
                 int64_t n_in);
/* The same for gt__mlp's matrices ("ffn_gate", "ffn_up", "ffn_down" plus
 * e->hook_mlp) of layer e->hook_layer. */
void gt__mm_hook_mlp(gt_engine *e, const char *mat, const float *x, int n, int64_t n_in);

/* Runs the layers and the head for a validated batch whose positions are
 * reserved in the KV cache. */
gt_status gt__forward(gt_engine *e, const gt_batch *b, float *logits);

/* out[n, D] = down(act(gate(x)) * up(x)) for the n rows of x (mlp.c). */
gt_status gt__mlp(gt_engine *e, const gt_weight *gate, const gt_weight *up, const gt_weight *down,
                  const float *x, float *out, int n);

/* Lists every expert's rows in one counting pass over the n tokens' K
 * choices (ids: [n, K], within 0..E-1): expert ex's rows are
 * rows[start[ex] .. start[ex + 1]) in token order (the token of each), and
 * pos[t * K + j] is the row of token t's slot j (start: [E + 1]; rows, pos:
 * [n * K]). O(n K + E) (moe_bucket.c). */
void gt__moe_bucket(const int32_t *ids, int n, int K, int E, int32_t *start, int32_t *rows, int32_t *pos);

/* The MoE feed-forward of layer il for the batch's n rows of s->cur, into
 * s->out (moe.c). */
gt_status gt__moe(gt_engine *e, int il, int n);

/* The expert cache and routing counts (engine_experts.c). */
gt_status gt__engine_experts_init(gt_engine *e);
/* Adds the router's n_pairs choices ids of local layer il to the routing
 * counts behind --expert-stats-out. */
void gt__moe_count_routes(gt_engine *e, int il, const int32_t *ids, int n_pairs);
void gt__engine_experts_free(gt_engine *e);
/* The weighted sum of the routed experts' outputs for rows t0..t0+nt of
 * s->out, slot by slot (j = 0..K-1) whatever rank computed them, so that
 * the sum is the same bits under expert parallelism as on one rank: row
 * pos[t * K + j] of y is the output of token t0 + t's expert in slot j,
 * w[t * K + j] its weight (moe_combine.c). */
gt_status gt__moe_combine(gt_engine *e, const float *y, const int32_t *pos, const float *w, int nt,
                          int t0);

/* The routed experts of layer il under expert parallelism (moe_ep.c): this
 * rank routes its slice of the batch's tokens, sends each row to the rank
 * owning its expert, computes the rows sent to its own experts, and sums
 * the returned outputs into its slice's rows of s->out (other rows are left
 * alone: the stage group's reduction assembles them). */
gt_status gt__moe_ep(gt_engine *e, int il, int n);

/* Predicted prefetch of offloaded experts (moe_prefetch.c): layer il's
 * ffn_norm and router over the residual rows [r0, r0 + nr) of s->x as the
 * previous layer left them, and the predicted experts handed to the expert
 * cache as a prefetch hint, so their copies overlap attention of il. Call
 * only with an expert cache, before attention of il. */
gt_status gt__moe_prefetch(gt_engine *e, int il, int r0, int nr);
gt_status gt__moe_ep_init(gt_engine *e);
void gt__moe_ep_free(gt_engine *e);

#endif
