/* Repetition, presence and frequency penalties and log-probabilities,
 * against values worked out by hand and a double-precision softmax written
 * here. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coordinator/sampler.h"

static void test_penalties(void **state) {
    (void)state;
    float l[5] = {2.0f, -1.0f, 0.5f, 3.0f, 1.0f};
    int32_t recent[5] = {0, 1, 0, 3, 99}; /* 99 is outside the vocabulary: ignored */
    gt_penalty_config p = {2.0f, 0.5f, 0.25f};
    assert_true(gt_penalties_active(&p));
    gt_apply_penalties(l, 5, recent, 5, &p);
    /* token 0, seen twice: 2 / 2 - 2 * 0.25 - 0.5 = 0 */
    assert_float_equal(l[0], 0.0f, 1e-6f);
    /* token 1, once, negative: -1 * 2 - 0.25 - 0.5 */
    assert_float_equal(l[1], -2.75f, 1e-6f);
    assert_float_equal(l[2], 0.5f, 0.0f); /* never seen */
    assert_float_equal(l[3], 0.75f, 1e-6f);
    assert_float_equal(l[4], 1.0f, 0.0f);
    gt_penalty_config off = {0.0f, 0.0f, 0.0f};
    assert_false(gt_penalties_active(&off));
    off.repetition = 1.0f;
    assert_false(gt_penalties_active(&off));
}

static void test_logprobs(void **state) {
    (void)state;
    enum { V = 7 };
    float l[V] = {0.1f, 2.0f, -1.0f, 2.0f, 0.5f, -3.0f, 1.5f};
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)l[i]);
    gt_cand top[3], scratch[2 * V];
    float lp = 0;
    gt_logprobs(l, V, 4, 3, &lp, top, scratch);
    assert_float_equal(lp, (float)(0.5 - log(z)), 1e-6f);
    /* The best three, ties by lower id: 1, 3, 6. */
    assert_int_equal(top[0].id, 1);
    assert_int_equal(top[1].id, 3);
    assert_int_equal(top[2].id, 6);
    assert_float_equal(top[0].logit, (float)(2.0 - log(z)), 1e-6f);
    assert_float_equal(top[2].logit, (float)(1.5 - log(z)), 1e-6f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_logprobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
