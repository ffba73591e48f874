/* Tests of the non-matmul ops (kernels/kernels.c, kernels/cpu/ops_*.c).
 *
 * Every fast table (each ISA this CPU has, 1 to 3 threads) is compared with
 * the scalar reference on seeded random data of awkward sizes; the
 * references themselves are compared with direct formulas written here: rope
 * with cos/sin in double, attention with a dense softmax(QK^T)V over the
 * positions, ignoring the block table. The tolerances are in one table with
 * the reason for each; a deliberately broken output and a deliberately wrong
 * window must fail the same comparisons. */
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
#include "common/status.h"
#include "kernels/kernels.h"
#include "kernels/cpu/ops.h"
#include "util/test_util.h"

/* ---- tolerances (atol, rtol for gt_test_allclose) ---- */

typedef struct {
    const char *what;
    double atol, rtol;
    const char *why;
} tol;

static const tol TOL_RMSNORM = {"rmsnorm", 1e-6, 2e-6,
                                "sum of squares in float lanes vs double: a few ulp of the scale"};
static const tol TOL_ROPE = {"rope", 2e-6, 2e-6,
                             "same cos/sin table; fused vs separate multiply-add: 1-2 ulp of |x|"};
static const tol TOL_SWIGLU = {"swiglu", 1e-7, 2e-6,
                               "polynomial exp is ~1 ulp, plus one division: a few ulp"};
static const tol TOL_GEGLU = {"geglu", 1e-6, 4e-6,
                              "g/(1+exp(-2k)) vs 0.5 g (1+tanhf(k)): same function, the "
                              "reference loses relative accuracy where 1+tanh cancels (g < -3)"};
static const tol TOL_ATTN = {"attention", 2e-5, 2e-5,
                             "float accumulation over up to ~1000 keys vs double; both sides "
                             "read the same F16 values, so F16 and F32 caches share a bound"};
static const tol TOL_ATTN_BF16 = {
    "attention, BF16 cache", 8e-3, 8e-3,
    "the fast tables round each query and each probability to bf16 (8 bits: 2^-9 relative), "
    "the reference keeps them exact; scores ~N(0,1) move by ~2e-3, outputs by a few 1e-3"};
static const tol TOL_ATTN_REF = {"attention_ref vs dense", 1e-6, 1e-6,
                                 "both in double; only the final rounding to float differs"};
static const tol TOL_ROPE_REF = {"rope_ref vs formula", 1e-6, 1e-6,
                                 "same double-precision angles; float products only"};

static int close_tol(const char *label, const float *got, const float *want, size_t n,
                     const tol *t) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s [%s]", label, t->what);
    return gt_test_allclose(buf, got, want, n, t->atol, t->rtol);
}

/* ---- backends ---- */

static const char *const k_isas[] = {"avx2", "avx512"};

/* Creates kernels for isa with n threads, or NULL when the CPU lacks it. */
static gt_kernels *make_kernels(const char *isa, int n_threads) {
    gt_kernels_config cfg = {n_threads, isa, NULL, GT_KERNELS_DEVICE_AUTO, NULL};
    gt_kernels *k = NULL;
    gt_status st = gt_kernels_create(&cfg, &k);
    if (st == GT_ERR_UNSUPPORTED) {
        assert_true(strlen(gt_last_error()) > 0);
        return NULL;
    }
    assert_int_equal(st, GT_OK);
    assert_string_equal(gt_kernels_isa(k), isa);
    assert_int_equal(gt_kernels_n_threads(k), n_threads);
    return k;
}

static void test_create(void **state) {
    gt_kernels *k = NULL;
    gt_kernels_config bad = {0, NULL, NULL, GT_KERNELS_DEVICE_AUTO, NULL};
    assert_int_equal(gt_kernels_create(&bad, &k), GT_ERR_INVALID_ARG);
    gt_kernels_config unknown = {1, "sse9", NULL, GT_KERNELS_DEVICE_AUTO, NULL};
    assert_int_equal(gt_kernels_create(&unknown, &k), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "sse9"));
    gt_kernels_config automatic = {2, "auto", NULL, GT_KERNELS_DEVICE_AUTO, NULL};
    assert_int_equal(gt_kernels_create(&automatic, &k), GT_OK);
    printf("auto isa on this CPU: %s\n", gt_kernels_isa(k));
    assert_non_null(gt_kernels_pool(k));
    gt_kernels_destroy(k);
    gt_kernels_destroy(NULL);
}

/* ---- element-wise, rmsnorm ---- */

static const int64_t k_lengths[] = {1, 7, 15, 16, 17, 33, 1000, 4099, 70001};

static void test_elementwise(void **state) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 1);
    const int64_t nmax = 70001;
    float *g = malloc(nmax * 4), *u = malloc(nmax * 4), *want = malloc(nmax * 4),
          *got = malloc(nmax * 4);
    for (size_t ii = 0; ii < 2; ii++) {
        for (int nt = 1; nt <= 3; nt++) {
            gt_kernels *k = make_kernels(k_isas[ii], nt);
            if (!k) continue;
            for (size_t li = 0; li < sizeof k_lengths / sizeof k_lengths[0]; li++) {
                const int64_t n = k_lengths[li];
                char label[96];
                gt_test_fill_normal(&rng, g, (size_t)n, 3.0f);
                gt_test_fill_normal(&rng, u, (size_t)n, 1.0f);
                if (n > 3) g[0] = -90.f, g[1] = 90.f, g[2] = 0.f; /* exp range ends */
                snprintf(label, sizeof label, "swiglu %s t%d n%ld", k_isas[ii], nt, (long)n);
                gt__swiglu_ref(g, u, want, n);
                assert_int_equal(gt_swiglu(k, g, u, got, n), GT_OK);
                assert_true(close_tol(label, got, want, (size_t)n, &TOL_SWIGLU));
                snprintf(label, sizeof label, "geglu %s t%d n%ld", k_isas[ii], nt, (long)n);
                gt__geglu_ref(g, u, want, n);
                assert_int_equal(gt_geglu(k, g, u, got, n), GT_OK);
                assert_true(close_tol(label, got, want, (size_t)n, &TOL_GEGLU));
                /* in place: out aliases gate */
                memcpy(got, g, (size_t)n * 4);
                assert_int_equal(gt_geglu(k, got, u, got, n), GT_OK);
                assert_true(close_tol(label, got, want, (size_t)n, &TOL_GEGLU));
                /* add is exact */
                memcpy(want, u, (size_t)n * 4);
                gt__add_ref(want, g, n);
                memcpy(got, u, (size_t)n * 4);
                assert_int_equal(gt_add(k, got, g, n), GT_OK);
                assert_memory_equal(got, want, (size_t)n * 4);
            }
            gt_kernels_destroy(k);
        }
    }
    free(g);
    free(u);
    free(want);
    free(got);
}

static void test_rmsnorm(void **state) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 2);
    const int64_t ns[] = {1, 17, 64, 2560, 4097};
    const int64_t rows = 5;
    float *x = malloc(rows * 4097 * 4), *w = malloc(4097 * 4), *want = malloc(rows * 4097 * 4),
          *got = malloc(rows * 4097 * 4);
    for (size_t ii = 0; ii < 2; ii++) {
        for (int nt = 1; nt <= 3; nt++) {
            gt_kernels *k = make_kernels(k_isas[ii], nt);
            if (!k) continue;
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                const int64_t n = ns[ni];
                gt_test_fill_normal(&rng, x, (size_t)(rows * n), 2.0f);
                gt_test_fill_uniform(&rng, w, (size_t)n, 0.5f, 1.5f);
                for (int wi = 0; wi < 2; wi++) {
                    const float *wp = wi ? w : NULL;
                    char label[96];
                    snprintf(label, sizeof label, "rmsnorm %s t%d n%ld w%d", k_isas[ii], nt,
                             (long)n, wi);
                    for (int64_t r = 0; r < rows; r++)
                        gt__rmsnorm_ref(x + r * n, wp, want + r * n, n, 1e-6f);
                    assert_int_equal(gt_rmsnorm(k, x, wp, got, rows, n, 1e-6f), GT_OK);
                    assert_true(close_tol(label, got, want, (size_t)(rows * n), &TOL_RMSNORM));
                    memcpy(got, x, (size_t)(rows * n) * 4); /* in place */
                    assert_int_equal(gt_rmsnorm(k, got, wp, got, rows, n, 1e-6f), GT_OK);
                    assert_true(close_tol(label, got, want, (size_t)(rows * n), &TOL_RMSNORM));
                }
            }
            gt_kernels_destroy(k);
        }
    }
    free(x);
    free(w);
    free(want);
    free(got);
}

/* ---- rope ---- */

typedef struct {
    int n_tok, n_head, head_dim, n_rot;
    bool neox;
    float base, freq_scale;
} rope_case;

static const rope_case k_rope_cases[] = {
    {5, 4, 64, 64, true, 10000.f, 1.f},  {3, 3, 80, 80, false, 10000.f, 1.f},
    {7, 2, 128, 64, true, 1e6f, 0.125f}, {4, 5, 128, 128, false, 500000.f, 0.25f},
    {2, 1, 36, 20, true, 10000.f, 1.f},  {3, 2, 96, 34, false, 10000.f, 1.f},
};

/* Direct formula, in double: the oracle for rope_ref. */
static void rope_formula(float *x, const rope_case *c, const int32_t *pos) {
    const int half = c->n_rot / 2;
    for (int t = 0; t < c->n_tok; t++) {
        for (int h = 0; h < c->n_head; h++) {
            float *v = x + ((size_t)t * c->n_head + h) * c->head_dim;
            for (int i = 0; i < half; i++) {
                const double th =
                    pos[t] * (double)c->freq_scale * pow((double)c->base, -2.0 * i / c->n_rot);
                const int i0 = c->neox ? i : 2 * i, i1 = c->neox ? i + half : 2 * i + 1;
                const double a = v[i0], b = v[i1];
                v[i0] = (float)(a * (float)cos(th) - b * (float)sin(th));
                v[i1] = (float)(a * (float)sin(th) + b * (float)cos(th));
            }
        }
    }
}

static void test_rope(void **state) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 3);
    for (size_t ci = 0; ci < sizeof k_rope_cases / sizeof k_rope_cases[0]; ci++) {
        const rope_case *c = &k_rope_cases[ci];
        const size_t n = (size_t)c->n_tok * c->n_head * c->head_dim;
        float *x = malloc(n * 4), *want = malloc(n * 4), *got = malloc(n * 4);
        int32_t pos[16];
        for (int t = 0; t < c->n_tok; t++) pos[t] = t == 0 ? 0 : 1000 * t + 17 * t * t;
        gt_test_fill_normal(&rng, x, n, 1.0f);
        const gt_rope_params p = {c->base, c->freq_scale, c->n_rot, c->neox};
        /* reference against the formula */
        memcpy(want, x, n * 4);
        rope_formula(want, c, pos);
        memcpy(got, x, n * 4);
        for (int t = 0; t < c->n_tok; t++)
            gt__rope_ref(got + (size_t)t * c->n_head * c->head_dim, c->n_head, c->head_dim, pos[t],
                         &p);
        assert_true(close_tol("rope_ref", got, want, n, &TOL_ROPE_REF));
        /* dims beyond n_rot untouched, position 0 is the identity */
        for (int v = 0; v < c->n_tok * c->n_head; v++)
            for (int d = c->n_rot; d < c->head_dim; d++)
                assert_true(got[(size_t)v * c->head_dim + d] == x[(size_t)v * c->head_dim + d]);
        assert_memory_equal(got, x, (size_t)c->n_head * c->head_dim * 4);
        /* fast versions against the reference */
        memcpy(want, got, n * 4);
        for (size_t ii = 0; ii < 2; ii++) {
            for (int nt = 1; nt <= 3; nt++) {
                gt_kernels *k = make_kernels(k_isas[ii], nt);
                if (!k) continue;
                char label[96];
                snprintf(label, sizeof label, "rope %s t%d case %zu", k_isas[ii], nt, ci);
                memcpy(got, x, n * 4);
                assert_int_equal(gt_rope(k, got, c->n_tok, c->n_head, c->head_dim, pos, &p), GT_OK);
                assert_true(close_tol(label, got, want, n, &TOL_ROPE));
                gt_kernels_destroy(k);
            }
        }
        free(x);
        free(want);
        free(got);
    }
}

/* The backend keeps the cos/sin tables of the last rope calls
 * (kernels/cpu/rope.c) and reuses one when positions and parameters match.
 * On one kernels object, a sequence of calls that hits, misses, finds its
 * position array changed in place, evicts, and (after a reservation
 * smaller than the call) computes its rows per call must give the bits of a
 * fresh kernels object each time. */
static void rope_step(gt_kernels *k, const char *isa, const float *x, int n_tok, const int32_t *pos,
                      const gt_rope_params *p, const char *what) {
    const int n_head = 3, hd = 64;
    const size_t n = (size_t)n_tok * n_head * hd;
    float *got = malloc(n * 4), *want = malloc(n * 4);
    memcpy(got, x, n * 4);
    memcpy(want, x, n * 4);
    gt_kernels *fresh = make_kernels(isa, 1);
    assert_int_equal(gt_rope(fresh, want, n_tok, n_head, hd, pos, p), GT_OK);
    gt_kernels_destroy(fresh);
    assert_int_equal(gt_rope(k, got, n_tok, n_head, hd, pos, p), GT_OK);
    if (memcmp(got, want, n * 4))
        fail_msg("rope tables, %s, %s: not the bits of a fresh call", isa, what);
    free(got);
    free(want);
}

static void test_rope_tables(void **state) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 11);
    enum { NT = 40 };
    float *x = malloc((size_t)NT * 3 * 64 * 4);
    gt_test_fill_normal(&rng, x, (size_t)NT * 3 * 64, 1.0f);
    int32_t pos[NT];
    const gt_rope_params a = {10000.f, 1.f, 64, false}, b = {1e6f, 0.25f, 64, true},
                         c = {500000.f, 1.f, 32, true};
    const char *isas[] = {"ref", "avx2", "avx512"};
    for (size_t i = 0; i < 3; i++) {
        gt_kernels *k = make_kernels(isas[i], 2);
        if (!k) continue;
        for (int t = 0; t < NT; t++) pos[t] = 7 + 3 * t;
        rope_step(k, isas[i], x, NT, pos, &a, "first call");
        rope_step(k, isas[i], x, NT, pos, &b, "second parameter set");
        rope_step(k, isas[i], x, NT, pos, &a, "reused");
        pos[5] = 4000; /* the same array, one position changed */
        rope_step(k, isas[i], x, NT, pos, &a, "a position changed in place");
        rope_step(k, isas[i], x, NT - 1, pos, &a, "one token fewer");
        rope_step(k, isas[i], x, NT, pos, &c, "a third set (evicts)");
        rope_step(k, isas[i], x, NT, pos, &b, "the evicted set again");
        /* reserved for 8 tokens: 40 computed per call, 4 from the tables */
        const gt_workspace_req r = {.max_tokens = 8,
                                    .max_n_in = 64,
                                    .max_heads = 3,
                                    .head_dim = 64,
                                    .max_kv = 64,
                                    .n_threads = 2};
        assert_int_equal(gt_kernels_reserve(k, &r), GT_OK);
        rope_step(k, isas[i], x, NT, pos, &a, "beyond the reservation");
        rope_step(k, isas[i], x, 4, pos, &a, "within the reservation");
        rope_step(k, isas[i], x, 4, pos, &b, "within the reservation, second set");
        rope_step(k, isas[i], x, 4, pos, &a, "within the reservation, reused");
        gt_kernels_destroy(k);
    }
    free(x);
}

/* ---- attention ---- */

typedef struct {
    int n_tok, pos0, n_head, n_kv_head, head_dim, block_size;
    gt_dtype kv;
    int window;
    float softcap;
} attn_case;

static const attn_case k_attn_cases[] = {
    {37, 0, 8, 2, 64, 16, GT_F16, 0, 0},      /* prefill, GQA 4 */
    {20, 45, 6, 3, 80, 16, GT_F32, 0, 0},     /* second chunk of a prefill */
    {33, 10, 4, 1, 128, 16, GT_F16, 7, 0},    /* sliding window, MQA */
    {9, 100, 8, 8, 64, 16, GT_F32, 0, 2.0f},  /* softcap, no GQA */
    {1, 300, 32, 8, 64, 16, GT_F16, 0, 0},    /* decode */
    {1, 1000, 8, 2, 128, 16, GT_F16, 256, 5}, /* decode, window and softcap */
    {11, 70, 6, 2, 36, 7, GT_F32, 20, 0},     /* odd head_dim and block size */
    {5, 3, 4, 2, 80, 16, GT_F16, 1, 0},       /* window 1: only itself */
    {40, 20, 6, 2, 64, 24, GT_F16, 0, 0},     /* blocks of 24: key vectors cut by blocks */
    {19, 30, 12, 1, 64, 5, GT_F16, 0, 0},     /* blocks of 5, 12 heads on one kv head */
    /* decode-sized tiles, several kv heads per work item (cpu_attention) */
    {3, 200, 12, 3, 64, 128, GT_F16, 0, 0}, /* 3 kv heads over 2 threads; blocks of 128 */
    {4, 150, 10, 5, 80, 16, GT_F32, 40, 0}, /* f32 cache, window */
    {2, 90, 14, 7, 36, 24, GT_F16, 0, 0},   /* odd rows, blocks of 24 */
    /* BF16 pairs (vdpbf16ps where the CPU has it) */
    {37, 0, 8, 2, 64, 16, GT_BF16, 0, 0},      /* prefill, GQA 4 */
    {1, 300, 32, 8, 64, 16, GT_BF16, 0, 0},    /* decode */
    {1, 1000, 8, 2, 128, 16, GT_BF16, 255, 5}, /* decode, odd window (odd first key), softcap */
    {33, 10, 4, 1, 80, 16, GT_BF16, 7, 0},     /* sliding window, MQA, 80 = 64 + 16 */
    {20, 45, 6, 3, 36, 6, GT_BF16, 0, 0},      /* blocks of 6, head 36: partial vectors */
    {4, 150, 10, 5, 64, 24, GT_BF16, 40, 0},   /* blocks of 24, several kv heads per item */
    {9, 100, 8, 8, 64, 16, GT_BF16, 0, 2.0f},  /* softcap, no GQA */
};

typedef struct {
    attn_case c;
    int n_ctx, n_blocks;
    float *q;       /* [n_tok, n_head, hd] */
    float *kd, *vd; /* dense decoded [n_ctx, n_kv_head, hd] */
    void *storage_k, *storage_v;
    const void **kb, **vb; /* block tables (permuted storage) */
    size_t head_stride;    /* 0: the heads' parts side by side in a block; else per-head pools */
    int32_t *pos;
} attn_fixture;

/* pooled: each kv head's parts in a pool of their own (the engine's cache),
 * head_stride bytes apart (one part more than the blocks, so that the
 * stride is not a multiple of anything the kernels might assume). */
static void attn_setup(attn_fixture *f, const attn_case *c, gt_test_rng *rng, int pooled) {
    memset(f, 0, sizeof *f);
    f->c = *c;
    f->n_ctx = c->pos0 + c->n_tok;
    f->n_blocks = (f->n_ctx + c->block_size - 1) / c->block_size;
    const size_t row = (size_t)c->n_kv_head * c->head_dim;
    const size_t blk = (size_t)c->block_size * row, esz = c->kv == GT_F32 ? 4 : 2;
    const size_t nq = (size_t)c->n_tok * c->n_head * c->head_dim;
    f->q = malloc(nq * 4);
    gt_test_fill_normal(rng, f->q, nq, 1.0f);
    f->kd = calloc((size_t)f->n_blocks * blk, 4);
    f->vd = calloc((size_t)f->n_blocks * blk, 4);
    const size_t part = (size_t)c->block_size * c->head_dim * esz;
    f->head_stride = pooled ? (size_t)(f->n_blocks + 1) * part : 0;
    const size_t hs = pooled ? f->head_stride : part, slot_bytes = pooled ? part : blk * esz;
    f->storage_k = malloc((size_t)c->n_kv_head * (f->n_blocks + 1) * part);
    f->storage_v = malloc((size_t)c->n_kv_head * (f->n_blocks + 1) * part);
    /* NaN in every slot never written (past the last position): no kernel
     * may let what such a slot holds reach an output */
    memset(f->storage_k, 0xff, (size_t)c->n_kv_head * (f->n_blocks + 1) * part);
    memset(f->storage_v, 0xff, (size_t)c->n_kv_head * (f->n_blocks + 1) * part);
    f->kb = malloc(sizeof(void *) * f->n_blocks);
    f->vb = malloc(sizeof(void *) * f->n_blocks);
    f->pos = malloc(sizeof(int32_t) * c->n_tok);
    for (int t = 0; t < c->n_tok; t++) f->pos[t] = c->pos0 + t;
    /* Logical block b lives in storage slot (b * 5 + 3) % n_blocks when that
     * is a permutation, else slot b: the block table is really followed. */
    for (int b = 0; b < f->n_blocks; b++) {
        const int slot = f->n_blocks % 5 ? (b * 5 + 3) % f->n_blocks : b;
        f->kb[b] = (char *)f->storage_k + (size_t)slot * slot_bytes;
        f->vb[b] = (char *)f->storage_v + (size_t)slot * slot_bytes;
    }
    for (int p = 0; p < f->n_ctx; p++) {
        for (size_t e = 0; e < row; e++) {
            float kv[2] = {gt_test_rng_normal(rng), gt_test_rng_normal(rng)};
            /* the cache's layout, written out here: kv head g's part of a
             * block g * hs bytes on, its values [position][d], its keys
             * [d][position]; BF16 in pairs, values [position / 2][d][2],
             * keys [d / 2][position][2] */
            const size_t r = (size_t)(p % c->block_size), d = e % c->head_dim;
            size_t off = r * c->head_dim + d, koff = d * c->block_size + r;
            if (c->kv == GT_BF16) {
                off = ((r / 2) * c->head_dim + d) * 2 + r % 2;
                koff = ((d / 2) * c->block_size + r) * 2 + d % 2;
            }
            char *kdst = (char *)f->kb[p / c->block_size] + e / c->head_dim * hs,
                 *vdst = (char *)f->vb[p / c->block_size] + e / c->head_dim * hs;
            if (c->kv == GT_F16) {
                const gt_f16 hk = gt_f32_to_f16(kv[0]), hv = gt_f32_to_f16(kv[1]);
                memcpy(kdst + koff * 2, &hk, 2);
                memcpy(vdst + off * 2, &hv, 2);
                kv[0] = gt_f16_to_f32(hk);
                kv[1] = gt_f16_to_f32(hv);
            } else if (c->kv == GT_BF16) {
                const gt_bf16 hk = gt_f32_to_bf16(kv[0]), hv = gt_f32_to_bf16(kv[1]);
                memcpy(kdst + koff * 2, &hk, 2);
                memcpy(vdst + off * 2, &hv, 2);
                kv[0] = gt_bf16_to_f32(hk);
                kv[1] = gt_bf16_to_f32(hv);
            } else {
                memcpy(kdst + koff * 4, &kv[0], 4);
                memcpy(vdst + off * 4, &kv[1], 4);
            }
            f->kd[(size_t)p * row + e] = kv[0];
            f->vd[(size_t)p * row + e] = kv[1];
        }
    }
}

static void attn_teardown(attn_fixture *f) {
    free(f->q);
    free(f->kd);
    free(f->vd);
    free(f->storage_k);
    free(f->storage_v);
    free(f->kb);
    free(f->vb);
    free(f->pos);
}

static gt_attn_args attn_args(const attn_fixture *f, float *out) {
    const attn_case *c = &f->c;
    gt_attn_args a = {.q = f->q,
                      .out = out,
                      .pos = f->pos,
                      .n_tok = c->n_tok,
                      .n_head = c->n_head,
                      .n_kv_head = c->n_kv_head,
                      .head_dim = c->head_dim,
                      .k_blocks = (const void *const *)f->kb,
                      .v_blocks = (const void *const *)f->vb,
                      .block_size = c->block_size,
                      .head_stride = f->head_stride,
                      .kv_type = c->kv,
                      .scale = 1.0f / sqrtf((float)c->head_dim),
                      .window = c->window,
                      .softcap = c->softcap};
    return a;
}

/* softmax(q K^T * scale) V over the visible positions, dense, in double. */
static void attn_dense(const attn_fixture *f, int window, float *out) {
    const attn_case *c = &f->c;
    const int hd = c->head_dim, group = c->n_head / c->n_kv_head;
    const size_t row = (size_t)c->n_kv_head * hd;
    double *s = malloc(sizeof(double) * f->n_ctx);
    for (int t = 0; t < c->n_tok; t++) {
        for (int h = 0; h < c->n_head; h++) {
            const float *q = f->q + ((size_t)t * c->n_head + h) * hd;
            const int g = h / group, p1 = f->pos[t];
            const int p0 = window > 0 && p1 - window + 1 > 0 ? p1 - window + 1 : 0;
            double mx = -INFINITY, sum = 0;
            for (int p = p0; p <= p1; p++) {
                double d = 0;
                for (int i = 0; i < hd; i++)
                    d += (double)q[i] * f->kd[(size_t)p * row + g * hd + i];
                d *= 1.0 / sqrt((double)hd);
                if (c->softcap > 0) d = c->softcap * tanh(d / c->softcap);
                s[p] = d;
                mx = fmax(mx, d);
            }
            for (int p = p0; p <= p1; p++) sum += (s[p] = exp(s[p] - mx));
            for (int i = 0; i < hd; i++) {
                double o = 0;
                for (int p = p0; p <= p1; p++) o += s[p] * f->vd[(size_t)p * row + g * hd + i];
                out[((size_t)t * c->n_head + h) * hd + i] = (float)(o / sum);
            }
        }
    }
    free(s);
}

static void test_attention(void **state) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 4);
    gt_kernels *kref = NULL;
    gt_kernels_config rc = {1, "ref", NULL, GT_KERNELS_DEVICE_AUTO, NULL};
    assert_int_equal(gt_kernels_create(&rc, &kref), GT_OK);
    for (size_t ci = 0; ci < sizeof k_attn_cases / sizeof k_attn_cases[0]; ci++) {
        attn_fixture f;
        attn_setup(&f, &k_attn_cases[ci], &rng, (int)(ci % 2));
        const size_t n = (size_t)f.c.n_tok * f.c.n_head * f.c.head_dim;
        float *dense = malloc(n * 4), *want = malloc(n * 4), *got = malloc(n * 4);
        char label[128];
        /* the reference against the dense formula */
        attn_dense(&f, f.c.window, dense);
        gt_attn_args a = attn_args(&f, want);
        assert_int_equal(gt_attention(kref, &a), GT_OK);
        snprintf(label, sizeof label, "attention_ref case %zu", ci);
        assert_true(close_tol(label, want, dense, n, &TOL_ATTN_REF));
        /* every fast table and thread count against the reference */
        for (size_t ii = 0; ii < 2; ii++) {
            for (int nt = 1; nt <= 3; nt++) {
                gt_kernels *k = make_kernels(k_isas[ii], nt);
                if (!k) continue;
                memset(got, 0xff, n * 4); /* NaN: every output must be written */
                a = attn_args(&f, got);
                assert_int_equal(gt_attention(k, &a), GT_OK);
                snprintf(label, sizeof label, "attention %s t%d case %zu", k_isas[ii], nt, ci);
                assert_true(
                    close_tol(label, got, want, n, f.c.kv == GT_BF16 ? &TOL_ATTN_BF16 : &TOL_ATTN));
                gt_kernels_destroy(k);
            }
        }
        free(dense);
        free(want);
        free(got);
        attn_teardown(&f);
    }
    gt_kernels_destroy(kref);
}

/* The comparisons can fail: a perturbed output, a window off by one and a
 * rope in the wrong pair order are all caught by the same tolerances. */
static void test_broken_variants_fail(void **state) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 5);
    attn_fixture f;
    const attn_case c = {16, 40, 4, 2, 64, 16, GT_F16, 9, 0};
    attn_setup(&f, &c, &rng, 0);
    const size_t n = (size_t)c.n_tok * c.n_head * c.head_dim;
    float *want = malloc(n * 4), *got = malloc(n * 4);
    gt_kernels *k = NULL;
    gt_kernels_config cfg = GT_KERNELS_CONFIG_INIT;
    assert_int_equal(gt_kernels_create(&cfg, &k), GT_OK);
    gt_attn_args a = attn_args(&f, want);
    attn_dense(&f, c.window, want);
    a = attn_args(&f, got);
    assert_int_equal(gt_attention(k, &a), GT_OK);
    assert_true(close_tol("attention", got, want, n, &TOL_ATTN));
    got[n / 3] *= 1.001f; /* perturbed output */
    assert_false(close_tol("perturbed attention (expected to fail)", got, want, n, &TOL_ATTN));
    attn_dense(&f, c.window + 1, got); /* window off by one */
    assert_false(close_tol("window+1 (expected to fail)", got, want, n, &TOL_ATTN));
    free(want);
    free(got);
    attn_teardown(&f);

    /* rope: NeoX pairs where adjacent pairs were asked for */
    const rope_case rc = {2, 2, 64, 64, false, 10000.f, 1.f};
    const size_t rn = 2 * 2 * 64;
    float *x = malloc(rn * 4), *r1 = malloc(rn * 4), *r2 = malloc(rn * 4);
    int32_t pos[2] = {3, 99};
    gt_test_fill_normal(&rng, x, rn, 1.0f);
    memcpy(r1, x, rn * 4);
    rope_formula(r1, &rc, pos);
    const gt_rope_params wrong = {10000.f, 1.f, 64, true};
    memcpy(r2, x, rn * 4);
    assert_int_equal(gt_rope(k, r2, 2, 2, 64, pos, &wrong), GT_OK);
    assert_false(close_tol("rope neox-for-adjacent (expected to fail)", r2, r1, rn, &TOL_ROPE));
    free(x);
    free(r1);
    free(r2);
    gt_kernels_destroy(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rope_tables),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_broken_variants_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
