/* A rank's engine: the model's weights prepared for the kernels, a paged KV
 * cache, and the forward pass over a batch of tokens from any mix of
 * sequences.
 *
 * Issue 3 runs the whole model on one rank; the sharding plan of parallel/
 * later hands an engine only its layers, heads and columns, and the step
 * plan from the coordinator becomes a gt_batch. One thread drives an engine;
 * the kernels' pool parallelises inside each op. */
#ifndef GT_ENGINE_H
#define GT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "parallel/par.h"
#include "parallel/plan.h"

typedef struct gt_engine gt_engine;

typedef struct gt_engine_config {
    const char *model_path;
    int n_threads;
    const char *isa;        /* NULL: best for this CPU */
    uint32_t n_ctx;         /* positions per sequence; 0: min(training context, 4096) */
    int max_seqs;           /* sequences that can hold KV at once */
    int kv_block_size;      /* tokens per KV block */
    gt_dtype kv_type;       /* GT_F16 or GT_F32 */
    int max_batch_tokens;   /* tokens per forward call; longer prompts are chunked by the caller */
    const gt_shard *shard;  /* this rank's part of the model (copied); NULL: all of it */
    gt_par *par;            /* collectives of the grid (borrowed); NULL on a single rank */
    int sp_min_tokens;      /* batches this long split their rows over the stage group; 0: never */
    const gt_gguf *gguf;    /* the model already open (borrowed; outlives the engine); NULL: open model_path */
    int max_out_rows;       /* logits rows one forward call returns into gt_engine_logits; 0: max_seqs */
    const char *backend;    /* kernels: NULL or "cpu", "cuda" */
    gt_kernels *kernels;    /* the rank's backend (borrowed); NULL: the engine creates its own */
    uint64_t kv_host_bytes; /* host tier for evicted cached KV blocks; 0: none */
    int kv_blocks;          /* KV pool blocks; 0: a full context for every sequence */
    uint64_t device_mem_bytes;     /* device budget; experts beyond it stay in host memory behind an
                                      expert cache (without a shard; a shard brings its plan's); 0: none */
    const char *expert_stats_path; /* routing counts (gt_expert_stats_write) that pick the experts
                                      first placed on the device; NULL: experts 0, 1, ... */
    bool no_expert_prefetch;       /* offloaded experts: copy only after the router has chosen,
                                      no predicted prefetch before attention */
    int max_layers;                /* without a shard: run only the first max_layers layers, then the
                                      output norm and LM head (a self-speculation draft); 0: all */
    const char *bf16;              /* F16/BF16 weights in bf16 dot products: "on", "off",
                                      NULL or "auto" (gt_kernels_config.bf16) */
} gt_engine_config;
#define GT_ENGINE_CONFIG_INIT {NULL, 1, NULL, 0, 1, 16, GT_F16, 512, NULL, NULL, 0, NULL, 0, NULL, NULL, 0, 0, 0, NULL, false, 0, NULL}

/* Observes the input of the forward pass's matrix products (gantry
 * imatrix): called, when set, before each product with its n input rows
 * x[n, n_in] and the GGUF name of the weight ("blk.3.ffn_down.weight";
 * "token_embd.weight" for a tied head); expert is the routed expert's index
 * for a stacked *_exps tensor, else -1. The rows are this rank's: on a grid
 * they are a shard's (column slices of row-parallel inputs), so callers use
 * one rank. Off by default (NULL): one branch per product. MoE routers are
 * not reported (they stay float). */
typedef void (*gt_engine_mm_hook_fn)(void *ctx, const char *name, int expert, const float *x, int n,
                                     int64_t n_in);

/* Opens the model, validates it and prepares the weights. GT_ERR_IO,
 * GT_ERR_FORMAT, GT_ERR_UNSUPPORTED, GT_ERR_NOT_FOUND (a tensor missing),
 * GT_ERR_INVALID_ARG (config), GT_ERR_NOMEM. */
gt_status gt_engine_create(const gt_engine_config *cfg, gt_engine **out);
void gt_engine_destroy(gt_engine *e); /* accepts NULL */

/* Sets or clears (fn NULL) the matrix-input hook; not during a forward call. */
void gt_engine_set_mm_hook(gt_engine *e, gt_engine_mm_hook_fn fn, void *ctx);
const gt_hparams *gt_engine_hparams(const gt_engine *e);
const gt_gguf *gt_engine_gguf(const gt_engine *e);
gt_kernels *gt_engine_kernels(gt_engine *e);
uint32_t gt_engine_n_ctx(const gt_engine *e);
/* Bytes of weights one decoded token reads (every matrix once, the
 * embedding row negligible): the numerator of the bandwidth roofline. */
uint64_t gt_engine_weight_bytes(const gt_engine *e);
/* For an MoE model, the two parts of that figure: the matrices every token
 * reads (attention, routers, shared experts, head) and all routed experts
 * this rank holds; *experts_read is the bytes of routed experts the forward
 * passes have actually run since the engine started (each chosen expert
 * once per layer and forward call, however many tokens chose it), so a
 * caller that reads it around its decode steps gets what they read. */
void gt_engine_moe_bytes(const gt_engine *e, uint64_t *dense, uint64_t *experts_held,
                         uint64_t *experts_read);

/* The vocabulary rows whose logits this rank computes: [*v0, *v0 + *n). */
void gt_engine_vocab_slice(const gt_engine *e, int64_t *v0, int64_t *n);
/* True when this rank computes logits (the last pipeline stage). */
bool gt_engine_has_logits(const gt_engine *e);

/* One forward step. Token i of the batch is at position pos[i] of sequence
 * seq[i]; a sequence's positions must continue its KV cache (pos equal to the
 * number of tokens it already holds, increasing within the batch).
 * want_logits[i] != 0 asks for the logits of token i (NULL: the last token
 * only); they are written to logits in batch order, [n_wanted, n_vocab] —
 * on a sharded engine, the rank's vocabulary slice [n_wanted, n] on the last
 * stage only. Every rank of the grid calls this with the same batch; the
 * stages pass activations along and the stage groups reduce their partial
 * sums. GT_ERR_COMM when a peer fails (the caller then ends the job).
 * GT_ERR_RANGE when a position reaches n_ctx or the batch exceeds
 * max_batch_tokens, GT_ERR_INVALID_ARG for a bad token id or sequence. */
typedef struct gt_batch {
    int n;
    const int32_t *tokens;     /* [n] */
    const int32_t *pos;        /* [n] */
    const int32_t *seq;        /* [n] */
    const int8_t *want_logits; /* [n] or NULL */
} gt_batch;
gt_status gt_engine_decode(gt_engine *e, const gt_batch *b, float *logits);

/* The engine's own logits rows [max_out_rows, n_local] (last stage; NULL
 * elsewhere): where a rank asks gt_engine_decode to write. */
float *gt_engine_logits(gt_engine *e);
/* Bytes the engine allocated: its activations and logits rows (one backend
 * buffer laid out by parallel/scratch.h) with the kernels' workspace it
 * reserved, and its KV block pool. */
typedef struct gt_engine_memory {
    uint64_t act_bytes;
    uint64_t kv_bytes;
    uint64_t kv_host_bytes; /* the host tier, in host memory */
    uint64_t expert_pool_bytes; /* device slots of the expert cache (0: experts all resident) */
} gt_engine_memory;
gt_engine_memory gt_engine_memory_used(const gt_engine *e);

/* Prefix caching: every full KV block a forward pass completes is indexed
 * by the tokens of its sequence up to it; a sequence released with
 * gt_engine_seq_clear leaves its indexed blocks cached (evicted least
 * recently released first, only when blocks run out).
 * The tokens at the start of toks[n] whose KV rows are cached, in whole
 * blocks, leaving at least the last token to compute. */
uint32_t gt_engine_prefix_cached(const gt_engine *e, const int32_t *toks, int n);
/* The same, when a block from the host tier may only come back into one of
 * *spare_free free pool blocks (decremented by what the prefix takes). */
uint32_t gt_engine_prefix_fit(const gt_engine *e, const int32_t *toks, int n, int *spare_free);
/* Gives the empty sequence seq those cached rows: it then holds n_tokens
 * (a multiple of the block size, as gt_engine_prefix_cached returned) and
 * continues at that position. Every rank that executed the same steps has
 * the same cache, so every rank can attach alike. */
gt_status gt_engine_seq_attach(gt_engine *e, int seq, const int32_t *toks, uint32_t n_tokens);

/* The KV cache's host tier and prefix cache: blocks held in host memory,
 * cached blocks in the pool, free blocks, and bytes moved each way. */
typedef struct gt_engine_kv_stats {
    int host_blocks, cached_blocks, free_blocks;
    int total_blocks, block_size;
    uint64_t to_host_bytes, from_host_bytes;
} gt_engine_kv_stats;
gt_engine_kv_stats gt_engine_kv(const gt_engine *e);

/* True when the last gt_engine_decode failed only because the KV pool had
 * no block left (every rank of a grid fails such a step alike, before any
 * compute; the sequences' lengths are unchanged, so it can be retried). */
bool gt_engine_kv_full(const gt_engine *e);

/* Expert offload: device slots per local layer (0: no cache) and the
 * cache's counters, of local layer il or of all of them (il < 0). */
typedef struct gt_engine_expert_stats {
    int slots, n_layer, layer0;
    uint64_t hits, misses, evictions, bytes_copied;
    double wait_s;
    uint64_t prefetched, prefetch_useful; /* predicted copies started; of them, routed to */
} gt_engine_expert_stats;
gt_engine_expert_stats gt_engine_experts(const gt_engine *e, int il);
/* (token, choice) pairs routed to each expert of each local layer since
 * creation: [n_layer, n_expert]; NULL for a dense model. */
const uint64_t *gt_engine_expert_counts(const gt_engine *e, int *layer0, int *n_layer, int *n_expert);
/* Expert parallelism's counters since the last gt_engine_reset_ep_stats,
 * per local layer (model layer layer0 + i): rows[i], the (token, expert)
 * rows this rank's experts computed, and a2a_bytes[i], the bytes this rank
 * sent to other ranks in the layer's all-to-alls (rows out, outputs back).
 * All zero / NULL without expert parallelism. Borrowed; valid until the
 * engine is destroyed. */
typedef struct gt_engine_ep_stats {
    int n_layer, layer0;
    const uint64_t *rows, *a2a_bytes;
} gt_engine_ep_stats;
gt_engine_ep_stats gt_engine_ep(const gt_engine *e);
void gt_engine_reset_ep_stats(gt_engine *e);

/* Tokens a sequence holds in the KV cache. */
uint32_t gt_engine_seq_len(const gt_engine *e, int seq);
/* Drops a sequence's KV cache (its blocks return to the pool). */
void gt_engine_seq_clear(gt_engine *e, int seq);
/* Keeps only the first n tokens of seq's KV cache (n <= its length); the
 * next token continues at position n (gt_kv_cache_truncate).
 * GT_ERR_INVALID_ARG for a bad sequence or length. */
gt_status gt_engine_seq_truncate(gt_engine *e, int seq, uint32_t n);

#endif
