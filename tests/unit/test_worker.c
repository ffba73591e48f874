/* Engine and KV-cache tests on tiny synthetic models.
 *
 * Correctness of the math is checked against the numpy reference in
 * tests/e2e; here the oracle is the engine's own single-sequence,
 * token-by-token run, against which batching must not change anything:
 * chunked prefill, two sequences interleaved in one batch, a cleared and
 * reused sequence. Plus the refusals: bad ids, gaps in positions, context
 * overflow, a full KV pool. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/synth.h"
#include "util/test_util.h"
#include "worker/engine.h"
#include "worker/engine_internal.h"
#include "worker/kv_cache.h"

enum { V = 300, P = 11 };

static const char *make_model(const char *arch, int slot) {
    static char name[64];
    snprintf(name, sizeof name, "worker_%s.gguf", arch);
    const char *path = gt_test_tmp_path(slot, name);
    gt_synth_config c = gt_test_tiny_model(arch, GT_F32, V, 3);
    c.n_ctx = 64;
    gt_status st = gt_synth_write(&c, path);
    if (st != GT_OK) fail_msg("synth %s: %s", arch, gt_last_error());
    return path;
}

static gt_engine *open_engine(const char *path, int max_seqs, int threads) {
    gt_engine_config c = GT_ENGINE_CONFIG_INIT;
    c.model_path = path;
    c.max_seqs = max_seqs;
    c.n_threads = threads;
    c.n_ctx = 32;
    c.kv_block_size = 4; /* small blocks: positions cross many block edges */
    c.kv_type = GT_F32;
    gt_engine *e = NULL;
    if (gt_engine_create(&c, &e) != GT_OK) fail_msg("engine: %s", gt_last_error());
    return e;
}

static void prompt(int32_t *t, int n, int salt) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)((i * 37 + salt * 101 + 5) % V);
}

/* Logits of every position of one sequence, one token per call. */
static void run_single(gt_engine *e, int seq, const int32_t *t, int n, float *out) {
    for (int i = 0; i < n; i++) {
        int32_t pos = i, s = seq;
        gt_batch b = {1, t + i, &pos, &s, NULL};
        assert_int_equal(gt_engine_decode(e, &b, out + (size_t)i * V), GT_OK);
    }
}

static void check_batching(const char *arch) {
    const char *path = make_model(arch, 0);
    int32_t ta[P], tb[P];
    prompt(ta, P, 1);
    prompt(tb, P, 2);
    float *ref_a = malloc(sizeof(float) * P * V), *ref_b = malloc(sizeof(float) * P * V);
    float *got = malloc(sizeof(float) * 2 * P * V);
    gt_engine *e1 = open_engine(path, 1, 1);
    run_single(e1, 0, ta, P, ref_a);
    gt_engine_seq_clear(e1, 0);
    run_single(e1, 0, tb, P, ref_b);
    gt_engine_destroy(e1);

    /* Both sequences interleaved in one batch, chunked in two calls, 2 threads. */
    gt_engine *e = open_engine(path, 2, 2);
    int32_t tok[2 * P], pos[2 * P], seq[2 * P];
    int8_t want[2 * P];
    for (int i = 0; i < P; i++) {
        tok[2 * i] = ta[i], pos[2 * i] = i, seq[2 * i] = 0;
        tok[2 * i + 1] = tb[i], pos[2 * i + 1] = i, seq[2 * i + 1] = 1;
    }
    memset(want, 1, sizeof want);
    int cut = 7;
    gt_batch b1 = {cut, tok, pos, seq, want};
    gt_batch b2 = {2 * P - cut, tok + cut, pos + cut, seq + cut, want + cut};
    assert_int_equal(gt_engine_decode(e, &b1, got), GT_OK);
    assert_int_equal(gt_engine_decode(e, &b2, got + (size_t)cut * V), GT_OK);
    for (int i = 0; i < P; i++) {
        char label[64];
        snprintf(label, sizeof label, "%s seq a pos %d", arch, i);
        /* Batched GEMM and per-token GEMV sum in different orders: 1e-4 relative. */
        assert_true(gt_test_allclose(label, got + (size_t)(2 * i) * V, ref_a + (size_t)i * V, V, 1e-4, 1e-4));
        snprintf(label, sizeof label, "%s seq b pos %d", arch, i);
        assert_true(gt_test_allclose(label, got + (size_t)(2 * i + 1) * V, ref_b + (size_t)i * V, V, 1e-4, 1e-4));
    }
    assert_int_equal(gt_engine_seq_len(e, 0), P);
    assert_int_equal(gt_engine_seq_len(e, 1), P);
    gt_engine_destroy(e);
    free(ref_a);
    free(ref_b);
    free(got);
}

static void test_batching_llama(void **s) { (void)s; check_batching("llama"); }
static void test_batching_qwen2(void **s) { (void)s; check_batching("qwen2"); }
static void test_batching_qwen3(void **s) { (void)s; check_batching("qwen3"); }
static void test_batching_llama_moe(void **s) { (void)s; check_batching("llama-moe"); }
static void test_batching_qwen2moe(void **s) { (void)s; check_batching("qwen2moe"); }
static void test_batching_qwen3moe(void **s) { (void)s; check_batching("qwen3moe"); }

/* The MoE layer's one-pass bucketing against the plain scan it replaced:
 * for each expert, every (token, slot) routed to it in token order. */
static void test_moe_bucket(void **state) {
    (void)state;
    enum { N = 37, K = 3, E = 11 };
    int32_t ids[N * K], start[E + 1], rows[N * K], pos[N * K];
    uint32_t x = 12345;
    for (int t = 0; t < N; t++)
        for (int j = 0; j < K; j++) { /* K distinct experts per token; expert 7 never */
            int ex;
            bool again;
            do {
                x = x * 1103515245u + 12345u;
                ex = (int)((x >> 16) % E);
                again = ex == 7;
                for (int q = 0; q < j; q++) again |= ids[t * K + q] == ex;
            } while (again);
            ids[t * K + j] = ex;
        }
    gt__moe_bucket(ids, N, K, E, start, rows, pos);
    assert_int_equal(start[0], 0);
    assert_int_equal(start[E], N * K);
    assert_int_equal(start[8] - start[7], 0);
    for (int ex = 0; ex < E; ex++) {
        int m = start[ex];
        for (int t = 0; t < N; t++)
            for (int j = 0; j < K; j++)
                if (ids[t * K + j] == ex) {
                    assert_true(m < start[ex + 1]);
                    assert_int_equal(rows[m], t);
                    assert_int_equal(pos[t * K + j], m);
                    m++;
                }
        assert_int_equal(m, start[ex + 1]);
    }
    /* one token: only its K experts have rows */
    gt__moe_bucket(ids, 1, K, E, start, rows, pos);
    int used = 0;
    for (int ex = 0; ex < E; ex++) used += start[ex + 1] > start[ex];
    assert_int_equal(used, K);
}

static void test_refusals(void **state) {
    (void)state;
    const char *path = make_model("llama", 1);
    gt_engine *e = open_engine(path, 1, 1);
    float *logits = malloc(sizeof(float) * V * 40);
    int32_t tok = V, pos = 0, seq = 0;
    gt_batch b = {1, &tok, &pos, &seq, NULL};
    assert_int_equal(gt_engine_decode(e, &b, logits), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "vocabulary"));
    tok = 1;
    pos = 3; /* a gap: the sequence is empty */
    assert_int_equal(gt_engine_decode(e, &b, logits), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "position"));
    assert_int_equal(gt_engine_seq_len(e, 0), 0);
    seq = 5;
    pos = 0;
    assert_int_equal(gt_engine_decode(e, &b, logits), GT_ERR_INVALID_ARG);
    seq = 0;
    int32_t t[40], p[40], sq[40] = {0};
    for (int i = 0; i < 40; i++) t[i] = i, p[i] = i;
    gt_batch big = {40, t, p, sq, NULL}; /* context is 32 */
    assert_int_equal(gt_engine_decode(e, &big, logits), GT_ERR_RANGE);
    assert_non_null(strstr(gt_last_error(), "context"));
    assert_int_equal(gt_engine_seq_len(e, 0), 0);
    big.n = 32;
    assert_int_equal(gt_engine_decode(e, &big, logits), GT_OK);
    pos = 32;
    assert_int_equal(gt_engine_decode(e, &b, logits), GT_ERR_RANGE);
    gt_engine_destroy(e);
    free(logits);
}

static void test_kv_cache(void **state) {
    (void)state;
    gt_kv_cache_config c = {.n_layer = 2, .row_elems = 8, .block_size = 4, .n_blocks = 5,
                            .max_seqs = 2, .max_seq_blocks = 3, .type = GT_F32};
    gt_kernels *k;
    assert_int_equal(gt_kernels_create(NULL, &k), GT_OK);
    gt_kv_cache *kv;
    assert_int_equal(gt_kv_cache_create(k, &c, &kv), GT_OK);
    assert_int_equal(gt_kv_cache_reserve(kv, 0, 12), GT_OK);
    assert_int_equal(gt_kv_cache_reserve(kv, 0, 13), GT_ERR_RANGE); /* > 3 blocks */
    assert_int_equal(gt_kv_cache_reserve(kv, 1, 8), GT_OK);
    assert_int_equal(gt_kv_cache_reserve(kv, 1, 9), GT_ERR_RANGE); /* pool of 5 is used up */
    float rows[3][8];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 8; j++) rows[i][j] = (float)(i * 10 + j);
    int32_t pos[3] = {3, 4, 9};
    assert_int_equal(gt_kv_cache_store(kv, 1, 0, 1, pos, &rows[0][0], 3), GT_OK);
    const void *blocks[3];
    assert_int_equal(gt_kv_cache_blocks(kv, 1, 0, 1, 12, blocks), 3);
    assert_memory_equal((const float *)blocks[0] + 3 * 8, rows[0], sizeof rows[0]);
    assert_memory_equal((const float *)blocks[1] + 0 * 8, rows[1], sizeof rows[1]);
    assert_memory_equal((const float *)blocks[2] + 1 * 8, rows[2], sizeof rows[2]);
    gt_kv_cache_clear(kv, 0);
    assert_int_equal(gt_kv_cache_reserve(kv, 1, 12), GT_OK); /* freed blocks are reusable */
    gt_kv_cache_destroy(kv);
    gt_kernels_destroy(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_cache),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_batching_llama),
        cmocka_unit_test(test_batching_qwen2),
        cmocka_unit_test(test_batching_qwen3),
        cmocka_unit_test(test_batching_llama_moe),
        cmocka_unit_test(test_batching_qwen2moe),
        cmocka_unit_test(test_batching_qwen3moe),
        cmocka_unit_test(test_moe_bucket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
