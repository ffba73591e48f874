/* The AVX2 matrix-product kernels (kernels/cpu/matmul_avx2_{q,f}.c) called
 * directly on panels packed by gt__mm_pack: every type with a panel path,
 * awkward shapes, one thread over the whole panel range.
 *
 * Three comparisons per case:
 *  (a) the reference gt__mm_ref_rows (dequantized GGUF rows, fp32 dot) with
 *      the tolerance table of tests/kernel/test_matmul.c, in units of
 *      S = sqrt(sum_k (x_k w_k)^2). For the quant kinds the reference gets x
 *      already rounded to Q8 by this file's own scalar quantizer (d =
 *      amax/127, round to nearest even), which is what the integer paths
 *      compute; the quantizer itself is checked code for code against it;
 *  (b) when the CPU has AVX-512 VNNI, the AVX-512 kernels on the same packed
 *      weights: quantized blocks byte-identical and outputs within 1e-6 of
 *      A = sum_k |x_k w_k| (the scale of fp32 reordering error; the kernels
 *      are designed to agree to the bit, and the count of bit-identical
 *      outputs is printed);
 *  (c) the panel range split in two calls gives the same bits as one call.
 * Plus: extreme codes and activations that would saturate a naive int16
 * vpmaddubsw, and a deliberately wrong weight (scales 1% off) that must
 * fail (a) and (b). */
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
#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/cpu.h"
#include "util/test_util.h"

static gt_cpu_features CPU;
static int HAVE_512; /* the AVX-512 kernels can run here (cross-check b) */

/* ---- weights ---- */

static void put_h(uint8_t *p, float f) {
    gt_f16 h = gt_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* Scale fields of every block set to values around 0.01 (the rest of each
 * block keeps its bytes). */
static void set_scales(gt_test_rng *g, gt_dtype t, uint8_t *w, size_t total) {
    const gt_dtype_info *info = gt_dtype_get(t);
    for (size_t off = 0; off + info->block_bytes <= total; off += info->block_bytes) {
        uint8_t *b = w + off;
        float s = gt_test_rng_uniform(g, 0.002f, 0.02f), s2 = gt_test_rng_uniform(g, -0.05f, 0.05f);
        switch (t) {
        case GT_F32: {
            float f = gt_test_rng_normal(g);
            memcpy(b, &f, 4);
            break;
        }
        case GT_F16:
            put_h(b, gt_test_rng_normal(g));
            break;
        case GT_BF16: {
            gt_bf16 h = gt_f32_to_bf16(gt_test_rng_normal(g));
            memcpy(b, &h, 2);
            break;
        }
        case GT_Q4_0:
        case GT_Q5_0:
        case GT_Q8_0:
            put_h(b, s);
            break;
        case GT_Q4_1:
        case GT_Q5_1:
            put_h(b, s);
            put_h(b + 2, s2);
            break;
        case GT_Q4_K:
        case GT_Q5_K:
            put_h(b, s * 0.1f);
            put_h(b + 2, s * 0.1f);
            break;
        case GT_Q2_K:
            put_h(b + 80, s);
            put_h(b + 82, s);
            break;
        case GT_Q3_K:
            put_h(b + 108, s);
            break;
        case GT_Q6_K:
            put_h(b + 208, s * 0.05f);
            break;
        default:
            break;
        }
    }
}

/* Random GGUF rows [n_out][n_in] of type t; *rb = bytes per row. */
static uint8_t *make_weights(gt_test_rng *g, gt_dtype t, int64_t n_in, int64_t n_out, size_t *rb) {
    assert_true(gt_dtype_row_bytes(t, n_in, rb));
    size_t total = *rb * (size_t)n_out;
    uint8_t *w = malloc(total);
    for (size_t i = 0; i < total; i++) w[i] = (uint8_t)gt_test_rng_u64(g);
    set_scales(g, t, w, total);
    return w;
}

static int is_float(gt_dtype t) { return t == GT_F32 || t == GT_F16 || t == GT_BF16; }

/* ---- this file's scalar activation quantizer ---- */

static void q8_ref(gt_mm_qkind kind, const float *x, int64_t n_in, gt_mm_q8a *q) {
    for (int64_t b = 0; b < n_in / 32; b++) {
        const float *xs = x + 32 * b;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xs[j]));
        float d = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t s0 = 0, s1 = 0;
        for (int j = 0; j < 32; j++) {
            int v = (int)nearbyintf(xs[j] * id);
            q[b].qs[j] = (int8_t)v;
            if (j < 16)
                s0 += v;
            else
                s1 += v;
        }
        q[b].d = d;
        q[b].ds = d * (float)(s0 + s1);
        /* the codes' offsets: per block, per half (N6H: 32, C3H: 4), none
         * with a min; C2HM (min per half) carries the halves' sums */
        int off = kind == GT_MMQ_B8 ? 128 : kind == GT_MMQ_N4 ? 8 : kind == GT_MMQ_N5 ? 16 : 0;
        int hoff = kind == GT_MMQ_N6H ? 32 : kind == GT_MMQ_C3H ? 4 : 0;
        q[b].c0 = kind == GT_MMQ_C2HM ? s0 : hoff ? -hoff * s0 : -off * (s0 + s1);
        q[b].c1 = kind == GT_MMQ_C2HM ? s1 : hoff ? -hoff * s1 : 0;
    }
}

/* ---- tolerance table (test_matmul.c's, same reasons) ---- */
/* float:  fp32 accumulation of <= ~1000 products in another order than the
 *         reference: ~sqrt(n) 2^-24 of S, well under 2e-5.
 * quant, exact scales (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): the integer dot is
 *         exact; left is fp32 scaling and accumulation (and d*sum(q) for
 *         Q4_1/Q5_1): 1e-4.
 * quant K (Q2_K..Q6_K): the panel's per-32 (per-16) scales d*sc, dmin*m are
 *         rounded to f16 (2^-12 relative per block, independent): 2e-3.
 * AVX-512 cross-check: 1e-6 of A = sum|x_k w_k| (reordered fp32 sums of
 *         nb block terms err by ~sqrt(nb) 2^-24 A; identical order: 0). */
static int is_k(gt_dtype t) { return t >= GT_Q2_K && t <= GT_Q6_K; }

static double tolerance(gt_dtype t) {
    if (is_float(t)) return 2e-5;
    if (is_k(t)) return 2e-3;
    return 1e-4;
}
#define XTOL 1e-6

/* |got - want| <= tol * scale per element (NaN fails); prints the worst. */
static int check(const char *label, const float *got, const float *want, const double *scale,
                 size_t n, double tol) {
    double worst = -1;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]) / (tol * scale[i] + 1e-30);
        if (isnan(got[i]) || isnan(want[i])) e = INFINITY;
        if (e > worst) {
            worst = e;
            wi = i;
        }
    }
    if (worst <= 1.0) return 1;
    fprintf(stderr,
            "%s: worst error %.3g x tolerance at index %zu: got %.9g want %.9g (scale %.3g)\n",
            label, worst, wi, (double)got[wi], (double)want[wi], scale[wi]);
    return 0;
}

/* ---- one case ---- */

typedef struct {
    gt_dtype t;
    int64_t n_in, n_out, n_tok;
    const uint8_t *w; /* GGUF rows [n_out][n_in] */
    const float *wd;  /* the same dequantized by the library codec, [n_out][n_in] */
    uint8_t *packed;  /* panels of w, gt__mm_pack */
    const float *x;   /* [n_tok][n_in] */
} mm_case;

typedef struct {
    float *y2; /* AVX2 [n_tok][n_out] */
    float *yr; /* reference */
    double *S, *A;
    gt_mm_q8a *q; /* AVX2-quantized activations [n_tok][nb] */
} mm_out;

static void out_alloc(const mm_case *c, mm_out *o) {
    size_t ny = (size_t)(c->n_tok * c->n_out), nq = (size_t)(c->n_tok * (c->n_in / 32)) + 1;
    o->y2 = malloc(sizeof(float) * ny);
    o->yr = malloc(sizeof(float) * ny);
    o->S = malloc(sizeof(double) * ny);
    o->A = malloc(sizeof(double) * ny);
    o->q = malloc(sizeof(gt_mm_q8a) * nq);
}

static void out_free(mm_out *o) {
    free(o->y2);
    free(o->yr);
    free(o->S);
    free(o->A);
    free(o->q);
}

static void pack(gt_dtype t, int64_t n_in, int64_t n_out, const uint8_t *w, uint8_t **packed) {
    int layout = is_float(t) ? GT_MM_PF : GT_MM_PQ;
    size_t bytes = gt__mm_packed_bytes(t, layout, n_in, n_out);
    *packed = gt_alloc(bytes);
    assert_non_null(*packed);
    gt__mm_pack(t, layout, n_in, n_out, w, *packed, 0, gt__mm_n_panels(n_out));
}

/* The AVX2 kernel on panels [p0, p1) (quantizing x first for quant types). */
static void run_avx2(const mm_case *c, const uint8_t *packed, gt_mm_q8a *q, float *y, int64_t p0,
                     int64_t p1) {
    if (is_float(c->t)) {
        size_t nf = gt__mm_pf_avx2_scratch_floats(c->n_tok);
        float *scratch = nf ? gt_alloc(nf * sizeof(float)) : NULL;
        gt__mm_pf_avx2(c->t, packed, c->n_in, c->n_out, c->x, y, c->n_tok, p0, p1, scratch);
        gt_free(scratch);
        return;
    }
    gt_mm_qkind kind = gt__mm_qkind(c->t);
    gt__mm_quantize_avx2(kind, c->x, c->n_in, 0, c->n_tok, 0, c->n_in / 32, q);
    gt__mm_pq_avx2(kind, packed, c->n_in, c->n_out, q, y, c->n_tok, p0, p1);
}

/* Runs the AVX2 kernel and the reference into o; returns 1 when (a) and the
 * quantizer check pass. coherent: the data make every block's rounding
 * error the same sign (extreme codes), so errors add up linearly rather
 * than like a random walk; K-quants are then held to their per-block scale
 * rounding (2^-11 relative for each of the two scale terms) times A. */
static int run_and_check_ref(const mm_case *c, const uint8_t *packed, mm_out *o, const char *label,
                             int coherent) {
    int64_t nb = c->n_in / 32, np = gt__mm_n_panels(c->n_out);
    size_t ny = (size_t)(c->n_tok * c->n_out), nx = (size_t)(c->n_tok * c->n_in);
    for (size_t i = 0; i < ny; i++) o->y2[i] = NAN;
    run_avx2(c, packed, o->q, o->y2, 0, np);
    const float *xin = c->x; /* what the reference multiplies */
    float *xq = NULL;
    int ok = 1;
    if (!is_float(c->t)) {
        gt_mm_qkind kind = gt__mm_qkind(c->t);
        gt_mm_q8a *qr = malloc(sizeof(gt_mm_q8a) * (size_t)(c->n_tok * nb));
        xq = malloc(sizeof(float) * nx);
        for (int64_t t = 0; t < c->n_tok; t++)
            q8_ref(kind, c->x + t * c->n_in, c->n_in, qr + t * nb);
        for (int64_t i = 0; i < c->n_tok * nb; i++)
            if (memcmp(&qr[i], &o->q[i], sizeof(gt_mm_q8a)) != 0) {
                fprintf(stderr,
                        "%s: quantized block %lld differs from the scalar quantizer "
                        "(d %.9g vs %.9g, c0 %d vs %d)\n",
                        label, (long long)i, (double)o->q[i].d, (double)qr[i].d, o->q[i].c0,
                        qr[i].c0);
                ok = 0;
                break;
            }
        for (int64_t i = 0; i < c->n_tok * nb; i++)
            for (int j = 0; j < 32; j++) xq[32 * i + j] = qr[i].d * (float)qr[i].qs[j];
        xin = xq;
        free(qr);
    }
    float *tmp = malloc(sizeof(float) * (size_t)c->n_in);
    gt__mm_ref_rows(c->t, c->w, c->n_in, c->n_out, xin, o->yr, c->n_tok, 0, c->n_out, tmp);
    free(tmp);
    for (int64_t t = 0; t < c->n_tok; t++)
        for (int64_t r = 0; r < c->n_out; r++) {
            double s2 = 0, sa = 0;
            for (int64_t k = 0; k < c->n_in; k++) {
                double p = (double)xin[t * c->n_in + k] * c->wd[r * c->n_in + k];
                s2 += p * p;
                sa += fabs(p);
            }
            o->S[t * c->n_out + r] = sqrt(s2) + 1e-12;
            o->A[t * c->n_out + r] = sa + 1e-12;
        }
    free(xq);
    char l2[200];
    snprintf(l2, sizeof l2, "%s vs reference", label);
    int kq = is_k(c->t);
    if (coherent && kq) return check(l2, o->y2, o->yr, o->A, ny, 1e-3) && ok;
    return check(l2, o->y2, o->yr, o->S, ny, tolerance(c->t)) && ok;
}

/* The AVX-512 kernels on the same packed weights into y5; returns 1 when
 * the quantized blocks are identical and y2 agrees within XTOL * A. */
static int check_avx512(const mm_case *c, const uint8_t *packed, const mm_out *o, const char *label,
                        long *n_same) {
    int64_t nb = c->n_in / 32, np = gt__mm_n_panels(c->n_out);
    size_t ny = (size_t)(c->n_tok * c->n_out);
    float *y5 = malloc(sizeof(float) * ny);
    for (size_t i = 0; i < ny; i++) y5[i] = NAN;
    int ok = 1;
    if (is_float(c->t)) {
        size_t nf = gt__mm_pf_scratch_floats(c->n_tok);
        float *scratch = nf ? gt_alloc(nf * sizeof(float)) : NULL;
        gt__mm_pf_avx512(c->t, packed, c->n_in, c->n_out, c->x, y5, c->n_tok, 0, np, scratch);
        gt_free(scratch);
    } else {
        gt_mm_qkind kind = gt__mm_qkind(c->t);
        gt_mm_q8a *q5 = malloc(sizeof(gt_mm_q8a) * (size_t)(c->n_tok * nb));
        gt__mm_quantize_avx512(kind, c->x, c->n_in, 0, c->n_tok, 0, nb, q5);
        if (memcmp(q5, o->q, sizeof(gt_mm_q8a) * (size_t)(c->n_tok * nb)) != 0) {
            fprintf(stderr, "%s: AVX2 and AVX-512 quantized activations differ\n", label);
            ok = 0;
        }
        gt__mm_pq_avx512(kind, packed, c->n_in, c->n_out, q5, y5, c->n_tok, 0, np);
        free(q5);
    }
    for (size_t i = 0; i < ny; i++) *n_same += memcmp(&y5[i], &o->y2[i], 4) == 0;
    char l2[200];
    snprintf(l2, sizeof l2, "%s vs AVX-512", label);
    ok = check(l2, o->y2, y5, o->A, ny, XTOL) && ok;
    free(y5);
    return ok;
}

/* ---- per-type sweep ---- */

static void run_type(gt_dtype t) {
    const gt_dtype_info *info = gt_dtype_get(t);
    int be = info->block_elems;
    /* 3 blocks, and a larger odd block count (floats: odd k, past one
     * 256-k prefill block, with a k tail for the 4-phase GEMV). */
    int64_t n_ins[2] = {is_float(t) ? 99 : 3 * (be == 256 ? 256 : 32), is_float(t) ? 1001
                                                                       : be == 256 ? 256 * 5
                                                                                   : 32 * 33};
    static const int64_t N_OUT[] = {1, 3, 17, 33, 257};
    static const int64_t N_TOK[] = {1, 2, 3, 5, 7, 17, 64};
    gt_test_rng g;
    gt_test_rng_seed(&g, 777 + (uint64_t)t);
    long n_total = 0, n_same = 0;
    for (int ii = 0; ii < 2; ii++)
        for (size_t oi = 0; oi < sizeof N_OUT / sizeof *N_OUT; oi++) {
            mm_case c = {.t = t, .n_in = n_ins[ii], .n_out = N_OUT[oi]};
            size_t rb;
            uint8_t *w = make_weights(&g, t, c.n_in, c.n_out, &rb);
            float *wd = malloc(sizeof(float) * (size_t)(c.n_in * c.n_out));
            for (int64_t r = 0; r < c.n_out; r++)
                assert_int_equal(gt_dequantize_row(t, w + (size_t)r * rb, wd + r * c.n_in, c.n_in),
                                 GT_OK);
            c.w = w;
            c.wd = wd;
            pack(t, c.n_in, c.n_out, w, &c.packed);
            for (size_t ti = 0; ti < sizeof N_TOK / sizeof *N_TOK; ti++) {
                c.n_tok = N_TOK[ti];
                if (ii == 1 && c.n_tok > 7 && c.n_out > 33) continue; /* keep the run short */
                size_t nx = (size_t)(c.n_tok * c.n_in), ny = (size_t)(c.n_tok * c.n_out);
                float *x = malloc(sizeof(float) * nx);
                gt_test_fill_normal(&g, x, nx, 1.0f);
                c.x = x;
                char label[160];
                snprintf(label, sizeof label, "%s n_in=%lld n_out=%lld n_tok=%lld", info->name,
                         (long long)c.n_in, (long long)c.n_out, (long long)c.n_tok);
                mm_out o;
                out_alloc(&c, &o);
                int ok = run_and_check_ref(&c, c.packed, &o, label, 0);
                if (ok && HAVE_512) {
                    ok = check_avx512(&c, c.packed, &o, label, &n_same);
                    n_total += (long)ny;
                }
                /* (c) two disjoint panel ranges, the second starting odd. */
                int64_t np = gt__mm_n_panels(c.n_out), ps = np / 2 + (np > 2);
                float *ys = malloc(sizeof(float) * ny);
                for (size_t i = 0; i < ny; i++) ys[i] = NAN;
                run_avx2(&c, c.packed, o.q, ys, 0, ps);
                run_avx2(&c, c.packed, o.q, ys, ps, np);
                if (ok && memcmp(ys, o.y2, sizeof(float) * ny) != 0) {
                    fprintf(stderr, "%s: panels [0,%lld) + [%lld,%lld) differ from one call\n",
                            label, (long long)ps, (long long)ps, (long long)np);
                    ok = 0;
                }
                free(ys);
                out_free(&o);
                free(x);
                if (!ok) fail_msg("%s", label);
            }
            gt_free(c.packed);
            free(w);
            free(wd);
        }
    if (HAVE_512)
        fprintf(stderr, "%s: %ld of %ld outputs bit-identical to the AVX-512 kernels\n", info->name,
                n_same, n_total);
}

#define TYPE_TEST(T)                                                                               \
    static void test_##T(void **state) { run_type(GT_##T); }
TYPE_TEST(F32)
TYPE_TEST(F16)
TYPE_TEST(BF16) TYPE_TEST(Q8_0) TYPE_TEST(Q4_0) TYPE_TEST(Q4_1) TYPE_TEST(Q5_0) TYPE_TEST(Q4_K)
    TYPE_TEST(Q6_K) TYPE_TEST(Q5_1) TYPE_TEST(Q5_K) TYPE_TEST(Q3_K) TYPE_TEST(Q2_K)

    /* ---- extreme codes: the int16 bounds of vpmaddubsw ---- */

    /* Every code at its largest magnitude (all bits set; Q8_0: q = +127 in even
     * rows, -128 in odd rows) against activations that quantize to +-127: a
     * vpmaddubsw of the u8 B8 codes would saturate (255 * 127 * 2 > 32767),
     * and summing more chunks in int16 than the file comment allows would
     * wrap. Decode and prefill, both signs of x. */
    static void extreme(gt_dtype t) {
    const int64_t n_in = is_k(t) ? 512 : 64, n_out = 32;
    gt_test_rng g;
    gt_test_rng_seed(&g, 5);
    size_t rb;
    uint8_t *w = make_weights(&g, t, n_in, n_out, &rb);
    memset(w, 0xFF, rb * (size_t)n_out);
    set_scales(&g, t, w, rb * (size_t)n_out);
    if (t == GT_Q8_0)
        for (int64_t r = 0; r < n_out; r++)
            for (size_t off = 0; off < rb; off += 34)
                memset(w + (size_t)r * rb + off + 2, r % 2 ? 0x80 : 0x7F, 32);
    float *wd = malloc(sizeof(float) * (size_t)(n_in * n_out));
    for (int64_t r = 0; r < n_out; r++)
        assert_int_equal(gt_dequantize_row(t, w + (size_t)r * rb, wd + r * n_in, n_in), GT_OK);
    mm_case c = {.t = t, .n_in = n_in, .n_out = n_out, .w = w, .wd = wd};
    pack(t, n_in, n_out, w, &c.packed);
    static const int64_t toks[2] = {1, 9};
    for (int ti = 0; ti < 2; ti++)
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            c.n_tok = toks[ti];
            size_t nx = (size_t)(c.n_tok * n_in);
            float *x = malloc(sizeof(float) * nx);
            for (size_t i = 0; i < nx; i++) x[i] = (float)sgn;
            c.x = x;
            char label[120];
            snprintf(label, sizeof label, "extreme %s n_tok=%lld x=%+d", gt_dtype_name(t),
                     (long long)c.n_tok, sgn);
            mm_out o;
            out_alloc(&c, &o);
            int ok = run_and_check_ref(&c, c.packed, &o, label, 1);
            long same = 0;
            if (ok && HAVE_512) ok = check_avx512(&c, c.packed, &o, label, &same);
            out_free(&o);
            free(x);
            if (!ok) fail_msg("%s", label);
        }
    gt_free(c.packed);
    free(w);
    free(wd);
}
static void test_extreme(void **state) {
    extreme(GT_Q8_0);
    extreme(GT_Q4_0);
    extreme(GT_Q5_0);
    extreme(GT_Q4_1);
    extreme(GT_Q4_K);
    extreme(GT_Q6_K);
    extreme(GT_Q5_1);
    extreme(GT_Q5_K);
    extreme(GT_Q3_K);
    extreme(GT_Q2_K);
}

/* ---- test the test: a wrong kernel input must fail ---- */

/* The packed scales (quant: every block's 16 row scales d; float: every
 * weight) 1% off must fail (a) and, where it runs, (b), in decode and
 * prefill; the untouched weights pass first. */
static void perturbed(gt_dtype t) {
    const int64_t n_in = 256 * 3, n_out = 19;
    gt_test_rng g;
    gt_test_rng_seed(&g, 99);
    size_t rb;
    uint8_t *w = make_weights(&g, t, n_in, n_out, &rb);
    float *wd = malloc(sizeof(float) * (size_t)(n_in * n_out));
    for (int64_t r = 0; r < n_out; r++)
        assert_int_equal(gt_dequantize_row(t, w + (size_t)r * rb, wd + r * n_in, n_in), GT_OK);
    mm_case c = {.t = t, .n_in = n_in, .n_out = n_out, .w = w, .wd = wd};
    uint8_t *bad;
    pack(t, n_in, n_out, w, &c.packed);
    pack(t, n_in, n_out, w, &bad);
    size_t bytes = gt__mm_packed_bytes(t, is_float(t) ? GT_MM_PF : GT_MM_PQ, n_in, n_out);
    if (t == GT_F16) {
        for (size_t off = 0; off < bytes; off += 2) {
            gt_f16 h;
            memcpy(&h, bad + off, 2);
            put_h(bad + off, gt_f16_to_f32(h) * 1.01f);
        }
    } else {
        /* every block's d; Q2_K's panels keep them per 256-element super block */
        size_t bb = t == GT_Q2_K ? GT_MMQ_C2_SUPER : gt__mm_qblock_bytes(gt__mm_qkind(t));
        for (size_t off = 0; off < bytes; off += bb)
            for (int r = 0; r < 16; r++) {
                gt_f16 h;
                memcpy(&h, bad + off + 2 * r, 2);
                put_h(bad + off + 2 * r, gt_f16_to_f32(h) * 1.01f);
            }
    }
    for (int64_t n_tok = 1; n_tok <= 9; n_tok += 8) {
        c.n_tok = n_tok;
        size_t nx = (size_t)(n_tok * n_in);
        float *x = malloc(sizeof(float) * nx);
        gt_test_fill_normal(&g, x, nx, 1.0f);
        c.x = x;
        mm_out o;
        out_alloc(&c, &o);
        long same = 0;
        assert_true(run_and_check_ref(&c, c.packed, &o, "good", 0));
        if (HAVE_512) assert_true(check_avx512(&c, c.packed, &o, "good", &same));
        fprintf(stderr, "(expected) ");
        assert_false(run_and_check_ref(&c, bad, &o, "perturbed", 0));
        if (HAVE_512) {
            /* y2 now holds the perturbed result; AVX-512 runs on the good panels. */
            fprintf(stderr, "(expected) ");
            assert_false(check_avx512(&c, c.packed, &o, "perturbed", &same));
        }
        out_free(&o);
        free(x);
    }
    gt_free(c.packed);
    gt_free(bad);
    free(w);
    free(wd);
}
static void test_perturbed(void **state) {
    perturbed(GT_Q8_0);
    perturbed(GT_Q4_0);
    perturbed(GT_Q4_K);
    perturbed(GT_Q3_K);
    perturbed(GT_Q2_K);
    perturbed(GT_F16);
}

static int setup(void **state) {
    CPU = gt__cpu_detect();
    HAVE_512 = CPU.avx512f && CPU.avx512bw && CPU.avx512vl && CPU.avx512dq && CPU.avx512vnni &&
               CPU.avx2 && CPU.fma && CPU.f16c;
    if (!HAVE_512) fprintf(stderr, "no AVX-512 VNNI here: cross-check (b) skipped\n");
    return 0;
}

int main(void) {
    gt_cpu_features f = gt__cpu_detect();
    if (!(f.avx2 && f.fma && f.f16c)) {
        fprintf(stderr, "this CPU lacks AVX2/FMA/F16C: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_F32),       cmocka_unit_test(test_F16),
        cmocka_unit_test(test_BF16),      cmocka_unit_test(test_Q8_0),
        cmocka_unit_test(test_Q4_0),      cmocka_unit_test(test_Q4_1),
        cmocka_unit_test(test_Q5_0),      cmocka_unit_test(test_Q4_K),
        cmocka_unit_test(test_Q6_K),      cmocka_unit_test(test_Q5_1),
        cmocka_unit_test(test_Q5_K),      cmocka_unit_test(test_Q3_K),
        cmocka_unit_test(test_Q2_K),      cmocka_unit_test(test_extreme),
        cmocka_unit_test(test_perturbed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
