/* Sampling candidates: (logit, token id) pairs, their one order and the
 * selections over them that the sampler (coordinator/) and the
 * vocabulary-parallel top-k (parallel/) share.
 *
 * The order is total: larger logit first, then lower id, so that ties
 * resolve like gt_argmax whatever algorithm selects. Selections never sort
 * more than they keep with a comparison sort: the k best of n by a binary
 * heap of k (O(n log k)); all n by a stable radix sort on the logit (O(n)).
 * NaN logits have no place in the order; what they do is unspecified. */
#ifndef GT_COMMON_CAND_H
#define GT_COMMON_CAND_H

#include <stdbool.h>
#include <stdint.h>

typedef struct gt_cand {
    float logit;
    int32_t id;
} gt_cand;

/* True when a comes strictly before b. */
static inline bool gt_cand_before(const gt_cand *a, const gt_cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* qsort comparator for the same order. */
int gt_cand_cmp(const void *a, const void *b);

/* Moves the k best of c[n] to c[0..k), sorted best first; c[k..n) is left in
 * some order. k is clamped to [0, n]. tmp [n] is scratch, used only when k
 * is large enough that sorting everything is cheaper (then the whole array
 * is sorted; ties must then arrive in ascending id order, as a vocabulary
 * slice does, because the radix sort keeps their input order). O(n log k)
 * or O(n). */
void gt_cand_select(gt_cand *c, int64_t n, int64_t k, gt_cand *tmp);

/* Merges n_blocks blocks of block_len candidates each, every block sorted
 * best first (blocks[b * block_len ...]), into out[0..n_out), the n_out best
 * of all, sorted. n_out <= n_blocks * block_len. O(n_out * n_blocks). */
void gt_cand_merge(const gt_cand *blocks, int n_blocks, int64_t block_len, gt_cand *out,
                   int64_t n_out);

#endif
