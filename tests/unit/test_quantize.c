/* Tests of `gantry quantize`'s library (model/quantize_plan.c, imatrix.c,
 * quantize.c) and the importance-weighted codecs (common/quant.c).
 *
 * Evidence: (1) with a crafted importance vector (a few columns weighted
 * 1000x), the weighted quantizers give a lower importance-weighted error
 * sum_i qw_i (x_i - y_i)^2 than round-to-nearest on the same rows, for
 * every type with a weighted path; without weights (or for the other types)
 * the bytes are exactly gt_quantize_row's. (2) The weighted path's plain
 * rms error with uniform weights stays within the round-trip bounds of
 * tests/unit/test_quant.c (rms err / rms x on N(0,1) data). (3) The mixes
 * give the documented type per tensor name, --keep overrides, fallbacks.
 * (4) An imatrix written and read back gives sums / counts computed here
 * independently in double. (5) The writer's streaming mode: a failing fill
 * aborts the write with its status and leaves no file. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/quant.h"
#include "model/gguf.h"
#include "model/quantize.h"
#include "util/test_util.h"

enum { ROWS = 16, N = 1024 };

static const gt_dtype k_weighted[] = {GT_Q4_0, GT_Q5_0, GT_Q2_K, GT_Q3_K,
                                      GT_Q4_K, GT_Q5_K, GT_Q6_K};

static double weighted_err(const float *x, const float *y, const float *qw, int n) {
    double e = 0;
    for (int i = 0; i < n; i++) e += (double)qw[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

/* Quantizes ROWS rows of x with (qw) or without (NULL) weights and returns
 * the importance-weighted error of the decoded rows against x under w. */
static double matrix_err(gt_dtype t, const float *x, const float *qw, const float *w) {
    size_t rb;
    assert_true(gt_dtype_row_bytes(t, N, &rb));
    uint8_t *q = malloc(rb);
    float *y = malloc(N * sizeof *y);
    double e = 0;
    for (int r = 0; r < ROWS; r++) {
        assert_int_equal(gt_quantize_row_imatrix(t, x + (size_t)r * N, q, N, qw), GT_OK);
        assert_int_equal(gt_dequantize_row(t, q, y, N), GT_OK);
        e += weighted_err(x + (size_t)r * N, y, w, N);
    }
    free(q);
    free(y);
    return e;
}

static void test_imatrix_lowers_weighted_error(void **state) {
    (void)state;
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 42);
    float *x = malloc((size_t)ROWS * N * sizeof *x), qw[N];
    gt_test_fill_normal(&rng, x, (size_t)ROWS * N, 1.0f);
    /* A few "outlier" columns whose inputs are large: 1000x the weight. */
    for (int i = 0; i < N; i++) qw[i] = (i % 37 == 5) ? 1000.f : 1.f;
    for (size_t k = 0; k < sizeof k_weighted / sizeof k_weighted[0]; k++) {
        gt_dtype t = k_weighted[k];
        double rtn = matrix_err(t, x, NULL, qw), imx = matrix_err(t, x, qw, qw);
        printf("%-5s weighted error: round-to-nearest %.4f, --imatrix %.4f (%.1f%% lower)\n",
               gt_dtype_name(t), rtn, imx, 100.0 * (1.0 - imx / rtn));
        assert_true(gt_quant_uses_imatrix(t));
        assert_true(imx < 0.9 * rtn);
    }
    free(x);
}

/* A deliberately useless importance vector (all weight on columns the rows
 * do not use) must not pass as an improvement: the check above can fail. */
static void test_weighted_check_can_fail(void **state) {
    (void)state;
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 43);
    float *x = malloc((size_t)ROWS * N * sizeof *x), qw[N], wrong[N];
    gt_test_fill_normal(&rng, x, (size_t)ROWS * N, 1.0f);
    for (int i = 0; i < N; i++) {
        qw[i] = (i % 37 == 5) ? 1000.f : 1.f;
        wrong[i] = (i % 37 == 6) ? 1000.f : 1.f; /* the neighbours of the important columns */
    }
    double rtn = matrix_err(GT_Q4_K, x, NULL, qw), off = matrix_err(GT_Q4_K, x, wrong, qw);
    assert_false(off < 0.9 * rtn);
    free(x);
}

static void test_no_weights_is_rtn(void **state) {
    (void)state;
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 44);
    float x[N], qw[N];
    gt_test_fill_normal(&rng, x, N, 0.05f);
    for (int i = 0; i < N; i++) qw[i] = 1.f + (float)(i % 7);
    const gt_dtype all[] = {GT_F16,  GT_BF16, GT_Q8_0, GT_Q4_0, GT_Q4_1, GT_Q5_0,
                            GT_Q5_1, GT_Q2_K, GT_Q3_K, GT_Q4_K, GT_Q5_K, GT_Q6_K};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        size_t rb;
        assert_true(gt_dtype_row_bytes(all[k], N, &rb));
        uint8_t *a = calloc(1, rb), *b = calloc(1, rb);
        assert_int_equal(gt_quantize_row(all[k], x, a, N), GT_OK);
        assert_int_equal(gt_quantize_row_imatrix(all[k], x, b, N, NULL), GT_OK);
        assert_memory_equal(a, b, rb);
        if (!gt_quant_uses_imatrix(all[k])) { /* weights ignored: still RTN */
            assert_int_equal(gt_quantize_row_imatrix(all[k], x, b, N, qw), GT_OK);
            assert_memory_equal(a, b, rb);
        }
        free(a);
        free(b);
    }
}

/* rms(err) / rms(x) with uniform weights, against tests/unit/test_quant.c's
 * round-trip bounds for N(0, 1) data. */
static void test_weighted_round_trip(void **state) {
    (void)state;
    const struct {
        gt_dtype t;
        double rms;
    } bounds[] = {{GT_Q4_0, 0.11}, {GT_Q5_0, 0.055}, {GT_Q2_K, 0.37}, {GT_Q3_K, 0.19},
                  {GT_Q4_K, 0.09}, {GT_Q5_K, 0.045}, {GT_Q6_K, 0.023}};
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 45);
    float x[4096], y[4096], qw[4096];
    gt_test_fill_normal(&rng, x, 4096, 1.0f);
    for (int i = 0; i < 4096; i++) qw[i] = 1.f;
    uint8_t buf[4096 * 2];
    for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
        assert_int_equal(gt_quantize_row_imatrix(bounds[k].t, x, buf, 4096, qw), GT_OK);
        assert_int_equal(gt_dequantize_row(bounds[k].t, buf, y, 4096), GT_OK);
        double e2 = 0, x2 = 0;
        for (int i = 0; i < 4096; i++) {
            e2 += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            x2 += (double)x[i] * x[i];
        }
        double rel = sqrt(e2 / x2);
        printf("%-5s weighted path, uniform weights: rms err %.5f (bound %.3f)\n",
               gt_dtype_name(bounds[k].t), rel, bounds[k].rms);
        assert_true(rel < bounds[k].rms);
    }
}

static gt_tensor_info mat(const char *name, int64_t n_in, int64_t n_out) {
    gt_tensor_info t = {.name = name, .type = GT_F32, .n_dims = 2, .ne = {n_in, n_out, 1, 1}};
    return t;
}

static gt_dtype choose(const gt_quant_preset *p, const char *name, int64_t n_in, int n_layer) {
    gt_tensor_info t = mat(name, n_in, 64);
    return gt_quant_choose(p, &t, n_layer, NULL, 0).type;
}

static void test_presets(void **state) {
    (void)state;
    gt_quant_preset p;
    assert_int_equal(gt_quant_preset_parse("Q4_K_M", &p), GT_OK);
    assert_int_equal(p.base, GT_Q4_K);
    assert_int_equal(p.file_type, 15);
    /* 8 layers: use_more_bits holds for layers 0, 3, 6, 7. */
    const int more[8] = {1, 0, 0, 1, 0, 0, 1, 1};
    char nm[64];
    for (int il = 0; il < 8; il++) {
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", il);
        assert_int_equal(choose(&p, nm, 256, 8), more[il] ? GT_Q6_K : GT_Q4_K);
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", il);
        assert_int_equal(choose(&p, nm, 512, 8), more[il] ? GT_Q6_K : GT_Q4_K);
        snprintf(nm, sizeof nm, "blk.%d.attn_q.weight", il);
        assert_int_equal(choose(&p, nm, 256, 8), GT_Q4_K);
    }
    assert_int_equal(choose(&p, "output.weight", 256, 8), GT_Q6_K);
    assert_int_equal(choose(&p, "token_embd.weight", 256, 8), GT_Q6_K);
    /* Fallbacks for rows that are not whole 256-element super-blocks. */
    assert_int_equal(choose(&p, "blk.1.attn_q.weight", 128, 8), GT_Q5_0);
    assert_int_equal(choose(&p, "output.weight", 128, 8), GT_Q8_0);
    assert_int_equal(choose(&p, "blk.1.attn_q.weight", 48, 8), GT_F16);
    assert_int_equal(gt_quant_preset_parse("q3_k_m", &p), GT_OK);
    assert_int_equal(choose(&p, "blk.1.attn_v.weight", 256, 32), GT_Q5_K);
    assert_int_equal(choose(&p, "blk.2.attn_v.weight", 256, 32), GT_Q4_K);
    assert_int_equal(choose(&p, "blk.1.ffn_down.weight", 256, 32), GT_Q5_K);
    assert_int_equal(choose(&p, "blk.2.ffn_down.weight", 256, 32), GT_Q4_K);
    assert_int_equal(choose(&p, "blk.9.attn_output.weight", 256, 32), GT_Q4_K);
    assert_int_equal(choose(&p, "blk.9.ffn_up.weight", 256, 32), GT_Q3_K);
    assert_int_equal(gt_quant_preset_parse("q4_0", &p), GT_OK);
    assert_int_equal(choose(&p, "output.weight", 256, 8), GT_Q4_0);
    assert_int_equal(choose(&p, "blk.0.attn_q.weight", 48, 8), GT_F16); /* not whole blocks */
    /* Tensors that stay as they are. */
    gt_tensor_info norm = {
        .name = "blk.0.attn_norm.weight", .type = GT_F32, .n_dims = 1, .ne = {256, 1, 1, 1}};
    assert_int_equal(gt_quant_choose(&p, &norm, 8, NULL, 0).why, GT_QUANT_AS_IS);
    gt_tensor_info router = mat("blk.0.ffn_gate_inp.weight", 256, 8);
    assert_int_equal(gt_quant_choose(&p, &router, 8, NULL, 0).type, GT_F32);
    /* --keep: last matching pattern wins; matrices only. */
    gt_quant_keep keep[2];
    assert_int_equal(gt_quant_keep_parse("blk.*.attn_*=q8_0", &keep[0]), GT_OK);
    assert_int_equal(gt_quant_keep_parse("*attn_v*=F16", &keep[1]), GT_OK);
    gt_tensor_info v = mat("blk.3.attn_v.weight", 256, 64), q = mat("blk.3.attn_q.weight", 256, 64);
    gt_quant_choice c = gt_quant_choose(&p, &v, 8, keep, 2);
    assert_int_equal(c.type, GT_F16);
    assert_int_equal(c.keep_index, 1);
    assert_int_equal(gt_quant_choose(&p, &q, 8, keep, 2).type, GT_Q8_0);
    assert_int_equal(gt_quant_choose(&p, &norm, 8, keep, 2).why, GT_QUANT_AS_IS);
    free((char *)keep[0].pattern);
    free((char *)keep[1].pattern);
    /* Bad input: one sentence each. */
    assert_int_equal(gt_quant_preset_parse("q9_k", &p), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "q9_k"));
    assert_int_equal(gt_quant_keep_parse("noequals", &keep[0]), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_quant_keep_parse("*=q8_k", &keep[0]), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_quant_keep_parse("=q8_0", &keep[0]), GT_ERR_INVALID_ARG);
}

static void test_imatrix_round_trip(void **state) {
    (void)state;
    gt_imatrix *im;
    assert_int_equal(gt_imatrix_create(&im), GT_OK);
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 46);
    enum { NI = 40, E = 3 };
    float x[7 * NI];
    double want_dense[NI] = {0}, want_exp[E][NI] = {{0}};
    int64_t cnt_exp[E] = {0};
    for (int call = 0; call < 5; call++) {
        gt_test_fill_normal(&rng, x, 7 * NI, 1.0f + (float)call);
        int n = 3 + call % 4;
        assert_int_equal(gt_imatrix_add(im, "blk.0.ffn_up.weight", 0, 1, x, n, NI), GT_OK);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < NI; j++) want_dense[j] += (double)x[r * NI + j] * x[r * NI + j];
        int ex = call % E;
        assert_int_equal(gt_imatrix_add(im, "blk.0.ffn_up_exps.weight", ex, E, x, 2, NI), GT_OK);
        for (int r = 0; r < 2; r++)
            for (int j = 0; j < NI; j++) want_exp[ex][j] += (double)x[r * NI + j] * x[r * NI + j];
        cnt_exp[ex] += 2;
    }
    /* A shape that disagrees with the earlier rows is refused. */
    assert_int_equal(gt_imatrix_add(im, "blk.0.ffn_up.weight", 0, 1, x, 1, NI + 1),
                     GT_ERR_INVALID_ARG);
    const char *path = gt_test_tmp_path(0, "test_quantize_imatrix.gguf");
    assert_int_equal(gt_imatrix_write(im, path, "text.txt", 5, 7), GT_OK);
    gt_imatrix_free(im);
    assert_int_equal(gt_imatrix_load(path, &im), GT_OK);
    assert_int_equal(gt_imatrix_n_entries(im), 2);
    assert_int_equal(gt_imatrix_chunk_count(im), 5);
    assert_string_equal(gt_imatrix_dataset(im), "text.txt");
    int n_dense = 3 + 4 + 5 + 6 + 3;
    const float *w = gt_imatrix_weights(im, "blk.0.ffn_up.weight", 0, NI, 1);
    assert_non_null(w);
    for (int j = 0; j < NI; j++)
        assert_true(fabs(w[j] - want_dense[j] / n_dense) <= 1e-5 * (want_dense[j] / n_dense));
    for (int ex = 0; ex < E; ex++) {
        w = gt_imatrix_weights(im, "blk.0.ffn_up_exps.weight", ex, NI, E);
        assert_non_null(w);
        for (int j = 0; j < NI; j++)
            assert_true(fabs(w[j] - want_exp[ex][j] / cnt_exp[ex]) <=
                        1e-5 * (want_exp[ex][j] / cnt_exp[ex]));
    }
    assert_null(gt_imatrix_weights(im, "blk.0.ffn_up.weight", 0, NI + 1, 1)); /* wrong shape */
    assert_null(gt_imatrix_weights(im, "blk.9.ffn_up.weight", 0, NI, 1));     /* absent */
    gt_imatrix_free(im);
    /* A model file is not an imatrix. */
    gt_gguf_writer *wr;
    assert_int_equal(gt_gguf_writer_create(&wr), GT_OK);
    assert_int_equal(gt_gguf_writer_set_str(wr, "general.architecture", "llama"), GT_OK);
    assert_int_equal(gt_gguf_writer_write(wr, path), GT_OK);
    gt_gguf_writer_destroy(wr);
    assert_int_equal(gt_imatrix_load(path, &im), GT_ERR_FORMAT);
    assert_non_null(strstr(gt_last_error(), "not an importance matrix"));
    unlink(path);
}

static gt_status failing_fill(void *ctx, size_t index, void *buf, size_t nbytes) {
    (void)ctx;
    if (index == 1) return gt_fail(GT_ERR_IO, "fill of tensor %zu failed on purpose", index);
    memset(buf, (int)index + 1, nbytes);
    return GT_OK;
}

static gt_status ok_fill(void *ctx, size_t index, void *buf, size_t nbytes) {
    (void)ctx;
    memset(buf, (int)index + 1, nbytes);
    return GT_OK;
}

static void test_writer_streaming(void **state) {
    (void)state;
    const char *path = gt_test_tmp_path(1, "test_quantize_stream.gguf");
    unlink(path);
    int64_t ne[2] = {32, 3};
    gt_gguf_writer *w;
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    assert_int_equal(gt_gguf_writer_add_tensor_deferred(w, "a", GT_Q8_0, 2, ne, 3 * 34), GT_OK);
    assert_int_equal(gt_gguf_writer_add_tensor_deferred(w, "b", GT_F32, 2, ne, 3 * 32 * 4), GT_OK);
    assert_int_equal(gt_gguf_writer_add_tensor_deferred(w, "b", GT_F32, 2, ne, 3 * 32 * 4),
                     GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gguf_writer_add_tensor_deferred(w, "c", GT_F32, 2, ne, 5),
                     GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gguf_writer_write(w, path), GT_ERR_INVALID_ARG); /* no fill given */
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(gt_gguf_writer_write_stream(w, path, failing_fill, NULL), GT_ERR_IO);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(gt_gguf_writer_write_stream(w, path, ok_fill, NULL), GT_OK);
    gt_gguf_writer_destroy(w);
    gt_gguf *g;
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    const gt_tensor_info *b = gt_gguf_find_tensor(g, "b");
    assert_non_null(b);
    assert_int_equal(((const uint8_t *)b->data)[0], 2);
    assert_int_equal(((const uint8_t *)b->data)[b->nbytes - 1], 2);
    gt_gguf_close(g);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_imatrix_lowers_weighted_error),
        cmocka_unit_test(test_weighted_check_can_fail),
        cmocka_unit_test(test_no_weights_is_rtn),
        cmocka_unit_test(test_weighted_round_trip),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_imatrix_round_trip),
        cmocka_unit_test(test_writer_streaming),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
