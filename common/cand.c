/* Candidate selection; see cand.h. The heap keeps the worst of the current
 * k best at its root, so most of a long slice is rejected by one
 * comparison; the radix sort is three passes of 11 bits over a key that
 * orders floats descending. */
#include "common/cand.h"

#include <string.h>

int gt_cand_cmp(const void *a, const void *b) {
    const gt_cand *x = a, *y = b;
    return gt_cand_before(x, y) ? -1 : gt_cand_before(y, x) ? 1 : 0;
}

/* Heap of k candidates with the worst at h[0]: a parent never comes before
 * its children. */
static void sift_down(gt_cand *h, int64_t n, int64_t i) {
    gt_cand x = h[i];
    for (;;) {
        int64_t l = 2 * i + 1, w = i;
        gt_cand *wc = &x;
        if (l < n && gt_cand_before(wc, &h[l])) w = l, wc = &h[l];
        if (l + 1 < n && gt_cand_before(wc, &h[l + 1])) w = l + 1, wc = &h[l + 1];
        if (w == i) break;
        h[i] = h[w];
        i = w;
    }
    h[i] = x;
}

static void heap_top_k(gt_cand *c, int64_t n, int64_t k) {
    for (int64_t i = k / 2; i-- > 0;) sift_down(c, k, i);
    for (int64_t i = k; i < n; i++) {
        if (!gt_cand_before(&c[i], &c[0])) continue;
        gt_cand t = c[0];
        c[0] = c[i];
        c[i] = t;
        sift_down(c, k, 0);
    }
    /* Heap sort: the worst goes to the back, leaving best first. */
    for (int64_t m = k; m > 1; m--) {
        gt_cand t = c[0];
        c[0] = c[m - 1];
        c[m - 1] = t;
        sift_down(c, m - 1, 0);
    }
}

/* A key whose ascending order is the logits' descending order; -0 and +0
 * share one key, as they compare equal. */
static inline uint32_t desc_key(float f) {
    if (f == 0) f = 0.0f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~u;
}

static void radix_sort(gt_cand *c, int64_t n, gt_cand *tmp) {
    enum { BITS = 11, BUCKETS = 1 << BITS, PASSES = 3 };
    static _Thread_local int64_t count[PASSES][BUCKETS];
    memset(count, 0, sizeof count);
    for (int64_t i = 0; i < n; i++) {
        uint32_t key = desc_key(c[i].logit);
        for (int p = 0; p < PASSES; p++) count[p][(key >> (p * BITS)) & (BUCKETS - 1)]++;
    }
    gt_cand *src = c, *dst = tmp;
    for (int p = 0; p < PASSES; p++) {
        int64_t sum = 0;
        bool trivial = false;
        for (int b = 0; b < BUCKETS; b++) {
            if (count[p][b] == n) trivial = true;
            int64_t v = count[p][b];
            count[p][b] = sum;
            sum += v;
        }
        if (trivial) continue; /* every key has this digit: nothing moves */
        for (int64_t i = 0; i < n; i++) {
            uint32_t d = (desc_key(src[i].logit) >> (p * BITS)) & (BUCKETS - 1);
            dst[count[p][d]++] = src[i];
        }
        gt_cand *t = src;
        src = dst;
        dst = t;
    }
    if (src != c) memcpy(c, src, (size_t)n * sizeof *c);
}

void gt_cand_select(gt_cand *c, int64_t n, int64_t k, gt_cand *tmp) {
    if (k > n) k = n;
    if (k <= 0 || n <= 1) return;
    /* The heap's n log k beats three linear passes (and clearing their
     * counters) only for small k or short arrays. */
    if (k * 16 < n || n < 2048 || !tmp)
        heap_top_k(c, n, k);
    else
        radix_sort(c, n, tmp);
}

void gt_cand_merge(const gt_cand *blocks, int n_blocks, int64_t block_len, gt_cand *out,
                   int64_t n_out) {
    int64_t head[n_blocks > 0 ? n_blocks : 1]; /* next unread entry of each block */
    for (int b = 0; b < n_blocks; b++) head[b] = 0;
    for (int64_t j = 0; j < n_out; j++) {
        int best = -1;
        for (int b = 0; b < n_blocks; b++) {
            if (head[b] >= block_len) continue;
            const gt_cand *x = &blocks[(int64_t)b * block_len + head[b]];
            if (best < 0 || gt_cand_before(x, &blocks[(int64_t)best * block_len + head[best]]))
                best = b;
        }
        out[j] = blocks[(int64_t)best * block_len + head[best]++];
    }
}
