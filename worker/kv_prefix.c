/* The prefix index; see kv_prefix.h. Open addressing with linear probing
 * over twice as many slots as blocks, deletions by backward shift, so a
 * lookup never walks more than the cluster it hashes into. */
#include "worker/kv_prefix.h"

#include <stdlib.h>
#include <string.h>

struct gt_kv_prefix {
    int n_blocks, block_size;
    size_t mask;         /* slots - 1 */
    int32_t *slot;       /* [slots] block id or -1 */
    uint64_t *key;       /* [n_blocks] */
    uint64_t *parent;    /* [n_blocks] */
    int32_t *tokens;     /* [n_blocks, block_size] */
    bool *in;            /* [n_blocks] */
};

gt_status gt__kv_prefix_create(int n_blocks, int block_size, gt_kv_prefix **out) {
    *out = NULL;
    gt_kv_prefix *p = calloc(1, sizeof *p);
    if (!p) return gt_fail(GT_ERR_NOMEM, "cannot allocate the KV prefix index");
    size_t slots = 16;
    while (slots < 2 * (size_t)n_blocks) slots *= 2;
    p->n_blocks = n_blocks;
    p->block_size = block_size;
    p->mask = slots - 1;
    p->slot = malloc(slots * sizeof *p->slot);
    p->key = calloc((size_t)n_blocks, sizeof *p->key);
    p->parent = calloc((size_t)n_blocks, sizeof *p->parent);
    p->tokens = malloc((size_t)n_blocks * (size_t)block_size * sizeof *p->tokens);
    p->in = calloc((size_t)n_blocks, sizeof *p->in);
    if (!p->slot || !p->key || !p->parent || !p->tokens || !p->in) {
        gt__kv_prefix_destroy(p);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate a KV prefix index of %d blocks", n_blocks);
    }
    memset(p->slot, 0xff, slots * sizeof *p->slot);
    *out = p;
    return GT_OK;
}

void gt__kv_prefix_destroy(gt_kv_prefix *p) {
    if (!p) return;
    free(p->slot);
    free(p->key);
    free(p->parent);
    free(p->tokens);
    free(p->in);
    free(p);
}

uint64_t gt__kv_prefix_key(uint64_t parent, const int32_t *tokens, int block_size) {
    uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < block_size; i++) {
        h ^= (uint32_t)tokens[i];
        h *= 0x100000001b3ull; /* FNV-1a prime */
        h ^= h >> 29;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h ? h : 1; /* 0 is the parent of a sequence's first block */
}

static bool same(const gt_kv_prefix *p, int b, uint64_t key, uint64_t parent, const int32_t *tokens) {
    return p->key[b] == key && p->parent[b] == parent &&
           memcmp(p->tokens + (size_t)b * (size_t)p->block_size, tokens,
                  (size_t)p->block_size * sizeof *tokens) == 0;
}

int gt__kv_prefix_find(const gt_kv_prefix *p, uint64_t parent, const int32_t *tokens, uint64_t *key) {
    uint64_t k = gt__kv_prefix_key(parent, tokens, p->block_size);
    *key = k;
    for (size_t i = k & p->mask;; i = (i + 1) & p->mask) {
        int b = p->slot[i];
        if (b < 0) return -1;
        if (same(p, b, k, parent, tokens)) return b;
    }
}

bool gt__kv_prefix_has(const gt_kv_prefix *p, int block) { return p->in[block]; }

void gt__kv_prefix_entry(const gt_kv_prefix *p, int block, uint64_t *parent, const int32_t **tokens) {
    *parent = p->parent[block];
    *tokens = p->tokens + (size_t)block * (size_t)p->block_size;
}

bool gt__kv_prefix_insert(gt_kv_prefix *p, int block, uint64_t parent, const int32_t *tokens) {
    uint64_t k;
    if (p->in[block] || gt__kv_prefix_find(p, parent, tokens, &k) >= 0) return false;
    p->key[block] = k;
    p->parent[block] = parent;
    memcpy(p->tokens + (size_t)block * (size_t)p->block_size, tokens, (size_t)p->block_size * sizeof *tokens);
    size_t i = k & p->mask;
    while (p->slot[i] >= 0) i = (i + 1) & p->mask;
    p->slot[i] = block;
    p->in[block] = true;
    return true;
}

void gt__kv_prefix_remove(gt_kv_prefix *p, int block) {
    if (!p->in[block]) return;
    size_t i = p->key[block] & p->mask;
    while (p->slot[i] != block) i = (i + 1) & p->mask;
    p->slot[i] = -1;
    p->in[block] = false;
    /* Backward shift: move later members of the cluster into the hole when
     * their home slot is at or before it. */
    for (size_t j = (i + 1) & p->mask; p->slot[j] >= 0; j = (j + 1) & p->mask) {
        size_t home = p->key[p->slot[j]] & p->mask;
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            p->slot[i] = p->slot[j];
            p->slot[j] = -1;
            i = j;
        }
    }
}
