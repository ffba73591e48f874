/* The AVX-512 nibble decode kernel (kernels/cpu/matmul_avx512_q4dec.c: Q4_0,
 * and Q4_1/Q4_K with their mins) against the panel-pair GEMM of the same
 * weights (matmul_avx512_q2.c, taken for 5 tokens or more): both must give
 * every row the same bits, memcmp.
 *
 * The decode kernel regroups the integer dot of each block (masked high
 * nibbles, two chains, two panels at once) but must keep the float steps of
 * the GEMM; the GEMM is separate code, so it is an independent oracle. The
 * shapes cross what the decode kernel treats specially: k slices of 16
 * blocks and a remainder, one block only, an odd number of 16-row panels
 * (the last one alone), partial panels, 1 to 4 tokens (one and two panels
 * per pass), and 1 to 3 threads (panel ranges that start on an odd panel).
 * Skipped where the CPU has no AVX-512 VNNI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/quant.h"
#include "kernels/kernels.h"
#include "util/test_util.h"

#define N_TOK 8 /* the GEMM batch: > 4, so it takes the panel-pair path */

static gt_kernels *KS[3]; /* avx512 with 1..3 threads, or NULL */

static int setup(void **state) {
    (void)state;
    for (int t = 0; t < 3; t++) {
        gt_kernels_config cfg = GT_KERNELS_CONFIG_INIT;
        cfg.n_threads = t + 1;
        cfg.isa = "avx512";
        if (gt_kernels_create(&cfg, &KS[t]) != GT_OK) KS[t] = NULL;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int t = 0; t < 3; t++) gt_kernels_destroy(KS[t]);
    return 0;
}

/* Returns 1 when every decode row equals its GEMM row. */
static int check_shape(gt_dtype type, int64_t n_in, int64_t n_out, uint64_t seed) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, seed);
    size_t rb = 0;
    assert_true(gt_dtype_row_bytes(type, n_in, &rb));
    float *wf = malloc((size_t)n_in * sizeof(float));
    uint8_t *wq = malloc(rb * (size_t)n_out);
    float *x = malloc((size_t)N_TOK * n_in * sizeof(float));     /* [N_TOK, n_in] */
    float *want = malloc((size_t)N_TOK * n_out * sizeof(float)); /* [N_TOK, n_out] */
    float *got = malloc((size_t)N_TOK * n_out * sizeof(float));  /* [<= 4, n_out] */
    for (int64_t r = 0; r < n_out; r++) {
        /* Rows of different scales, some all zero except one value. */
        gt_test_fill_normal(&rng, wf, (size_t)n_in, 0.1f + (float)(r % 7));
        if (r % 11 == 5) memset(wf + 1, 0, (size_t)(n_in - 1) * sizeof(float));
        assert_int_equal(gt_quantize_row(type, wf, wq + (size_t)r * rb, n_in), GT_OK);
    }
    for (int t = 0; t < N_TOK; t++)
        gt_test_fill_normal(&rng, x + (size_t)t * n_in, (size_t)n_in,
                            0.01f + 3.0f * (float)(t % 3));
    int bad = 0;
    gt_weight w = {0};
    assert_int_equal(gt_weight_init(KS[0], type, n_in, n_out, wq, &w), GT_OK);
    assert_int_equal(gt_matmul(KS[0], &w, x, want, N_TOK), GT_OK);
    for (int th = 0; th < 3 && !bad; th++)
        for (int n = 1; n <= 4 && !bad; n++)
            for (int t0 = 0; t0 + n <= N_TOK && !bad; t0 += 3) {
                memset(got, 0xFF, (size_t)n * n_out * sizeof(float));
                assert_int_equal(gt_matmul(KS[th], &w, x + (size_t)t0 * n_in, got, n), GT_OK);
                for (int64_t i = 0; i < (int64_t)n * n_out && !bad; i++)
                    if (memcmp(got + i, want + (size_t)t0 * n_out + i, sizeof(float))) {
                        fprintf(stderr,
                                "%s decode %lldx%lld, %d threads, %d tokens from %d: token %lld "
                                "output %lld is %.9g, the GEMM gives %.9g\n",
                                gt_dtype_name(type), (long long)n_in, (long long)n_out, th + 1, n,
                                t0, (long long)(i / n_out), (long long)(i % n_out), (double)got[i],
                                (double)want[(size_t)t0 * n_out + i]);
                        bad = 1;
                    }
            }
    gt_weight_free(&w);
    free(wf);
    free(wq);
    free(x);
    free(want);
    free(got);
    return !bad;
}

static void test_q4_0_decode_equals_gemm(void **state) {
    (void)state;
    if (!KS[0]) skip();
    /* n_in: one block, a slice, a slice plus one block, 2.5 slices, the
     * model's 2048; n_out: one panel, a partial second panel, three panels
     * (one pair and one alone), 100 (six full and one partial). */
    static const int64_t shapes[][2] = {{32, 16},    {512, 17},  {544, 48},
                                        {1280, 100}, {2048, 72}, {96, 33}};
    int ok = 1;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        ok &= check_shape(GT_Q4_0, shapes[i][0], shapes[i][1], 500 + i);
        ok &= check_shape(GT_Q4_1, shapes[i][0], shapes[i][1], 600 + i);
        if (shapes[i][0] % 256 == 0)
            ok &= check_shape(GT_Q4_K, shapes[i][0], shapes[i][1], 700 + i);
    }
    assert_true(ok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q4_0_decode_equals_gemm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
