/* The sampler's selection against a straightforward reference written here:
 * temperature, qsort of the whole vocabulary, then top-k, top-p and min-p
 * prefixes and the same seeded draw (the sampler as it was before selection
 * became linear). Over many random logit vectors (with and without ties),
 * vocabulary sizes 1..50000 and every combination of top-k, top-p, min-p and
 * temperature, the tokens must be identical. The candidates path (each
 * "rank" selects its best over a slice with common/cand.h, the slices are
 * merged, as gt_par_top_candidates does) must draw the same tokens as the
 * full path. The comparison is shown to be able to fail: a reference with a
 * different seed must disagree. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "common/cand.h"
#include "coordinator/sampler.h"
#include "util/test_util.h"

/* Reference sampler ------------------------------------------------------------ */

typedef struct {
    float logit;
    int32_t id;
} ref_cand;

static int ref_cmp(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

typedef struct {
    gt_sampler_config cfg;
    uint64_t rng;
    ref_cand *c;
} ref_sampler;

static void ref_init(ref_sampler *r, const gt_sampler_config *cfg, int n) {
    r->cfg = *cfg;
    r->rng = cfg->seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    r->c = malloc((size_t)n * sizeof *r->c);
    assert_non_null(r->c);
}

static double ref_uniform(ref_sampler *r) {
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return (double)((r->rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static int32_t ref_sample(ref_sampler *r, const float *logits, int n) {
    if (r->cfg.temperature <= 0) {
        int32_t best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    for (int i = 0; i < n; i++) r->c[i] = (ref_cand){logits[i] / r->cfg.temperature, i};
    qsort(r->c, (size_t)n, sizeof *r->c, ref_cmp);
    int k = r->cfg.top_k > 0 && r->cfg.top_k < n ? r->cfg.top_k : n;
    double max = r->c[0].logit, sum = 0;
    for (int i = 0; i < k; i++) sum += exp(r->c[i].logit - max);
    int keep = k;
    if (r->cfg.top_p < 1) {
        double acc = 0;
        for (int i = 0; i < k; i++) {
            acc += exp(r->c[i].logit - max) / sum;
            if (acc >= r->cfg.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (r->cfg.min_p > 0) {
        int m = 0;
        while (m < keep && exp(r->c[m].logit - max) >= r->cfg.min_p) m++;
        keep = m;
    }
    double kept = 0;
    for (int i = 0; i < keep; i++) kept += exp(r->c[i].logit - max);
    double u = ref_uniform(r) * kept;
    for (int i = 0; i < keep; i++) {
        u -= exp(r->c[i].logit - max);
        if (u <= 0) return r->c[i].id;
    }
    return r->c[keep - 1].id;
}

/* Data ----------------------------------------------------------------------- */

/* Random logits; every third vector is rounded to a few levels so that ties
 * (resolved by id) are frequent. */
static void fill_logits(gt_test_rng *rng, float *x, int n, int variant) {
    float sd = variant % 2 ? 3.0f : 0.5f;
    gt_test_fill_normal(rng, x, (size_t)n, sd);
    if (variant % 3 == 0)
        for (int i = 0; i < n; i++) x[i] = roundf(x[i] * 2.0f) * 0.5f;
    if (n > 3 && variant % 4 == 1) x[n / 2] = -0.0f, x[n / 3] = 0.0f; /* zeros of both signs */
}

/* The candidates path over `slices` ranks split like the plan splits the
 * vocabulary (n / slices rows each, the last one the rest). */
static int32_t sample_over_slices(gt_sampler *s, const float *logits, int n, int slices,
                                  gt_cand *work, gt_cand *tmp, gt_cand *blocks, float *vals,
                                  int32_t *ids) {
    int k = gt_sampler_n_candidates(s);
    int vb = n / slices, longest = n - (slices - 1) * vb;
    int ks = k < longest ? k : longest;
    for (int r = 0; r < slices; r++) {
        int v0 = r * vb, len = r == slices - 1 ? n - v0 : vb;
        for (int i = 0; i < len; i++) work[i] = (gt_cand){logits[v0 + i], v0 + i};
        int mine = ks < len ? ks : len;
        gt_cand_select(work, len, mine, tmp);
        for (int j = 0; j < ks; j++)
            blocks[r * ks + j] = j < mine ? work[j] : (gt_cand){-INFINITY, INT32_MAX};
    }
    int got = k < n ? k : n;
    gt_cand_merge(blocks, slices, ks, work, got);
    for (int j = 0; j < got; j++) {
        vals[j] = work[j].logit;
        ids[j] = work[j].id;
    }
    return gt_sampler_sample_candidates(s, vals, ids, got);
}

/* Tests ---------------------------------------------------------------------- */

static void test_matches_full_sort(void **state) {
    (void)state;
    static const int sizes[] = {1, 2, 3, 7, 41, 100, 1000, 4099, 50000};
    static const float temps[] = {0.0f, 0.35f, 1.0f, 1.7f};
    static const float top_ps[] = {0.1f, 0.9f, 1.0f};
    static const float min_ps[] = {0.0f, 0.05f};
    enum { NMAX = 50000 };
    float *logits = malloc(NMAX * sizeof *logits), *vals = malloc(NMAX * sizeof *vals);
    int32_t *ids = malloc(NMAX * sizeof *ids);
    gt_cand *work = malloc(NMAX * sizeof *work), *tmp = malloc(NMAX * sizeof *tmp);
    gt_cand *blocks = malloc(3 * (size_t)NMAX * sizeof *blocks);
    assert_true(logits && vals && ids && work && tmp && blocks);
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 42);
    long n_draws = 0, n_other_seed_differs = 0, n_sampled = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int n = sizes[si];
        int ks[5] = {0, 1, 5, 40, n};
        int vectors = n >= 50000 ? 1 : n >= 4000 ? 2 : 4;
        for (int v = 0; v < vectors; v++) {
            fill_logits(&rng, logits, n, v + (int)si);
            for (int ki = 0; ki < 5; ki++)
                for (size_t ti = 0; ti < sizeof temps / sizeof *temps; ti++)
                    for (size_t pi = 0; pi < sizeof top_ps / sizeof *top_ps; pi++)
                        for (size_t mi = 0; mi < sizeof min_ps / sizeof *min_ps; mi++) {
                            gt_sampler_config c = {temps[ti], ks[ki], top_ps[pi],
                                                   1000 + (uint64_t)n_draws, min_ps[mi], 1.0f};
                            gt_sampler *a, *b;
                            assert_int_equal(gt_sampler_create(&c, n, &a), GT_OK);
                            assert_int_equal(gt_sampler_create(&c, n, &b), GT_OK);
                            ref_sampler ref, other;
                            ref_init(&ref, &c, n);
                            gt_sampler_config c2 = c;
                            c2.seed += 7919;
                            ref_init(&other, &c2, n);
                            int slices = 1 + (int)(n_draws % 3);
                            if (slices > n) slices = n;
                            for (int d = 0; d < 3; d++) {
                                int32_t want = ref_sample(&ref, logits, n);
                                int32_t got = gt_sampler_sample(a, logits);
                                if (want != got)
                                    fail_msg("n %d top_k %d temp %g top_p %g min_p %g draw %d: "
                                             "reference %d, sampler %d",
                                             n, ks[ki], (double)temps[ti], (double)top_ps[pi],
                                             (double)min_ps[mi], d, want, got);
                                int32_t via = sample_over_slices(b, logits, n, slices, work, tmp,
                                                                 blocks, vals, ids);
                                if (via != want)
                                    fail_msg("n %d top_k %d temp %g top_p %g min_p %g over %d "
                                             "slices: full %d, candidates %d",
                                             n, ks[ki], (double)temps[ti], (double)top_ps[pi],
                                             (double)min_ps[mi], slices, want, via);
                                if (temps[ti] > 0 && n >= 100 && ks[ki] != 1) {
                                    n_sampled++;
                                    n_other_seed_differs += ref_sample(&other, logits, n) != want;
                                }
                                n_draws++;
                            }
                            free(ref.c);
                            free(other.c);
                            gt_sampler_destroy(a);
                            gt_sampler_destroy(b);
                        }
        }
    }
    /* The comparison can fail: another seed draws other tokens often. */
    assert_true(n_sampled > 100);
    assert_true(n_other_seed_differs * 10 > n_sampled);
    free(logits);
    free(vals);
    free(ids);
    free(work);
    free(tmp);
    free(blocks);
}

/* gt_cand_select keeps the k best in order for every k, by heap or by sort. */
static void test_select_every_k(void **state) {
    (void)state;
    enum { N = 3000 }; /* above the size where the radix sort takes over */
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 7);
    float x[N];
    gt_cand c[N], tmp[N], want[N];
    for (int v = 0; v < 6; v++) {
        fill_logits(&rng, x, N, v);
        for (int i = 0; i < N; i++) want[i] = (gt_cand){x[i], i};
        qsort(want, N, sizeof *want, gt_cand_cmp);
        for (int k = 0; k <= N; k += (k < 20 ? 1 : 97)) {
            for (int i = 0; i < N; i++) c[i] = (gt_cand){x[i], i};
            gt_cand_select(c, N, k, tmp);
            for (int j = 0; j < k; j++) {
                if (c[j].id != want[j].id)
                    fail_msg("k %d: position %d holds %d, want %d", k, j, c[j].id, want[j].id);
            }
        }
    }
}

static void test_min_p_config(void **state) {
    (void)state;
    gt_sampler_config c = GT_SAMPLER_CONFIG_INIT;
    gt_sampler *s;
    c.min_p = 1.5f;
    assert_int_equal(gt_sampler_create(&c, 10, &s), GT_ERR_INVALID_ARG);
    c.min_p = NAN;
    assert_int_equal(gt_sampler_create(&c, 10, &s), GT_ERR_INVALID_ARG);
    /* min_p 1 keeps only the most likely token(s). */
    c = (gt_sampler_config){1.0f, 0, 1.0f, 3, 1.0f, 1.0f};
    float logits[5] = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f};
    assert_int_equal(gt_sampler_create(&c, 5, &s), GT_OK);
    for (int i = 0; i < 50; i++) assert_int_equal(gt_sampler_sample(s, logits), 1);
    gt_sampler_destroy(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_every_k),
        cmocka_unit_test(test_min_p_config),
        cmocka_unit_test(test_matches_full_sort),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
