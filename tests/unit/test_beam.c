/* coordinator/beam.c against oracles that need no model: a toy "model"
 * whose next-token log-probabilities are a seeded function of the tokens so
 * far.
 * - With W >= V^(N-1) beams every path of N tokens survives to the last
 *   step, so the search must return the exhaustive argmax (checked by
 *   enumerating all V^N paths), and its score must be that path's sum of
 *   log-probabilities / N^A;
 * - one beam is greedy decoding (argmax at each step);
 * - an end-of-generation token finishes a hypothesis, which wins when its
 *   score is best, and the search stops early;
 * - live beams hold distinct slots in 0..W-1; forks happen;
 * - bad widths, lengths and feeds are refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/beam.h"

enum { V = 3, MAXN = 8 };

/* log-softmax over V of scores hashed from the prefix. */
static void toy_logprobs(const int32_t *toks, int n, uint32_t seed, double *lp) {
    uint32_t h = 2166136261u ^ seed;
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)toks[i]) * 16777619u;
    double m = -1e30, s = 0;
    double x[V];
    for (int t = 0; t < V; t++) {
        uint32_t k = (h ^ (uint32_t)(t * 0x9e3779b9u)) * 2654435761u;
        x[t] = (double)(k >> 8) / (double)(1u << 24) * 4.0;
        if (x[t] > m) m = x[t];
    }
    for (int t = 0; t < V; t++) s += exp(x[t] - m);
    for (int t = 0; t < V; t++) lp[t] = x[t] - m - log(s);
}

static int cand_cmp(const void *a, const void *b) {
    const gt_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

typedef struct {
    int forks, max_live;
} drive_stats;

/* Runs the search on the toy, feeding min(K, V) alternatives;
 * nothing ends generation. */
static void drive(gt_beam *b, uint32_t seed, drive_stats *ds) {
    bool done = false;
    memset(ds, 0, sizeof *ds);
    int steps = 0;
    while (!done) {
        int n_live = gt_beam_n_live(b);
        assert_true(n_live >= 1);
        if (n_live > ds->max_live) ds->max_live = n_live;
        bool used[GT_BEAM_MAX_WIDTH] = {false};
        for (int j = 0; j < n_live; j++) {
            gt_beam_live l = gt_beam_get(b, j);
            assert_true(l.slot >= 0 && l.slot < GT_BEAM_MAX_WIDTH && !used[l.slot]);
            used[l.slot] = true;
            assert_true(gt_beam_slot_used(b, l.slot));
            ds->forks += l.fork && steps > 0;
            double lp[V];
            toy_logprobs(l.toks, l.n, seed, lp);
            gt_cand c[V];
            for (int t = 0; t < V; t++) c[t] = (gt_cand){(float)lp[t], t};
            qsort(c, V, sizeof *c, cand_cmp);
            int k = gt_beam_n_top(b) < V ? gt_beam_n_top(b) : V;
            assert_int_equal(gt_beam_feed(b, j, c, k), GT_OK);
        }
        assert_int_equal(gt_beam_select(b, NULL, NULL, &done), GT_OK);
        steps++;
    }
}

static double path_lp(const int32_t *toks, int n, uint32_t seed) {
    double s = 0, lp[V];
    for (int i = 0; i < n; i++) {
        toy_logprobs(toks, i, seed, lp);
        s += (float)lp[toks[i]]; /* the search sums float log-probabilities */
    }
    return s;
}

static void test_exhaustive(void **state) {
    (void)state;
    const int N = 3; /* W = 9 = V^(N-1): every path reaches the last step */
    for (uint32_t seed = 1; seed <= 20; seed++) {
        for (int ai = 0; ai < 2; ai++) {
            float a = ai ? 1.0f : 0.0f;
            gt_beam_opts o = {9, a, N};
            gt_beam *b;
            assert_int_equal(gt_beam_create(&o, &b), GT_OK);
            drive_stats ds;
            drive(b, seed, &ds);
            const int32_t *toks;
            int n;
            double score;
            assert_int_equal(gt_beam_result(b, &toks, &n, &score), GT_OK);
            int32_t best[MAXN], p[MAXN];
            double best_lp = -1e30;
            for (int code = 0; code < V * V * V; code++) {
                for (int i = 0, c = code; i < N; i++, c /= V) p[i] = c % V;
                double s = path_lp(p, N, seed);
                if (s > best_lp + 1e-9) {
                    best_lp = s;
                    memcpy(best, p, sizeof p);
                }
            }
            assert_int_equal(n, N);
            if (memcmp(toks, best, (size_t)N * sizeof *toks) != 0)
                fail_msg("seed %u: the search's %d %d %d differs from the exhaustive best %d %d %d",
                         seed, toks[0], toks[1], toks[2], best[0], best[1], best[2]);
            double want = best_lp / pow(N, a);
            if (fabs(score - want) > 1e-5)
                fail_msg("seed %u: score %.7f, the path's %.7f", seed, score, want);
            /* The runners-up: the W = 9 last beams are the 9 best of all 27
             * paths (equal lengths, so any length penalty keeps the order). */
            double all[V * V * V];
            for (int code = 0; code < V * V * V; code++) {
                for (int i = 0, c = code; i < N; i++, c /= V) p[i] = c % V;
                all[code] = path_lp(p, N, seed);
            }
            assert_int_equal(gt_beam_n_results(b), 9);
            double prev = INFINITY;
            for (int r = 0; r < 9; r++) {
                const int32_t *ht;
                int hn;
                double hs;
                assert_int_equal(gt_beam_result_at(b, r, &ht, &hn, &hs), GT_OK);
                assert_int_equal(hn, N);
                int code = ht[0] + V * ht[1] + V * V * ht[2], better = 0;
                for (int k = 0; k < V * V * V; k++) better += all[k] > all[code] + 1e-9;
                if (better != r)
                    fail_msg("seed %u: hypothesis %d (%d %d %d) has %d better paths", seed, r,
                             ht[0], ht[1], ht[2], better);
                assert_true(fabs(hs - all[code] / pow(N, a)) < 1e-5 && hs <= prev);
                prev = hs;
            }
            const int32_t *ht;
            int hn;
            double hs;
            assert_int_equal(gt_beam_result_at(b, 9, &ht, &hn, &hs), GT_ERR_INTERNAL);
            assert_true(ds.forks > 0);
            assert_true(ds.max_live == 9);
            gt_beam_destroy(b);
        }
    }
}

static void test_one_beam_is_greedy(void **state) {
    (void)state;
    for (uint32_t seed = 1; seed <= 20; seed++) {
        gt_beam_opts o = {1, 1.0f, 6};
        gt_beam *b;
        assert_int_equal(gt_beam_create(&o, &b), GT_OK);
        drive_stats ds;
        drive(b, seed, &ds);
        const int32_t *toks;
        int n;
        double score;
        assert_int_equal(gt_beam_result(b, &toks, &n, &score), GT_OK);
        int32_t g[MAXN];
        for (int i = 0; i < 6; i++) {
            double lp[V];
            toy_logprobs(g, i, seed, lp);
            int arg = 0;
            for (int t = 1; t < V; t++)
                if ((float)lp[t] > (float)lp[arg]) arg = t;
            g[i] = arg;
        }
        assert_int_equal(n, 6);
        assert_memory_equal(toks, g, 6 * sizeof *g);
        assert_int_equal(ds.forks, 0);
        gt_beam_destroy(b);
    }
}

/* A model that says "end" (token 0) with probability 0.9 right away: with
 * two beams both extensions of the first step that are not "end" are
 * poor, so the finished one-token hypothesis wins, and the search stops
 * once two hypotheses finished and no live beam scores better. */
static bool is_zero(void *user, int32_t tok) {
    (void)user;
    return tok == 0;
}

static void test_eog(void **state) {
    (void)state;
    gt_beam_opts o = {2, 1.0f, MAXN};
    gt_beam *b;
    assert_int_equal(gt_beam_create(&o, &b), GT_OK);
    gt_cand c[3] = {{logf(0.9f), 0}, {logf(0.06f), 1}, {logf(0.04f), 2}};
    bool done = false;
    int steps = 0;
    while (!done && steps < MAXN) {
        for (int j = 0; j < gt_beam_n_live(b); j++)
            assert_int_equal(gt_beam_feed(b, j, c, 3), GT_OK);
        assert_int_equal(gt_beam_select(b, is_zero, NULL, &done), GT_OK);
        steps++;
    }
    assert_true(done);
    assert_true(steps < MAXN); /* stopped early */
    const int32_t *toks;
    int n;
    double score;
    assert_int_equal(gt_beam_result(b, &toks, &n, &score), GT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(toks[0], 0);
    assert_true(fabs(score - logf(0.9f)) < 1e-6);
    gt_beam_destroy(b);
}

static void test_refusals(void **state) {
    (void)state;
    gt_beam *b = NULL;
    gt_beam_opts o = {0, 1.0f, 4};
    assert_int_equal(gt_beam_create(&o, &b), GT_ERR_INVALID_ARG);
    o.width = GT_BEAM_MAX_WIDTH + 1;
    assert_int_equal(gt_beam_create(&o, &b), GT_ERR_INVALID_ARG);
    o.width = 2;
    o.n_predict = 0;
    assert_int_equal(gt_beam_create(&o, &b), GT_ERR_INVALID_ARG);
    o.n_predict = 4;
    assert_int_equal(gt_beam_create(&o, &b), GT_OK);
    gt_cand c[5] = {{-0.1f, 1}, {-1.0f, 2}, {-2.0f, 3}, {-3.0f, 4}, {-4.0f, 5}};
    const int32_t *toks;
    int n;
    double score;
    bool done;
    assert_int_equal(gt_beam_result(b, &toks, &n, &score), GT_ERR_INTERNAL);    /* not done */
    assert_int_equal(gt_beam_select(b, NULL, NULL, &done), GT_ERR_INVALID_ARG); /* not fed */
    assert_int_equal(gt_beam_feed(b, 1, c, 2), GT_ERR_INVALID_ARG);             /* one live beam */
    assert_int_equal(gt_beam_feed(b, 0, c, 5), GT_ERR_INVALID_ARG);             /* K = 4 */
    assert_int_equal(gt_beam_feed(b, 0, c, 4), GT_OK);
    assert_int_equal(gt_beam_select(b, NULL, NULL, &done), GT_OK);
    assert_false(done);
    assert_int_equal(gt_beam_n_live(b), 2);
    gt_beam_destroy(b);
    gt_beam_destroy(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exhaustive),
        cmocka_unit_test(test_one_beam_is_greedy),
        cmocka_unit_test(test_eog),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
