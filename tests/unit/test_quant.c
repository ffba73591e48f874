/* Tests of the scalar codecs (common/quant.c).
 *
 * Three kinds of evidence: (1) hand-built blocks, written byte by byte from
 * the format definitions in this file (not from the quantizers), must decode
 * to exactly the values the definition gives; a deliberately wrong decoder
 * run through the same check must fail it, so the check is strict. (2)
 * quantize -> dequantize of random normal data stays within one error bound
 * per type (the table below gives each bound and its reason). (3) rows that
 * are not whole blocks, and types without a codec, are refused. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/dtype.h"
#include "common/quant.h"
#include "common/status.h"
#include "util/test_util.h"

/* ---- exact checks ---- */

/* 1 when got == want element for element (bitwise up to -0 == 0); else prints
 * the first differing index and returns 0. */
static int check_exact(const char *label, const float *got, const float *want, int n) {
    for (int i = 0; i < n; i++) {
        if (got[i] != want[i] || isnan(got[i]) != isnan(want[i])) {
            fprintf(stderr, "%s: element %d of %d: got %.9g want %.9g\n", label, i, n,
                    (double)got[i], (double)want[i]);
            return 0;
        }
    }
    return 1;
}

static void test_plain_known(void **state) {
    const gt_f16 h[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x8000};
    const float hw[6] = {1.0f, -2.0f, 65504.0f, 5.9604644775390625e-8f, 0.333251953125f, -0.0f};
    float y[6];
    assert_int_equal(gt_dequantize_row(GT_F16, h, y, 6), GT_OK);
    assert_true(check_exact("f16", y, hw, 6));
    gt_f16 back[6];
    assert_int_equal(gt_quantize_row(GT_F16, hw, back, 6), GT_OK);
    assert_memory_equal(back, h, sizeof h);
    /* 1/3 rounds to nearest even in both formats */
    const float third = 1.0f / 3.0f;
    assert_int_equal(gt_quantize_row(GT_F16, &third, back, 1), GT_OK);
    assert_int_equal(back[0], 0x3555);
    const gt_bf16 b[3] = {0x3F80, 0xC040, 0x3EAB};
    const float bw[3] = {1.0f, -3.0f, 0.333984375f};
    assert_int_equal(gt_dequantize_row(GT_BF16, b, y, 3), GT_OK);
    assert_true(check_exact("bf16", y, bw, 3));
    gt_bf16 bb;
    assert_int_equal(gt_quantize_row(GT_BF16, &third, &bb, 1), GT_OK);
    assert_int_equal(bb, 0x3EAB);
}

/* Q4_0: d, 16 bytes; byte j holds element j (low nibble) and j+16 (high);
 * x = (q - 8) * d. */
static void build_q4_0(gt_block_q4_0 *b, float *want) {
    b->d = 0x3800; /* 0.5 */
    for (int j = 0; j < 16; j++) {
        const int lo = j, hi = (5 * j + 3) & 15;
        b->qs[j] = (uint8_t)(lo | (hi << 4));
        want[j] = (float)(lo - 8) * 0.5f;
        want[j + 16] = (float)(hi - 8) * 0.5f;
    }
}

/* The same block decoded with the nibbles swapped: must fail the check. */
static void wrong_q4_0_swapped(const gt_block_q4_0 *b, float *y) {
    const float d = gt_f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b->qs[j] >> 4) - 8) * d;
        y[j + 16] = (float)((b->qs[j] & 15) - 8) * d;
    }
}

static void test_q4_0_known(void **state) {
    gt_block_q4_0 b[2];
    float want[64], got[64];
    build_q4_0(&b[0], want);
    build_q4_0(&b[1], want + 32);
    b[1].d = 0xC000; /* -2: second block scales by -2 */
    for (int j = 0; j < 32; j++) want[32 + j] = want[32 + j] / 0.5f * -2.0f;
    assert_int_equal(gt_dequantize_row(GT_Q4_0, b, got, 64), GT_OK);
    assert_true(check_exact("q4_0", got, want, 64));
    /* The check is strict: a decoder with swapped nibbles fails it. */
    wrong_q4_0_swapped(&b[0], got);
    assert_false(check_exact("q4_0 swapped nibbles (expected to fail)", got, want, 32));
}

/* Q4_1: d, m; x = q * d + m. */
static void test_q4_1_known(void **state) {
    gt_block_q4_1 b;
    float want[32], got[32];
    b.d = 0x3400; /* 0.25 */
    b.m = 0xBC00; /* -1 */
    for (int j = 0; j < 16; j++) {
        const int lo = (3 * j) & 15, hi = 15 - j;
        b.qs[j] = (uint8_t)(lo | (hi << 4));
        want[j] = lo * 0.25f - 1.0f;
        want[j + 16] = hi * 0.25f - 1.0f;
    }
    assert_int_equal(gt_dequantize_row(GT_Q4_1, &b, got, 32), GT_OK);
    assert_true(check_exact("q4_1", got, want, 32));
}

/* Q5_0: the fifth bit of element e is bit e of the little-endian qh word;
 * x = (q - 16) * d. */
static void test_q5_0_known(void **state) {
    gt_block_q5_0 b;
    float want[32], got[32];
    b.d = 0x3C00; /* 1 */
    const uint32_t qh = 0xA50F3C81u;
    b.qh[0] = 0x81;
    b.qh[1] = 0x3C;
    b.qh[2] = 0x0F;
    b.qh[3] = 0xA5;
    for (int j = 0; j < 16; j++) {
        const int lo = j, hi = (7 * j + 1) & 15;
        b.qs[j] = (uint8_t)(lo | (hi << 4));
        want[j] = (float)((lo | (int)((qh >> j) & 1) << 4) - 16);
        want[j + 16] = (float)((hi | (int)((qh >> (j + 16)) & 1) << 4) - 16);
    }
    assert_int_equal(gt_dequantize_row(GT_Q5_0, &b, got, 32), GT_OK);
    assert_true(check_exact("q5_0", got, want, 32));
}

/* Q8_0: x = q * d. */
static void test_q8_0_known(void **state) {
    gt_block_q8_0 b;
    float want[32], got[32];
    b.d = 0x3000; /* 0.125 */
    for (int j = 0; j < 32; j++) {
        b.qs[j] = (int8_t)(7 * j - 100);
        want[j] = (float)(7 * j - 100) * 0.125f;
    }
    assert_int_equal(gt_dequantize_row(GT_Q8_0, &b, got, 32), GT_OK);
    assert_true(check_exact("q8_0", got, want, 32));
}

/* Q4_K: eight sub-blocks of 32 with 6-bit scale sc[j] and min mn[j]:
 * bytes 0..3: sc[0..3] | (sc[4..7] >> 4) << 6; bytes 4..7: mn[0..3] |
 * (mn[4..7] >> 4) << 6; bytes 8..11: (sc[4..7] & 15) | (mn[4..7] & 15) << 4.
 * Elements 64c..64c+31 are the low nibbles of qs[32c..32c+31] (sub-block 2c),
 * elements 64c+32.. the high nibbles (sub-block 2c+1); x = d*sc*q - dmin*mn. */
static void test_q4_k_known(void **state) {
    static const uint8_t sc[8] = {1, 2, 3, 4, 17, 33, 49, 63};
    static const uint8_t mn[8] = {0, 5, 10, 15, 20, 40, 60, 63};
    gt_block_q4_K b;
    float want[256], got[256];
    b.d = 0x3C00;    /* 1 */
    b.dmin = 0x3800; /* 0.5 */
    for (int j = 0; j < 4; j++) {
        b.scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        b.scales[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        b.scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++) {
            const int lo = (l + 3 * c) & 15, hi = (11 * l + c) & 15;
            b.qs[32 * c + l] = (uint8_t)(lo | (hi << 4));
            want[64 * c + l] = (float)(sc[2 * c] * lo) - 0.5f * mn[2 * c];
            want[64 * c + 32 + l] = (float)(sc[2 * c + 1] * hi) - 0.5f * mn[2 * c + 1];
        }
    }
    assert_int_equal(gt_dequantize_row(GT_Q4_K, &b, got, 256), GT_OK);
    assert_true(check_exact("q4_k", got, want, 256));
}

/* Q6_K: 6-bit q (ql low nibble/high nibble + 2 bits of qh), 16 int8 scales.
 * In each half n (128 elements, 64 ql bytes, 32 qh bytes, 8 scales), element
 * 32k + l (k = 0..3) takes: k=0 ql[l] low, qh[l] bits 0-1; k=1 ql[l+32] low,
 * bits 2-3; k=2 ql[l] high, bits 4-5; k=3 ql[l+32] high, bits 6-7; its scale
 * is scales[8n + l/16 + 2k]; x = d * scale * (q - 32). */
static void build_q6_k(gt_block_q6_K *b, float *want) {
    memset(b, 0, sizeof *b);
    b->d = 0x3400; /* 0.25 */
    for (int s = 0; s < 16; s++) b->scales[s] = (int8_t)(s % 2 ? 3 * s - 20 : 17 - 2 * s);
    for (int n = 0; n < 2; n++) {
        for (int k = 0; k < 4; k++) {
            for (int l = 0; l < 32; l++) {
                const int e = 128 * n + 32 * k + l, q = (e * 37 + 11) & 63;
                uint8_t *ql = &b->ql[64 * n + l + (k & 1) * 32];
                *ql |= (uint8_t)((q & 15) << (k >= 2 ? 4 : 0));
                b->qh[32 * n + l] |= (uint8_t)((q >> 4) << (2 * k));
                const int scale = b->scales[8 * n + l / 16 + 2 * k];
                want[e] = 0.25f * (float)(scale * (q - 32));
            }
        }
    }
}

static void test_q6_k_known(void **state) {
    gt_block_q6_K b;
    float want[256], got[256];
    build_q6_k(&b, want);
    assert_int_equal(gt_dequantize_row(GT_Q6_K, &b, got, 256), GT_OK);
    assert_true(check_exact("q6_k", got, want, 256));
    /* Strictness: the same bytes with two scales exchanged must not pass. */
    int8_t t = b.scales[0];
    b.scales[0] = b.scales[1];
    b.scales[1] = t;
    assert_int_equal(gt_dequantize_row(GT_Q6_K, &b, got, 256), GT_OK);
    assert_false(check_exact("q6_k swapped scales (expected to fail)", got, want, 256));
}

/* Q8_K: float d, x = d * q. */
static void test_q8_k_known(void **state) {
    gt_block_q8_K b;
    float want[256], got[256];
    memset(&b, 0, sizeof b);
    b.d = -0.0625f;
    for (int j = 0; j < 256; j++) {
        b.qs[j] = (int8_t)((j * 13) % 255 - 127);
        want[j] = -0.0625f * b.qs[j];
    }
    assert_int_equal(gt_dequantize_row(GT_Q8_K, &b, got, 256), GT_OK);
    assert_true(check_exact("q8_k", got, want, 256));
}

/* ---- round trips ---- */

/* Error bounds on N(0, 1) data. `blk_max` bounds max |err| in units of the
 * block's largest |x| (legacy formats, scale from the absmax) or of the
 * block's range max-min (formats with a min); 0 means not checked.
 * `rms` bounds rms(err) / rms(x): uniform rounding with step s gives
 * s/sqrt(12), and a block of 32 normals spans about 4.1 sd (amax about
 * 2.1 sd; 256 normals: amax about 3 sd); each bound is about 1.25x that
 * estimate (measured with seed 42: Q4_0 .086, Q4_1 .080, Q5_0 .043, Q5_1
 * .038, Q8_0 .0054, Q8_K .0068, Q2_K .29, Q3_K .15, Q4_K .071, Q5_K .036,
 * Q6_K .018). */
typedef struct {
    gt_dtype type;
    int qk;
    bool range_based;
    double blk_max;
    double rms;
    const char *why;
} tol_entry;

static const tol_entry k_tol[] = {
    {GT_F32, 1, false, 0, 0, "exact copy"},
    {GT_F16, 1, false, 0, 5e-4, "11-bit significand: relative error <= 2^-11 per element"},
    {GT_BF16, 1, false, 0, 4e-3, "8-bit significand: relative error <= 2^-8 per element"},
    {GT_Q4_0, 32, false, 0.126, 0.11,
     "step d = amax/8; rounding gives d/2, but values of the sign opposite the absmax beyond "
     "7.5 steps clamp to q=15, one full step"},
    {GT_Q4_1, 32, true, 0.5 / 15 * 1.05, 0.10,
     "step (max-min)/15, error <= step/2, plus fp16 rounding of d and m"},
    {GT_Q5_0, 32, false, 0.0626, 0.055,
     "step amax/16; as Q4_0, the clamped opposite extreme may be off by one step"},
    {GT_Q5_1, 32, true, 0.5 / 31 * 1.1, 0.048, "step (max-min)/31, error <= step/2 + fp16 of d, m"},
    {GT_Q8_0, 32, false, 0.5 / 127 * 1.15, 0.007,
     "step amax/127, error <= step/2; fp16 d adds up to 127 * 2^-11 of a step"},
    {GT_Q8_1, 32, false, 0.5 / 127 * 1.15, 0.007, "as Q8_0"},
    {GT_Q8_K, 256, false, 0.5 / 127 * 1.01, 0.0085,
     "step amax/127 with a float d: error <= step/2"},
    {GT_Q2_K, 256, false, 0, 0.37, "2-bit levels with 4-bit scales and mins: step ~ range/3"},
    {GT_Q3_K, 256, false, 0, 0.19, "3-bit signed levels with 6-bit scales: step ~ amax/4"},
    {GT_Q4_K, 256, false, 0, 0.09, "4-bit levels per 32 with 6-bit scales/mins: step ~ range/15"},
    {GT_Q5_K, 256, false, 0, 0.045, "5-bit levels per 32 with 6-bit scales/mins: step ~ range/31"},
    {GT_Q6_K, 256, false, 0, 0.023, "6-bit signed levels per 16 with int8 scales: step ~ amax/32"},
};

static void test_round_trip(void **state) {
    enum { N = 4096 };
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 42);
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    void *q = malloc(N * 4 + 4096);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    for (size_t t = 0; t < sizeof k_tol / sizeof k_tol[0]; t++) {
        const tol_entry *e = &k_tol[t];
        gt_test_fill_normal(&rng, x, N, 1.0f);
        assert_int_equal(gt_quantize_row(e->type, x, q, N), GT_OK);
        assert_int_equal(gt_dequantize_row(e->type, q, y, N), GT_OK);
        double se = 0, sx = 0, worst = 0;
        int worst_i = 0;
        for (int i = 0; i < N; i++) {
            const double err = fabs((double)y[i] - x[i]);
            se += err * err;
            sx += (double)x[i] * x[i];
            if (e->blk_max > 0) {
                const int b0 = i / e->qk * e->qk;
                double lo = INFINITY, hi = -INFINITY, amax = 0;
                for (int j = b0; j < b0 + e->qk; j++) {
                    lo = fmin(lo, x[j]);
                    hi = fmax(hi, x[j]);
                    amax = fmax(amax, fabs(x[j]));
                }
                const double unit = e->range_based ? hi - lo : amax;
                if (err / unit > worst) {
                    worst = err / unit;
                    worst_i = i;
                }
            }
            if (e->type == GT_F32) assert_true(y[i] == x[i]);
            if (e->type == GT_F16 && fabs(x[i]) > 1e-4)
                assert_true(err <= fabs(x[i]) * (1.0 / 2048) * 1.0001);
            if (e->type == GT_BF16) assert_true(err <= fabs(x[i]) * (1.0 / 256) * 1.0001);
        }
        const double rms = sqrt(se / sx);
        const bool ok = rms <= e->rms && (e->blk_max == 0 || worst <= e->blk_max);
        printf("%-5s rms err %.5f (bound %.5f)  worst block-relative %.5f at %d (bound %.5f)\n",
               gt_dtype_name(e->type), rms, e->rms, worst, worst_i, e->blk_max);
        if (!ok) fprintf(stderr, "%s: outside its bound (%s)\n", gt_dtype_name(e->type), e->why);
        assert_true(ok);

        /* An all-zero row stays exactly zero (no division by a zero scale). */
        memset(x, 0, N * sizeof(float));
        assert_int_equal(gt_quantize_row(e->type, x, q, N), GT_OK);
        assert_int_equal(gt_dequantize_row(e->type, q, y, N), GT_OK);
        for (int i = 0; i < N; i++) assert_true(y[i] == 0.0f);
    }
    free(x);
    free(y);
    free(q);
}

/* The quantizers' output decodes to values on the format's grid: re-encoding
 * what was decoded reproduces it (idempotence for the scale-from-absmax
 * formats). */
static void test_requantize_stable(void **state) {
    enum { N = 512 };
    const gt_dtype types[] = {GT_Q8_0, GT_Q4_0, GT_Q5_0, GT_F16, GT_BF16};
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 7);
    float x[N], y[N], z[N];
    uint8_t q[N * 4];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        gt_test_fill_normal(&rng, x, N, 2.0f);
        assert_int_equal(gt_quantize_row(types[t], x, q, N), GT_OK);
        assert_int_equal(gt_dequantize_row(types[t], q, y, N), GT_OK);
        assert_int_equal(gt_quantize_row(types[t], y, q, N), GT_OK);
        assert_int_equal(gt_dequantize_row(types[t], q, z, N), GT_OK);
        assert_true(gt_test_allclose(gt_dtype_name(types[t]), z, y, N, 1e-6, 2e-3));
    }
}

/* ---- refusals ---- */

static void test_awkward_lengths(void **state) {
    float x[512] = {0}, y[512];
    uint8_t q[4096];
    const struct {
        gt_dtype type;
        int64_t n;
    } bad[] = {{GT_Q4_0, 33},  {GT_Q8_0, 31}, {GT_Q4_K, 255}, {GT_Q6_K, 384},
               {GT_Q8_K, 100}, {GT_Q5_1, 48}, {GT_Q2_K, 32},  {GT_Q4_0, -32}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gt_clear_error();
        assert_int_equal(gt_quantize_row(bad[i].type, x, q, bad[i].n), GT_ERR_INVALID_ARG);
        assert_true(strlen(gt_last_error()) > 0);
        assert_int_equal(gt_dequantize_row(bad[i].type, q, y, bad[i].n), GT_ERR_INVALID_ARG);
    }
    assert_int_equal(gt_quantize_row(GT_I8, x, q, 32), GT_ERR_UNSUPPORTED);
    assert_int_equal(gt_dequantize_row(GT_I32, q, y, 32), GT_ERR_UNSUPPORTED);
    assert_int_equal(gt_dequantize_row((gt_dtype)17, q, y, 32), GT_ERR_UNSUPPORTED);
    /* Zero elements is a valid empty row. */
    assert_int_equal(gt_quantize_row(GT_Q4_K, x, q, 0), GT_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_known),     cmocka_unit_test(test_q4_0_known),
        cmocka_unit_test(test_q4_1_known),      cmocka_unit_test(test_q5_0_known),
        cmocka_unit_test(test_q8_0_known),      cmocka_unit_test(test_q4_k_known),
        cmocka_unit_test(test_q6_k_known),      cmocka_unit_test(test_q8_k_known),
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_requantize_stable),
        cmocka_unit_test(test_awkward_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
