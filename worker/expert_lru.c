/* See expert_lru.h. Slots are few (a layer's experts), so the victim is
 * found by a scan of the stamps. */
#include "worker/expert_lru.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

gt_status gt_lru_init(gt_lru *l, int n_slots, int n_items) {
    memset(l, 0, sizeof *l);
    if (n_slots < 1 || n_items < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "an expert cache of %d slots for %d experts is empty", n_slots, n_items);
    l->n_slots = n_slots;
    l->n_items = n_items;
    l->slot_item = malloc((size_t)n_slots * sizeof *l->slot_item);
    l->item_slot = malloc((size_t)n_items * sizeof *l->item_slot);
    l->stamp = calloc((size_t)n_slots, sizeof *l->stamp);
    l->pin = calloc((size_t)n_slots, sizeof *l->pin);
    if (!l->slot_item || !l->item_slot || !l->stamp || !l->pin) {
        gt_lru_free(l);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate an expert cache of %d slots", n_slots);
    }
    for (int i = 0; i < n_slots; i++) l->slot_item[i] = -1;
    for (int i = 0; i < n_items; i++) l->item_slot[i] = -1;
    l->wave = 1;
    return GT_OK;
}

void gt_lru_free(gt_lru *l) {
    free(l->slot_item);
    free(l->item_slot);
    free(l->stamp);
    free(l->pin);
    memset(l, 0, sizeof *l);
}

void gt_lru_new_wave(gt_lru *l) { l->wave++; }

gt_status gt_lru_use(gt_lru *l, int item, int *slot, int *evicted, bool *hit) {
    *evicted = -1;
    int s = l->item_slot[item];
    *hit = s >= 0;
    if (s >= 0) {
        l->hits++;
    } else {
        for (int i = 0; i < l->n_slots && s < 0; i++)
            if (l->slot_item[i] < 0) s = i;
        if (s < 0)
            for (int i = 0; i < l->n_slots; i++)
                if (l->pin[i] != l->wave && (s < 0 || l->stamp[i] < l->stamp[s])) s = i;
        if (s < 0)
            return gt_fail(GT_ERR_RANGE, "expert cache: all %d slots are in use by this wave", l->n_slots);
        if (l->slot_item[s] >= 0) {
            *evicted = l->slot_item[s];
            l->item_slot[*evicted] = -1;
            l->evictions++;
        }
        l->slot_item[s] = item;
        l->item_slot[item] = s;
        l->misses++;
    }
    l->stamp[s] = ++l->clock;
    l->pin[s] = l->wave;
    *slot = s;
    return GT_OK;
}

void gt_lru_hint_begin(gt_lru *l) { l->hint_clock = l->clock; }

void gt_lru_hint(gt_lru *l, int item, int *slot, int *evicted, bool *hit) {
    *evicted = -1;
    int s = l->item_slot[item];
    *hit = s >= 0;
    if (s < 0) {
        for (int i = 0; i < l->n_slots && s < 0; i++)
            if (l->slot_item[i] < 0) s = i;
        if (s < 0) /* stamps above hint_clock were touched by this hint */
            for (int i = 0; i < l->n_slots; i++)
                if (l->pin[i] != l->wave && l->stamp[i] <= l->hint_clock && (s < 0 || l->stamp[i] < l->stamp[s]))
                    s = i;
        if (s < 0) {
            *slot = -1;
            return;
        }
        if (l->slot_item[s] >= 0) {
            *evicted = l->slot_item[s];
            l->item_slot[*evicted] = -1;
            l->evictions++;
        }
        l->slot_item[s] = item;
        l->item_slot[item] = s;
    }
    l->stamp[s] = ++l->clock;
    *slot = s;
}
