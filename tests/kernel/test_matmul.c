/* gt_matmul for every weight type, every ISA this CPU has, awkward shapes
 * and 1..3 threads.
 *
 * Two independent oracles, both double precision over weights dequantized
 * by this file's own block decoders (written from the GGUF layouts, not
 * shared with the library; types without one here use gt_dequantize_row):
 *  - exact:  sum_k x[k] * w[k]; the reference path and the float paths are
 *            compared with it;
 *  - q8:     the same with x first rounded to Q8 blocks (d = amax/127,
 *            round-to-nearest-even), which is what the integer paths compute.
 * The error is measured per output in units of S = sqrt(sum_k (x_k w_k)^2),
 * the natural scale of rounding noise in a dot product (see the table). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/quant.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/kernels.h"
#include "util/test_util.h"

/* ---- independent block decoders ---- */

static float h2f(const uint8_t *p) { return gt_f16_to_f32((gt_f16)(p[0] | p[1] << 8)); }

static void kscale(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Dequantizes one row; false when this file has no decoder for the type. */
static int test_dequant(gt_dtype t, const uint8_t *r, double *y, int64_t n) {
    switch (t) {
    case GT_F32:
        for (int64_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, r + 4 * i, 4);
            y[i] = f;
        }
        return 1;
    case GT_F16:
        for (int64_t i = 0; i < n; i++) y[i] = h2f(r + 2 * i);
        return 1;
    case GT_BF16:
        for (int64_t i = 0; i < n; i++) y[i] = gt_bf16_to_f32((gt_bf16)(r[2 * i] | r[2 * i + 1] << 8));
        return 1;
    case GT_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, r += 34)
            for (int j = 0; j < 32; j++) y[32 * b + j] = h2f(r) * (int8_t)r[2 + j];
        return 1;
    case GT_Q4_0:
    case GT_Q4_1: {
        int m1 = t == GT_Q4_1, bs = m1 ? 20 : 18;
        for (int64_t b = 0; b < n / 32; b++, r += bs) {
            double d = h2f(r), m = m1 ? h2f(r + 2) : 0;
            const uint8_t *q = r + (m1 ? 4 : 2);
            for (int j = 0; j < 16; j++) {
                y[32 * b + j] = m1 ? d * (q[j] & 15) + m : d * ((q[j] & 15) - 8);
                y[32 * b + 16 + j] = m1 ? d * (q[j] >> 4) + m : d * ((q[j] >> 4) - 8);
            }
        }
        return 1;
    }
    case GT_Q5_0:
    case GT_Q5_1: {
        int m1 = t == GT_Q5_1, bs = m1 ? 24 : 22;
        for (int64_t b = 0; b < n / 32; b++, r += bs) {
            double d = h2f(r), m = m1 ? h2f(r + 2) : 0;
            const uint8_t *h = r + (m1 ? 4 : 2), *q = h + 4;
            uint32_t qh = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
            for (int j = 0; j < 32; j++) {
                int v = (j < 16 ? q[j] & 15 : q[j - 16] >> 4) | (int)((qh >> j) & 1) << 4;
                y[32 * b + j] = m1 ? d * v + m : d * (v - 16);
            }
        }
        return 1;
    }
    case GT_Q4_K:
        for (int64_t b = 0; b < n / 256; b++, r += 144) {
            double d = h2f(r), dm = h2f(r + 2);
            const uint8_t *q = r + 16;
            for (int s = 0; s < 8; s++) {
                int sc, mn;
                kscale(s, r + 4, &sc, &mn);
                for (int l = 0; l < 32; l++) {
                    int v = (s & 1) ? q[32 * (s / 2) + l] >> 4 : q[32 * (s / 2) + l] & 15;
                    y[256 * b + 32 * s + l] = d * sc * v - dm * mn;
                }
            }
        }
        return 1;
    case GT_Q5_K:
        for (int64_t b = 0; b < n / 256; b++, r += 176) {
            double d = h2f(r), dm = h2f(r + 2);
            const uint8_t *qh = r + 16, *q = r + 48;
            for (int e = 0; e < 256; e++) {
                int s = e / 32, l = e % 32, sc, mn;
                kscale(s, r + 4, &sc, &mn);
                int v = (s & 1) ? q[32 * (s / 2) + l] >> 4 : q[32 * (s / 2) + l] & 15;
                v |= ((qh[l] >> s) & 1) << 4;
                y[256 * b + e] = d * sc * v - dm * mn;
            }
        }
        return 1;
    case GT_Q3_K: /* hmask[32] qs[64] scales[12] d */
        for (int64_t b = 0; b < n / 256; b++, r += 110) {
            const uint8_t *hm = r, *q = r + 32, *sc = r + 96;
            double d = h2f(r + 108);
            for (int e = 0; e < 256; e++) {
                int s = e / 32, l = e % 32, j = e / 16;
                int v = ((q[32 * (s / 4) + l] >> (2 * (s % 4))) & 3) + 4 * ((hm[l] >> s) & 1) - 4;
                int lo = j < 8 ? sc[j] & 15 : sc[j - 8] >> 4,
                    hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
                y[256 * b + e] = d * ((lo | hi << 4) - 32) * v;
            }
        }
        return 1;
    case GT_Q2_K: /* scales[16] qs[64] d dmin */
        for (int64_t b = 0; b < n / 256; b++, r += 84) {
            const uint8_t *sc = r, *q = r + 16;
            double d = h2f(r + 80), dm = h2f(r + 82);
            for (int e = 0; e < 256; e++) {
                int s = e / 32, l = e % 32, j = e / 16;
                int v = (q[32 * (s / 4) + l] >> (2 * (s % 4))) & 3;
                y[256 * b + e] = d * (sc[j] & 15) * v - dm * (sc[j] >> 4);
            }
        }
        return 1;
    case GT_Q6_K:
        for (int64_t b = 0; b < n / 256; b++, r += 210) {
            const uint8_t *ql = r, *qh = r + 128;
            const int8_t *sc = (const int8_t *)(r + 192);
            double d = h2f(r + 208);
            for (int e = 0; e < 256; e++) {
                int half = e / 128, l = e % 32, g = (e % 128) / 32;
                int lo = ql[64 * half + l + (g & 1) * 32];
                lo = g >= 2 ? lo >> 4 : lo & 15;
                int hi = (qh[32 * half + l] >> (2 * g)) & 3;
                y[256 * b + e] = d * sc[e / 16] * ((lo | hi << 4) - 32);
            }
        }
        return 1;
    default: return 0;
    }
}

/* Random blocks with sane scales: random bytes, then the f16/f32 scale
 * fields overwritten with values around 0.01. */
static void put_h(uint8_t *p, float f) {
    gt_f16 h = gt_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static uint8_t *make_weights(gt_test_rng *g, gt_dtype t, int64_t n_in, int64_t n_out, size_t *rb) {
    const gt_dtype_info *info = gt_dtype_get(t);
    assert_true(gt_dtype_row_bytes(t, n_in, rb));
    size_t total = *rb * (size_t)n_out;
    uint8_t *w = malloc(total);
    for (size_t i = 0; i < total; i++) w[i] = (uint8_t)gt_test_rng_u64(g);
    int64_t nblk = (int64_t)(total / info->block_bytes);
    for (int64_t i = 0; i < nblk; i++) {
        uint8_t *b = w + (size_t)i * info->block_bytes;
        float s = gt_test_rng_uniform(g, 0.002f, 0.02f), s2 = gt_test_rng_uniform(g, -0.05f, 0.05f);
        switch (t) {
        case GT_F32: {
            float f = gt_test_rng_normal(g);
            memcpy(b, &f, 4);
            break;
        }
        case GT_F16: put_h(b, gt_test_rng_normal(g)); break;
        case GT_BF16: {
            gt_bf16 h = gt_f32_to_bf16(gt_test_rng_normal(g));
            memcpy(b, &h, 2);
            break;
        }
        case GT_Q4_0: case GT_Q5_0: case GT_Q8_0: put_h(b, s); break;
        case GT_Q4_1: case GT_Q5_1: case GT_Q8_1: put_h(b, s); put_h(b + 2, s2); break;
        case GT_Q4_K: case GT_Q5_K: put_h(b, s * 0.1f); put_h(b + 2, s * 0.1f); break;
        case GT_Q2_K: put_h(b + 80, s); put_h(b + 82, s); break;
        case GT_Q3_K: put_h(b + 108, s); break;
        case GT_Q6_K: put_h(b + 208, s * 0.05f); break;
        case GT_Q8_K: memcpy(b, &s, 4); break;
        default: break;
        }
    }
    return w;
}

/* x rounded the way the integer paths quantize activations. */
static void q8_round(const float *x, double *xq, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 32; j++) xq[32 * b + j] = (double)d * nearbyintf(x[32 * b + j] * id);
    }
}

/* ---- tolerance table: error / S per (weight type, activation) ---- */
/* exact: fp32 accumulation of n <= ~1000 products in a different order than
 *        the double oracle: ~sqrt(n) * 2^-24 relative to S, worst case well
 *        under 2e-5.
 * q8 exact-scale (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 on AVX-512): integer dot is
 *        exact; left is fp32 scaling/accumulation, plus d*sum(q) in fp32 for
 *        Q4_1/Q5_1:
 *        1e-4.
 * q8 K-quant (Q2_K..Q6_K on AVX-512 and AVX2): the repacked per-32 (per-16)
 *        scales d*sc and dmin*m are rounded to f16 (2^-12 relative per
 *        block, independent across blocks): 2e-3.
 * The float-vs-q8 gap (not checked against: it is the rounding of x to 8
 * bits, about S/176 per output for normal x) is why the q8 oracle exists. */
static double tolerance(gt_dtype t, int q8act) {
    if (!q8act) return 2e-5;
    if (t >= GT_Q2_K && t <= GT_Q6_K) return 2e-3;
    return 1e-4;
}

/* The AVX2 and AVX-512 panel paths both quantize activations to 8 bits. */
static int uses_q8(gt_dtype t, const char *isa) {
    if (strcmp(isa, "avx512") && strcmp(isa, "avx2")) return 0;
    return t == GT_Q4_0 || t == GT_Q4_1 || t == GT_Q5_0 || t == GT_Q5_1 || t == GT_Q8_0 ||
           (t >= GT_Q2_K && t <= GT_Q6_K);
}

/* |got - want| <= tol * S per element; prints the worst on failure. */
static int check(const char *label, const float *got, const double *want, const double *S,
                 size_t n, double tol) {
    double worst = -1;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (tol * S[i] + 1e-30);
        if (!(e <= worst) || isnan(got[i])) {
            worst = isnan(got[i]) ? INFINITY : e;
            wi = i;
        }
    }
    if (worst <= 1.0) return 1;
    fprintf(stderr, "%s: worst error %.3g x tolerance at index %zu: got %.9g want %.9g (S %.3g)\n",
            label, worst, wi, (double)got[wi], want[wi], S[wi]);
    return 0;
}

/* Oracle y[t][o] (double) and S for given dequantized weights. */
static void oracle(const double *wd, const double *xd, int64_t n_in, int64_t n_out, int64_t n_tok,
                   double *y, double *S) {
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, s2 = 0;
            for (int64_t k = 0; k < n_in; k++) {
                double p = xd[t * n_in + k] * wd[o * n_in + k];
                s += p;
                s2 += p * p;
            }
            y[t * n_out + o] = s;
            S[t * n_out + o] = sqrt(s2) + 1e-12;
        }
}

#define N_ISA 3
static const char *ISAS[N_ISA] = {"ref", "avx2", "avx512"};
static gt_kernels *KS[N_ISA][3]; /* [isa][threads-1], NULL when unavailable */

static int setup(void **state) {
    for (int i = 0; i < N_ISA; i++)
        for (int n = 1; n <= 3; n++) {
            gt_kernels_config cfg = GT_KERNELS_CONFIG_INIT;
            cfg.n_threads = n;
            cfg.isa = ISAS[i];
            cfg.bf16 = "off"; /* F16/BF16 in fp32: test_matmul_bf16/_fp16 test the others */
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

/* Runs one type over all shapes, ISAs and thread counts. */
static void run_type(gt_dtype t) {
    const gt_dtype_info *info = gt_dtype_get(t);
    int be = info->block_elems;
    int64_t n_ins[2] = {be == 1 ? 101 : 3 * be, be == 256 ? 256 * 5 : be == 1 ? 1000 : 32 * 33};
    static const int64_t N_OUT[] = {1, 3, 17, 33, 257};
    static const int64_t N_TOK[] = {1, 2, 3, 5, 7, 17, 64};
    gt_test_rng g;
    gt_test_rng_seed(&g, 1234 + (uint64_t)t);
    for (int ii = 0; ii < 2; ii++) {
        int64_t n_in = n_ins[ii];
        for (size_t oi = 0; oi < sizeof N_OUT / sizeof *N_OUT; oi++) {
            int64_t n_out = N_OUT[oi];
            size_t rb;
            uint8_t *w = make_weights(&g, t, n_in, n_out, &rb);
            double *wd = malloc(sizeof(double) * (size_t)(n_in * n_out));
            float *tmp = malloc(sizeof(float) * (size_t)n_in);
            for (int64_t o = 0; o < n_out; o++)
                if (!test_dequant(t, w + (size_t)o * rb, wd + o * n_in, n_in)) {
                    assert_int_equal(gt_dequantize_row(t, w + (size_t)o * rb, tmp, n_in), GT_OK);
                    for (int64_t k = 0; k < n_in; k++) wd[o * n_in + k] = tmp[k];
                }
            for (size_t ti = 0; ti < sizeof N_TOK / sizeof *N_TOK; ti++) {
                int64_t n_tok = N_TOK[ti];
                /* Big second n_in only with a few shapes, to keep the run short. */
                if (ii == 1 && n_tok > 7 && n_out > 33) continue;
                size_t ny = (size_t)(n_tok * n_out), nx = (size_t)(n_tok * n_in);
                float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
                double *xd = malloc(sizeof(double) * nx), *xq = malloc(sizeof(double) * nx);
                double *ye = malloc(sizeof(double) * ny), *yq = malloc(sizeof(double) * ny);
                double *Se = malloc(sizeof(double) * ny), *Sq = malloc(sizeof(double) * ny);
                gt_test_fill_normal(&g, x, nx, 1.0f);
                for (size_t i = 0; i < nx; i++) xd[i] = x[i];
                oracle(wd, xd, n_in, n_out, n_tok, ye, Se);
                if (n_in % 32 == 0) {
                    for (int64_t tt = 0; tt < n_tok; tt++) q8_round(x + tt * n_in, xq + tt * n_in, n_in);
                    oracle(wd, xq, n_in, n_out, n_tok, yq, Sq);
                }
                for (int i = 0; i < N_ISA; i++)
                    for (int n = 1; n <= 3; n++) {
                        gt_kernels *k = KS[i][n - 1];
                        if (!k) continue;
                        if (n > 1 && ii == 1) continue;
                        gt_weight wt;
                        assert_int_equal(gt_weight_init(k, t, n_in, n_out, w, &wt), GT_OK);
                        for (size_t j = 0; j < ny; j++) y[j] = NAN;
                        assert_int_equal(gt_matmul(k, &wt, x, y, n_tok), GT_OK);
                        int q8 = uses_q8(t, ISAS[i]);
                        char label[160];
                        snprintf(label, sizeof label, "%s isa=%s threads=%d n_in=%lld n_out=%lld n_tok=%lld",
                                 info->name, ISAS[i], n, (long long)n_in, (long long)n_out, (long long)n_tok);
                        int ok = check(label, y, q8 ? yq : ye, q8 ? Sq : Se, ny, tolerance(t, q8));
                        gt_weight_free(&wt);
                        if (!ok) fail_msg("%s", label);
                    }
                free(x); free(y); free(xd); free(xq); free(ye); free(yq); free(Se); free(Sq);
            }
            free(w);
            free(wd);
            free(tmp);
        }
    }
}

#define TYPE_TEST(T) static void test_##T(void **state) { run_type(GT_##T); }
TYPE_TEST(F32) TYPE_TEST(F16) TYPE_TEST(BF16) TYPE_TEST(Q4_0) TYPE_TEST(Q4_1) TYPE_TEST(Q5_0)
TYPE_TEST(Q5_1) TYPE_TEST(Q8_0) TYPE_TEST(Q8_1) TYPE_TEST(Q2_K) TYPE_TEST(Q3_K) TYPE_TEST(Q4_K)
TYPE_TEST(Q5_K) TYPE_TEST(Q6_K) TYPE_TEST(Q8_K)

/* Test the test: Q8_0 / Q4_K weights whose scales are all 1% off must fail
 * the comparison on every ISA (the tolerance is far below 1% of S). */
static void perturbed_scales_fail(gt_dtype t) {
    const int64_t n_in = 256 * 3, n_out = 19, n_tok = 5;
    gt_test_rng g;
    gt_test_rng_seed(&g, 99);
    size_t rb;
    uint8_t *w = make_weights(&g, t, n_in, n_out, &rb);
    uint8_t *wbad = malloc(rb * (size_t)n_out);
    memcpy(wbad, w, rb * (size_t)n_out);
    size_t bs = gt_dtype_get(t)->block_bytes;
    for (size_t off = 0; off < rb * (size_t)n_out; off += bs)
        put_h(wbad + off, h2f(wbad + off) * 1.01f); /* d is the first field of both */
    double *wd = malloc(sizeof(double) * (size_t)(n_in * n_out));
    for (int64_t o = 0; o < n_out; o++) assert_true(test_dequant(t, w + (size_t)o * rb, wd + o * n_in, n_in));
    float x[5 * 768], y[5 * 19];
    double xd[5 * 768], ye[5 * 19], Se[5 * 19], yq[5 * 19], Sq[5 * 19];
    gt_test_fill_normal(&g, x, (size_t)(n_tok * n_in), 1.0f);
    for (int64_t i = 0; i < n_tok * n_in; i++) xd[i] = x[i];
    oracle(wd, xd, n_in, n_out, n_tok, ye, Se);
    for (int64_t tt = 0; tt < n_tok; tt++) q8_round(x + tt * n_in, xd + tt * n_in, n_in);
    oracle(wd, xd, n_in, n_out, n_tok, yq, Sq);
    for (int i = 0; i < N_ISA; i++) {
        gt_kernels *k = KS[i][0];
        if (!k) continue;
        int q8 = uses_q8(t, ISAS[i]);
        gt_weight wt;
        assert_int_equal(gt_weight_init(k, t, n_in, n_out, w, &wt), GT_OK);
        assert_int_equal(gt_matmul(k, &wt, x, y, n_tok), GT_OK);
        assert_true(check("good", y, q8 ? yq : ye, q8 ? Sq : Se, (size_t)(n_tok * n_out), tolerance(t, q8)));
        gt_weight_free(&wt);
        assert_int_equal(gt_weight_init(k, t, n_in, n_out, wbad, &wt), GT_OK);
        assert_int_equal(gt_matmul(k, &wt, x, y, n_tok), GT_OK);
        fprintf(stderr, "(expected) ");
        assert_false(check("perturbed", y, q8 ? yq : ye, q8 ? Sq : Se, (size_t)(n_tok * n_out), tolerance(t, q8)));
        gt_weight_free(&wt);
    }
    free(w);
    free(wbad);
    free(wd);
}
static void test_perturbed_q8_0(void **state) { perturbed_scales_fail(GT_Q8_0); }
static void test_perturbed_q4_k(void **state) { perturbed_scales_fail(GT_Q4_K); }

/* A prompt-sized batch: more tokens than one prefill token chunk (192 for
 * the float panels, at most 252 for the quant panels) and several k blocks
 * with a partial last one, on 1 and 2 threads, for the types whose prefill
 * tiles differ (float, nibbles, nibbles + bit planes, two half scales). */
static void big_batch(gt_dtype t, int64_t n_in, int64_t n_out) {
    const int64_t n_tok = 261;
    gt_test_rng g;
    gt_test_rng_seed(&g, 4321 + (uint64_t)t);
    size_t rb;
    uint8_t *w = make_weights(&g, t, n_in, n_out, &rb);
    size_t nx = (size_t)(n_tok * n_in), ny = (size_t)(n_tok * n_out);
    double *wd = malloc(sizeof(double) * (size_t)(n_in * n_out));
    float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
    double *xd = malloc(sizeof(double) * nx), *ye = malloc(sizeof(double) * ny);
    double *Se = malloc(sizeof(double) * ny);
    for (int64_t o = 0; o < n_out; o++) assert_true(test_dequant(t, w + (size_t)o * rb, wd + o * n_in, n_in));
    gt_test_fill_normal(&g, x, nx, 1.0f);
    for (int i = 0; i < N_ISA; i++)
        for (int n = 1; n <= 2; n++) {
            gt_kernels *k = KS[i][n - 1];
            if (!k) continue;
            int q8 = uses_q8(t, ISAS[i]);
            for (size_t j = 0; j < nx; j++) xd[j] = x[j];
            if (q8)
                for (int64_t tt = 0; tt < n_tok; tt++) q8_round(x + tt * n_in, xd + tt * n_in, n_in);
            oracle(wd, xd, n_in, n_out, n_tok, ye, Se);
            gt_weight wt;
            assert_int_equal(gt_weight_init(k, t, n_in, n_out, w, &wt), GT_OK);
            for (size_t j = 0; j < ny; j++) y[j] = NAN;
            assert_int_equal(gt_matmul(k, &wt, x, y, n_tok), GT_OK);
            char label[160];
            snprintf(label, sizeof label, "big batch %s isa=%s threads=%d n_tok=%lld",
                     gt_dtype_name(t), ISAS[i], n, (long long)n_tok);
            int ok = check(label, y, ye, Se, ny, tolerance(t, q8));
            gt_weight_free(&wt);
            if (!ok) fail_msg("%s", label);
        }
    free(w); free(wd); free(x); free(y); free(xd); free(ye); free(Se);
}
static void test_big_batch_f16(void **state) { big_batch(GT_F16, 32 * 37, 45); }
static void test_big_batch_q4_0(void **state) { big_batch(GT_Q4_0, 32 * 37, 45); }
static void test_big_batch_q5_0(void **state) { big_batch(GT_Q5_0, 32 * 37, 45); }
static void test_big_batch_q6_k(void **state) { big_batch(GT_Q6_K, 256 * 5, 45); }
/* More panels than two of the float prefill's panel groups (GT_MM_PF_PG),
 * the last group partial and ending in a partial panel. */
static void test_big_batch_groups(void **state) {
    big_batch(GT_F32, 300, 2 * GT_MM_PF_PG * 16 + 20);
    big_batch(GT_F16, 300, 2 * GT_MM_PF_PG * 16 + 20);
}

static void test_bad_args(void **state) {
    gt_weight w;
    uint8_t buf[64] = {0};
    assert_int_equal(gt_weight_init(KS[0][0], GT_Q4_0, 33, 1, buf, &w), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_weight_init(KS[0][0], GT_I32, 4, 1, buf, &w), GT_ERR_UNSUPPORTED);
    assert_false(gt_kernels_matmul_supports(KS[0][0], GT_I8));
    assert_true(gt_kernels_matmul_supports(KS[0][0], GT_Q6_K));
    gt_weight_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_F32),
        cmocka_unit_test(test_F16),
        cmocka_unit_test(test_BF16),
        cmocka_unit_test(test_Q4_0),
        cmocka_unit_test(test_Q4_1),
        cmocka_unit_test(test_Q5_0),
        cmocka_unit_test(test_Q5_1),
        cmocka_unit_test(test_Q8_0),
        cmocka_unit_test(test_Q8_1),
        cmocka_unit_test(test_Q2_K),
        cmocka_unit_test(test_Q3_K),
        cmocka_unit_test(test_Q4_K),
        cmocka_unit_test(test_Q5_K),
        cmocka_unit_test(test_Q6_K),
        cmocka_unit_test(test_Q8_K),
        cmocka_unit_test(test_perturbed_q8_0),
        cmocka_unit_test(test_perturbed_q4_k),
        cmocka_unit_test(test_big_batch_f16),
        cmocka_unit_test(test_big_batch_q4_0),
        cmocka_unit_test(test_big_batch_q5_0),
        cmocka_unit_test(test_big_batch_q6_k),
        cmocka_unit_test(test_big_batch_groups),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
