/* Typical-p, logit bias and the grammar constraint on crafted logit
 * vectors: the kept set and the draw frequencies against a distribution
 * computed here in double precision with a plain sort (Meister et al.'s
 * definition, as llama.cpp implements it), the bias against softmax(logits
 * + bias), and the grammar's greedy path worked out by hand. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/constraint.h"
#include "coordinator/sampler.h"

enum { V = 8, N_DRAWS = 40000 };

static const float k_logits[V] = {3.0f, 2.5f, 2.4f, 1.0f, 0.5f, -1.0f, -2.0f, 2.0f};

static const double *g_dist;
static int by_dist(const void *a, const void *b) {
    double x = g_dist[*(const int *)a], y = g_dist[*(const int *)b];
    return x < y ? -1 : x > y ? 1 : *(const int *)a - *(const int *)b;
}

/* want[V]: the typical-p distribution (0 for dropped tokens). */
static void typical_reference(const float *l, double tp, double *want) {
    double p[V], z = 0, h = 0, d[V];
    for (int i = 0; i < V; i++) z += exp(l[i]);
    for (int i = 0; i < V; i++) p[i] = exp(l[i]) / z;
    for (int i = 0; i < V; i++) h -= p[i] * log(p[i]);
    for (int i = 0; i < V; i++) d[i] = fabs(-log(p[i]) - h);
    int order[V];
    for (int i = 0; i < V; i++) order[i] = i;
    g_dist = d;
    qsort(order, V, sizeof *order, by_dist);
    double cum = 0, kept = 0;
    memset(want, 0, V * sizeof *want);
    for (int k = 0; k < V; k++) {
        want[order[k]] = p[order[k]];
        kept += p[order[k]];
        cum += p[order[k]];
        if (cum > tp) break;
    }
    for (int i = 0; i < V; i++) want[i] /= kept;
}

static void check_freq(const int *counts, const double *want) {
    for (int i = 0; i < V; i++) {
        double f = (double)counts[i] / N_DRAWS;
        if (want[i] == 0 && counts[i] != 0)
            fail_msg("token %d drawn %d times; it should be dropped", i, counts[i]);
        /* 5 standard deviations of a binomial proportion. */
        double tol = 5 * sqrt(want[i] * (1 - want[i]) / N_DRAWS) + 1e-9;
        if (fabs(f - want[i]) > tol)
            fail_msg("token %d: frequency %.4f, want %.4f (+- %.4f)", i, f, want[i], tol);
    }
}

static void test_typical(void **state) {
    (void)state;
    const double tps[] = {0.2, 0.5, 0.9};
    for (size_t t = 0; t < sizeof tps / sizeof *tps; t++) {
        double want[V];
        typical_reference(k_logits, tps[t], want);
        gt_sampler_config c = {1.0f, 0, 1.0f, 11 + t, 0.0f, (float)tps[t]};
        gt_sampler *s;
        assert_int_equal(gt_sampler_create(&c, V, &s), GT_OK);
        int counts[V] = {0};
        for (int i = 0; i < N_DRAWS; i++) counts[gt_sampler_sample(s, k_logits)]++;
        check_freq(counts, want);
        gt_sampler_destroy(s);
    }
    /* The reference must be able to fail: typical-p 0.5 drops the most
     * likely token here, which plain sampling draws most often. */
    double want[V];
    typical_reference(k_logits, 0.5, want);
    assert_true(want[0] == 0.0);
    gt_sampler_config bad = {-1.0f, 0, 1.0f, 1, 0.0f, -0.5f};
    gt_sampler *s = NULL;
    assert_int_equal(gt_sampler_create(&bad, V, &s), GT_ERR_INVALID_ARG);
}

static void test_bias(void **state) {
    (void)state;
    int32_t ids[] = {3, 0, 6};
    float bias[] = {2.5f, -INFINITY, 1.0f};
    gt_constraint_config cc = {.bias_ids = ids, .bias = bias, .n_bias = 3};
    gt_constraint *k;
    assert_int_equal(gt_constraint_create(&cc, V, &k), GT_OK);
    assert_true(gt_constraint_active(k));
    double want[V], z = 0;
    for (int i = 0; i < V; i++) {
        double l = k_logits[i];
        for (int j = 0; j < 3; j++)
            if (ids[j] == i) l += bias[j];
        want[i] = exp(l);
        z += want[i];
    }
    for (int i = 0; i < V; i++) want[i] /= z;
    gt_sampler_config c = {1.0f, 0, 1.0f, 5, 0.0f, 1.0f};
    gt_sampler *s;
    assert_int_equal(gt_sampler_create(&c, V, &s), GT_OK);
    int counts[V] = {0};
    float row[V];
    for (int i = 0; i < N_DRAWS; i++) {
        memcpy(row, k_logits, sizeof row);
        int32_t t;
        assert_int_equal(gt_constraint_draw(k, s, row, &t), GT_OK);
        counts[t]++;
    }
    check_freq(counts, want);
    gt_sampler_destroy(s);
    /* Greedy: token 3 (1.0 + 2.5) wins over 1 (2.5) once 0 is banned. */
    gt_sampler_config g = GT_SAMPLER_CONFIG_INIT;
    assert_int_equal(gt_sampler_create(&g, V, &s), GT_OK);
    memcpy(row, k_logits, sizeof row);
    int32_t t;
    assert_int_equal(gt_constraint_draw(k, s, row, &t), GT_OK);
    assert_int_equal(t, 3);
    gt_constraint_free(k);
    /* Banning everything is refused with a sentence, not a garbage token. */
    int32_t all[V];
    float ban[V];
    for (int i = 0; i < V; i++) all[i] = i, ban[i] = -INFINITY;
    cc = (gt_constraint_config){.bias_ids = all, .bias = ban, .n_bias = V};
    assert_int_equal(gt_constraint_create(&cc, V, &k), GT_OK);
    memcpy(row, k_logits, sizeof row);
    assert_int_equal(gt_constraint_draw(k, s, row, &t), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "bans every one of the 8 tokens"));
    gt_constraint_free(k);
    /* Bad biases. */
    int32_t far = V;
    float one = 1.0f, nan_ = NAN;
    cc = (gt_constraint_config){.bias_ids = &far, .bias = &one, .n_bias = 1};
    assert_int_equal(gt_constraint_create(&cc, V, &k), GT_ERR_INVALID_ARG);
    cc = (gt_constraint_config){.bias_ids = ids, .bias = &nan_, .n_bias = 1};
    assert_int_equal(gt_constraint_create(&cc, V, &k), GT_ERR_INVALID_ARG);
    gt_sampler_destroy(s);
}

/* Vocabulary: "{", "a", "b", "}", EOG (no piece), "ab", "a}", "{a". */
static void test_grammar_draw(void **state) {
    (void)state;
    const char *pieces[V] = {"{", "a", "b", "}", "", "ab", "a}", "{a"};
    size_t lens[V];
    for (int i = 0; i < V; i++) lens[i] = strlen(pieces[i]);
    gt_vocab_trie *trie;
    assert_int_equal(gt_vocab_trie_create(pieces, lens, V, &trie), GT_OK);
    const char *text = "root ::= \"{\" \"a\"+ \"}\"";
    gt_grammar *g;
    assert_int_equal(gt_grammar_compile(text, strlen(text), &g), GT_OK);
    int32_t eog = 4;
    gt_constraint_config cc = {.grammar = g, .trie = trie, .eog = &eog, .n_eog = 1};
    gt_constraint *k;
    assert_int_equal(gt_constraint_create(&cc, V, &k), GT_OK);
    /* Preference: b > EOG > ab > } > a} > a > {a > {. */
    const float pref[V] = {0.0f, 2.0f, 9.0f, 4.0f, 8.0f, 7.0f, 3.0f, 1.0f};
    gt_sampler_config sc = GT_SAMPLER_CONFIG_INIT;
    gt_sampler *s;
    assert_int_equal(gt_sampler_create(&sc, V, &s), GT_OK);
    /* Greedy under the grammar: "{a" (1.0 beats "{" 0.0), then "}" ("a}"
     * 3.0 < "}" 4.0, and "}" is allowed after one "a"), then only EOG. */
    const int32_t want[] = {7, 3, 4};
    float row[V];
    for (int step = 0; step < 3; step++) {
        memcpy(row, pref, sizeof row);
        int32_t t;
        assert_int_equal(gt_constraint_draw(k, s, row, &t), GT_OK);
        if (t != want[step]) fail_msg("step %d: drew %d, want %d", step, t, want[step]);
    }
    gt_constraint_stats st = gt_constraint_get_stats(k);
    assert_int_equal(st.draws, 3);
    assert_int_equal(st.masks, 3); /* "b" was the first choice every time */
    gt_constraint_free(k);
    /* With a bias that bans "}" and "a}", and max length reached in the
     * grammar's sense never: "{a" then "a" ... the mask never empties. */
    int32_t ban_ids[] = {3, 6};
    float ban[] = {-INFINITY, -INFINITY};
    cc.bias_ids = ban_ids;
    cc.bias = ban;
    cc.n_bias = 2;
    assert_int_equal(gt_constraint_create(&cc, V, &k), GT_OK);
    for (int step = 0; step < 5; step++) {
        memcpy(row, pref, sizeof row);
        int32_t t;
        assert_int_equal(gt_constraint_draw(k, s, row, &t), GT_OK);
        assert_int_equal(t, step == 0 ? 7 : 1);
    }
    gt_constraint_free(k);
    gt_sampler_destroy(s);
    gt_grammar_free(g);
    gt_vocab_trie_free(trie);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typical),
        cmocka_unit_test(test_bias),
        cmocka_unit_test(test_grammar_draw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
