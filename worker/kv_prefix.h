/* The prefix index of the paged KV cache: full blocks found by the tokens
 * they hold and everything before them.
 *
 * A full block's key is a chained hash: the hash of the block before it in
 * its sequence (0 for the first) mixed with its block_size tokens. Two
 * sequences whose first k blocks hold the same tokens reach the same k
 * keys, so the second can reuse the first's KV rows instead of computing
 * them. The index stores each block's parent hash and tokens and compares
 * them on every hit, so a hash collision can never attach a wrong block.
 * Private to worker/: the KV cache owns one and keeps the blocks'
 * reference counts and eviction order. */
#ifndef GT_KV_PREFIX_H
#define GT_KV_PREFIX_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

typedef struct gt_kv_prefix gt_kv_prefix;

gt_status gt__kv_prefix_create(int n_blocks, int block_size, gt_kv_prefix **out);
void gt__kv_prefix_destroy(gt_kv_prefix *p);
/* The key of a block of tokens[block_size] following a block keyed parent. */
uint64_t gt__kv_prefix_key(uint64_t parent, const int32_t *tokens, int block_size);
/* Files block under the key of tokens after parent, unless another block
 * already holds that prefix (then nothing changes and false is returned). */
bool gt__kv_prefix_insert(gt_kv_prefix *p, int block, uint64_t parent, const int32_t *tokens);
/* The block holding tokens after parent, or -1. *key receives its key. */
int gt__kv_prefix_find(const gt_kv_prefix *p, uint64_t parent, const int32_t *tokens, uint64_t *key);
/* True when block is in the index. */
bool gt__kv_prefix_has(const gt_kv_prefix *p, int block);
/* The parent key and the tokens [block_size] a filed block was filed with. */
void gt__kv_prefix_entry(const gt_kv_prefix *p, int block, uint64_t *parent, const int32_t **tokens);
/* Takes block out of the index (when it is evicted or rewritten). */
void gt__kv_prefix_remove(gt_kv_prefix *p, int block);

#endif
