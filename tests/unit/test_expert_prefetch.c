/* The expert cache's predicted prefetch (gt_expert_cache_prefetch), on the
 * cache of a real engine: a tiny llama-moe (2 layers, 4 experts, 2 used)
 * whose device budget holds 2 experts per layer.
 *
 * Checked against the host copies and the counters, step by step:
 * - predicted experts that the route then chooses are hits, count as
 *   prefetch_useful, and are not copied a second time (bytes copied grow by
 *   one expert per prefetch copy only); the slots hold the host's bytes;
 * - a misprediction costs its copy, is not counted useful, and the route
 *   copies what it needs;
 * - a prefetch in the middle of a step (after the route, before the gets)
 *   evicts none of the experts the step pinned: it copies nothing, and the
 *   gets still find their experts;
 * - predicted experts this rank does not hold (ids outside its range, as
 *   under --ep) and duplicates are skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "parallel/plan.h"
#include "util/test_util.h"
#include "worker/engine_internal.h"

typedef struct fixture {
    gt_kernels *k;
    gt_gguf *g;
    gt_engine *e;
    uint64_t expert_bytes; /* one expert's three prepared matrices */
} fixture;

static int setup(void **state) {
    static fixture f;
    memset(&f, 0, sizeof f);
    gt_synth_config sc = gt_test_tiny_model("llama-moe", GT_F32, 256, 11);
    const char *path = gt_test_synth(&sc, 0, "prefetch_moe.gguf");
    gt_kernels_config kc = GT_KERNELS_CONFIG_INIT;
    if (gt_kernels_create(&kc, &f.k) != GT_OK) fail_msg("kernels: %s", gt_last_error());
    if (gt_gguf_open(path, &f.g) != GT_OK) fail_msg("open: %s", gt_last_error());
    gt_engine_config ec = GT_ENGINE_CONFIG_INIT;
    ec.gguf = f.g;
    ec.kernels = f.k;
    ec.n_ctx = 64;
    ec.max_seqs = 1;
    ec.max_batch_tokens = 16;
    /* The smallest budget: the plan's minimum for this engine's limits. */
    gt_plan_config pc = GT_PLAN_CONFIG_INIT;
    pc.n_ctx = ec.n_ctx;
    pc.n_seqs = ec.max_seqs;
    pc.kv_block_size = ec.kv_block_size;
    pc.kv_type = ec.kv_type;
    pc.max_batch_tokens = ec.max_batch_tokens;
    pc.device_mem_bytes = 1;
    pc.kernels = f.k;
    pc.n_threads = gt_kernels_n_threads(f.k);
    gt_plan plan;
    if (gt_plan_build(f.g, &pc, &plan) != GT_OK) fail_msg("plan: %s", gt_last_error());
    ec.device_mem_bytes = plan.shards[0].device_min_bytes;
    gt_plan_free(&plan);
    if (gt_engine_create(&ec, &f.e) != GT_OK) fail_msg("engine: %s", gt_last_error());
    assert_non_null(f.e->xc);
    assert_int_equal(gt_expert_cache_slots(f.e->xc), 2);
    const gt_expert_weights *h = &f.e->w.layers[1].experts[0];
    const gt_weight *m[3] = {&h->gate, &h->up, &h->down};
    for (int i = 0; i < 3; i++)
        f.expert_bytes += gt_weight_prepared_bytes(f.k, m[i]->type, m[i]->n_in, m[i]->n_out);
    *state = &f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    gt_engine_destroy(f->e);
    gt_gguf_close(f->g);
    gt_kernels_destroy(f->k);
    return 0;
}

/* Hands out expert ex of layer il and checks its bytes against the host copy. */
static void get_check(fixture *f, int il, int ex) {
    const gt_expert_weights *X = NULL, *h = &f->e->w.layers[il].experts[ex];
    assert_int_equal(gt_expert_cache_get(f->e->xc, il, ex, &X), GT_OK);
    assert_true(X != h); /* the device copy, not the host's */
    const gt_weight *d[3] = {&X->gate, &X->up, &X->down}, *s[3] = {&h->gate, &h->up, &h->down};
    for (int i = 0; i < 3; i++)
        assert_memory_equal(d[i]->data, s[i]->data,
                            gt_weight_prepared_bytes(f->k, s[i]->type, s[i]->n_in, s[i]->n_out));
}

static gt_expert_cache_stats stats(fixture *f) { return gt_expert_cache_stats_of(f->e->xc, 1); }

static void test_prefetch(void **state) {
    fixture *f = *state;
    gt_expert_cache *c = f->e->xc;
    const int il = 1;
    /* The cache starts with experts 0 and 1 of every layer (no statistics). */
    gt_expert_cache_stats s0 = stats(f);
    assert_int_equal(s0.hits + s0.misses + s0.prefetched, 0);

    /* Predicted 2 and 3 (with duplicates and an expert this rank lacks); the route chooses them. */
    const int32_t pred[] = {3, 2, 3, 9, 2, -1};
    assert_int_equal(gt_expert_cache_prefetch(c, il, pred, 6), GT_OK);
    gt_expert_cache_stats s1 = stats(f);
    assert_int_equal(s1.prefetched, 2);
    assert_int_equal(s1.bytes_copied, 2 * f->expert_bytes);
    const int32_t route1[] = {2, 3, 3, 2};
    assert_int_equal(gt_expert_cache_route(c, il, route1, 4), GT_OK);
    get_check(f, il, 2);
    get_check(f, il, 3);
    gt_expert_cache_stats s2 = stats(f);
    assert_int_equal(s2.hits, 2);
    assert_int_equal(s2.misses, 0);
    assert_int_equal(s2.prefetch_useful, 2);
    assert_int_equal(s2.bytes_copied, 2 * f->expert_bytes); /* not copied twice */

    /* Predicted 0, but the route chooses 3 and 1: the copy of 0 was wasted. */
    const int32_t pred2[] = {0, 3};
    assert_int_equal(gt_expert_cache_prefetch(c, il, pred2, 2), GT_OK);
    gt_expert_cache_stats s3 = stats(f);
    assert_int_equal(s3.prefetched, 3);
    const int32_t route2[] = {3, 1};
    assert_int_equal(gt_expert_cache_route(c, il, route2, 2), GT_OK);
    get_check(f, il, 1);
    get_check(f, il, 3);
    gt_expert_cache_stats s4 = stats(f);
    assert_int_equal(s4.hits, 3);   /* 3 was held (predicted, but no copy) */
    assert_int_equal(s4.misses, 1); /* 1 */
    assert_int_equal(s4.prefetch_useful, 2);
    assert_int_equal(s4.bytes_copied, 4 * f->expert_bytes);

    /* A prefetch between the route and the gets: both slots are pinned by the step. */
    const int32_t route3[] = {0, 2};
    assert_int_equal(gt_expert_cache_route(c, il, route3, 2), GT_OK);
    const int32_t pred3[] = {1, 3};
    assert_int_equal(gt_expert_cache_prefetch(c, il, pred3, 2), GT_OK);
    gt_expert_cache_stats s5 = stats(f);
    assert_int_equal(s5.prefetched, 3);
    assert_int_equal(s5.bytes_copied, 6 * f->expert_bytes); /* the route's 2 copies only */
    get_check(f, il, 0);
    get_check(f, il, 2);
    /* Once the step is over the same prediction may take the slots. */
    assert_int_equal(gt_expert_cache_prefetch(c, il, pred3, 2), GT_OK);
    gt_expert_cache_stats s6 = stats(f);
    assert_int_equal(s6.prefetched, 5);
    assert_true(s6.prefetch_useful <= s6.prefetched);
    /* The other layer saw none of it. */
    gt_expert_cache_stats o = gt_expert_cache_stats_of(c, 0);
    assert_int_equal(o.hits + o.misses + o.prefetched + o.bytes_copied, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prefetch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
