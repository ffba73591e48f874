/* Sampler tests: greedy equals argmax; top-k 1 is greedy at any temperature;
 * sampled frequencies follow the tempered softmax (checked with a fixed seed
 * against the exact probabilities); top-p never picks outside the nucleus;
 * the same seed gives the same sequence. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coordinator/sampler.h"

static void test_greedy(void **state) {
    (void)state;
    float logits[7] = {0.1f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f, -5.0f};
    gt_sampler_config c = GT_SAMPLER_CONFIG_INIT;
    c.temperature = 0;
    gt_sampler *s;
    assert_int_equal(gt_sampler_create(&c, 7, &s), GT_OK);
    assert_int_equal(gt_sampler_sample(s, logits), 1); /* lowest index wins the tie */
    gt_sampler_destroy(s);
    c.temperature = 2.0f;
    c.top_k = 1;
    assert_int_equal(gt_sampler_create(&c, 7, &s), GT_OK);
    for (int i = 0; i < 20; i++) assert_int_equal(gt_sampler_sample(s, logits), 1);
    gt_sampler_destroy(s);
}

static void test_distribution(void **state) {
    (void)state;
    enum { V = 5, N = 200000 };
    float logits[V] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f};
    gt_sampler_config c = {0.8f, 0, 1.0f, 99, 0.0f, 1.0f};
    gt_sampler *s;
    assert_int_equal(gt_sampler_create(&c, V, &s), GT_OK);
    int counts[V] = {0};
    for (int i = 0; i < N; i++) counts[gt_sampler_sample(s, logits)]++;
    double z = 0, p[V];
    for (int i = 0; i < V; i++) z += exp(logits[i] / 0.8);
    for (int i = 0; i < V; i++) {
        p[i] = exp(logits[i] / 0.8) / z;
        double sd = sqrt(p[i] * (1 - p[i]) / N);
        double got = (double)counts[i] / N;
        /* 5 standard deviations: a wrong temperature or an off-by-one in the
         * cumulative draw moves these by far more. */
        if (fabs(got - p[i]) > 5 * sd) fail_msg("token %d: frequency %.4f, expected %.4f", i, got, p[i]);
    }
    gt_sampler_destroy(s);
}

static void test_top_p_and_seed(void **state) {
    (void)state;
    float logits[6] = {5.0f, 4.9f, 0.0f, -1.0f, -2.0f, -3.0f};
    gt_sampler_config c = {1.0f, 0, 0.9f, 7, 0.0f, 1.0f};
    gt_sampler *a, *b;
    assert_int_equal(gt_sampler_create(&c, 6, &a), GT_OK);
    assert_int_equal(gt_sampler_create(&c, 6, &b), GT_OK);
    int seen[6] = {0};
    for (int i = 0; i < 2000; i++) {
        int x = gt_sampler_sample(a, logits), y = gt_sampler_sample(b, logits);
        assert_int_equal(x, y);
        seen[x]++;
    }
    /* The two top tokens hold > 97% of the mass, so a 0.9 nucleus keeps them only. */
    assert_true(seen[0] > 0 && seen[1] > 0);
    for (int i = 2; i < 6; i++) assert_int_equal(seen[i], 0);
    gt_sampler_destroy(a);
    gt_sampler_destroy(b);
}

/* Sampling from the top-k candidates (as the vocabulary-parallel path
 * gathers them) draws the same tokens as sampling from the full logits. */
static void test_candidates_match_full(void **state) {
    (void)state;
    enum { V = 50, K = 8 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)((i * 37) % 23) * 0.25f - 2.0f;
    gt_sampler_config c = {0.7f, K, 0.9f, 5, 0.0f, 1.0f};
    gt_sampler *a, *b;
    assert_int_equal(gt_sampler_create(&c, V, &a), GT_OK);
    assert_int_equal(gt_sampler_create(&c, V, &b), GT_OK);
    assert_int_equal(gt_sampler_n_candidates(a), K);
    /* The K best, sorted by logit descending then id ascending. */
    float vals[K];
    int32_t ids[K];
    int used[V] = {0};
    for (int j = 0; j < K; j++) {
        int best = -1;
        for (int i = 0; i < V; i++)
            if (!used[i] && (best < 0 || logits[i] > logits[best])) best = i;
        used[best] = 1;
        vals[j] = logits[best];
        ids[j] = best;
    }
    for (int i = 0; i < 500; i++)
        assert_int_equal(gt_sampler_sample(a, logits), gt_sampler_sample_candidates(b, vals, ids, K));
    gt_sampler_destroy(a);
    gt_sampler_destroy(b);
}

static void test_bad_config(void **state) {
    (void)state;
    gt_sampler_config c = GT_SAMPLER_CONFIG_INIT;
    gt_sampler *s;
    assert_int_equal(gt_sampler_create(&c, 0, &s), GT_ERR_INVALID_ARG);
    c.temperature = NAN;
    assert_int_equal(gt_sampler_create(&c, 10, &s), GT_ERR_INVALID_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_top_p_and_seed),
        cmocka_unit_test(test_candidates_match_full),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
