/* The bf16 dot-product matrix product (kernels/cpu/matmul_avx512_bf16.c,
 * --bf16-matmul on) for F16 and BF16 weights:
 *  (a) through gt_matmul on 1 and 2 threads, every output bit-identical to
 *      the scalar reference gt__mm_pb_ref_rows (bf16 rounding of both
 *      operands, fp32 adds in the order vdpbf16ps makes them), over awkward
 *      shapes (n_in not a multiple of 32 or of the 256-k block, partial
 *      panels) and token counts on both the decode (<= 4) and prefill paths,
 *      more than one 192-token chunk included: so a row's bits do not depend
 *      on the batch;
 *  (b) the reference itself against a double-precision dot of the unrounded
 *      operands, within the rounding bound 2^-7 * sum_k |x_k w_k| (bf16
 *      rounding of each operand is 2^-9 relative, F16 -> bf16 weights
 *      likewise, plus the fp32 adds); a weight one row off fails it;
 *  (c) the mode: "off" keeps the fp32 path, a bad word is refused with a
 *      sentence. Skipped (77) on a CPU without AVX-512 BF16. */
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

static gt_kernels *KS[2]; /* bf16 on, 1 and 2 threads */

static uint8_t *make_weights(gt_test_rng *g, gt_dtype t, int64_t n_in, int64_t n_out, double *wd) {
    uint16_t *w = malloc(sizeof(uint16_t) * (size_t)(n_in * n_out));
    for (int64_t i = 0; i < n_in * n_out; i++) {
        float v = gt_test_rng_normal(g) * 0.5f;
        w[i] = t == GT_F16 ? gt_f32_to_f16(v) : gt_f32_to_bf16(v);
        wd[i] = t == GT_F16 ? gt_f16_to_f32(w[i]) : gt_bf16_to_f32(w[i]);
    }
    return (uint8_t *)w;
}

static void run_case(gt_dtype t, int64_t n_in, int64_t n_out, int64_t n_tok, uint64_t seed) {
    gt_test_rng g;
    gt_test_rng_seed(&g, seed);
    double *wd = malloc(sizeof(double) * (size_t)(n_in * n_out));
    uint8_t *w = make_weights(&g, t, n_in, n_out, wd);
    size_t nx = (size_t)(n_tok * n_in), ny = (size_t)(n_tok * n_out);
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
    float *yr = malloc(sizeof(float) * ny);
    gt_test_fill_normal(&g, x, nx, 1.0f);
    gt__mm_pb_ref_rows(t, w, n_in, n_out, x, yr, n_tok, 0, n_out);
    /* (b) the reference within the rounding bound of the exact dot */
    for (int64_t tt = 0; tt < n_tok; tt++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < n_in; k++) {
                double p = (double)x[tt * n_in + k] * wd[o * n_in + k];
                s += p;
                a += fabs(p);
            }
            double err = fabs(yr[tt * n_out + o] - s), bound = a / 128 + 1e-30;
            if (!(err <= bound))
                fail_msg("%s ref n_in=%lld n_out=%lld n_tok=%lld: out[%lld][%lld] = %.9g, exact "
                         "%.9g, off by %.3g > bound %.3g", gt_dtype_name(t), (long long)n_in,
                         (long long)n_out, (long long)n_tok, (long long)tt, (long long)o,
                         (double)yr[tt * n_out + o], s, err, bound);
        }
    /* (a) the kernel: the reference's bits */
    for (int n = 0; n < 2; n++) {
        gt_weight wt;
        assert_int_equal(gt_weight_init(KS[n], t, n_in, n_out, w, &wt), GT_OK);
        assert_int_equal(wt.layout, GT_MM_PB);
        for (size_t i = 0; i < ny; i++) y[i] = NAN;
        assert_int_equal(gt_matmul(KS[n], &wt, x, y, n_tok), GT_OK);
        gt_weight_free(&wt);
        size_t diff = 0, first = 0;
        for (size_t i = 0; i < ny; i++)
            if (memcmp(&y[i], &yr[i], 4) != 0 && diff++ == 0) first = i;
        if (diff)
            fail_msg("%s threads=%d n_in=%lld n_out=%lld n_tok=%lld: %zu of %zu outputs differ "
                     "from the reference, first [%zu]: %.9g vs %.9g", gt_dtype_name(t), n + 1,
                     (long long)n_in, (long long)n_out, (long long)n_tok, diff, ny, first,
                     (double)y[first], (double)yr[first]);
    }
    free(wd); free(w); free(x); free(y); free(yr);
}

static void run_type(gt_dtype t) {
    static const int64_t N_IN[] = {2, 38, 256, 298, 1056};
    static const int64_t N_OUT[] = {1, 17, 33, 70};
    static const int64_t N_TOK[] = {1, 2, 3, 4, 5, 29};
    uint64_t seed = 100 + (uint64_t)t;
    for (size_t a = 0; a < sizeof N_IN / sizeof *N_IN; a++)
        for (size_t b = 0; b < sizeof N_OUT / sizeof *N_OUT; b++)
            for (size_t c = 0; c < sizeof N_TOK / sizeof *N_TOK; c++)
                run_case(t, N_IN[a], N_OUT[b], N_TOK[c], seed++);
    run_case(t, 520, 45, 200, seed++); /* token chunks, a partial k block */
    /* Three panel groups (GT_MM_PB_PG panels each; the last one partial and
     * ending in a partial panel), two token chunks of which one partial. */
    run_case(t, 300, 2 * GT_MM_PB_PG * 16 + 20, GT_MM_PB_TC + 5, seed++);
}

static void test_f16(void **state) { run_type(GT_F16); }
static void test_bf16(void **state) { run_type(GT_BF16); }

/* (b) can fail: a reference fed the rows shifted by one must break the bound. */
static void test_wrong_row_fails(void **state) {
    const int64_t n_in = 64, n_out = 2;
    gt_test_rng g;
    gt_test_rng_seed(&g, 9);
    double wd[128];
    uint8_t *w = make_weights(&g, GT_BF16, n_in, n_out, wd);
    float x[64], y[2];
    gt_test_fill_normal(&g, x, 64, 1.0f);
    gt__mm_pb_ref_rows(GT_BF16, w + n_in * 2, n_in, 1, x, y, 1, 0, 1); /* row 1 as row 0 */
    double s = 0, a = 0;
    for (int k = 0; k < n_in; k++) {
        s += x[k] * wd[k];
        a += fabs(x[k] * wd[k]);
    }
    assert_true(fabs(y[0] - s) > a / 128);
    free(w);
}

static void test_modes(void **state) {
    gt_kernels_config c = GT_KERNELS_CONFIG_INIT;
    gt_kernels *k = NULL;
    c.bf16 = "maybe";
    assert_int_equal(gt_kernels_create(&c, &k), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "\"maybe\""));
    c.bf16 = "on";
    c.isa = "avx2";
    assert_int_equal(gt_kernels_create(&c, &k), GT_ERR_UNSUPPORTED);
    assert_non_null(strstr(gt_last_error(), "avx2"));
    c.isa = NULL;
    c.bf16 = "off";
    assert_int_equal(gt_kernels_create(&c, &k), GT_OK);
    uint16_t w[64 * 16] = {0};
    gt_weight wt;
    assert_int_equal(gt_weight_init(k, GT_BF16, 64, 16, w, &wt), GT_OK);
    assert_int_equal(wt.layout, GT_MM_PF);
    gt_weight_free(&wt);
    gt_kernels_destroy(k);
}

static int setup(void **state) {
    for (int n = 0; n < 2; n++) {
        gt_kernels_config c = GT_KERNELS_CONFIG_INIT;
        c.n_threads = n + 1;
        c.bf16 = "on";
        assert_int_equal(gt_kernels_create(&c, &KS[n]), GT_OK);
    }
    return 0;
}

static int teardown(void **state) {
    for (int n = 0; n < 2; n++) gt_kernels_destroy(KS[n]);
    return 0;
}

int main(void) {
    gt_cpu_features f = gt__cpu_detect();
    if (gt__cpu_best_isa(&f) != GT_ISA_AVX512 || !f.avx512bf16) {
        fprintf(stderr, "this CPU lacks AVX-512 BF16: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_wrong_row_fails),
        cmocka_unit_test(test_modes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
