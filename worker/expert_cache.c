/* The expert cache; see expert_cache.h. */
#include "worker/expert_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timer.h"
#include "worker/expert_lru.h"

typedef struct layer_cache {
    gt_lru lru;
    gt_expert_slot slot;      /* where gate, up, down sit in a slot */
    size_t base;              /* offset of slot 0 in the pool */
    gt_expert_weights *dev;   /* [n_slots] views into the pool */
    uint64_t *ticket;         /* [n_slots] the copy that fills it (0: none pending) */
    uint8_t *need;            /* [n_expert] routed to by the current step */
    uint8_t *pf;              /* [n_slots] filled by a prefetch, not yet routed to */
    int wave_last;            /* highest expert of the current wave; -1 before the first */
    int n_left;               /* experts of the last route not yet handed out by get */
    uint64_t bytes_copied, wait_ns;
    uint64_t prefetched, prefetch_useful;
} layer_cache;

struct gt_expert_cache {
    gt_kernels *k;
    const gt_model_weights *w; /* borrowed: the host copies */
    gt_buffer *pool;
    int n_layer, n_slots;
    int n_expert, x0; /* the experts this rank owns: [x0, x0 + n_expert) (all without --ep) */
    int n_total;      /* experts per layer in the model */
    uint64_t last_ticket;
    uint8_t *mark; /* [n_expert] a prefetch's predicted experts */
    layer_cache *layers;
};

static void slot_views(gt_expert_cache *c, layer_cache *L, int il) {
    char *base = (char *)gt_buffer_addr(c->pool) + L->base;
    for (int s = 0; s < c->n_slots; s++) {
        char *p = base + (size_t)s * L->slot.slot_bytes;
        const gt_expert_weights *h = &c->w->layers[il].experts[c->x0];
        gt_weight_view(&h->gate, p + L->slot.off[0], &L->dev[s].gate);
        gt_weight_view(&h->up, p + L->slot.off[1], &L->dev[s].up);
        gt_weight_view(&h->down, p + L->slot.off[2], &L->dev[s].down);
    }
}

/* Starts the copy of expert ex of layer il into slot s. */
static gt_status copy_in(gt_expert_cache *c, int il, int ex, int s) {
    layer_cache *L = &c->layers[il];
    const gt_expert_weights *h = &c->w->layers[il].experts[c->x0 + ex];
    const gt_weight *src[3] = {&h->gate, &h->up, &h->down};
    size_t at = L->base + (size_t)s * L->slot.slot_bytes;
    uint64_t t = 0;
    for (int i = 0; i < 3; i++) {
        GT_TRY(gt_copy_start(c->k, c->pool, at + L->slot.off[i], src[i]->data, L->slot.bytes[i], &t));
        L->bytes_copied += L->slot.bytes[i];
    }
    L->ticket[s] = t;
    if (t > c->last_ticket) c->last_ticket = t;
    return GT_OK;
}

/* Order of experts by heat, hottest first (ties: lower index first). */
static void by_heat(const uint64_t *heat, int E, int *order) {
    for (int i = 0; i < E; i++) order[i] = i;
    if (!heat) return;
    for (int i = 1; i < E; i++) { /* insertion sort: E is small */
        int x = order[i], j = i;
        while (j > 0 && heat[order[j - 1]] < heat[x]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
}

static gt_status fill(gt_expert_cache *c, int il, const uint64_t *heat) {
    layer_cache *L = &c->layers[il];
    int E = c->n_expert, *order = malloc((size_t)E * sizeof *order);
    if (!order) return gt_fail(GT_ERR_NOMEM, "cannot allocate the expert order of %d experts", E);
    by_heat(heat, E, order);
    gt_status st = GT_OK;
    /* Coldest of the resident first, so the hottest is the most recently used. */
    for (int i = c->n_slots - 1; i >= 0 && st == GT_OK; i--) {
        int slot, ev;
        bool hit;
        gt_lru_new_wave(&L->lru);
        st = gt_lru_use(&L->lru, order[i], &slot, &ev, &hit);
        if (st == GT_OK) st = copy_in(c, il, order[i], slot);
    }
    free(order);
    L->lru.hits = L->lru.misses = L->lru.evictions = 0;
    L->bytes_copied = 0;
    return st;
}

gt_status gt_expert_cache_create(gt_kernels *k, const gt_gguf *g, const gt_hparams *hp, const gt_shard *s,
                                 const gt_model_weights *w, const uint64_t *heat, gt_expert_cache **out) {
    *out = NULL;
    gt_expert_cache *c = calloc(1, sizeof *c);
    if (!c) return gt_fail(GT_ERR_NOMEM, "cannot allocate an expert cache");
    c->k = k;
    c->w = w;
    c->n_layer = w->n_layer;
    c->n_total = (int)hp->n_expert;
    c->n_expert = (int)gt_range_len(s->experts);
    c->x0 = (int)s->experts.begin;
    c->n_slots = s->expert_slots;
    gt_status st = GT_OK;
    if (c->n_slots < (int)hp->n_expert_used || c->n_slots > c->n_expert) {
        st = gt_fail(GT_ERR_INVALID_ARG, "an expert cache of %d slots per layer is outside %u..%d",
                     c->n_slots, hp->n_expert_used, c->n_expert);
        goto fail;
    }
    c->layers = calloc((size_t)c->n_layer, sizeof *c->layers);
    if (!c->layers) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate the expert caches of %d layers", c->n_layer);
        goto fail;
    }
    c->mark = calloc((size_t)c->n_expert, 1);
    if (!c->mark) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate the prefetch marks of %d experts", c->n_expert);
        goto fail;
    }
    size_t total = 0;
    for (int il = 0; il < c->n_layer; il++) {
        layer_cache *L = &c->layers[il];
        GT_TRY_GOTO(gt_plan_expert_slot(g, hp, s, k, w->layer0 + il, &L->slot), st, fail);
        const gt_expert_weights *h = &w->layers[il].experts[c->x0];
        const gt_weight *m[3] = {&h->gate, &h->up, &h->down};
        for (int i = 0; i < 3; i++)
            if (gt_weight_prepared_bytes(k, m[i]->type, m[i]->n_in, m[i]->n_out) != L->slot.bytes[i]) {
                st = gt_fail(GT_ERR_INTERNAL, "layer %d: an expert matrix of %zu prepared bytes does not "
                             "match its %zu-byte place in the slot layout", w->layer0 + il,
                             gt_weight_prepared_bytes(k, m[i]->type, m[i]->n_in, m[i]->n_out), L->slot.bytes[i]);
                goto fail;
            }
        L->base = total;
        total += (size_t)c->n_slots * L->slot.slot_bytes;
        L->wave_last = -1;
        GT_TRY_GOTO(gt_lru_init(&L->lru, c->n_slots, c->n_expert), st, fail);
        L->dev = calloc((size_t)c->n_slots, sizeof *L->dev);
        L->ticket = calloc((size_t)c->n_slots, sizeof *L->ticket);
        L->need = calloc((size_t)c->n_expert, 1);
        L->pf = calloc((size_t)c->n_slots, 1);
        if (!L->dev || !L->ticket || !L->need || !L->pf) {
            st = gt_fail(GT_ERR_NOMEM, "cannot allocate the expert cache of layer %d", w->layer0 + il);
            goto fail;
        }
    }
    if (total != s->expert_pool_bytes) {
        st = gt_fail(GT_ERR_INTERNAL, "the expert pool takes %zu bytes, the plan says %llu", total,
                     (unsigned long long)s->expert_pool_bytes);
        goto fail;
    }
    GT_TRY_GOTO(gt_buffer_alloc(k, total, &c->pool), st, fail);
    for (int il = 0; il < c->n_layer; il++) {
        slot_views(c, &c->layers[il], il);
        GT_TRY_GOTO(fill(c, il, heat ? heat + (size_t)il * (size_t)c->n_total + (size_t)c->x0 : NULL), st,
                    fail);
    }
    GT_TRY_GOTO(gt_copy_wait(k, c->last_ticket), st, fail);
    *out = c;
    return GT_OK;
fail:
    gt_expert_cache_destroy(c);
    return st;
}

void gt_expert_cache_destroy(gt_expert_cache *c) {
    if (!c) return;
    if (c->last_ticket) (void)gt_copy_wait(c->k, c->last_ticket); /* nothing may still write the pool */
    if (c->layers)
        for (int il = 0; il < c->n_layer; il++) {
            layer_cache *L = &c->layers[il];
            gt_lru_free(&L->lru);
            free(L->dev);
            free(L->ticket);
            free(L->need);
            free(L->pf);
        }
    free(c->layers);
    free(c->mark);
    gt_buffer_free(c->pool);
    free(c);
}

uint64_t gt_expert_cache_pool_bytes(const gt_expert_cache *c) { return c ? gt_buffer_size(c->pool) : 0; }
int gt_expert_cache_slots(const gt_expert_cache *c) { return c ? c->n_slots : 0; }

/* Pins the needed experts from `from` on, in order, up to a slot each, and
 * starts the copies of those not held. */
static gt_status start_wave(gt_expert_cache *c, int il, int from) {
    layer_cache *L = &c->layers[il];
    gt_lru_new_wave(&L->lru);
    int taken = 0;
    for (int ex = from; ex < c->n_expert && taken < c->n_slots; ex++) {
        if (!L->need[ex]) continue;
        int slot, ev;
        bool hit;
        GT_TRY(gt_lru_use(&L->lru, ex, &slot, &ev, &hit));
        if (hit && L->pf[slot]) L->prefetch_useful++; /* predicted, copied, and now routed to */
        L->pf[slot] = 0;
        if (!hit) GT_TRY(copy_in(c, il, ex, slot));
        L->wave_last = ex;
        taken++;
    }
    return GT_OK;
}

gt_status gt_expert_cache_route(gt_expert_cache *c, int il, const int32_t *ids, int n_pairs) {
    layer_cache *L = &c->layers[il];
    memset(L->need, 0, (size_t)c->n_expert);
    for (int i = 0; i < n_pairs; i++) {
        int x = ids[i] - c->x0;
        if (x < 0 || x >= c->n_expert)
            return gt_fail(GT_ERR_INTERNAL, "expert %d is outside this rank's experts %d..%d", ids[i], c->x0,
                           c->x0 + c->n_expert - 1);
        L->need[x] = 1;
    }
    L->n_left = 0;
    for (int x = 0; x < c->n_expert; x++) L->n_left += L->need[x];
    /* A prefetched expert this step does not need was mispredicted. */
    for (int s = 0; s < c->n_slots; s++) {
        int x = L->lru.slot_item[s];
        if (L->pf[s] && (x < 0 || !L->need[x])) L->pf[s] = 0;
    }
    L->wave_last = -1;
    return start_wave(c, il, 0);
}

gt_status gt_expert_cache_prefetch(gt_expert_cache *c, int il, const int32_t *ids, int n_pairs) {
    layer_cache *L = &c->layers[il];
    /* Between steps the layer's last wave is over and pins nothing; in the
     * middle of a step (not how the engine calls it) its pins stand. */
    if (L->n_left == 0) gt_lru_new_wave(&L->lru);
    memset(c->mark, 0, (size_t)c->n_expert);
    for (int i = 0; i < n_pairs; i++) {
        int x = ids[i] - c->x0;
        if (x >= 0 && x < c->n_expert) c->mark[x] = 1; /* under --ep: only the experts this rank owns */
    }
    gt_lru_hint_begin(&L->lru);
    /* In expert order, as the first wave will take them. */
    for (int ex = 0; ex < c->n_expert; ex++) {
        if (!c->mark[ex]) continue;
        int slot, ev;
        bool hit;
        gt_lru_hint(&L->lru, ex, &slot, &ev, &hit);
        if (slot < 0) break; /* every slot is pinned or already predicted */
        if (hit) continue;
        GT_TRY(copy_in(c, il, ex, slot));
        L->pf[slot] = 1;
        L->prefetched++;
    }
    return GT_OK;
}

gt_status gt_expert_cache_get(gt_expert_cache *c, int il, int ex_global, const gt_expert_weights **out) {
    layer_cache *L = &c->layers[il];
    int ex = ex_global - c->x0;
    if (ex < 0 || ex >= c->n_expert)
        return gt_fail(GT_ERR_INTERNAL, "expert %d is outside this rank's experts %d..%d", ex_global, c->x0,
                       c->x0 + c->n_expert - 1);
    if (ex > L->wave_last) GT_TRY(start_wave(c, il, ex));
    int s = gt_lru_slot(&L->lru, ex);
    if (s < 0 || !L->need[ex])
        return gt_fail(GT_ERR_INTERNAL, "expert %d of layer %d was not routed to in this step", ex_global,
                       c->w->layer0 + il);
    if (L->ticket[s]) {
        uint64_t t0 = gt_now_ns();
        GT_TRY(gt_copy_wait(c->k, L->ticket[s]));
        L->wait_ns += gt_now_ns() - t0;
        L->ticket[s] = 0;
    }
    if (L->n_left > 0) L->n_left--;
    *out = &L->dev[s];
    return GT_OK;
}

gt_expert_cache_stats gt_expert_cache_stats_of(const gt_expert_cache *c, int il) {
    gt_expert_cache_stats st = {0};
    if (!c) return st;
    for (int i = il < 0 ? 0 : il; i < (il < 0 ? c->n_layer : il + 1); i++) {
        const layer_cache *L = &c->layers[i];
        st.hits += L->lru.hits;
        st.misses += L->lru.misses;
        st.evictions += L->lru.evictions;
        st.bytes_copied += L->bytes_copied;
        st.wait_s += (double)L->wait_ns * 1e-9;
        st.prefetched += L->prefetched;
        st.prefetch_useful += L->prefetch_useful;
    }
    return st;
}

/* ---- statistics files ---- */

#define STATS_MAGIC "gantry-expert-stats 1"

gt_status gt_expert_stats_write(const char *path, int layer0, int n_layer, int n_expert,
                                const uint64_t *counts) {
    FILE *f = fopen(path, "w");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open for writing", path);
    fprintf(f, STATS_MAGIC "\nexperts %d\n", n_expert);
    for (int il = 0; il < n_layer; il++) {
        fprintf(f, "layer %d", layer0 + il);
        for (int e = 0; e < n_expert; e++)
            fprintf(f, " %llu", (unsigned long long)counts[(size_t)il * (size_t)n_expert + (size_t)e]);
        fprintf(f, "\n");
    }
    if (fclose(f) != 0) return gt_fail(GT_ERR_IO, "%s: write failed", path);
    return GT_OK;
}

gt_status gt_expert_stats_read(const char *path, int layer0, int n_layer, int n_expert, uint64_t *heat) {
    memset(heat, 0, (size_t)n_layer * (size_t)n_expert * sizeof *heat);
    FILE *f = fopen(path, "r");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open the expert statistics", path);
    char line[64];
    int E = 0;
    gt_status st = GT_OK;
    if (!fgets(line, sizeof line, f) || strncmp(line, STATS_MAGIC, strlen(STATS_MAGIC)) != 0) {
        st = gt_fail(GT_ERR_FORMAT, "%s: not an expert statistics file (first line is not \"%s\")", path,
                     STATS_MAGIC);
        goto done;
    }
    if (fscanf(f, " experts %d", &E) != 1 || E != n_expert) {
        st = gt_fail(GT_ERR_FORMAT, "%s: counts %d experts per layer, the model has %d", path, E, n_expert);
        goto done;
    }
    int layer;
    while (fscanf(f, " layer %d", &layer) == 1) {
        bool mine = layer >= layer0 && layer < layer0 + n_layer;
        for (int e = 0; e < E; e++) {
            unsigned long long v;
            if (fscanf(f, "%llu", &v) != 1) {
                st = gt_fail(GT_ERR_FORMAT, "%s: layer %d has fewer than %d counts", path, layer, E);
                goto done;
            }
            if (mine) heat[(size_t)(layer - layer0) * (size_t)E + (size_t)e] = v;
        }
    }
    if (!feof(f) && fscanf(f, " %63s", line) == 1)
        st = gt_fail(GT_ERR_FORMAT, "%s: \"%s\" where a \"layer N\" line was due", path, line);
done:
    fclose(f);
    return st;
}
