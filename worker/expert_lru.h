/* The bookkeeping of one layer's expert cache: which expert sits in which
 * device slot, and which slot to give up for a missing expert (the least
 * recently used one that the current wave does not pin). Pure data, no
 * memory moves; worker/expert_cache.c does the copies. */
#ifndef GT_EXPERT_LRU_H
#define GT_EXPERT_LRU_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

typedef struct gt_lru {
    int n_slots, n_items;
    int *slot_item;  /* [n_slots] the item held, -1 when empty */
    int *item_slot;  /* [n_items] its slot, -1 when not held */
    uint64_t *stamp; /* [n_slots] last use (the clock's value then) */
    uint64_t *pin;   /* [n_slots] the wave that pinned it */
    uint64_t clock, wave;
    uint64_t hint_clock; /* the clock when the current prefetch hint began */
    uint64_t hits, misses, evictions;
} gt_lru;

gt_status gt_lru_init(gt_lru *l, int n_slots, int n_items);
void gt_lru_free(gt_lru *l); /* accepts a zeroed one */

/* Starts a new wave: no slot is pinned. */
void gt_lru_new_wave(gt_lru *l);
/* Item `item` is used by this wave: a hit touches and pins its slot; a
 * miss takes an empty slot (lowest first) or evicts the least recently used
 * unpinned one, records the item there, touches and pins it. *slot gets the
 * slot, *evicted the item given up (-1: none), *hit whether it was held.
 * GT_ERR_RANGE when every slot is pinned by this wave. */
gt_status gt_lru_use(gt_lru *l, int item, int *slot, int *evicted, bool *hit);
/* Prefetch hints (worker/expert_cache.c's predicted prefetch): a hint
 * names items the next wave is expected to use, before it starts.
 * gt_lru_hint_begin starts a hint; gt_lru_hint then takes one item: a held
 * item is touched (made the most recent); a missing one takes an empty slot
 * (lowest first) or evicts the least recently used slot that neither the
 * current wave pins nor this hint has touched, and is recorded and touched
 * there. A hint pins nothing and counts no hit or miss (the wave's own
 * gt_lru_use of the item does); an eviction counts. *slot gets the slot, or
 * -1 when every slot is pinned or already hinted (then nothing changes);
 * *evicted the item given up (-1: none), *hit whether it was held. */
void gt_lru_hint_begin(gt_lru *l);
void gt_lru_hint(gt_lru *l, int item, int *slot, int *evicted, bool *hit);
/* The slot holding item, or -1. */
static inline int gt_lru_slot(const gt_lru *l, int item) { return l->item_slot[item]; }

#endif
