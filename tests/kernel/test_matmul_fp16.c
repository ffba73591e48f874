/* The fp16 matrix product (kernels/cpu/matmul_avx512_fp16.c,
 * --half-matmul fp16) for F16 and BF16 weights:
 *  (a) the scalar reference gt__mm_ph_ref_rows against a double-precision
 *      dot of the unrounded operands, within the rounding bound
 *      (chunk + 2) 2^-11 sum_k |x_k w_k| (activations rounded to fp16: 2^-11
 *      relative; every fp16 sum of a chunk rounds at most 2^-11 of a partial
 *      no larger than the chunk's sum of |products|; fp32 adds far below),
 *      plus the fp16 subnormal spacing 2^-24 per step in the scaled units,
 *      on ordinary, huge (1e5) and tiny (1e-5) activations, with a large
 *      outlier, and F16 weights up to 6e4; a weight one row off fails it;
 *  (b) the AVX-512 FP16 kernel through gt_matmul on 1 and 2 threads, every
 *      output bit-identical to the reference, over awkward shapes (n_in not
 *      a multiple of the chunk or of the 256-k block, partial panels) and
 *      token counts on the decode (<= 4) and prefill paths, more than one
 *      192-token chunk included, for chunk lengths 16, 32 and 64: so a
 *      row's bits do not depend on the batch. Skipped, with a message, on a
 *      CPU (or build) without AVX-512 FP16; (a) runs everywhere;
 *  (c) a BF16 weight whose values are not all fp16 keeps the fp32 float
 *      panels; the mode words and their errors. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/dtype.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/kernels.h"
#include "util/test_util.h"

static gt_kernels *KS[2]; /* fp16 on, 1 and 2 threads; NULL without AVX-512 FP16 */

/* Weights ~ N(0, scale^2), BF16 ones rounded to 8 bits so that they fit. */
static uint16_t *make_weights(gt_test_rng *g, gt_dtype t, int64_t n_in, int64_t n_out, float scale,
                              double *wd) {
    uint16_t *w = malloc(sizeof(uint16_t) * (size_t)(n_in * n_out));
    for (int64_t i = 0; i < n_in * n_out; i++) {
        float v = gt_test_rng_normal(g) * scale;
        v = v > 60000 ? 60000 : v < -60000 ? -60000 : v;
        w[i] = t == GT_F16 ? gt_f32_to_f16(v) : gt_f32_to_bf16(v);
        wd[i] = t == GT_F16 ? gt_f16_to_f32(w[i]) : gt_bf16_to_f32(w[i]);
    }
    return w;
}

static void set_chunk(int chunk) {
    char s[16];
    snprintf(s, sizeof s, "%d", chunk);
    setenv("GANTRY_FP16_CHUNK", s, 1);
}

/* (a) yr against the exact dot of x and wd. */
static void check_bound(const char *what, const float *x, const double *wd, const float *yr,
                        const gt_mm_ph_head *h, int64_t n_in, int64_t n_out, int64_t n_tok) {
    for (int64_t tt = 0; tt < n_tok; tt++) {
        float xmax = 0, sc, inv;
        for (int64_t k = 0; k < n_in; k++) xmax = fmaxf(xmax, fabsf(x[tt * n_in + k]));
        gt__mm_ph_row_scale(xmax, h, &sc, &inv);
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < n_in; k++) {
                double p = (double)x[tt * n_in + k] * wd[o * n_in + k];
                s += p;
                a += fabs(p);
            }
            double err = fabs(yr[tt * n_out + o] - s);
            double bound = (h->chunk + 2) * a / 2048 + (double)n_in * ldexp(1, -24) * inv + 1e-30;
            if (!(err <= bound))
                fail_msg("%s ref n_in=%lld n_out=%lld n_tok=%lld chunk=%d: out[%lld][%lld] = "
                         "%.9g, exact %.9g, off by %.3g > bound %.3g",
                         what, (long long)n_in, (long long)n_out, (long long)n_tok, h->chunk,
                         (long long)tt, (long long)o, (double)yr[tt * n_out + o], s, err, bound);
        }
    }
}

static void run_case(gt_dtype t, int64_t n_in, int64_t n_out, int64_t n_tok, int chunk,
                     float xscale, float wscale, uint64_t seed) {
    gt_test_rng g;
    gt_test_rng_seed(&g, seed);
    set_chunk(chunk);
    double *wd = malloc(sizeof(double) * (size_t)(n_in * n_out));
    uint16_t *w = make_weights(&g, t, n_in, n_out, wscale, wd);
    size_t nx = (size_t)(n_tok * n_in), ny = (size_t)(n_tok * n_out);
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
    float *yr = malloc(sizeof(float) * ny);
    gt_test_fill_normal(&g, x, nx, xscale);
    x[nx / 2] *= 50; /* an outlier sets its row's scale */
    gt_mm_ph_head h;
    assert_true(gt__mm_ph_head_init(t, n_in, n_out, w, &h));
    assert_int_equal(h.chunk, chunk);
    gt__mm_ph_ref_rows(t, w, &h, n_in, n_out, x, yr, n_tok, 0, n_out);
    check_bound(gt_dtype_name(t), x, wd, yr, &h, n_in, n_out, n_tok);
    for (int n = 0; n < 2 && KS[0]; n++) { /* (b) the kernel: the reference's bits */
        gt_weight wt;
        assert_int_equal(gt_weight_init(KS[n], t, n_in, n_out, w, &wt), GT_OK);
        assert_int_equal(wt.layout, GT_MM_PH);
        for (size_t i = 0; i < ny; i++) y[i] = NAN;
        assert_int_equal(gt_matmul(KS[n], &wt, x, y, n_tok), GT_OK);
        gt_weight_free(&wt);
        size_t diff = 0, first = 0;
        for (size_t i = 0; i < ny; i++)
            if (memcmp(&y[i], &yr[i], 4) != 0 && diff++ == 0) first = i;
        if (diff)
            fail_msg("%s threads=%d n_in=%lld n_out=%lld n_tok=%lld chunk=%d: %zu of %zu outputs "
                     "differ from the reference, first [%zu]: %.9g vs %.9g",
                     gt_dtype_name(t), n + 1, (long long)n_in, (long long)n_out, (long long)n_tok,
                     chunk, diff, ny, first, (double)y[first], (double)yr[first]);
    }
    unsetenv("GANTRY_FP16_CHUNK");
    free(wd);
    free(w);
    free(x);
    free(y);
    free(yr);
}

static void run_type(gt_dtype t) {
    static const int64_t N_IN[] = {2, 38, 256, 298, 1056};
    static const int64_t N_OUT[] = {1, 17, 33, 70};
    static const int64_t N_TOK[] = {1, 2, 3, 4, 5, 29};
    uint64_t seed = 200 + (uint64_t)t * 1000;
    for (size_t a = 0; a < sizeof N_IN / sizeof *N_IN; a++)
        for (size_t b = 0; b < sizeof N_OUT / sizeof *N_OUT; b++)
            for (size_t c = 0; c < sizeof N_TOK / sizeof *N_TOK; c++)
                run_case(t, N_IN[a], N_OUT[b], N_TOK[c], 32, 1.0f, 0.5f, seed++);
    run_case(t, 520, 45, 200, 32, 1.0f, 0.5f, seed++); /* two token chunks, a partial k block */
    for (int c = 16; c <= 64; c *= 4) {                /* the other chunk lengths */
        run_case(t, 298, 33, 3, c, 1.0f, 0.5f, seed++);
        run_case(t, 520, 45, 37, c, 1.0f, 0.5f, seed++);
    }
    run_case(t, 300, 33, 9, 32, 1e5f, 0.05f, seed++); /* huge activations */
    run_case(t, 300, 33, 9, 64, 1e-5f, 0.5f, seed++); /* tiny ones */
    run_case(t, 300, 33, 9, 16, 1.0f, 3e4f, seed++);  /* weights near the fp16 top */
}

static void test_f16(void **state) { run_type(GT_F16); }
static void test_bf16(void **state) { run_type(GT_BF16); }

/* (a) can fail: the reference fed the rows shifted by one must break the bound. */
static void test_wrong_row_fails(void **state) {
    const int64_t n_in = 64;
    gt_test_rng g;
    gt_test_rng_seed(&g, 9);
    double wd[128];
    uint16_t *w = make_weights(&g, GT_F16, n_in, 2, 0.5f, wd);
    float x[64], y[1];
    gt_test_fill_normal(&g, x, 64, 1.0f);
    gt_mm_ph_head h;
    assert_true(gt__mm_ph_head_init(GT_F16, n_in, 2, w, &h));
    gt__mm_ph_ref_rows(GT_F16, w + n_in, &h, n_in, 1, x, y, 1, 0, 1); /* row 1 as row 0 */
    double s = 0, a = 0;
    for (int k = 0; k < n_in; k++) {
        s += x[k] * wd[k];
        a += fabs(x[k] * wd[k]);
    }
    assert_true(fabs(y[0] - s) > (h.chunk + 2) * a / 2048);
    free(w);
}

/* (c) a BF16 value that no fp16 holds (after the matrix's scale) keeps the
 * float panels; so does "off". */
static void test_fallback_and_modes(void **state) {
    uint16_t w[64 * 16];
    for (int i = 0; i < 64 * 16; i++) w[i] = gt_f32_to_bf16(i % 2 ? 0.5f : -0.25f);
    gt_mm_ph_head h;
    assert_true(gt__mm_ph_head_init(GT_BF16, 64, 16, w, &h));
    w[5] = gt_f32_to_bf16(ldexpf(1.0078125f, -30)); /* 8 significant bits at 2^-30 */
    assert_false(gt__mm_ph_head_init(GT_BF16, 64, 16, w, &h));
    if (KS[0]) {
        gt_weight wt;
        assert_int_equal(gt_weight_init(KS[0], GT_BF16, 64, 16, w, &wt), GT_OK);
        assert_int_equal(wt.layout, GT_MM_PF);
        gt_weight_free(&wt);
    }
    gt_kernels_config c = GT_KERNELS_CONFIG_INIT;
    gt_kernels *k = NULL;
    c.bf16 = "fp32";
    assert_int_equal(gt_kernels_create(&c, &k), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "\"fp32\""));
    c.bf16 = "fp16";
    c.isa = "ref";
    assert_int_equal(gt_kernels_create(&c, &k), GT_ERR_UNSUPPORTED);
    assert_non_null(strstr(gt_last_error(), "ref"));
    c.isa = NULL;
    c.bf16 = "off";
    assert_int_equal(gt_kernels_create(&c, &k), GT_OK);
    gt_weight wt;
    assert_int_equal(gt_weight_init(k, GT_F16, 64, 16, w, &wt), GT_OK);
    assert_int_not_equal(wt.layout, GT_MM_PH);
    gt_weight_free(&wt);
    gt_kernels_destroy(k);
}

static int setup(void **state) {
    gt_cpu_features f = gt__cpu_detect();
    if (gt__cpu_best_isa(&f) != GT_ISA_AVX512 || !f.avx512fp16 || !gt__mm_ph_built()) {
        fprintf(stderr,
                "test_matmul_fp16: %s: the AVX-512 FP16 kernel is not compared (skipped); "
                "the scalar reference is\n",
                gt__mm_ph_built() ? "this CPU lacks AVX-512 FP16"
                                  : "this build has no fp16 kernels");
        return 0;
    }
    for (int n = 0; n < 2; n++) {
        gt_kernels_config c = GT_KERNELS_CONFIG_INIT;
        c.n_threads = n + 1;
        c.bf16 = "fp16";
        assert_int_equal(gt_kernels_create(&c, &KS[n]), GT_OK);
    }
    return 0;
}

static int teardown(void **state) {
    for (int n = 0; n < 2; n++) gt_kernels_destroy(KS[n]);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_wrong_row_fails),
        cmocka_unit_test(test_fallback_and_modes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
