/* The math of a forward pass, behind one backend interface.
 *
 * A gt_kernels is a backend instance, chosen by name at creation ("cpu", the
 * default, or "cuda"): its memory (gt_buffer), its prepared weights
 * (gt_weight), its reserved workspace and its ops. Every call below
 * dispatches through the backend's function table (kernels/backend.h); the
 * CPU backend (kernels/cpu/) picks scalar, AVX2 or AVX-512 bodies from CPUID
 * or cfg.isa, and keeps a scalar `_ref` version of every op as the oracle.
 *
 * Pointers given to ops are addresses on the backend: for a host-visible
 * backend (the CPU) ordinary host pointers, e.g. gt_buffer_host_ptr of its
 * buffers; for a device backend, addresses inside its buffers
 * (gt_buffer_addr). Every op returns a status and none allocates once
 * gt_kernels_reserve has been called; ops whose arguments exceed the
 * reservation return GT_ERR_RANGE.
 *
 * Calls on one gt_kernels must come from one thread at a time (the CPU pool
 * is fork-join). Shapes are row-major; the fastest-varying index is last in
 * the shape comments. Nothing here knows about ranks, files or models. */
#ifndef GT_KERNELS_H
#define GT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/pool.h"
#include "common/status.h"

typedef struct gt_kernels gt_kernels;

typedef struct gt_kernels_config {
    int n_threads;       /* >= 1, counts the calling thread */
    const char *isa;     /* CPU: NULL or "auto": best available; "ref", "avx2", "avx512" */
    const char *backend; /* NULL or "cpu": the CPU; "cuda": an NVIDIA GPU */
    int device;          /* CUDA: the GPU (0..visible-1), or GT_KERNELS_DEVICE_AUTO: the
                          * local rank (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, ...)
                          * modulo the visible GPUs; the CPU ignores it */
    const char *bf16;    /* CPU, F16/BF16 weights: "on" multiplies with bf16 dot products
                          * (activations rounded to bf16; AVX-512 BF16 only), "off" in
                          * fp32, NULL or "auto": the default of kernels/cpu/bf16_mode.c;
                          * NULL also reads GANTRY_BF16_MATMUL */
} gt_kernels_config;
#define GT_KERNELS_DEVICE_AUTO (-1)
#define GT_KERNELS_CONFIG_INIT {1, NULL, NULL, GT_KERNELS_DEVICE_AUTO, NULL}

/* GT_ERR_INVALID_ARG (bad thread count, unknown isa or backend, a device
 * number past the visible GPUs), GT_ERR_UNSUPPORTED (isa not available on
 * this CPU; a backend not built; no GPU visible),
 * GT_ERR_NOMEM. */
gt_status gt_kernels_create(const gt_kernels_config *cfg, gt_kernels **out);
void gt_kernels_destroy(gt_kernels *k); /* accepts NULL */
const char *gt_kernels_backend(const gt_kernels *k); /* "cpu", "cuda" */
const char *gt_kernels_isa(const gt_kernels *k);     /* CPU: "avx512", "avx2", "ref" */
/* The products F16/BF16 weights take: "bf16", "fp16" or "off" (fp32). */
const char *gt_kernels_half(const gt_kernels *k);
int gt_kernels_n_threads(const gt_kernels *k);
gt_pool *gt_kernels_pool(gt_kernels *k); /* the CPU's thread pool; NULL on other backends */

/* ---- workspace ---- */

typedef struct gt_workspace_req {
    int64_t max_tokens;  /* rows of the largest matmul / attention call */
    int64_t max_n_in;    /* the longest matmul row (n_in) */
    int max_heads;       /* query heads per attention call */
    int head_dim;
    int64_t max_kv;      /* key positions one attention query may see (the context) */
    int n_threads;
} gt_workspace_req;
/* Bytes gt_kernels_reserve allocates for r: a pure function, the same for
 * every ISA of the CPU backend (take the maximum over them). */
size_t gt_kernels_workspace_bytes(const gt_workspace_req *r);
/* Allocates that workspace once (replacing any earlier one). Ops whose
 * arguments exceed what was reserved return GT_ERR_RANGE with a sentence
 * naming the numbers, never allocate. */
gt_status gt_kernels_reserve(gt_kernels *k, const gt_workspace_req *r);

/* ---- buffers ---- */

/* Memory of one backend: host memory for the CPU, device memory for a GPU. */
typedef struct gt_buffer gt_buffer;

/* A zero-filled buffer of `bytes` (> 0), 64-byte aligned. GT_ERR_NOMEM. */
gt_status gt_buffer_alloc(gt_kernels *k, size_t bytes, gt_buffer **out);
void gt_buffer_free(gt_buffer *b); /* accepts NULL */
size_t gt_buffer_size(const gt_buffer *b);
/* The address ops of b's backend take for b's first byte. */
void *gt_buffer_addr(gt_buffer *b);
/* The host pointer of b's first byte, or NULL when b is device memory. */
void *gt_buffer_host_ptr(gt_buffer *b);
/* Host -> b[offset, offset + n), b[offset, offset + n) -> host. GT_ERR_RANGE
 * when the range leaves the buffer. */
gt_status gt_buffer_upload(gt_buffer *b, size_t offset, const void *src, size_t n);
gt_status gt_buffer_download(gt_buffer *b, size_t offset, void *dst, size_t n);
/* dst[dst_off, +n) = src[src_off, +n); the buffers may belong to different
 * backends (the copy then goes through host memory). */
gt_status gt_buffer_copy(gt_buffer *dst, size_t dst_off, gt_buffer *src, size_t src_off, size_t n);

/* ---- weights ---- */

/* A weight matrix W[n_out, n_in] (GGUF ne = {n_in, n_out}) prepared for the
 * backend: the rows as stored, or a repacked copy when the backend's kernels
 * prefer another layout. */
typedef struct gt_weight {
    gt_dtype type;
    int64_t n_in;     /* row length */
    int64_t n_out;    /* number of rows */
    const void *data; /* borrowed GGUF rows (mmap), or == owned when repacked */
    void *owned;      /* backend-owned copy, NULL when borrowed */
    int layout;       /* 0: GGUF rows; other values are backend-private */
    gt_kernels *backend; /* the backend that prepared it */
} gt_weight;

/* True when gt_matmul computes with this type. */
bool gt_kernels_matmul_supports(const gt_kernels *k, gt_dtype type);
/* Prepares W; may repack (allocating). GT_ERR_UNSUPPORTED for a type without
 * a matmul, GT_ERR_INVALID_ARG when n_in is not a multiple of the block size,
 * GT_ERR_NOMEM. */
gt_status gt_weight_init(gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                         const void *data, gt_weight *w);
/* The same on the reference path (fp32 activations, no repacking): for
 * small matrices whose outputs pick discrete choices, such as the MoE
 * router. Every weight's products are batch-invariant (see gt_matmul); this
 * one also keeps the router's numbers those of the unquantized product. */
gt_status gt_weight_init_invariant(gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                                   const void *data, gt_weight *w);
void gt_weight_free(gt_weight *w); /* frees only what it owns; accepts NULL */
/* Bytes of the prepared form of a weight of this type and shape on k
 * (repacked panels, or the stored rows when k uses them as they are): what
 * a copy of it elsewhere on the backend occupies. 0 for a type without a
 * matrix product or a bad shape. Pure function of its arguments and k's ISA. */
size_t gt_weight_prepared_bytes(const gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out);
/* A weight that reads its prepared bytes at addr (a backend address holding
 * a copy of src's gt_weight_prepared_bytes bytes): the same type, shape and
 * layout as src, owning nothing, so products with it equal those with src
 * bit for bit. */
void gt_weight_view(const gt_weight *src, void *addr, gt_weight *out);

/* ---- asynchronous copies ----
 * Host memory into a backend buffer beside the ops: the CPU backend runs
 * them in order on one copy thread of its own (so they overlap the ops the
 * caller runs meanwhile); a CUDA backend would issue cudaMemcpyAsync from
 * pinned host memory on a copy stream and record an event per ticket.
 * Tickets complete in issue order. These two calls, unlike the ops, may be
 * made while another thread runs ops on k; src must stay valid and dst's
 * range untouched by ops until the ticket is waited for. */
gt_status gt_copy_start(gt_kernels *k, gt_buffer *dst, size_t offset, const void *src, size_t n,
                        uint64_t *ticket);
/* Returns once the copy of `ticket` (and every earlier one) is done. */
gt_status gt_copy_wait(gt_kernels *k, uint64_t ticket);

/* ---- ops (all threaded on the CPU's pool) ---- */

/* y[n_tok, n_out] = x[n_tok, n_in] · W^T, fp32 accumulation. Activations may
 * be quantized on the fly (to Q8) where the weight type has integer dot
 * products. x and y must not overlap. Batch-invariant: row t of y depends
 * only on row t of x and W, bit for bit, whatever n_tok, t and the thread
 * count (the decode and prefill kernels sum in one order). */
gt_status gt_matmul(gt_kernels *k, const gt_weight *w, const float *x, float *y, int64_t n_tok);

/* One product of gt_matmul_multi: y[n_tok, w->n_out] = x · W^T. */
typedef struct gt_matmul_item {
    const gt_weight *w;
    float *y; /* [n_tok, w->n_out] */
} gt_matmul_item;

/* The products of n weights with the same input x[n_tok, n_in] (q, k and v;
 * gate and up), each output bit-identical to its own gt_matmul, computed in
 * one parallel region where the backend can (the CPU backend, when the
 * weights share a layout, row length and activation quantization; else
 * one after the other). No y may overlap x or another y. */
gt_status gt_matmul_multi(gt_kernels *k, const gt_matmul_item *items, int n, const float *x,
                          int64_t n_tok);

/* y[r] = x[r] / rms(x[r]) * w  for each of n_rows rows of n; w may be NULL
 * (no scale). x and y may alias. */
gt_status gt_rmsnorm(gt_kernels *k, const float *x, const float *w, float *y, int64_t n_rows,
                     int64_t n, float eps);

typedef struct gt_rope_params {
    float freq_base;  /* theta */
    float freq_scale; /* 1 / linear scaling factor (1 when none) */
    int n_rot;        /* rotated dims per head (<= head_dim, even) */
    bool neox;        /* NeoX order pairs (i, i + n_rot/2); else adjacent (2i, 2i+1) */
} gt_rope_params;

/* Rotates x[n_tok, n_head, head_dim] in place; pos[n_tok]. */
gt_status gt_rope(gt_kernels *k, float *x, int64_t n_tok, int n_head, int head_dim,
                  const int32_t *pos, const gt_rope_params *p);

/* out[i] = silu(gate[i]) * up[i]; out may alias gate or up. */
gt_status gt_swiglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n);
/* out[i] = gelu_tanh(gate[i]) * up[i] (exact tanh formula in fp32). */
gt_status gt_geglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n);
/* y[i] += x[i] */
gt_status gt_add(gt_kernels *k, float *y, const float *x, int64_t n);
/* y[r, i] += b[i] for the n_rows rows of y[n_rows, n]. */
gt_status gt_add_bias(gt_kernels *k, float *y, const float *b, int64_t n_rows, int64_t n);
/* y[i] *= s */
gt_status gt_scale(gt_kernels *k, float *y, float s, int64_t n);
/* y[i] = c * tanh(y[i] / c), c > 0 */
gt_status gt_softcap(gt_kernels *k, float *y, float c, int64_t n);
/* y[i] = 0 */
gt_status gt_zero(gt_kernels *k, float *y, int64_t n);

/* Embedding rows: out[i] = dequantize(rows[ids[i] - v0]) * scale, one row of
 * n elements of `type` per id, for the vocabulary slice [v0, v0 + n_rows)
 * that `rows` holds; ids outside the slice give rows of zeros. */
typedef struct gt_embed_args {
    gt_dtype type;
    const void *rows; /* [n_rows] rows of `type` */
    int64_t v0, n_rows;
    int64_t n;        /* elements per row */
    float scale;      /* 1: none */
    const int32_t *ids; /* [n_ids] */
    int64_t n_ids;
    float *out;       /* [n_ids, n] */
} gt_embed_args;
gt_status gt_embed(gt_kernels *k, const gt_embed_args *a);

/* Mixture-of-experts routing: for each of n_tok tokens, probs[t] becomes the
 * softmax of its n_expert logits (in place), ids[t] the k_used experts of
 * largest probability (lowest id on ties, in decreasing order) and w[t]
 * their probabilities, divided by their sum when renorm. */
gt_status gt_router_topk(gt_kernels *k, float *probs, int64_t n_tok, int n_expert, int k_used,
                         bool renorm, int32_t *ids, float *w);
/* dst[i] = src[rows[i]] for the m rows of n elements. */
gt_status gt_gather_rows(gt_kernels *k, const float *src, const int32_t *rows, int64_t m,
                         int64_t n, float *dst);
/* dst[rows[i]] += w[i] * src[i] for the m rows of n elements, in order of i. */
gt_status gt_scatter_add_rows(gt_kernels *k, const float *src, const int32_t *rows,
                              const float *w, int64_t m, int64_t n, float *dst);
/* dst[t] += sigmoid(gate[t]) * src[t] for the n_tok rows of n elements;
 * gate NULL: a gate of 1. */
gt_status gt_sigmoid_gate_add(gt_kernels *k, const float *gate, const float *src, float *dst,
                              int64_t n_tok, int64_t n);

/* Attention of n_tok queries of one sequence against its paged KV cache.
 * Batch-invariant: a query's output is the same bits whichever queries share
 * the call and whichever call stored its keys.
 * Key/value position p lives in block p / block_size, row p % block_size.
 * Each kv head has its own part of a block: block_size x head_dim elements
 * of kv_type (F32 or F16), rows [block_size, head_dim] for V and the same
 * transposed for K, [head_dim, block_size]. Kv head g's part starts
 * g * head_stride bytes after the block's address (gt_kv_offset,
 * gt_k_offset). With head_stride 0 the parts lie side by side, a block
 * [n_kv_head, ...]; the engine's cache passes the distance between whole
 * per-head pools instead, so that a head's parts of consecutive blocks are
 * one run of memory, which the read of one head's keys streams (a 2 KiB
 * part per block, 16 KiB apart, reads at about half the bandwidth of one
 * run: docs/benchmarks.md). Element d of a block's keys lies side by side,
 * so a query's scores against many keys are vector multiply-adds with
 * nothing to reduce across lanes. A BF16 cache (head_dim and block_size
 * even) stores pairs for dot products of two (vdpbf16ps): K as
 * [head_dim / 2, block_size, 2] (elements d and d + 1 of a key side by
 * side), V as [block_size / 2, head_dim, 2] (element d of keys r and r + 1
 * side by side); gt_kv_k_index and gt_kv_v_index place an element in every
 * type. Query i sees keys 0..pos[i]
 * (causal), and only the last `window` of them when window > 0. GQA: query
 * head h reads kv head h / (n_head / n_kv_head). */
typedef struct gt_attn_args {
    const float *q;          /* [n_tok, n_head, head_dim] */
    float *out;              /* [n_tok, n_head, head_dim] */
    const int32_t *pos;      /* [n_tok] */
    int64_t n_tok;
    int n_head, n_kv_head, head_dim;
    const void *const *k_blocks; /* [n_blocks] borrowed */
    const void *const *v_blocks; /* [n_blocks] borrowed */
    int block_size;
    size_t head_stride; /* bytes from kv head g's part of a block to g+1's; 0: side by side */
    gt_dtype kv_type;
    float scale;   /* usually 1/sqrt(head_dim) */
    int window;    /* 0: no sliding window */
    float softcap; /* 0: none; else logits = softcap * tanh(logits / softcap) */
} gt_attn_args;
gt_status gt_attention(gt_kernels *k, const gt_attn_args *a);

/* The distance between kv heads' parts of a block: head_stride, or, when
 * it is 0, one part (the parts side by side). */
static inline size_t gt_kv_head_stride(size_t head_stride, int block_size, int head_dim,
                                       size_t elem) {
    return head_stride ? head_stride : (size_t)block_size * (size_t)head_dim * elem;
}

/* Bytes per element of a KV cache of type t (F32, F16 or BF16). */
static inline size_t gt_kv_elem_bytes(gt_dtype t) { return t == GT_F32 ? 4 : 2; }

/* Index, in elements from the start of a kv head's part of a block, of
 * element d of the key in row r (0 <= r < block_size) of a cache of type t;
 * gt_kv_v_index the same for values (the layouts gt_attn_args describes). */
static inline size_t gt_kv_k_index(gt_dtype t, int r, int d, int block_size) {
    return t == GT_BF16 ? ((size_t)(d >> 1) * (size_t)block_size + (size_t)r) * 2 + (size_t)(d & 1)
                        : (size_t)d * (size_t)block_size + (size_t)r;
}
static inline size_t gt_kv_v_index(gt_dtype t, int r, int d, int block_size, int head_dim) {
    (void)block_size;
    return t == GT_BF16 ? ((size_t)(r >> 1) * (size_t)head_dim + (size_t)d) * 2 + (size_t)(r & 1)
                        : (size_t)r * (size_t)head_dim + (size_t)d;
}

/* Byte offset from its block's address of kv head g's value row at
 * position p (the layout gt_attn_args describes), hs the resolved head
 * stride (gt_kv_head_stride); also where head g's part of a K block
 * starts, with p = 0. */
static inline size_t gt_kv_offset(int64_t p, int g, int block_size, int head_dim, size_t elem,
                                  size_t hs) {
    return (size_t)g * hs + (size_t)(p % block_size) * (size_t)head_dim * elem;
}

/* Byte offset from its block's address of element d of kv head g's key at
 * position p: keys are stored transposed, [head_dim, block_size] per head,
 * so the keys of a block lie side by side for each d (gt_attn_args). */
static inline size_t gt_k_offset(int64_t p, int g, int d, int block_size, int head_dim, size_t elem,
                                 size_t hs) {
    return (size_t)g * hs + ((size_t)d * (size_t)block_size + (size_t)(p % block_size)) * elem;
}

/* Stores rows[n_tok] (f32, row_elems = n_kv_head * head_dim each) at
 * positions pos[n_tok] of the paged cache laid out as gt_attn_args
 * describes (F16 and BF16 round to nearest even). */
typedef struct gt_kv_store_args {
    const float *rows;     /* [n_tok, row_elems] */
    const int32_t *pos;    /* [n_tok] */
    int64_t n_tok;
    int row_elems;
    void *const *blocks;   /* [n_blocks] borrowed: the sequence's blocks in position order */
    int block_size;
    size_t head_stride; /* as gt_attn_args: 0, the kv heads' parts side by side */
    gt_dtype kv_type;
    int n_kv_head; /* divides row_elems */
    int keys;      /* 1: the rows are keys, stored transposed (gt_k_offset) */
} gt_kv_store_args;
gt_status gt_kv_store(gt_kernels *k, const gt_kv_store_args *a);

#endif
