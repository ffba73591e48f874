/* Batch invariance of the CPU kernels: a row's result must be the same bits
 * whatever else shares the call.
 *
 *  - gt_matmul: for every weight type the engine uses, every ISA this CPU
 *    has and 1..3 threads, each activation row computed alone (the GEMV)
 *    equals that row at every position of batches of 2..40 tokens (GEMM
 *    tiles, partial tiles, the decode tiles of 2..4 tokens), memcmp;
 *  - gt_attention: each query computed alone (one token, as decode does)
 *    equals it inside one call over the whole sequence (prefill tiles) and
 *    inside chunks of 7 tokens (keys partly from earlier calls), with and
 *    without a sliding window and softcap, F32 and F16 caches;
 *  - gt_rmsnorm: a row alone equals it among others.
 * Shapes cross the kernels' internal block boundaries (256-k float blocks,
 * 16-block quant slices, 64-key attention chunks, a partial 16-row panel). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/quant.h"
#include "kernels/kernels.h"
#include "util/test_util.h"

#define N_ISA 3
static const char *ISAS[N_ISA] = {"ref", "avx2", "avx512"};
static gt_kernels *KS[N_ISA][3]; /* [isa][threads-1], NULL when unavailable */

static int setup(void **state) {
    (void)state;
    for (int i = 0; i < N_ISA; i++)
        for (int t = 0; t < 3; t++) {
            gt_kernels_config cfg = GT_KERNELS_CONFIG_INIT;
            cfg.n_threads = t + 1;
            cfg.isa = ISAS[i];
            if (gt_kernels_create(&cfg, &KS[i][t]) != GT_OK) KS[i][t] = NULL;
        }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < N_ISA; i++)
        for (int t = 0; t < 3; t++) gt_kernels_destroy(KS[i][t]);
    return 0;
}

/* Index of the first differing float, or -1. */
static long first_diff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float))) return (long)i;
    return -1;
}

/* ---- matmul ---- */

#define MM_TOK 40

static const gt_dtype MM_TYPES[] = {GT_F32,  GT_F16,  GT_BF16, GT_Q8_0, GT_Q4_0,
                                    GT_Q4_1, GT_Q5_0, GT_Q5_1, GT_Q2_K, GT_Q3_K,
                                    GT_Q4_K, GT_Q5_K, GT_Q6_K};

static int check_matmul(gt_dtype type, int64_t n_in, int64_t n_out) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 1000 + (uint64_t)type * 7 + (uint64_t)n_in);
    size_t rb = 0;
    assert_true(gt_dtype_row_bytes(type, n_in, &rb));
    float *wf = malloc((size_t)n_in * sizeof(float));
    uint8_t *wq = malloc(rb * (size_t)n_out);
    float *x = malloc((size_t)MM_TOK * n_in * sizeof(float));        /* [MM_TOK, n_in] */
    float *alone = malloc((size_t)MM_TOK * n_out * sizeof(float));   /* [MM_TOK, n_out] */
    float *y = malloc((size_t)MM_TOK * n_out * sizeof(float));       /* [MM_TOK, n_out] */
    for (int64_t r = 0; r < n_out; r++) {
        gt_test_fill_normal(&rng, wf, (size_t)n_in, 1.0f);
        assert_int_equal(gt_quantize_row(type, wf, wq + (size_t)r * rb, n_in), GT_OK);
    }
    /* Rows of very different scales so the sums are not all alike. */
    for (int t = 0; t < MM_TOK; t++)
        gt_test_fill_normal(&rng, x + (size_t)t * n_in, (size_t)n_in, 0.01f + (float)(t % 5));
    int bad = 0;
    for (int i = 0; i < N_ISA && !bad; i++) {
        if (!KS[i][0]) continue;
        for (int th = 0; th < 3 && !bad; th++) {
            gt_kernels *k = KS[i][th];
            gt_weight w = {0};
            assert_int_equal(gt_weight_init(k, type, n_in, n_out, wq, &w), GT_OK);
            if (th == 0)
                for (int t = 0; t < MM_TOK; t++)
                    assert_int_equal(gt_matmul(k, &w, x + (size_t)t * n_in,
                                               alone + (size_t)t * n_out, 1), GT_OK);
            for (int n = th == 0 ? 2 : 1; n <= MM_TOK && !bad; n++) {
                /* Batches starting at different rows, so that every row sits
                 * at several positions of a tile. */
                for (int t0 = 0; t0 + n <= MM_TOK && !bad; t0 += n < 8 ? 3 : MM_TOK) {
                    memset(y, 0xFF, (size_t)n * n_out * sizeof(float));
                    assert_int_equal(gt_matmul(k, &w, x + (size_t)t0 * n_in, y, n), GT_OK);
                    for (int t = 0; t < n && !bad; t++) {
                        long d = first_diff(y + (size_t)t * n_out,
                                            alone + (size_t)(t0 + t) * n_out, (size_t)n_out);
                        if (d >= 0) {
                            fprintf(stderr,
                                    "matmul %s isa=%s threads=%d n_in=%lld: row %d at position "
                                    "%d of %d tokens, output %ld: %.9g, alone %.9g\n",
                                    gt_dtype_name((uint32_t)type), ISAS[i], th + 1,
                                    (long long)n_in, t0 + t, t, n, d,
                                    (double)y[(size_t)t * n_out + d],
                                    (double)alone[(size_t)(t0 + t) * n_out + d]);
                            bad = 1;
                        }
                    }
                }
            }
            gt_weight_free(&w);
        }
    }
    free(wf);
    free(wq);
    free(x);
    free(alone);
    free(y);
    return !bad;
}

static void test_matmul_row_alone_equals_row_in_batch(void **state) {
    (void)state;
    int ok = 1;
    for (size_t i = 0; i < sizeof MM_TYPES / sizeof MM_TYPES[0]; i++) {
        /* 1280: five 256-k float blocks and 40 quant blocks (slices of 16
         * plus a remainder); 72 outputs: a partial panel and the padding. */
        ok &= check_matmul(MM_TYPES[i], 1280, 72);
        ok &= check_matmul(MM_TYPES[i], 256, 40);
    }
    assert_true(ok);
}

/* ---- attention ---- */

typedef struct {
    int n_ctx, n_head, n_kv_head, head_dim, block_size, window;
    float softcap;
    gt_dtype kv;
} attn_case;

static int check_attention(const attn_case *c) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 77 + (uint64_t)c->n_ctx + (uint64_t)c->window);
    const int row = c->n_kv_head * c->head_dim, qrow = c->n_head * c->head_dim;
    const int n_blocks = (c->n_ctx + c->block_size - 1) / c->block_size;
    const size_t esz = c->kv == GT_F32 ? 4 : 2, blk = (size_t)c->block_size * row * esz;
    void **kb = calloc((size_t)n_blocks, sizeof(void *));
    void **vb = calloc((size_t)n_blocks, sizeof(void *));
    for (int b = 0; b < n_blocks; b++) {
        kb[b] = calloc(1, blk);
        vb[b] = calloc(1, blk);
    }
    float *kr = malloc((size_t)c->n_ctx * row * sizeof(float));   /* [n_ctx, row] */
    float *vr = malloc((size_t)c->n_ctx * row * sizeof(float));   /* [n_ctx, row] */
    float *q = malloc((size_t)c->n_ctx * qrow * sizeof(float));   /* [n_ctx, n_head, hd] */
    float *alone = malloc((size_t)c->n_ctx * qrow * sizeof(float));
    float *out = malloc((size_t)c->n_ctx * qrow * sizeof(float));
    int32_t *pos = malloc((size_t)c->n_ctx * sizeof(int32_t));
    gt_test_fill_normal(&rng, kr, (size_t)c->n_ctx * row, 1.0f);
    gt_test_fill_normal(&rng, vr, (size_t)c->n_ctx * row, 1.0f);
    gt_test_fill_normal(&rng, q, (size_t)c->n_ctx * qrow, 1.0f);
    for (int p = 0; p < c->n_ctx; p++) pos[p] = p;
    int bad = 0;
    for (int i = 0; i < N_ISA && !bad; i++) {
        if (!KS[i][0]) continue;
        for (int th = 0; th < 3 && !bad; th++) {
            gt_kernels *k = KS[i][th];
            /* runs: 0 = token by token (each query alone, its own key just
             * stored), 1 = the whole sequence in one call, 2 = chunks of 7. */
            for (int run = th == 0 ? 0 : 1; run < 3 && !bad; run++) {
                const int step = run == 0 ? 1 : run == 1 ? c->n_ctx : 7;
                float *dst = run == 0 ? alone : out;
                memset(dst, 0xFF, (size_t)c->n_ctx * qrow * sizeof(float));
                for (int t0 = 0; t0 < c->n_ctx; t0 += step) {
                    const int n = c->n_ctx - t0 < step ? c->n_ctx - t0 : step;
                    gt_kv_store_args ks = {.rows = kr + (size_t)t0 * row,
                                           .pos = pos + t0,
                                           .n_tok = n,
                                           .row_elems = row,
                                           .blocks = kb,
                                           .block_size = c->block_size,
                                           .kv_type = c->kv,
                                           .n_kv_head = c->n_kv_head,
                                           .keys = 1};
                    assert_int_equal(gt_kv_store(k, &ks), GT_OK);
                    ks.rows = vr + (size_t)t0 * row;
                    ks.blocks = vb;
                    ks.keys = 0;
                    assert_int_equal(gt_kv_store(k, &ks), GT_OK);
                    gt_attn_args a = {.q = q + (size_t)t0 * qrow, .out = dst + (size_t)t0 * qrow,
                                      .pos = pos + t0, .n_tok = n, .n_head = c->n_head,
                                      .n_kv_head = c->n_kv_head, .head_dim = c->head_dim,
                                      .k_blocks = (const void *const *)kb,
                                      .v_blocks = (const void *const *)vb,
                                      .block_size = c->block_size, .kv_type = c->kv,
                                      .scale = 0.125f, .window = c->window,
                                      .softcap = c->softcap};
                    assert_int_equal(gt_attention(k, &a), GT_OK);
                }
                if (run == 0) continue;
                long d = first_diff(out, alone, (size_t)c->n_ctx * qrow);
                if (d >= 0) {
                    fprintf(stderr,
                            "attention isa=%s threads=%d kv=%s window=%d softcap=%g %s: token "
                            "%ld head %ld dim %ld: %.9g, alone %.9g\n",
                            ISAS[i], th + 1, gt_dtype_name((uint32_t)c->kv), c->window,
                            (double)c->softcap, run == 1 ? "one call" : "chunks of 7",
                            d / qrow, d % qrow / c->head_dim, d % c->head_dim, (double)out[d],
                            (double)alone[d]);
                    bad = 1;
                }
            }
        }
    }
    for (int b = 0; b < n_blocks; b++) {
        free(kb[b]);
        free(vb[b]);
    }
    free(kb);
    free(vb);
    free(kr);
    free(vr);
    free(q);
    free(alone);
    free(out);
    free(pos);
    return !bad;
}

static void test_attention_query_alone_equals_query_in_tile(void **state) {
    (void)state;
    const attn_case cases[] = {
        {150, 8, 2, 64, 16, 0, 0.0f, GT_F32},
        {150, 8, 2, 64, 16, 0, 0.0f, GT_F16},
        {150, 4, 4, 40, 32, 50, 0.0f, GT_F16},
        {200, 6, 2, 32, 16, 37, 30.0f, GT_F32},
        {200, 8, 2, 64, 16, 100, 0.0f, GT_F16}, /* a window wider than a chunk */
        {130, 6, 3, 48, 24, 0, 0.0f, GT_F16},   /* key vectors cut by blocks of 24 */
        {120, 4, 2, 40, 7, 30, 0.0f, GT_F16},   /* blocks of 7: no full key vector */
        /* BF16 pairs: the pair of a query's last key holds the next, unseen
         * key (unwritten alone, written in the tile), and a window of 37
         * starts at odd keys */
        {150, 8, 2, 64, 16, 0, 0.0f, GT_BF16},
        {200, 8, 2, 64, 16, 37, 30.0f, GT_BF16},
        {130, 6, 3, 48, 24, 0, 0.0f, GT_BF16},
        {120, 4, 2, 40, 6, 30, 0.0f, GT_BF16}, /* blocks of 6: no full key vector */
    };
    int ok = 1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) ok &= check_attention(&cases[i]);
    assert_true(ok);
}

/* ---- rmsnorm ---- */

static void test_rmsnorm_row_alone_equals_row_in_batch(void **state) {
    (void)state;
    enum { R = 9, N = 333 };
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 5);
    float x[R * N], w[N], all[R * N], one[N];
    gt_test_fill_normal(&rng, x, R * N, 2.0f);
    gt_test_fill_normal(&rng, w, N, 1.0f);
    for (int i = 0; i < N_ISA; i++)
        for (int th = 0; th < 3; th++) {
            if (!KS[i][th]) continue;
            assert_int_equal(gt_rmsnorm(KS[i][th], x, w, all, R, N, 1e-6f), GT_OK);
            for (int r = 0; r < R; r++) {
                assert_int_equal(gt_rmsnorm(KS[i][0], x + r * N, w, one, 1, N, 1e-6f), GT_OK);
                assert_int_equal(first_diff(all + r * N, one, N), -1);
            }
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_row_alone_equals_row_in_batch),
        cmocka_unit_test(test_attention_query_alone_equals_query_in_tile),
        cmocka_unit_test(test_rmsnorm_row_alone_equals_row_in_batch),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
