/* The sharding plan and the memory planner: which layers, heads, MLP columns
 * and vocabulary rows each rank of a tp × pp grid holds, how many bytes that
 * is, and how a per-rank memory budget is filled (weights first, then the KV
 * block pool).
 *
 * A plan is computed from GGUF metadata and tensor infos only, never from
 * tensor data, so every rank (and `gantry plan`) builds the same plan cheaply
 * and the engine then materialises just its shard: for each tensor of the
 * file, gt_plan_tensor_slice() says whether the rank holds it, whole or as a
 * slice of rows or columns, and where those bytes are inside each stored row.
 * The byte totals are sums of exactly those slices, so what the plan prints
 * is what the engine loads.
 *
 * Choices:
 * - Layers: contiguous stages of n_layer / pp layers, the first
 *   n_layer % pp stages one more. Counting layers (not bytes) keeps stage
 *   compute even; the last stage also runs the LM head, so giving the extra
 *   layers to earlier stages leans the same way as balancing by bytes.
 * - Tensor parallelism: attention by query heads (n_head % tp == 0), KV heads
 *   split the same way when tp <= n_head_kv (n_head_kv % tp == 0) and
 *   replicated when tp > n_head_kv (tp % n_head_kv == 0): then the tp/n_kv
 *   ranks whose query heads share a kv head all hold it. MLP columns are split
 *   n_ff * p / tp .. n_ff * (p+1) / tp when every boundary falls on a block
 *   of the quantized matrices that slice them (down); otherwise the columns
 *   are dealt out in whole blocks, the first ranks one block more (768
 *   columns of Q4_K: 512 + 256 at tp 2, 256 + 256 + 256 + 0 at tp 4), and a
 *   rank may hold none (plan_split.c). The vocabulary (token embedding on the
 *   first stage, LM head on the last) is split in n_vocab / tp rows, the last
 *   slice taking the remainder.
 * - MoE: every routed expert and the shared expert are split by columns like
 *   a dense MLP (the router is replicated). With expert parallelism (ep > 1,
 *   ep dividing tp and n_expert) EP rank i = tp_rank / (tp / ep) holds only
 *   experts [i * E / ep, (i + 1) * E / ep), each split by columns over the
 *   tp / ep ranks that share its range (whole when ep == tp); attention, the
 *   router and the shared expert stay split over the whole stage group.
 * - Column-parallel weights (wq wk wv gate up, LM head, embedding) are cut
 *   into whole rows and always slice cleanly. Row-parallel weights (wo down)
 *   keep every row and take a column range of it; a quantized row can only be
 *   cut at block boundaries, which is checked per tensor with the file's
 *   real types: MLP columns are split at block granularity (above), and a
 *   head split that would cut a block is refused with a sentence naming the
 *   tensor.
 * - Norms, q/k norms and routers are replicated in each stage group. */
#ifndef GT_PLAN_H
#define GT_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "parallel/grid.h"

/* A half-open index range [begin, end). */
typedef struct gt_range {
    int64_t begin, end;
} gt_range;
static inline int64_t gt_range_len(gt_range r) { return r.end - r.begin; }

typedef struct gt_plan_config {
    int world; /* ranks; 0: tp * pp */
    int tp, pp;
    uint32_t n_ctx;            /* positions per sequence for the KV pool; 0: min(training, 4096) */
    int n_seqs;                /* sequences with a full context in the KV pool */
    int kv_block_size;         /* tokens per KV block */
    gt_dtype kv_type;          /* GT_F16, GT_BF16 or GT_F32 */
    int max_batch_tokens;      /* tokens per forward step, for the activation buffers */
    uint64_t mem_budget_bytes; /* per rank; 0: no budget (KV pool sized by n_ctx × n_seqs) */
    int max_out_rows;          /* logits rows per step on the last stage; 0: n_seqs */
    int n_threads;             /* compute threads per rank (the kernels' workspace); 0: 1 */
    uint64_t kv_host_bytes;    /* per rank: host memory for evicted cached KV blocks; 0: none */
    int kv_blocks;             /* KV pool blocks; 0: n_ctx × n_seqs tokens' worth */
    uint64_t device_mem_bytes; /* per rank: device budget; routed experts that do not fit stay in
                                  host memory behind an expert cache (plan_experts.c); 0: none */
    const struct gt_kernels *kernels; /* sizes prepared expert copies; NULL: their stored rows */
    int ep;                    /* expert parallelism inside each stage group; 0 or 1: none */
} gt_plan_config;
#define GT_PLAN_CONFIG_INIT                                                                        \
    { 0, 1, 1, 0, 1, 16, GT_F16, 512, 0, 0, 0, 0, 0, 0, NULL, 0 }

/* One rank's shard and its memory. */
typedef struct gt_shard {
    gt_grid grid;
    bool first_stage, last_stage; /* holds the embedding / the output norm and LM head */
    gt_range layers;              /* [l0, l1) */
    gt_range heads;               /* query heads */
    gt_range kv_heads;            /* kv heads this rank stores */
    int kv_copies;     /* ranks of the stage that store each of these kv heads (1: split) */
    gt_range ff;       /* dense MLP columns of n_ff (empty for MoE-only models) */
    gt_range ff_exp;   /* columns of every held routed expert's MLP (n_ff_exp) */
    gt_range experts;  /* routed experts held: [0, n_expert), or the EP rank's range */
    gt_range ff_shexp; /* shared expert columns (n_ff_shexp) */
    gt_range vocab;    /* embedding rows (first stage) and LM head rows (last stage) */

    /* Weight bytes, summed over this rank's slices of the file's tensors. */
    uint64_t embd_bytes;       /* token embedding slice (first stage; last stage too when tied) */
    uint64_t head_bytes;       /* LM head slice (last stage) */
    uint64_t attn_bytes;       /* wq wk wv wo (+ biases) of the local layers */
    uint64_t ffn_bytes;        /* dense MLP and shared expert */
    uint64_t expert_bytes;     /* routed experts: what expert offload could move to host */
    uint64_t replicated_bytes; /* norms, q/k norms, routers: whole on every rank of the stage */
    uint64_t weight_bytes;     /* all of the above */

    uint64_t kv_bytes_per_token; /* K and V of every local layer, local kv heads */
    uint64_t kv_block_bytes;     /* kv_bytes_per_token × kv_block_size */
    uint64_t kv_bytes;           /* pool for n_ctx × n_seqs tokens (whole blocks) */
    uint64_t kv_host_bytes;      /* host tier: whole blocks within kv_host_bytes (not in total_bytes) */
    uint64_t act_bytes;          /* the forward pass's scratch and the kernels' workspace */
    uint64_t total_bytes;        /* weights + KV pool + activations */

    /* Memory planner, filled when mem_budget_bytes > 0. */
    bool weights_fit;              /* weights + activations within the budget */
    uint64_t offload_bytes;        /* weights that would have to live in host memory */
    uint64_t offload_expert_bytes; /* of which routed experts (cold-expert cache) */
    int64_t kv_blocks_fit;         /* KV blocks in the rest of the budget */
    int64_t kv_tokens_fit;         /* kv_blocks_fit × kv_block_size */

    /* Expert offload, filled when device_mem_bytes > 0 (plan_experts.c). */
    int n_expert, n_expert_used;   /* experts this rank holds (of every layer; all without --ep) and
                                      used per token; 0 for a dense model */
    uint64_t expert_slot_bytes;    /* one prepared expert in every local layer (a slot each) */
    int expert_slots;              /* device slots per local layer; 0: experts all resident */
    uint64_t expert_pool_bytes;    /* expert_slots × expert_slot_bytes: the device expert pool */
    uint64_t device_min_bytes;     /* the smallest device budget: n_expert_used slots per layer */
} gt_shard;

/* The MLP dimensions that tensor parallelism splits by columns. */
typedef enum gt_ff_dim {
    GT_FF_DENSE = 0, /* n_ff of a dense model */
    GT_FF_EXPERT,    /* n_ff_exp of every routed expert */
    GT_FF_SHARED,    /* n_ff_shexp of the shared expert */
    GT_FF_DIMS
} gt_ff_dim;

/* How one MLP dimension is split over the tp ranks of every stage. */
typedef struct gt_ff_split {
    int64_t n;       /* columns; 0 when the model has no such MLP */
    int64_t granule; /* columns per indivisible unit: the lcm of the block sizes of the
                        matrices that slice the dimension inside their rows (1: unquantized) */
    bool uneven;     /* dealt out in whole granules, because the even split would cut one */
} gt_ff_split;

typedef struct gt_plan {
    gt_plan_config cfg; /* as given, with defaults filled in */
    gt_hparams hp;
    int n_ranks;
    gt_shard *shards;     /* [n_ranks], rank order */
    uint64_t model_bytes; /* sum of every tensor's bytes in the file */
    gt_ff_split ff_split[GT_FF_DIMS]; /* the MLP dimensions' splits (ranges in the shards) */
    /* Network per decoded token (f32 activations). */
    uint64_t tp_allreduce_bytes;  /* per stage group: 2 allreduces of n_embd per local layer, summed
                                     over stages, plus the vocab-parallel embedding's one */
    int tp_allreduces;            /* their count per token */
    uint64_t pp_send_bytes;       /* (pp - 1) activation sends of n_embd */
    uint64_t logits_gather_bytes; /* sampling candidates gathered on the last stage (top-40
                                     (logit, id) pairs per rank), not the logits */
} gt_plan;

/* Builds the plan for every rank of the grid from the file's metadata and
 * tensor infos. On success the caller owns *out (gt_plan_free). Statuses:
 * GT_ERR_INVALID_ARG for an impossible layout (world != tp × pp, heads or kv
 * heads not dividing over tp, more stages than layers, a head split that
 * would cut a quantized block, a vocabulary smaller than tp; ep > 1 on a
 * dense model, with experts or tp not divisible by ep) or a bad config
 * value; GT_ERR_UNSUPPORTED for a tensor the plan does not know how
 * to split when tp > 1; GT_ERR_FORMAT / GT_ERR_NOT_FOUND from the
 * hyper-parameters or a tensor whose shape disagrees with them;
 * GT_ERR_NOMEM. Each with one sentence. *out is zeroed on failure. Pure
 * function of its inputs; thread-safe. */
gt_status gt_plan_build(const gt_gguf *g, const gt_plan_config *cfg, gt_plan *out);
void gt_plan_free(gt_plan *p); /* accepts NULL and a zeroed plan */

/* How one rank holds one tensor of the file. */
typedef enum gt_split {
    GT_SPLIT_NONE = 0, /* not held by this rank */
    GT_SPLIT_WHOLE,    /* the whole tensor */
    GT_SPLIT_ROWS,     /* rows [i0, i1) of ne[1], in each of the ne[2] stacked matrices */
    GT_SPLIT_COLS,     /* elements [i0, i1) of every row (ne[0]) */
} gt_split;

/* What a tensor is, for the per-rank byte totals (and offload decisions). */
typedef enum gt_weight_class {
    GT_WCLASS_EMBD = 0,   /* token embedding held on the first stage */
    GT_WCLASS_HEAD,       /* LM head (the embedding's rows on a later last stage when tied) */
    GT_WCLASS_ATTN,       /* wq wk wv wo and QKV biases */
    GT_WCLASS_FFN,        /* dense MLP and shared expert */
    GT_WCLASS_EXPERT,     /* routed experts */
    GT_WCLASS_REPLICATED, /* norms, q/k norms, routers and other small whole tensors */
} gt_weight_class;

typedef struct gt_tensor_slice {
    gt_split split;
    gt_weight_class wclass;
    int64_t i0, i1;          /* the range along the split dimension */
    bool replicated;         /* other ranks of the stage hold the same bytes */
    size_t row_offset_bytes; /* COLS: where element i0 starts inside each stored row */
    size_t row_bytes;        /* bytes of one held row (the slice of it for COLS) */
    int64_t e0, e1;          /* stacked experts held (ne[2] of a routed-expert tensor) */
    int64_t n_rows;          /* held rows: ne[1..3] product, or (i1 - i0) × ne[2] × ne[3];
                                for routed experts only the held experts' rows */
    size_t nbytes;           /* n_rows × row_bytes */
} gt_tensor_slice;

/* The slice of tensor t that shard s holds (hp: the model's
 * hyper-parameters). GT_ERR_INVALID_ARG when a row-parallel slice would cut
 * a quantized block, GT_ERR_UNSUPPORTED for an unknown tensor name with
 * tp > 1, GT_ERR_FORMAT when the tensor's shape disagrees with hp. */
gt_status gt_plan_tensor_slice(const gt_hparams *hp, const gt_shard *s, const gt_tensor_info *t,
                               gt_tensor_slice *out);

/* Columns [c0, c1) of every row of t (elements of ne[0]): byte offset of c0
 * inside a stored row and bytes of the slice of one row. GT_ERR_INVALID_ARG
 * with a sentence naming the tensor, type, range and block size when c0 or c1
 * is not on a block boundary or the range is outside the row. */
gt_status gt_plan_slice_cols(const gt_tensor_info *t, int64_t c0, int64_t c1,
                             size_t *row_offset_bytes, size_t *row_bytes);

/* The MLP dimension d of the model in g as split over tp: its width and
 * granule (from the types of the matrices that slice it inside their rows)
 * and whether the even split would cut a granule. GT_ERR_FORMAT with a
 * sentence when such a matrix's row is not whole blocks of its type. Pure. */
gt_status gt_plan_ff_split_init(const gt_gguf *g, const gt_hparams *hp, gt_ff_dim d, int tp,
                                gt_ff_split *out);
/* Rank p's (0 <= p < tp) columns of f: the even split
 * [n p / tp, n (p + 1) / tp) unless f->uneven, else whole granules, the first
 * (units % tp) ranks one more; possibly empty. */
gt_range gt_plan_ff_range(const gt_ff_split *f, int p, int tp);
/* max / mean of the tp ranks' column counts of f (1 for an even split, 0
 * when n is 0). */
double gt_plan_ff_imbalance(const gt_ff_split *f, int tp);
/* "MLP", "expert MLP", "shared expert MLP". */
const char *gt_ff_dim_name(gt_ff_dim d);
/* Where one routed expert's three matrices sit in a device slot (each at
 * a 64-byte aligned offset) for a layer of shard s, with the prepared sizes
 * of kernels k (NULL: the stored rows). The engine lays its pool out with
 * this same function. */
typedef struct gt_expert_slot {
    size_t off[3], bytes[3]; /* gate, up, down */
    size_t slot_bytes;       /* the three, 64-byte aligned */
} gt_expert_slot;
gt_status gt_plan_expert_slot(const gt_gguf *g, const gt_hparams *hp, const gt_shard *s,
                              const struct gt_kernels *k, int layer, gt_expert_slot *out);
/* GT_ERR_RANGE, with the bytes needed, when any rank's device budget cannot
 * hold its dense weights, KV pool, activations and n_expert_used experts per
 * local layer. */
gt_status gt_plan_check_device(const gt_plan *p);

/* The memory planner for one shard (called by gt_plan_build; exposed for
 * the engine to re-plan under a different budget). */
void gt_plan_fill_memory(const gt_plan_config *cfg, gt_shard *s);

#endif
