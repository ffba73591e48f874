/* Paged KV cache: a pool of fixed-size blocks per layer and a block table per
 * sequence. Block b of every layer belongs to the same sequence, so one free
 * list serves all layers. Position p of a sequence lives in block
 * table[p / block_size], row p % block_size; a row holds n_kv_head * head_dim
 * elements of the cache type for K, and the same for V. Each kv head has a
 * pool of its own in every layer: a layer's K (or V) buffer is [n_kv_head]
 * [n_blocks] parts of block_size x head_dim elements, so one head's parts
 * of a sequence's blocks, taken from the free list in order, are one run of
 * memory that decode attention streams (gt_kv_cache_head_stride is the
 * distance between the heads' pools, gt_attn_args.head_stride). A K part
 * holds its keys transposed, element d of its keys side by side
 * (gt_k_offset); a V part its rows (gt_kv_offset).
 *
 * Paging (rather than one contiguous buffer per sequence) lets the scheduler
 * admit sequences of unknown final length, and later swap blocks to host
 * memory, without copying. Not thread-safe: the engine's thread owns it. */
#ifndef GT_KV_CACHE_H
#define GT_KV_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/kernels.h"

typedef struct gt_kv_cache_config {
    int n_layer;
    int row_elems;     /* n_kv_head * head_dim */
    int n_kv_head;     /* divides row_elems; 0 is taken as 1 */
    int block_size;    /* tokens per block */
    int n_blocks;      /* blocks in the pool */
    int max_seqs;
    int max_seq_blocks; /* blocks one sequence may hold (n_ctx / block_size, rounded up) */
    gt_dtype type;     /* GT_F16 or GT_F32 */
    int n_host_blocks; /* host tier for evicted cached blocks; 0: none */
} gt_kv_cache_config;

typedef struct gt_kv_cache gt_kv_cache;

/* The block pools are buffers of k's backend (borrowed; it must outlive the
 * cache). */
gt_status gt_kv_cache_create(gt_kernels *k, const gt_kv_cache_config *cfg, gt_kv_cache **out);
void gt_kv_cache_destroy(gt_kv_cache *kv);
size_t gt_kv_cache_bytes(const gt_kv_cache *kv);

/* Makes sure seq has blocks for positions [0, n_tokens). GT_ERR_RANGE when
 * the sequence would exceed its block limit or the pool is empty. */
gt_status gt_kv_cache_reserve(gt_kv_cache *kv, int seq, uint32_t n_tokens);
uint32_t gt_kv_cache_seq_len(const gt_kv_cache *kv, int seq);
void gt_kv_cache_set_seq_len(gt_kv_cache *kv, int seq, uint32_t n);
/* Drops seq's blocks: each returns to the free list when no other sequence
 * holds it, or, when it is a full block in the prefix index, waits among
 * the cached blocks until it is attached again or evicted. */
void gt_kv_cache_clear(gt_kv_cache *kv, int seq);

/* Shortens seq to its first n tokens (n <= its length): blocks past n are
 * released as gt_kv_cache_clear releases them, and the block that keeps
 * rows up to n leaves the prefix index, since its later rows will be
 * written again. The next tokens continue at position n. Speculative
 * decoding drops its rejected draft tokens this way. GT_ERR_INVALID_ARG
 * when n exceeds the length or the kept part of the last block is shared
 * with another sequence. */
gt_status gt_kv_cache_truncate(gt_kv_cache *kv, int seq, uint32_t n);

/* Prefix caching. After a forward pass, the tokens of seq's new positions
 * are noted, in order: every block they fill enters the prefix index under
 * the hash chain of the sequence's tokens so far. */
void gt_kv_cache_note_tokens(gt_kv_cache *kv, int seq, const int32_t *toks, int n);
/* How many of the first n_blocks full blocks of toks [n_blocks * block_size]
 * the index holds, consecutively from the first. */
int gt_kv_cache_prefix_blocks(const gt_kv_cache *kv, const int32_t *toks, int n_blocks);
/* As gt_kv_cache_prefix_blocks, stopping before a block of the host tier
 * when *spare_free (free pool blocks not yet promised) has none left; takes
 * what the blocks found need from it. Attaching what it allows never evicts
 * a block. */
int gt_kv_cache_prefix_fit(const gt_kv_cache *kv, const int32_t *toks, int n_blocks, int *spare_free);
/* Gives the empty sequence seq the cached blocks of its first n_blocks
 * blocks of tokens (shared, never written again) and its length.
 * GT_ERR_NOT_FOUND when they are not all cached, GT_ERR_INVALID_ARG when
 * seq is not empty. */
gt_status gt_kv_cache_attach(gt_kv_cache *kv, int seq, const int32_t *toks, int n_blocks);
/* The host tier (n_host_blocks > 0): a cached block evicted from the pool is
 * copied to host memory instead of being dropped (the host tier evicts its
 * own least recently stored block when full), and a prefix found there is
 * copied back into the pool when a sequence attaches it, instead of being
 * recomputed. On the CPU both tiers are host memory; on a GPU the pool is
 * device memory and the copies cross the bus.
 * Blocks in the host tier, and bytes moved each way since creation. */
int gt_kv_cache_n_host(const gt_kv_cache *kv);
void gt_kv_cache_host_traffic(const gt_kv_cache *kv, uint64_t *to_host, uint64_t *from_host);
size_t gt_kv_cache_host_bytes(const gt_kv_cache *kv);
/* Blocks held by no sequence but kept for their prefix / on the free list. */
int gt_kv_cache_n_cached(const gt_kv_cache *kv);
int gt_kv_cache_n_free(const gt_kv_cache *kv);
int gt_kv_cache_n_blocks(const gt_kv_cache *kv);

/* Stores rows[n] (f32, row_elems each) of K or V of layer il at positions
 * pos[n] of seq through the backend's KV-store op. The positions must be
 * reserved. */
gt_status gt_kv_cache_store(gt_kv_cache *kv, int il, int seq, int is_v, const int32_t *pos,
                       const float *rows, int n);
/* Fills blocks[] (borrowed backend addresses of the K or V blocks of seq in layer il:
 * kv head 0's part; head g's is gt_kv_cache_head_stride bytes on per head) for
 * positions [0, n_tokens); returns the block count. */
int gt_kv_cache_blocks(const gt_kv_cache *kv, int il, int seq, int is_v, uint32_t n_tokens,
                       const void **blocks);
int gt_kv_cache_block_size(const gt_kv_cache *kv);
/* Bytes between kv head g's and g+1's part of a block (the heads' pools),
 * for gt_attn_args.head_stride. */
size_t gt_kv_cache_head_stride(const gt_kv_cache *kv);
gt_dtype gt_kv_cache_type(const gt_kv_cache *kv);

#endif
