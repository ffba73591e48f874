/* The expert cache's LRU bookkeeping (worker/expert_lru.c) against an
 * independent model: a list of held items ordered by last use, where a miss
 * in a full cache gives up the least recently used item that the current
 * wave has not used. Random access streams with random wave lengths over
 * several cache sizes must give the same hit/miss verdict and the same
 * evicted item at every step, and the counters must add up. A wave that
 * asks for more items than there are slots is refused. Prefetch hints
 * (gt_lru_hint) against the same model: a hinted item is touched or takes
 * the least recently used slot that neither the current wave nor the hint
 * itself holds (nothing when there is none), and a wave that then uses it
 * hits; a hint in the middle of a wave never evicts an item the wave has
 * used. Also: the backend's asynchronous copies land the bytes they were
 * given. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kernels.h"
#include "worker/expert_lru.h"

typedef struct model {
    int order[64]; /* held items, least recently used first */
    int n, cap;
    int wave_used[64]; /* items used in the current wave */
    int n_wave;
    int hinted[64]; /* items of the current hint */
    int n_hinted;
} model;

static bool in_wave(const model *m, int item) {
    for (int i = 0; i < m->n_wave; i++)
        if (m->wave_used[i] == item) return true;
    return false;
}

/* Returns whether item was held; *evicted the item given up or -1. */
static bool model_use(model *m, int item, int *evicted) {
    *evicted = -1;
    int at = -1;
    for (int i = 0; i < m->n; i++)
        if (m->order[i] == item) at = i;
    bool hit = at >= 0;
    if (!hit && m->n == m->cap) {
        for (int i = 0; i < m->n && at < 0; i++)
            if (!in_wave(m, m->order[i])) at = i;
        assert_true(at >= 0);
        *evicted = m->order[at];
    }
    if (at >= 0) { /* take it out; it goes to the back as the most recent */
        memmove(m->order + at, m->order + at + 1, (size_t)(m->n - at - 1) * sizeof(int));
        m->n--;
    }
    m->order[m->n++] = item;
    m->wave_used[m->n_wave++] = item;
    return hit;
}

static bool in_hint(const model *m, int item) {
    for (int i = 0; i < m->n_hinted; i++)
        if (m->hinted[i] == item) return true;
    return false;
}

/* A hint: returns whether item was held; *evicted the item given up or -1;
 * *taken whether the item is held afterwards. */
static bool model_hint(model *m, int item, int *evicted, bool *taken) {
    *evicted = -1;
    int at = -1;
    for (int i = 0; i < m->n; i++)
        if (m->order[i] == item) at = i;
    bool hit = at >= 0;
    *taken = true;
    if (!hit && m->n == m->cap) {
        for (int i = 0; i < m->n && at < 0; i++)
            if (!in_wave(m, m->order[i]) && !in_hint(m, m->order[i])) at = i;
        if (at < 0) {
            *taken = false;
            return false;
        }
        *evicted = m->order[at];
    }
    if (at >= 0) {
        memmove(m->order + at, m->order + at + 1, (size_t)(m->n - at - 1) * sizeof(int));
        m->n--;
    }
    m->order[m->n++] = item;
    m->hinted[m->n_hinted++] = item;
    return hit;
}

static uint64_t rng = 88172645463325252ull;
static int next(int n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}

static void test_against_model(void **state) {
    (void)state;
    const int caps[] = {1, 2, 3, 5, 8};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        int cap = caps[c], items = 8;
        gt_lru l;
        assert_int_equal(gt_lru_init(&l, cap, items), GT_OK);
        model m = {.cap = cap};
        uint64_t hits = 0, misses = 0, evictions = 0;
        for (int step = 0; step < 2000; step++) {
            gt_lru_new_wave(&l);
            m.n_wave = 0;
            int wave = 1 + next(cap); /* distinct items, as one layer's routed experts */
            int used[8] = {0};
            for (int j = 0; j < wave; j++) {
                int item;
                do item = next(items); while (used[item]);
                used[item] = 1;
                int slot, ev, mev;
                bool hit;
                assert_int_equal(gt_lru_use(&l, item, &slot, &ev, &hit), GT_OK);
                bool mhit = model_use(&m, item, &mev);
                assert_int_equal(hit, mhit);
                assert_int_equal(ev, mev);
                assert_int_equal(gt_lru_slot(&l, item), slot);
                if (ev >= 0) assert_int_equal(gt_lru_slot(&l, ev), -1);
                hits += hit;
                misses += !hit;
                evictions += ev >= 0;
            }
        }
        assert_int_equal(l.hits, hits);
        assert_int_equal(l.misses, misses);
        assert_int_equal(l.evictions, evictions);
        assert_true(cap == items || l.evictions > 0);
        gt_lru_free(&l);
    }
}

/* One hint of up to cap random items, checked against the model. */
static void hint_both(gt_lru *l, model *m, int items, int *hinted, uint64_t *evictions) {
    gt_lru_hint_begin(l);
    m->n_hinted = 0;
    int nh = next(m->cap + 1);
    for (int h = 0; h < nh; h++) {
        int item = next(items), slot, ev, mev;
        bool hit, taken;
        gt_lru_hint(l, item, &slot, &ev, &hit);
        bool mhit = model_hint(m, item, &mev, &taken);
        assert_int_equal(slot >= 0, taken);
        if (!taken) continue;
        assert_int_equal(hit, mhit);
        assert_int_equal(ev, mev);
        assert_int_equal(gt_lru_slot(l, item), slot);
        if (ev >= 0) {
            assert_int_equal(gt_lru_slot(l, ev), -1);
            assert_false(in_wave(m, ev)); /* an item the wave pins stays */
        }
        *evictions += ev >= 0;
        hinted[item] = 1;
    }
}

/* Waves as above, each preceded by a hint of random items (some of which the
 * wave then uses), or now and then with the hint after the wave's first use. */
static void test_hints_against_model(void **state) {
    (void)state;
    const int caps[] = {1, 2, 3, 5, 8};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        int cap = caps[c], items = 8;
        gt_lru l;
        assert_int_equal(gt_lru_init(&l, cap, items), GT_OK);
        model m = {.cap = cap};
        uint64_t hits = 0, misses = 0, evictions = 0, hinted_hits = 0;
        for (int step = 0; step < 2000; step++) {
            int wave = 1 + next(cap), used[8] = {0}, hinted[8] = {0};
            bool mid = wave > 1 && next(4) == 0;
            gt_lru_new_wave(&l);
            m.n_wave = 0;
            if (!mid) hint_both(&l, &m, items, hinted, &evictions);
            for (int j = 0; j < wave; j++) {
                if (mid && j == 1) hint_both(&l, &m, items, hinted, &evictions);
                int item;
                do item = next(items); while (used[item]);
                used[item] = 1;
                int slot, ev, mev;
                bool hit;
                bool held = hinted[item] && gt_lru_slot(&l, item) >= 0;
                assert_int_equal(gt_lru_use(&l, item, &slot, &ev, &hit), GT_OK);
                bool mhit = model_use(&m, item, &mev);
                assert_int_equal(hit, mhit);
                assert_int_equal(ev, mev);
                if (held) assert_true(hit); /* held since the hint: no second copy */
                hinted_hits += held;
                hits += hit;
                misses += !hit;
                evictions += ev >= 0;
            }
        }
        assert_int_equal(l.hits, hits);
        assert_int_equal(l.misses, misses);
        assert_int_equal(l.evictions, evictions);
        assert_true(hinted_hits > 0);
        gt_lru_free(&l);
    }
}

/* A hint while every slot is pinned takes nothing; after a new wave it may. */
static void test_hint_respects_pins(void **state) {
    (void)state;
    gt_lru l;
    assert_int_equal(gt_lru_init(&l, 2, 4), GT_OK);
    int slot, ev;
    bool hit;
    gt_lru_new_wave(&l);
    assert_int_equal(gt_lru_use(&l, 0, &slot, &ev, &hit), GT_OK);
    assert_int_equal(gt_lru_use(&l, 1, &slot, &ev, &hit), GT_OK);
    gt_lru_hint_begin(&l);
    gt_lru_hint(&l, 2, &slot, &ev, &hit);
    assert_int_equal(slot, -1);
    assert_int_equal(gt_lru_slot(&l, 0) >= 0 && gt_lru_slot(&l, 1) >= 0, 1);
    gt_lru_new_wave(&l);
    gt_lru_hint_begin(&l);
    gt_lru_hint(&l, 2, &slot, &ev, &hit); /* evicts 0, the least recent */
    assert_int_equal(ev, 0);
    gt_lru_hint(&l, 3, &slot, &ev, &hit); /* evicts 1, not the hinted 2 */
    assert_int_equal(ev, 1);
    gt_lru_hint(&l, 0, &slot, &ev, &hit); /* both slots hinted: nothing */
    assert_int_equal(slot, -1);
    assert_int_equal(gt_lru_slot(&l, 2) >= 0 && gt_lru_slot(&l, 3) >= 0, 1);
    assert_int_equal(l.hits + l.misses, 2);
    gt_lru_free(&l);
}

static void test_full_wave_refused(void **state) {
    (void)state;
    gt_lru l;
    assert_int_equal(gt_lru_init(&l, 2, 4), GT_OK);
    int slot, ev;
    bool hit;
    gt_lru_new_wave(&l);
    assert_int_equal(gt_lru_use(&l, 0, &slot, &ev, &hit), GT_OK);
    assert_int_equal(gt_lru_use(&l, 1, &slot, &ev, &hit), GT_OK);
    assert_int_equal(gt_lru_use(&l, 2, &slot, &ev, &hit), GT_ERR_RANGE);
    gt_lru_new_wave(&l); /* a new wave may evict item 0, the least recent */
    assert_int_equal(gt_lru_use(&l, 2, &slot, &ev, &hit), GT_OK);
    assert_false(hit);
    assert_int_equal(ev, 0);
    gt_lru_free(&l);
    assert_int_equal(gt_lru_init(&l, 0, 4), GT_ERR_INVALID_ARG);
}

static void test_async_copies(void **state) {
    (void)state;
    gt_kernels_config kc = GT_KERNELS_CONFIG_INIT;
    gt_kernels *k = NULL;
    assert_int_equal(gt_kernels_create(&kc, &k), GT_OK);
    enum { N = 200, PIECE = 4099 };
    static uint8_t src[N * PIECE];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(i * 7 + (i >> 9));
    gt_buffer *b = NULL;
    assert_int_equal(gt_buffer_alloc(k, sizeof src, &b), GT_OK);
    uint64_t t = 0, prev = 0;
    for (int i = 0; i < N; i++) { /* more than the ring holds */
        assert_int_equal(gt_copy_start(k, b, (size_t)i * PIECE, src + (size_t)i * PIECE, PIECE, &t), GT_OK);
        assert_true(t > prev);
        prev = t;
    }
    assert_int_equal(gt_copy_wait(k, t), GT_OK);
    assert_memory_equal(gt_buffer_host_ptr(b), src, sizeof src);
    assert_int_equal(gt_copy_wait(k, t + 5), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_copy_start(k, b, sizeof src - 1, src, 2, &t), GT_ERR_RANGE);
    gt_buffer_free(b);
    gt_kernels_destroy(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_full_wave_refused),
        cmocka_unit_test(test_hints_against_model),
        cmocka_unit_test(test_hint_respects_pins),
        cmocka_unit_test(test_async_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
