/* Paged KV cache; see kv_cache.h. Blocks are handed out from a LIFO free
 * list so that recently freed (cache-warm) blocks are reused first. Each
 * layer's K and V pools are one buffer of the kernels' backend, written by
 * its KV-store op and read by its attention. */
#include "worker/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "worker/kv_prefix.h"

/* A doubly linked list over block (or slot) indices, oldest first: the
 * eviction order of the pool's cached blocks and of the host tier. */
typedef struct lru_list {
    int32_t *prev, *next; /* [capacity] */
    int head, tail, n;
} lru_list;

struct gt_kv_cache {
    gt_kv_cache_config cfg;
    gt_kernels *kern;   /* borrowed: the backend that owns the pools */
    size_t row_bytes, block_bytes;
    size_t part_bytes;  /* one kv head's part of a block: block_bytes / n_kv_head */
    size_t head_stride; /* a layer's pool is [n_kv_head][n_blocks][part]: n_blocks parts */
    int n_kv_head;
    gt_buffer **k; /* [n_layer] → [n_kv_head][n_blocks][part_bytes] */
    gt_buffer **v;
    void **store_blocks; /* [max_seq_blocks] block addresses of one store */
    int32_t *free_list; /* [n_blocks] */
    int n_free;
    int32_t *tables;    /* [max_seqs, max_seq_blocks] block ids */
    int *n_seq_blocks;  /* [max_seqs] */
    uint32_t *seq_len;  /* [max_seqs] */
    /* Prefix caching: a block's references (sequences holding it); full
     * blocks in the prefix index outlive their sequences, unreferenced ones
     * in least-recently-released order, evicted when the free list is
     * empty. */
    gt_kv_prefix *prefix;
    int32_t *ref;       /* [n_blocks] */
    lru_list lru; /* [n_blocks] the evictable list, oldest first */
    uint64_t *seq_key;  /* [max_seqs] key of the sequence's last full block (0: none) */
    int32_t *seq_tail;  /* [max_seqs, block_size] tokens of its unfinished block */
    int *seq_tail_n;    /* [max_seqs] */
    uint32_t *seq_noted; /* [max_seqs] tokens noted so far */
    int32_t *seq_hist;   /* [max_seqs, max_seq_blocks * block_size] every noted token, for truncation */
    uint64_t *seq_keys;  /* [max_seqs, max_seq_blocks] the chain key after each full block */
    /* The host tier: slots of host memory for evicted cached blocks, their
     * own prefix index and eviction order (oldest stored first). */
    int n_host;          /* slots */
    uint8_t **hk, **hv;  /* [n_layer] → [n_host * block_bytes] */
    gt_kv_prefix *host_prefix;
    int32_t *host_free;  /* [n_host] */
    int n_host_free;
    lru_list hlru; /* [n_host] */
    uint64_t to_host, from_host;
    int32_t *pin;        /* [max_seq_blocks] host slots of the chain being attached */
};

static gt_status host_tier_create(gt_kv_cache *kv) {
    int n = kv->cfg.n_host_blocks, L = kv->cfg.n_layer;
    size_t bytes;
    if (!gt_size_mul(kv->block_bytes, (size_t)n, &bytes))
        return gt_fail(GT_ERR_NOMEM, "a host tier of %d blocks overflows", n);
    kv->n_host = n;
    kv->hk = calloc((size_t)L, sizeof *kv->hk);
    kv->hv = calloc((size_t)L, sizeof *kv->hv);
    kv->host_free = malloc((size_t)n * sizeof *kv->host_free);
    kv->hlru.prev = malloc((size_t)n * sizeof *kv->hlru.prev);
    kv->hlru.next = malloc((size_t)n * sizeof *kv->hlru.next);
    if (!kv->hk || !kv->hv || !kv->host_free || !kv->hlru.prev || !kv->hlru.next)
        return gt_fail(GT_ERR_NOMEM, "cannot allocate the KV host tier's tables");
    for (int il = 0; il < L; il++) {
        kv->hk[il] = gt_alloc(bytes);
        kv->hv[il] = gt_alloc(bytes);
        if (!kv->hk[il] || !kv->hv[il])
            return gt_fail(GT_ERR_NOMEM, "cannot allocate a KV host tier of %d blocks", n);
    }
    for (int b = 0; b < n; b++) kv->host_free[b] = n - 1 - b;
    kv->n_host_free = n;
    return gt__kv_prefix_create(n, kv->cfg.block_size, &kv->host_prefix);
}

gt_status gt_kv_cache_create(gt_kernels *k, const gt_kv_cache_config *cfg, gt_kv_cache **out) {
    *out = NULL;
    if (cfg->type != GT_F16 && cfg->type != GT_F32 && cfg->type != GT_BF16)
        return gt_fail(GT_ERR_UNSUPPORTED, "KV cache type %s is not supported (f16, bf16, f32)",
                       gt_dtype_name(cfg->type));
    if (cfg->n_layer < 1 || cfg->row_elems < 1 || cfg->block_size < 1 || cfg->n_blocks < 1 ||
        cfg->max_seqs < 1 || cfg->max_seq_blocks < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "KV cache: layers %d, row %d, block size %d, blocks %d, "
                       "sequences %d must all be positive", cfg->n_layer, cfg->row_elems,
                       cfg->block_size, cfg->n_blocks, cfg->max_seqs);
    if (cfg->n_kv_head < 0 || (cfg->n_kv_head > 0 && cfg->row_elems % cfg->n_kv_head))
        return gt_fail(GT_ERR_INVALID_ARG, "KV cache: a row of %d elements is not %d kv heads",
                       cfg->row_elems, cfg->n_kv_head);
    if (cfg->type == GT_BF16 &&
        (cfg->block_size % 2 || cfg->row_elems / (cfg->n_kv_head > 0 ? cfg->n_kv_head : 1) % 2))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "a BF16 KV cache stores pairs: its block size (%d) and head size (%d) must "
                       "be even",
                       cfg->block_size, cfg->row_elems / (cfg->n_kv_head > 0 ? cfg->n_kv_head : 1));
    gt_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return gt_fail(GT_ERR_NOMEM, "cannot allocate the KV cache");
    kv->cfg = *cfg;
    kv->kern = k;
    kv->row_bytes = (size_t)cfg->row_elems * gt_kv_elem_bytes(cfg->type);
    kv->block_bytes = kv->row_bytes * (size_t)cfg->block_size;
    kv->n_kv_head = cfg->n_kv_head > 0 ? cfg->n_kv_head : 1;
    kv->part_bytes = kv->block_bytes / (size_t)kv->n_kv_head;
    size_t layer_bytes;
    if (!gt_size_mul(kv->block_bytes, (size_t)cfg->n_blocks, &layer_bytes)) goto nomem;
    kv->head_stride = kv->part_bytes * (size_t)cfg->n_blocks;
    kv->k = calloc((size_t)cfg->n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)cfg->n_layer, sizeof *kv->v);
    kv->free_list = malloc((size_t)cfg->n_blocks * sizeof *kv->free_list);
    kv->tables = malloc((size_t)cfg->max_seqs * (size_t)cfg->max_seq_blocks * sizeof *kv->tables);
    kv->n_seq_blocks = calloc((size_t)cfg->max_seqs, sizeof *kv->n_seq_blocks);
    kv->seq_len = calloc((size_t)cfg->max_seqs, sizeof *kv->seq_len);
    kv->store_blocks = calloc((size_t)cfg->max_seq_blocks, sizeof *kv->store_blocks);
    kv->ref = calloc((size_t)cfg->n_blocks, sizeof *kv->ref);
    kv->lru.prev = malloc((size_t)cfg->n_blocks * sizeof *kv->lru.prev);
    kv->lru.next = malloc((size_t)cfg->n_blocks * sizeof *kv->lru.next);
    kv->seq_key = calloc((size_t)cfg->max_seqs, sizeof *kv->seq_key);
    kv->seq_tail = malloc((size_t)cfg->max_seqs * (size_t)cfg->block_size * sizeof *kv->seq_tail);
    kv->seq_tail_n = calloc((size_t)cfg->max_seqs, sizeof *kv->seq_tail_n);
    kv->seq_noted = calloc((size_t)cfg->max_seqs, sizeof *kv->seq_noted);
    kv->pin = malloc((size_t)cfg->max_seq_blocks * sizeof *kv->pin);
    size_t seq_positions = (size_t)cfg->max_seqs * (size_t)cfg->max_seq_blocks;
    kv->seq_hist = malloc(seq_positions * (size_t)cfg->block_size * sizeof *kv->seq_hist);
    kv->seq_keys = calloc(seq_positions, sizeof *kv->seq_keys);
    if (!kv->seq_hist || !kv->seq_keys) goto nomem;
    if (!kv->k || !kv->v || !kv->free_list || !kv->tables || !kv->n_seq_blocks || !kv->seq_len ||
        !kv->store_blocks || !kv->ref || !kv->lru.prev || !kv->lru.next || !kv->seq_key ||
        !kv->seq_tail || !kv->seq_tail_n || !kv->seq_noted || !kv->pin ||
        gt__kv_prefix_create(cfg->n_blocks, cfg->block_size, &kv->prefix) != GT_OK)
        goto nomem;
    kv->lru.head = kv->lru.tail = -1;
    kv->hlru.head = kv->hlru.tail = -1;
    if (cfg->n_host_blocks > 0 && host_tier_create(kv) != GT_OK) goto nomem;
    for (int il = 0; il < cfg->n_layer; il++) {
        if (gt_buffer_alloc(k, layer_bytes, &kv->k[il]) != GT_OK ||
            gt_buffer_alloc(k, layer_bytes, &kv->v[il]) != GT_OK)
            goto nomem;
    }
    for (int b = 0; b < cfg->n_blocks; b++) kv->free_list[b] = cfg->n_blocks - 1 - b;
    kv->n_free = cfg->n_blocks;
    *out = kv;
    return GT_OK;
nomem:
    gt_kv_cache_destroy(kv);
    return gt_fail(GT_ERR_NOMEM, "cannot allocate a KV cache of %d blocks x %zu bytes x %d layers x 2",
                   cfg->n_blocks, kv ? kv->block_bytes : 0, cfg->n_layer);
}

void gt_kv_cache_destroy(gt_kv_cache *kv) {
    if (!kv) return;
    for (int il = 0; il < kv->cfg.n_layer; il++) {
        if (kv->k) gt_buffer_free(kv->k[il]);
        if (kv->v) gt_buffer_free(kv->v[il]);
    }
    free(kv->store_blocks);
    free(kv->k);
    free(kv->v);
    free(kv->free_list);
    free(kv->tables);
    free(kv->n_seq_blocks);
    free(kv->seq_len);
    free(kv->ref);
    free(kv->lru.prev);
    free(kv->lru.next);
    free(kv->seq_key);
    free(kv->seq_tail);
    free(kv->seq_tail_n);
    free(kv->seq_noted);
    free(kv->pin);
    free(kv->seq_hist);
    free(kv->seq_keys);
    gt__kv_prefix_destroy(kv->prefix);
    for (int il = 0; kv->hk && il < kv->cfg.n_layer; il++) {
        gt_free(kv->hk[il]);
        gt_free(kv->hv[il]);
    }
    free(kv->hk);
    free(kv->hv);
    free(kv->host_free);
    free(kv->hlru.prev);
    free(kv->hlru.next);
    gt__kv_prefix_destroy(kv->host_prefix);
    free(kv);
}

size_t gt_kv_cache_bytes(const gt_kv_cache *kv) {
    return kv->block_bytes * (size_t)kv->cfg.n_blocks * (size_t)kv->cfg.n_layer * 2;
}

static void list_unlink(lru_list *l, int i) {
    int p = l->prev[i], n = l->next[i];
    if (p >= 0) l->next[p] = n;
    else l->head = n;
    if (n >= 0) l->prev[n] = p;
    else l->tail = p;
    l->n--;
}

static void list_push(lru_list *l, int i) {
    l->prev[i] = l->tail;
    l->next[i] = -1;
    if (l->tail >= 0) l->next[l->tail] = i;
    else l->head = i;
    l->tail = i;
    l->n++;
}

/* Copies the K and V rows of pool block b to or from host slot h, every
 * layer, through the pool's backend: each kv head's part (its own pool on
 * the device side; side by side in the host slot). */
static gt_status host_copy(gt_kv_cache *kv, int b, int h, bool to_host) {
    for (int il = 0; il < kv->cfg.n_layer; il++)
        for (int g = 0; g < kv->n_kv_head; g++) {
            const size_t off = (size_t)g * kv->head_stride + (size_t)b * kv->part_bytes;
            const size_t hoff = (size_t)h * kv->block_bytes + (size_t)g * kv->part_bytes;
            if (to_host) {
                GT_TRY(gt_buffer_download(kv->k[il], off, kv->hk[il] + hoff, kv->part_bytes));
                GT_TRY(gt_buffer_download(kv->v[il], off, kv->hv[il] + hoff, kv->part_bytes));
            } else {
                GT_TRY(gt_buffer_upload(kv->k[il], off, kv->hk[il] + hoff, kv->part_bytes));
                GT_TRY(gt_buffer_upload(kv->v[il], off, kv->hv[il] + hoff, kv->part_bytes));
            }
        }
    uint64_t n = 2 * (uint64_t)kv->block_bytes * (uint64_t)kv->cfg.n_layer;
    if (to_host) kv->to_host += n;
    else kv->from_host += n;
    return GT_OK;
}

/* An evicted cached block moves to the host tier (whose own oldest entry
 * makes room when it is full), unless the tier already holds that prefix. */
static void evict_to_host(gt_kv_cache *kv, int b) {
    if (!kv->n_host) return;
    uint64_t parent, key;
    const int32_t *toks;
    gt__kv_prefix_entry(kv->prefix, b, &parent, &toks);
    if (gt__kv_prefix_find(kv->host_prefix, parent, toks, &key) >= 0) return;
    int h = -1;
    if (kv->n_host_free > 0) {
        h = kv->host_free[--kv->n_host_free];
    } else if (kv->hlru.head >= 0) {
        h = kv->hlru.head;
        list_unlink(&kv->hlru, h);
        gt__kv_prefix_remove(kv->host_prefix, h);
    }
    if (h < 0) return; /* every host slot is pinned by an attach in progress */
    if (host_copy(kv, b, h, true) != GT_OK) {
        kv->host_free[kv->n_host_free++] = h;
        return;
    }
    gt__kv_prefix_insert(kv->host_prefix, h, parent, toks);
    list_push(&kv->hlru, h);
}

/* A block for a sequence: a free one, else the least recently released
 * cached one (which leaves the prefix index, for the host tier when there
 * is one). -1 when every block is held. */
static int take_block(gt_kv_cache *kv) {
    int b = -1;
    if (kv->n_free > 0) {
        b = kv->free_list[--kv->n_free];
    } else if (kv->lru.head >= 0) {
        b = kv->lru.head;
        list_unlink(&kv->lru, b);
        evict_to_host(kv, b);
        gt__kv_prefix_remove(kv->prefix, b);
    }
    if (b >= 0) kv->ref[b] = 1;
    return b;
}

static void release_block(gt_kv_cache *kv, int b) {
    if (--kv->ref[b] > 0) return;
    if (gt__kv_prefix_has(kv->prefix, b)) list_push(&kv->lru, b);
    else kv->free_list[kv->n_free++] = b;
}

gt_status gt_kv_cache_reserve(gt_kv_cache *kv, int seq, uint32_t n_tokens) {
    int need = (int)((n_tokens + (uint32_t)kv->cfg.block_size - 1) / (uint32_t)kv->cfg.block_size);
    if (need > kv->cfg.max_seq_blocks)
        return gt_fail(GT_ERR_RANGE, "sequence %d needs %u positions, more than its context of %d",
                       seq, n_tokens, kv->cfg.max_seq_blocks * kv->cfg.block_size);
    int32_t *table = kv->tables + (size_t)seq * (size_t)kv->cfg.max_seq_blocks;
    while (kv->n_seq_blocks[seq] < need) {
        int b = take_block(kv);
        if (b < 0)
            return gt_fail(GT_ERR_RANGE, "the KV cache is full: all %d blocks of %d tokens are in use",
                           kv->cfg.n_blocks, kv->cfg.block_size);
        table[kv->n_seq_blocks[seq]++] = b;
    }
    return GT_OK;
}

uint32_t gt_kv_cache_seq_len(const gt_kv_cache *kv, int seq) { return kv->seq_len[seq]; }

void gt_kv_cache_set_seq_len(gt_kv_cache *kv, int seq, uint32_t n) { kv->seq_len[seq] = n; }

void gt_kv_cache_clear(gt_kv_cache *kv, int seq) {
    int32_t *table = kv->tables + (size_t)seq * (size_t)kv->cfg.max_seq_blocks;
    while (kv->n_seq_blocks[seq] > 0) release_block(kv, table[--kv->n_seq_blocks[seq]]);
    kv->seq_len[seq] = 0;
    kv->seq_key[seq] = 0;
    kv->seq_tail_n[seq] = 0;
    kv->seq_noted[seq] = 0;
}

gt_status gt_kv_cache_truncate(gt_kv_cache *kv, int seq, uint32_t n) {
    uint32_t len = kv->seq_len[seq];
    if (n > len)
        return gt_fail(GT_ERR_INVALID_ARG, "sequence %d holds %u tokens; it cannot be truncated to %u", seq,
                       len, n);
    if (kv->seq_noted[seq] != len)
        return gt_fail(GT_ERR_INTERNAL, "sequence %d holds %u tokens but %u were noted", seq, len,
                       kv->seq_noted[seq]);
    uint32_t bs = (uint32_t)kv->cfg.block_size;
    int keep = (int)((n + bs - 1) / bs);
    int32_t *table = kv->tables + (size_t)seq * (size_t)kv->cfg.max_seq_blocks;
    /* The block that keeps rows [j * bs, n) is written again from row n on:
     * it must not be shared, and it leaves the prefix index, whose entry
     * names the tokens being dropped. */
    if (n % bs && keep <= kv->n_seq_blocks[seq]) {
        int b = table[keep - 1];
        if (kv->ref[b] > 1)
            return gt_fail(GT_ERR_INVALID_ARG, "sequence %d cannot be truncated to %u inside block %d, which "
                           "%d sequences share", seq, n, keep - 1, kv->ref[b]);
        if (gt__kv_prefix_has(kv->prefix, b)) gt__kv_prefix_remove(kv->prefix, b);
    }
    /* Whole blocks past n go back like a cleared sequence's: a full indexed
     * one stays cached (its rows are right for the tokens it was filed
     * under), the rest are free. */
    while (kv->n_seq_blocks[seq] > keep) release_block(kv, table[--kv->n_seq_blocks[seq]]);
    const int32_t *hist = kv->seq_hist + (size_t)seq * (size_t)kv->cfg.max_seq_blocks * (size_t)bs;
    uint32_t full = n / bs;
    kv->seq_len[seq] = n;
    kv->seq_noted[seq] = n;
    kv->seq_key[seq] = full ? kv->seq_keys[(size_t)seq * (size_t)kv->cfg.max_seq_blocks + full - 1] : 0;
    kv->seq_tail_n[seq] = (int)(n - full * bs);
    memcpy(kv->seq_tail + (size_t)seq * bs, hist + (size_t)full * bs, (size_t)kv->seq_tail_n[seq] * sizeof *hist);
    return GT_OK;
}

void gt_kv_cache_note_tokens(gt_kv_cache *kv, int seq, const int32_t *toks, int n) {
    int bs = kv->cfg.block_size;
    int32_t *tail = kv->seq_tail + (size_t)seq * (size_t)bs;
    const int32_t *table = kv->tables + (size_t)seq * (size_t)kv->cfg.max_seq_blocks;
    int32_t *hist = kv->seq_hist + (size_t)seq * (size_t)kv->cfg.max_seq_blocks * (size_t)bs;
    uint64_t *keys = kv->seq_keys + (size_t)seq * (size_t)kv->cfg.max_seq_blocks;
    for (int i = 0; i < n; i++) {
        tail[kv->seq_tail_n[seq]++] = toks[i];
        hist[kv->seq_noted[seq]] = toks[i];
        kv->seq_noted[seq]++;
        if (kv->seq_tail_n[seq] < bs) continue;
        /* The block just filled: index it under its prefix (unless another
         * block already holds the same prefix) and chain on. */
        int b = table[kv->seq_noted[seq] / (uint32_t)bs - 1];
        uint64_t key;
        int found = gt__kv_prefix_find(kv->prefix, kv->seq_key[seq], tail, &key);
        if (found < 0) gt__kv_prefix_insert(kv->prefix, b, kv->seq_key[seq], tail);
        kv->seq_key[seq] = key;
        keys[kv->seq_noted[seq] / (uint32_t)bs - 1] = key;
        kv->seq_tail_n[seq] = 0;
    }
}

/* Where block i of a prefix lives: *b in the pool, else *h in the host tier. */
static bool find_block(const gt_kv_cache *kv, uint64_t parent, const int32_t *toks, int *b, int *h,
                       uint64_t *key) {
    *b = gt__kv_prefix_find(kv->prefix, parent, toks, key);
    *h = *b < 0 && kv->n_host ? gt__kv_prefix_find(kv->host_prefix, parent, toks, key) : -1;
    return *b >= 0 || *h >= 0;
}

int gt_kv_cache_prefix_blocks(const gt_kv_cache *kv, const int32_t *toks, int n_blocks) {
    uint64_t parent = 0;
    int bs = kv->cfg.block_size;
    for (int i = 0; i < n_blocks; i++) {
        uint64_t key;
        int b, h;
        if (!find_block(kv, parent, toks + (size_t)i * (size_t)bs, &b, &h, &key)) return i;
        parent = key;
    }
    return n_blocks;
}

int gt_kv_cache_prefix_fit(const gt_kv_cache *kv, const int32_t *toks, int n_blocks, int *spare_free) {
    uint64_t parent = 0;
    int bs = kv->cfg.block_size;
    for (int i = 0; i < n_blocks; i++) {
        uint64_t key;
        int b, h;
        if (!find_block(kv, parent, toks + (size_t)i * (size_t)bs, &b, &h, &key)) return i;
        if (b < 0) { /* from the host tier: into a free block, so that nothing is evicted meanwhile */
            if (*spare_free < 1) return i;
            (*spare_free)--;
        }
        parent = key;
    }
    return n_blocks;
}

gt_status gt_kv_cache_attach(gt_kv_cache *kv, int seq, const int32_t *toks, int n_blocks) {
    if (kv->n_seq_blocks[seq] || kv->seq_len[seq])
        return gt_fail(GT_ERR_INVALID_ARG, "sequence %d holds %u tokens; a cached prefix attaches only "
                       "to an empty sequence", seq, kv->seq_len[seq]);
    if (n_blocks > kv->cfg.max_seq_blocks)
        return gt_fail(GT_ERR_RANGE, "a prefix of %d blocks is longer than a sequence's %d", n_blocks,
                       kv->cfg.max_seq_blocks);
    if (gt_kv_cache_prefix_blocks(kv, toks, n_blocks) < n_blocks)
        return gt_fail(GT_ERR_NOT_FOUND, "the first %d blocks of sequence %d's tokens are not all in "
                       "the prefix cache", n_blocks, seq);
    int bs = kv->cfg.block_size;
    int32_t *table = kv->tables + (size_t)seq * (size_t)kv->cfg.max_seq_blocks;
    /* Pin the chain first: pool blocks by reference, host slots out of the
     * host eviction order, so that bringing one block back cannot evict
     * another of the same chain. */
    uint64_t parent = 0;
    int32_t *pinned_host = kv->pin;
    for (int i = 0; i < n_blocks; i++) {
        uint64_t key;
        int b, h;
        find_block(kv, parent, toks + (size_t)i * (size_t)bs, &b, &h, &key);
        pinned_host[i] = h;
        if (b >= 0) {
            if (kv->ref[b]++ == 0) list_unlink(&kv->lru, b);
        } else {
            list_unlink(&kv->hlru, h);
        }
        table[i] = b; /* -1: comes from the host slot */
        parent = key;
        kv->seq_keys[(size_t)seq * (size_t)kv->cfg.max_seq_blocks + (size_t)i] = key;
    }
    gt_status st = GT_OK;
    for (int i = 0; i < n_blocks; i++) {
        int h = pinned_host[i];
        if (h < 0) continue;
        int b = st == GT_OK ? take_block(kv) : -1;
        if (b < 0 && st == GT_OK)
            st = gt_fail(GT_ERR_RANGE, "the KV cache is full: no block to bring a cached prefix back into");
        if (st == GT_OK) st = host_copy(kv, b, h, false);
        uint64_t hp;
        const int32_t *ht;
        gt__kv_prefix_entry(kv->host_prefix, h, &hp, &ht);
        if (st == GT_OK) gt__kv_prefix_insert(kv->prefix, b, hp, ht);
        gt__kv_prefix_remove(kv->host_prefix, h);
        kv->host_free[kv->n_host_free++] = h;
        table[i] = b;
    }
    if (st != GT_OK) { /* give back what was taken */
        for (int i = 0; i < n_blocks; i++)
            if (table[i] >= 0) release_block(kv, table[i]);
        return st;
    }
    kv->n_seq_blocks[seq] = n_blocks;
    kv->seq_len[seq] = (uint32_t)n_blocks * (uint32_t)bs;
    kv->seq_key[seq] = parent;
    kv->seq_tail_n[seq] = 0;
    kv->seq_noted[seq] = kv->seq_len[seq];
    memcpy(kv->seq_hist + (size_t)seq * (size_t)kv->cfg.max_seq_blocks * (size_t)bs, toks,
           (size_t)n_blocks * (size_t)bs * sizeof *toks);
    return GT_OK;
}

int gt_kv_cache_n_host(const gt_kv_cache *kv) { return kv->hlru.n; }
void gt_kv_cache_host_traffic(const gt_kv_cache *kv, uint64_t *to_host, uint64_t *from_host) {
    *to_host = kv->to_host;
    *from_host = kv->from_host;
}
size_t gt_kv_cache_host_bytes(const gt_kv_cache *kv) {
    return kv->block_bytes * (size_t)kv->n_host * (size_t)kv->cfg.n_layer * 2;
}

int gt_kv_cache_n_cached(const gt_kv_cache *kv) { return kv->lru.n; }
int gt_kv_cache_n_free(const gt_kv_cache *kv) { return kv->n_free; }
int gt_kv_cache_n_blocks(const gt_kv_cache *kv) { return kv->cfg.n_blocks; }

gt_status gt_kv_cache_store(gt_kv_cache *kv, int il, int seq, int is_v, const int32_t *pos,
                            const float *rows, int n) {
    const int32_t *table = kv->tables + (size_t)seq * (size_t)kv->cfg.max_seq_blocks;
    uint8_t *base = gt_buffer_addr(is_v ? kv->v[il] : kv->k[il]);
    for (int b = 0; b < kv->n_seq_blocks[seq]; b++)
        kv->store_blocks[b] = base + (size_t)table[b] * kv->part_bytes;
    gt_kv_store_args a = {
        .rows = rows,
        .pos = pos,
        .n_tok = n,
        .row_elems = kv->cfg.row_elems,
        .blocks = kv->store_blocks,
        .block_size = kv->cfg.block_size,
        .head_stride = kv->head_stride,
        .kv_type = kv->cfg.type,
        .n_kv_head = kv->cfg.n_kv_head > 0 ? kv->cfg.n_kv_head : 1,
        .keys = !is_v,
    };
    return gt_kv_store(kv->kern, &a);
}

int gt_kv_cache_blocks(const gt_kv_cache *kv, int il, int seq, int is_v, uint32_t n_tokens,
                       const void **blocks) {
    const int32_t *table = kv->tables + (size_t)seq * (size_t)kv->cfg.max_seq_blocks;
    const uint8_t *base = gt_buffer_addr(is_v ? kv->v[il] : kv->k[il]);
    int n = (int)((n_tokens + (uint32_t)kv->cfg.block_size - 1) / (uint32_t)kv->cfg.block_size);
    for (int b = 0; b < n; b++) blocks[b] = base + (size_t)table[b] * kv->part_bytes;
    return n;
}

int gt_kv_cache_block_size(const gt_kv_cache *kv) { return kv->cfg.block_size; }
size_t gt_kv_cache_head_stride(const gt_kv_cache *kv) { return kv->head_stride; }
gt_dtype gt_kv_cache_type(const gt_kv_cache *kv) { return kv->cfg.type; }
