/* gt_matmul_multi (several weights, one input, one parallel region on the
 * CPU) against the oracle of separate gt_matmul calls, which the kernel
 * tests check against double precision: every output must be the same
 * bits, on every ISA (ref, avx2, avx512 where the CPU has them), 1 to 3
 * threads, bf16 pair panels where the CPU has them, decode (<= 4 tokens: each thread quantizes the
 * activations itself) and prefill token counts, partial panels, weights of different heights (k and
 * v smaller than q), and sets the fused path refuses (mixed quantizations) that must fall back to
 * the separate products. Guard floats after each output catch a grain written to the wrong output
 * or past its end; a wrong pairing (an output compared with another weight's product) must be
 * caught, so the comparison can fail. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/dtype.h"
#include "kernels/kernels.h"
#include "util/test_util.h"

#define N_ISA 4
#define GUARD 19
/* The last set: F16 weights on bf16 pair panels (--bf16-matmul on). */
static const char *ISAS[N_ISA] = {"ref", "avx2", "avx512", "avx512"};
static const char *BF16[N_ISA] = {"off", "off", "off", "on"};
static const char *NAMES[N_ISA] = {"ref", "avx2", "avx512", "avx512+bf16"};
static gt_kernels *KS[N_ISA][3]; /* [isa][threads-1], NULL when unavailable */

static void put_h(uint8_t *p, float f) {
    gt_f16 h = gt_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* Random bytes with the scale fields set to values around 0.01. */
static uint8_t *make_weights(gt_test_rng *g, gt_dtype t, int64_t n_in, int64_t n_out) {
    const gt_dtype_info *info = gt_dtype_get(t);
    size_t rb;
    assert_true(gt_dtype_row_bytes(t, n_in, &rb));
    size_t total = rb * (size_t)n_out;
    uint8_t *w = malloc(total);
    for (size_t i = 0; i < total; i++) w[i] = (uint8_t)gt_test_rng_u64(g);
    for (size_t i = 0; i < total / info->block_bytes; i++) {
        uint8_t *b = w + i * info->block_bytes;
        float s = gt_test_rng_uniform(g, 0.002f, 0.02f);
        switch (t) {
        case GT_F32: {
            float f = gt_test_rng_normal(g);
            memcpy(b, &f, 4);
            break;
        }
        case GT_F16:
            put_h(b, gt_test_rng_normal(g));
            break;
        case GT_Q4_0:
        case GT_Q8_0:
            put_h(b, s);
            break;
        case GT_Q4_K:
            put_h(b, s * 0.1f);
            put_h(b + 2, s * 0.1f);
            break;
        case GT_Q6_K:
            put_h(b + 208, s * 0.05f);
            break;
        default:
            fail_msg("no weight maker for %s", gt_dtype_name(t));
        }
    }
    return w;
}

typedef struct {
    gt_dtype types[3];
    int n;
} type_set;

/* One case on one kernel set: returns after failing the test on a difference. */
static void run_case(gt_kernels *k, const char *isa, int nth, const type_set *ts, int64_t n_in,
                     int64_t n_tok, gt_test_rng *g) {
    static const int64_t N_OUT[3] = {300, 70, 33}; /* q taller than k and v; partial panels */
    gt_weight w[3];
    uint8_t *raw[3];
    float *y[3], *yr[3];
    gt_matmul_item items[3];
    float *x = malloc(sizeof(float) * (size_t)(n_tok * n_in));
    gt_test_fill_normal(g, x, (size_t)(n_tok * n_in), 1.0f);
    for (int i = 0; i < ts->n; i++) {
        size_t ny = (size_t)(n_tok * N_OUT[i]);
        raw[i] = make_weights(g, ts->types[i], n_in, N_OUT[i]);
        assert_int_equal(gt_weight_init(k, ts->types[i], n_in, N_OUT[i], raw[i], &w[i]), GT_OK);
        y[i] = malloc(sizeof(float) * (ny + GUARD));
        yr[i] = malloc(sizeof(float) * ny);
        for (size_t j = 0; j < ny + GUARD; j++) y[i][j] = NAN;
        assert_int_equal(gt_matmul(k, &w[i], x, yr[i], n_tok), GT_OK);
        items[i] = (gt_matmul_item){&w[i], y[i]};
    }
    assert_int_equal(gt_matmul_multi(k, items, ts->n, x, n_tok), GT_OK);
    for (int i = 0; i < ts->n; i++) {
        size_t ny = (size_t)(n_tok * N_OUT[i]), diff = 0, first = 0;
        for (size_t j = 0; j < ny; j++)
            if (memcmp(&y[i][j], &yr[i][j], 4) != 0 && diff++ == 0) first = j;
        if (diff)
            fail_msg(
                "%s isa=%s threads=%d n_in=%lld n_tok=%lld weight %d of %d: %zu of %zu outputs "
                "differ from its own gt_matmul, first [%zu]: %.9g vs %.9g",
                gt_dtype_name(ts->types[i]), isa, nth, (long long)n_in, (long long)n_tok, i, ts->n,
                diff, ny, first, (double)y[i][first], (double)yr[i][first]);
        for (size_t j = ny; j < ny + GUARD; j++)
            if (!isnan(y[i][j]))
                fail_msg("%s isa=%s threads=%d n_tok=%lld weight %d: guard float %zu past the "
                         "%zu outputs was written",
                         gt_dtype_name(ts->types[i]), isa, nth, (long long)n_tok, i, j - ny, ny);
        gt_weight_free(&w[i]);
        free(raw[i]);
        free(y[i]);
        free(yr[i]);
    }
    free(x);
}

static void run_sets(const type_set *sets, size_t n_sets, int64_t n_in) {
    static const int64_t N_TOK[] = {1, 2, 4, 5, 33};
    gt_test_rng g;
    gt_test_rng_seed(&g, 1400 + (uint64_t)n_in);
    for (int i = 0; i < N_ISA; i++)
        for (int n = 0; n < 3; n++) {
            if (!KS[i][n]) continue;
            for (size_t s = 0; s < n_sets; s++)
                for (size_t t = 0; t < sizeof N_TOK / sizeof *N_TOK; t++)
                    run_case(KS[i][n], NAMES[i], n + 1, &sets[s], n_in, N_TOK[t], &g);
        }
}

/* Same-type sets (the fused path on avx2/avx512), a pair (gate/up). */
static void test_same_type(void **state) {
    static const type_set sets[] = {
        {{GT_Q4_0, GT_Q4_0, GT_Q4_0}, 3}, {{GT_Q8_0, GT_Q8_0, GT_Q8_0}, 3},
        {{GT_F16, GT_F16, GT_F16}, 3},    {{GT_F32, GT_F32, GT_F32}, 3},
        {{GT_Q4_0, GT_Q4_0}, 2},          {{GT_F16}, 1},
    };
    run_sets(sets, sizeof sets / sizeof *sets, 96);
    run_sets(sets, sizeof sets / sizeof *sets, 512);
}

/* K quants, and mixes (a Q4_K_M layer's q/k with a Q6_K v; float with
 * quantized) that take the one-by-one fallback or a shared quantization. */
static void test_mixed(void **state) {
    static const type_set sets[] = {
        {{GT_Q4_K, GT_Q4_K, GT_Q4_K}, 3},
        {{GT_Q4_K, GT_Q4_K, GT_Q6_K}, 3},
        {{GT_Q4_0, GT_Q8_0, GT_Q4_0}, 3},
        {{GT_F16, GT_Q8_0, GT_F32}, 3},
    };
    run_sets(sets, sizeof sets / sizeof *sets, 256);
}

/* The comparison can fail: a fused output set against another weight's product. */
static void test_wrong_pairing_fails(void **state) {
    gt_test_rng g;
    gt_test_rng_seed(&g, 7);
    gt_kernels *k = KS[2][1] ? KS[2][1] : KS[0][1];
    assert_non_null(k);
    uint8_t *r0 = make_weights(&g, GT_Q8_0, 64, 32), *r1 = make_weights(&g, GT_Q8_0, 64, 32);
    gt_weight w0, w1;
    assert_int_equal(gt_weight_init(k, GT_Q8_0, 64, 32, r0, &w0), GT_OK);
    assert_int_equal(gt_weight_init(k, GT_Q8_0, 64, 32, r1, &w1), GT_OK);
    float x[64], y0[32], y1[32], ref[32];
    gt_test_fill_normal(&g, x, 64, 1.0f);
    gt_matmul_item items[2] = {{&w0, y0}, {&w1, y1}};
    assert_int_equal(gt_matmul_multi(k, items, 2, x, 1), GT_OK);
    assert_int_equal(gt_matmul(k, &w1, x, ref, 1), GT_OK);
    assert_true(memcmp(y0, ref, sizeof ref) != 0);
    assert_true(memcmp(y1, ref, sizeof ref) == 0);
    gt_weight_free(&w0);
    gt_weight_free(&w1);
    free(r0);
    free(r1);
}

static int setup(void **state) {
    for (int i = 0; i < N_ISA; i++)
        for (int n = 1; n <= 3; n++) {
            gt_kernels_config cfg = GT_KERNELS_CONFIG_INIT;
            cfg.n_threads = n;
            cfg.isa = ISAS[i];
            cfg.bf16 = BF16[i];
            if (gt_kernels_create(&cfg, &KS[i][n - 1]) != GT_OK) KS[i][n - 1] = NULL;
        }
    assert_non_null(KS[0][0]);
    return 0;
}

static int teardown(void **state) {
    for (int i = 0; i < N_ISA; i++)
        for (int n = 0; n < 3; n++) gt_kernels_destroy(KS[i][n]);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_type),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_wrong_pairing_fails),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
