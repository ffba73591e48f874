/* Tests of the small ops of the forward pass (kernels/cpu/ops_misc_ref.c
 * and their wrappers in kernels/cpu/backend.c): bias add, scale, softcap,
 * zero, embedding look-up, MoE router top-k (and its one-pass version,
 * kernels/cpu/ops_router.c), row gather and weighted
 * scatter-add, the sigmoid-gated add and the KV store. Each op, on every ISA
 * this CPU has, is compared with its `_ref` (bit for bit: these ops do the
 * same float operations) and with a double-precision oracle written here;
 * a deliberately wrong oracle must fail the same comparison. */
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
#include "kernels/cpu/ops.h"
#include "kernels/kernels.h"
#include "util/test_util.h"

static const char *const k_isas[] = {"ref", "avx2", "avx512"};
#define N_ISAS (sizeof k_isas / sizeof k_isas[0])

static gt_kernels *make(const char *isa) {
    gt_kernels_config cfg = {2, isa, NULL, GT_KERNELS_DEVICE_AUTO, NULL};
    gt_kernels *k = NULL;
    gt_status st = gt_kernels_create(&cfg, &k);
    if (st == GT_ERR_UNSUPPORTED) return NULL;
    assert_int_equal(st, GT_OK);
    return k;
}

static float *rnd(gt_test_rng *r, size_t n, float sd) {
    float *x = malloc(n * sizeof(float));
    gt_test_fill_normal(r, x, n, sd);
    return x;
}

static float *dup(const float *x, size_t n) {
    float *y = malloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static void test_bias_scale_softcap_zero(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 11);
    const int64_t rows = 5, n = 1001;
    float *y0 = rnd(&r, rows * n, 3.0f), *b = rnd(&r, n, 1.0f);
    float *want = malloc(rows * n * sizeof(float));
    for (size_t i = 0; i < N_ISAS; i++) {
        gt_kernels *k = make(k_isas[i]);
        if (!k) continue;
        /* bias: the table's SIMD add per row vs the reference and an oracle */
        float *y = dup(y0, rows * n), *yr = dup(y0, rows * n);
        assert_int_equal(gt_add_bias(k, y, b, rows, n), GT_OK);
        gt__add_bias_ref(yr, b, rows, n);
        assert_memory_equal(y, yr, rows * n * sizeof(float));
        for (int64_t t = 0; t < rows; t++)
            for (int64_t j = 0; j < n; j++) want[t * n + j] = (float)((double)y0[t * n + j] + b[j]);
        assert_memory_equal(y, want, rows * n * sizeof(float)); /* one float add each */
        want[7] += 1e-3f;
        assert_false(gt_test_allclose("add_bias vs a wrong oracle (expected to fail)", y, want,
                                      rows * n, 1e-6, 1e-6));
        /* scale */
        memcpy(y, y0, rows * n * sizeof(float));
        assert_int_equal(gt_scale(k, y, 0.37f, rows * n), GT_OK);
        for (int64_t j = 0; j < rows * n; j++) want[j] = (float)((double)y0[j] * 0.37f);
        assert_memory_equal(y, want, rows * n * sizeof(float));
        /* softcap: tanhf against tanh in double, within an ulp or two */
        memcpy(y, y0, rows * n * sizeof(float));
        memcpy(yr, y0, rows * n * sizeof(float));
        assert_int_equal(gt_softcap(k, y, 2.5f, rows * n), GT_OK);
        gt__softcap_ref(yr, 2.5f, rows * n);
        assert_memory_equal(y, yr, rows * n * sizeof(float));
        for (int64_t j = 0; j < rows * n; j++) want[j] = (float)(2.5 * tanh((double)y0[j] / 2.5));
        assert_true(gt_test_allclose("softcap", y, want, rows * n, 1e-6, 1e-6));
        for (int64_t j = 0; j < rows * n; j++) assert_true(fabsf(y[j]) <= 2.5f);
        for (int64_t j = 0; j < rows * n; j++) want[j] = (float)(2.0 * tanh((double)y0[j] / 2.0));
        assert_false(gt_test_allclose("softcap 2 for 2.5 (expected to fail)", y, want, rows * n,
                                      1e-6, 1e-6));
        assert_int_equal(gt_softcap(k, y, 0.0f, 4), GT_ERR_INVALID_ARG);
        /* zero */
        assert_int_equal(gt_zero(k, y + 3, 10), GT_OK);
        for (int j = 3; j < 13; j++) assert_true(y[j] == 0.0f);
        assert_true(y[2] != 0.0f && y[13] != 0.0f);
        free(y);
        free(yr);
        gt_kernels_destroy(k);
    }
    free(y0);
    free(b);
    free(want);
}

static void test_embed(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 12);
    const int64_t V = 50, D = 96, v0 = 20, nv = 17;
    const gt_dtype types[] = {GT_F32, GT_F16, GT_Q8_0};
    float *src = rnd(&r, V * D, 1.0f);
    int32_t ids[] = {20, 36, 19, 37, 25, 0, 25};
    const int64_t n_ids = sizeof ids / sizeof ids[0];
    float *out = malloc(n_ids * D * sizeof(float)), *ref = malloc(n_ids * D * sizeof(float));
    float *want = malloc(n_ids * D * sizeof(float));
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        size_t rb;
        assert_true(gt_dtype_row_bytes(types[ti], D, &rb));
        uint8_t *rows = malloc(rb * V);
        for (int64_t v = 0; v < V; v++)
            assert_int_equal(gt_quantize_row(types[ti], src + v * D, rows + rb * v, D), GT_OK);
        /* the oracle: each held row decoded on its own, times the scale in double */
        for (int64_t i = 0; i < n_ids; i++) {
            float row[96];
            const bool held = ids[i] >= v0 && ids[i] < v0 + nv;
            if (held) assert_int_equal(gt_dequantize_row(types[ti], rows + rb * ids[i], row, D), GT_OK);
            for (int64_t j = 0; j < D; j++) want[i * D + j] = held ? (float)((double)row[j] * 1.5) : 0.0f;
        }
        for (size_t i = 0; i < N_ISAS; i++) {
            gt_kernels *k = make(k_isas[i]);
            if (!k) continue;
            gt_embed_args a = {types[ti], rows + rb * v0, v0, nv, D, 1.5f, ids, n_ids, out};
            for (int64_t j = 0; j < n_ids * D; j++) out[j] = NAN; /* zeros must be written */
            assert_int_equal(gt_embed(k, &a), GT_OK);
            a.out = ref;
            assert_int_equal(gt__embed_ref(&a), GT_OK);
            assert_memory_equal(out, ref, n_ids * D * sizeof(float));
            assert_memory_equal(out, want, n_ids * D * sizeof(float)); /* one product each */
            gt_kernels_destroy(k);
        }
        want[1] = 1.0f; /* row 0 is id 20, held */
        assert_false(gt_test_allclose("embed vs a wrong oracle (expected to fail)", out, want,
                                      n_ids * D, 1e-6, 1e-6));
        free(rows);
    }
    free(src);
    free(out);
    free(ref);
    free(want);
}

/* Softmax in double and top-k by sorting (probability descending, id
 * ascending): an independent formulation of the router. */
static void router_oracle(const float *logits, int64_t n_tok, int E, int K, bool renorm,
                          double *probs, int32_t *ids, double *w) {
    for (int64_t t = 0; t < n_tok; t++) {
        const float *l = logits + t * E;
        double *p = probs + t * E;
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) mx = l[e] > mx ? l[e] : mx;
        double s = 0;
        for (int e = 0; e < E; e++) s += exp((double)(l[e] - mx));
        for (int e = 0; e < E; e++) p[e] = (double)(float)(exp((double)(l[e] - mx)) / s);
        int32_t order[2048];
        for (int e = 0; e < E; e++) order[e] = e;
        for (int a = 1; a < E; a++) /* stable insertion sort, descending */
            for (int b = a; b > 0 && p[order[b]] > p[order[b - 1]]; b--) {
                int32_t tmp = order[b];
                order[b] = order[b - 1];
                order[b - 1] = tmp;
            }
        double sum = 0;
        for (int j = 0; j < K; j++) sum += p[order[j]];
        for (int j = 0; j < K; j++) {
            ids[t * K + j] = order[j];
            w[t * K + j] = renorm ? p[order[j]] / sum : p[order[j]];
        }
    }
}

static void test_router_topk(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 13);
    const int64_t T = 9;
    const int E = 8, K = 2;
    float *logits = rnd(&r, T * E, 2.0f);
    /* ties: token 0 has experts 5 and 2 equal and largest, token 1 all equal */
    for (int e = 0; e < E; e++) logits[e] = -1.0f;
    logits[5] = logits[2] = 3.0f;
    for (int e = 0; e < E; e++) logits[E + e] = 0.25f;
    double probs_o[9 * 8], w_o[9 * 2];
    int32_t ids_o[9 * 2];
    for (int renorm = 0; renorm < 2; renorm++) {
        router_oracle(logits, T, E, K, renorm, probs_o, ids_o, w_o);
        assert_int_equal(ids_o[0], 2);
        assert_int_equal(ids_o[1], 5);
        assert_int_equal(ids_o[2], 0);
        assert_int_equal(ids_o[3], 1);
        for (size_t i = 0; i < N_ISAS; i++) {
            gt_kernels *k = make(k_isas[i]);
            if (!k) continue;
            float *p = dup(logits, T * E), *pr = dup(logits, T * E), w[18], wr[18];
            int32_t ids[18], idsr[18];
            assert_int_equal(gt_router_topk(k, p, T, E, K, renorm, ids, w), GT_OK);
            gt__router_topk_ref(pr, T, E, K, renorm, idsr, wr);
            assert_memory_equal(p, pr, T * E * sizeof(float));
            assert_memory_equal(ids, idsr, sizeof ids);
            assert_memory_equal(w, wr, sizeof w);
            assert_memory_equal(ids, ids_o, sizeof ids);
            for (int j = 0; j < T * E; j++) assert_true(fabs(p[j] - probs_o[j]) <= 1e-7);
            for (int j = 0; j < T * K; j++) assert_true(fabs(w[j] - w_o[j]) <= 2e-7 * (1 + fabs(w_o[j])));
            if (renorm) assert_true(fabs(w[0] - 0.5) < 1e-7 && fabs(w[2] - 0.5) < 1e-7);
            /* a wrong oracle: the other normalisation */
            router_oracle(logits, T, E, K, !renorm, probs_o, ids_o, w_o);
            int differs = 0;
            for (int j = 0; j < T * K; j++) differs |= fabs(w[j] - w_o[j]) > 1e-6;
            assert_true(differs);
            router_oracle(logits, T, E, K, renorm, probs_o, ids_o, w_o);
            assert_int_equal(gt_router_topk(k, p, T, E, E + 1, renorm, ids, w), GT_ERR_INVALID_ARG);
            free(p);
            free(pr);
            gt_kernels_destroy(k);
        }
    }
    free(logits);
}

/* The router on the widths real MoE models use (Qwen3: 8 of 128; qwen2moe:
 * 4 of 60; all of a few; past the fast path's stack array, 2 of 1500), on
 * awkward token counts, with planted ties: the backend and the fast kernel
 * (gt__router_topk) equal the reference bit for bit, and choose the
 * oracle's experts. */
static void test_router_topk_wide(void **state) {
    static const struct { int E, K; } shapes[] = {{128, 8}, {60, 4}, {5, 5}, {1, 1}, {1500, 2}};
    gt_test_rng r;
    gt_test_rng_seed(&r, 15);
    const int64_t T = 37;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int E = shapes[si].E, K = shapes[si].K;
        float *logits = rnd(&r, (size_t)(T * E), 2.0f);
        /* ties: token 3 has its best values twice; token 4 is flat */
        if (E >= 4) logits[3 * E + E - 1] = logits[3 * E + 1] = 9.0f;
        for (int e = 0; e < E; e++) logits[4 * E + e] = 0.5f;
        double *probs_o = malloc((size_t)(T * E) * sizeof(double)), *w_o = malloc((size_t)(T * K) * sizeof(double));
        int32_t *ids_o = malloc((size_t)(T * K) * sizeof(int32_t)), *ids = malloc((size_t)(T * K) * sizeof(int32_t));
        int32_t *idsr = malloc((size_t)(T * K) * sizeof(int32_t)), *idsf = malloc((size_t)(T * K) * sizeof(int32_t));
        float *w = malloc((size_t)(T * K) * sizeof(float)), *wr = malloc((size_t)(T * K) * sizeof(float));
        float *wf = malloc((size_t)(T * K) * sizeof(float));
        for (int renorm = 0; renorm < 2; renorm++) {
            router_oracle(logits, T, E, K, renorm, probs_o, ids_o, w_o);
            if (E >= 4) {
                assert_int_equal(ids_o[3 * K], 1);
                if (K > 1) assert_int_equal(ids_o[3 * K + 1], E - 1);
            }
            for (int j = 0; j < K; j++) assert_int_equal(ids_o[4 * K + j], j);
            float *pr = dup(logits, (size_t)(T * E)), *pf = dup(logits, (size_t)(T * E));
            gt__router_topk_ref(pr, T, E, K, renorm, idsr, wr);
            gt__router_topk(pf, T, E, K, renorm, idsf, wf);
            assert_memory_equal(pf, pr, (size_t)(T * E) * sizeof(float));
            assert_memory_equal(idsf, idsr, (size_t)(T * K) * sizeof(int32_t));
            assert_memory_equal(wf, wr, (size_t)(T * K) * sizeof(float));
            assert_memory_equal(idsr, ids_o, (size_t)(T * K) * sizeof(int32_t));
            double worst = 0;
            for (int64_t j = 0; j < T * K; j++) {
                double d = fabs(wr[j] - w_o[j]) / (1 + fabs(w_o[j]));
                worst = d > worst ? d : worst;
            }
            if (worst > 2e-7) fail_msg("router E %d K %d: weight off the oracle by %g", E, K, worst);
            for (size_t i = 0; i < N_ISAS; i++) {
                gt_kernels *k = make(k_isas[i]);
                if (!k) continue;
                float *p = dup(logits, (size_t)(T * E));
                assert_int_equal(gt_router_topk(k, p, T, E, K, renorm, ids, w), GT_OK);
                assert_memory_equal(p, pr, (size_t)(T * E) * sizeof(float));
                assert_memory_equal(ids, idsr, (size_t)(T * K) * sizeof(int32_t));
                assert_memory_equal(w, wr, (size_t)(T * K) * sizeof(float));
                free(p);
                gt_kernels_destroy(k);
            }
            /* the comparison can fail: highest id first on the planted tie */
            if (E >= 4 && K > 1) {
                idsf[3 * K] = E - 1;
                idsf[3 * K + 1] = 1;
                assert_true(memcmp(idsf, ids_o, (size_t)(T * K) * sizeof(int32_t)) != 0);
            }
            free(pr);
            free(pf);
        }
        free(logits);
        free(probs_o);
        free(w_o);
        free(ids_o);
        free(ids);
        free(idsr);
        free(idsf);
        free(w);
        free(wr);
        free(wf);
    }
}

static void test_gather_scatter_gate(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 14);
    const int64_t T = 7, D = 133, m = 5;
    float *src = rnd(&r, T * D, 1.0f), *dst0 = rnd(&r, T * D, 1.0f);
    float *rowsv = rnd(&r, m * D, 1.0f), *gate = rnd(&r, T, 2.0f);
    int32_t rows[5] = {6, 0, 3, 3, 1}; /* a row twice: both adds land, in order */
    float w[5] = {0.5f, 0.25f, 0.125f, 0.75f, 1.0f};
    float *g = malloc(m * D * sizeof(float)), *want = malloc(T * D * sizeof(float));
    double *acc = malloc(T * D * sizeof(double));
    for (size_t i = 0; i < N_ISAS; i++) {
        gt_kernels *k = make(k_isas[i]);
        if (!k) continue;
        assert_int_equal(gt_gather_rows(k, src, rows, m, D, g), GT_OK);
        for (int64_t j = 0; j < m; j++) assert_memory_equal(g + j * D, src + rows[j] * D, D * sizeof(float));

        float *d = dup(dst0, T * D), *dr = dup(dst0, T * D);
        assert_int_equal(gt_scatter_add_rows(k, rowsv, rows, w, m, D, d), GT_OK);
        gt__scatter_add_rows_ref(rowsv, rows, w, m, D, dr);
        assert_memory_equal(d, dr, T * D * sizeof(float));
        for (int64_t j = 0; j < T * D; j++) acc[j] = dst0[j];
        for (int64_t j = 0; j < m; j++)
            for (int64_t c = 0; c < D; c++) acc[rows[j] * D + c] += (double)w[j] * rowsv[j * D + c];
        for (int64_t j = 0; j < T * D; j++) want[j] = (float)acc[j];
        assert_true(gt_test_allclose("scatter_add_rows", d, want, T * D, 1e-6, 1e-6));
        want[3 * D + 5] += 0.01f; /* the second add to row 3 forgotten, roughly */
        assert_false(gt_test_allclose("scatter vs a wrong oracle (expected to fail)", d, want,
                                      T * D, 1e-6, 1e-6));

        for (int gated = 0; gated < 2; gated++) {
            memcpy(d, dst0, T * D * sizeof(float));
            memcpy(dr, dst0, T * D * sizeof(float));
            const float *gp = gated ? gate : NULL;
            assert_int_equal(gt_sigmoid_gate_add(k, gp, src, d, T, D), GT_OK);
            gt__sigmoid_gate_add_ref(gp, src, dr, T, D);
            assert_memory_equal(d, dr, T * D * sizeof(float));
            for (int64_t t = 0; t < T; t++) {
                const double s = gated ? 1.0 / (1.0 + exp(-(double)gate[t])) : 1.0;
                for (int64_t c = 0; c < D; c++)
                    want[t * D + c] = (float)(dst0[t * D + c] + s * src[t * D + c]);
            }
            assert_true(gt_test_allclose("sigmoid_gate_add", d, want, T * D, 1e-6, 1e-6));
        }
        for (int64_t t = 0; t < T; t++) /* the gate's sign flipped */
            for (int64_t c = 0; c < D; c++)
                want[t * D + c] = (float)(dst0[t * D + c] + src[t * D + c] / (1.0 + exp((double)gate[t])));
        assert_false(gt_test_allclose("gate sign flipped (expected to fail)", d, want, T * D, 1e-6, 1e-6));
        free(d);
        free(dr);
        gt_kernels_destroy(k);
    }
    free(src);
    free(dst0);
    free(rowsv);
    free(gate);
    free(g);
    free(want);
    free(acc);
}

/* The vectorised F16 rounding of the KV store, bit for bit the reference's
 * gt_f32_to_f16 on values that reach every branch of it: each magnitude
 * from 2^-30 (flushed to zero) through half subnormals and normals to past
 * 65504 (overflow to inf), ties at both ends, signed zeros, infinities and
 * NaNs with payloads (F16C would keep part of a payload; the reference
 * writes one quiet NaN). Heads of 40 elements: whole and partial vectors of
 * both widths. Keys and values, rows to scattered positions. */
static void test_kv_store_f16_rounding(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 16);
    const int bs = 8, heads = 2, hd = 40, row = heads * hd, nb = 4;
    const int64_t n = 24;
    int32_t pos[24];
    float *rows = malloc(sizeof(float) * (size_t)(n * row));
    const uint32_t special[] = {0x7fc12345u, 0xffa00001u, 0x7f800000u, 0xff800000u, 0x80000000u,
                                0x33000000u, 0x33000001u, 0x387fe000u, 0x387ff000u, 0x477fefffu,
                                0x477ff000u, 0xc77ff000u, 0x38800000u, 0x00000001u};
    for (int64_t i = 0; i < n * row; i++) {
        const float m = ldexpf(gt_test_rng_uniform(&r, 1.0f, 2.0f), (int)(i % 48) - 30);
        rows[i] = (i % 3 ? m : -m);
    }
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        memcpy(&rows[i * 7 % (size_t)(n * row)], &special[i], 4);
    for (int64_t j = 0; j < n; j++) pos[j] = (int32_t)((j * 11) % (nb * bs));
    const size_t block_bytes = (size_t)bs * row * 2;
    for (int keys = 0; keys < 2; keys++)
        for (size_t i = 0; i < N_ISAS; i++) {
            gt_kernels *k = make(k_isas[i]);
            if (!k) continue;
            uint8_t *pool = calloc(nb, block_bytes), *poolr = calloc(nb, block_bytes);
            void *blocks[4], *blocksr[4];
            for (int b = 0; b < nb; b++) {
                blocks[b] = pool + (size_t)(nb - 1 - b) * block_bytes;
                blocksr[b] = poolr + (size_t)(nb - 1 - b) * block_bytes;
            }
            gt_kv_store_args a = {rows, pos, n, row, blocks, bs, 0, GT_F16, heads, keys};
            assert_int_equal(gt_kv_store(k, &a), GT_OK);
            a.blocks = blocksr;
            assert_int_equal(gt__kv_store_ref(&a), GT_OK);
            if (memcmp(pool, poolr, (size_t)nb * block_bytes) != 0)
                fail_msg("%s %s: the F16 cache differs from gt__kv_store_ref", k_isas[i],
                         keys ? "keys" : "values");
            free(pool);
            free(poolr);
            gt_kernels_destroy(k);
        }
    free(rows);
}

/* The KV store writes each row where gt_attention reads it: block p / bs,
 * kv head by kv head (head g's part of a block at g * bs * hd); a value row
 * at row p % bs inside the head, a key's elements transposed, element d at
 * d * bs + p % bs; F32 exactly, F16 and BF16 rounded to nearest even; BF16
 * in pairs, a value element at ((r / 2) * hd + d) * 2 + r % 2 and a key's
 * at ((d / 2) * bs + r) * 2 + d % 2 (r = p % bs). */
static void test_kv_store(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 15);
    const int bs = 4, row = 24, nb = 3, heads = 3, hd = row / heads;
    const int64_t n = 5;
    int32_t pos[5] = {3, 4, 5, 9, 0};
    float *rows = rnd(&r, n * row, 1.0f);
    for (int type = 0; type < 6; type++) {
        const int keys = type >= 3;
        const gt_dtype t = type % 3 == 2 ? GT_BF16 : type % 3 ? GT_F16 : GT_F32;
        const size_t elem = t == GT_F32 ? 4 : 2, block_bytes = (size_t)bs * row * elem;
        for (size_t i = 0; i < N_ISAS; i++) {
            gt_kernels *k = make(k_isas[i]);
            if (!k) continue;
            uint8_t *pool = calloc(nb + 1, block_bytes), *poolr = calloc(nb + 1, block_bytes);
            /* the sequence's blocks out of pool order */
            void *blocks[3] = {pool + 2 * block_bytes, pool + 0 * block_bytes, pool + 3 * block_bytes};
            void *blocksr[3] = {poolr + 2 * block_bytes, poolr, poolr + 3 * block_bytes};
            gt_kv_store_args a = {rows, pos, n, row, blocks, bs, 0, t, heads, keys};
            assert_int_equal(gt_kv_store(k, &a), GT_OK);
            a.blocks = blocksr;
            assert_int_equal(gt__kv_store_ref(&a), GT_OK);
            assert_memory_equal(pool, poolr, (nb + 1) * block_bytes);
            for (int64_t j = 0; j < n; j++) {
                for (int c = 0; c < row; c++) {
                    const size_t g = (size_t)(c / hd), d = (size_t)(c % hd),
                                 rr = (size_t)(pos[j] % bs);
                    size_t e = keys ? (g * hd + d) * bs + rr : (g * bs + rr) * hd + d;
                    if (t == GT_BF16)
                        e = g * bs * hd + (keys ? ((d / 2) * bs + rr) * 2 + d % 2
                                                : ((rr / 2) * hd + d) * 2 + rr % 2);
                    const uint8_t *at = (const uint8_t *)blocks[pos[j] / bs] + e * elem;
                    const float x = rows[j * row + c];
                    if (t == GT_F16) {
                        gt_f16 h;
                        memcpy(&h, at, 2);
                        assert_int_equal(h, gt_f32_to_f16(x));
                    } else if (t == GT_BF16) {
                        gt_bf16 h;
                        memcpy(&h, at, 2);
                        assert_int_equal(h, gt_f32_to_bf16(x));
                    } else {
                        float f;
                        memcpy(&f, at, 4);
                        assert_true(f == x);
                    }
                }
            }
            /* pool block 0 is the sequence's block 1 (positions 4, 5: rows 0
             * and 1 of each head, the keys' columns 0 and 1); pool block 1
             * belongs to no one: nothing else was written */
            for (int g = 0; g < heads; g++)
                for (int e = 0; e < bs * hd; e++) {
                    const int rr = t == GT_BF16 ? (keys ? e / 2 % bs : e / (2 * hd) * 2 + e % 2)
                                                : (keys ? e % bs : e / hd);
                    if (rr < 2) continue;
                    for (size_t b = 0; b < elem; b++)
                        assert_int_equal(pool[((size_t)g * bs * hd + (size_t)e) * elem + b], 0);
                }
            for (size_t b = block_bytes; b < 2 * block_bytes; b++) assert_int_equal(pool[b], 0);
            gt_kv_store_args bad = a;
            bad.kv_type = GT_Q8_0;
            assert_int_equal(gt_kv_store(k, &bad), GT_ERR_INVALID_ARG);
            bad = a;
            bad.n_kv_head = 5; /* 24 elements are not 5 heads */
            assert_int_equal(gt_kv_store(k, &bad), GT_ERR_INVALID_ARG);
            free(pool);
            free(poolr);
            gt_kernels_destroy(k);
        }
    }
    free(rows);
}

/* With a head stride (the engine's per-head pools), kv head g's part of a
 * block is g * head_stride bytes on and holds exactly what the side-by-side
 * layout (checked element by element above) holds at g * part: every ISA,
 * keys and values, F32, F16 and BF16, blocks out of pool order. */
static void test_kv_store_head_stride(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 16);
    const int bs = 4, row = 24, nb = 3, heads = 3, hd = row / heads;
    const int64_t n = 9;
    int32_t pos[9] = {3, 4, 5, 9, 0, 11, 1, 6, 10};
    float *rows = rnd(&r, n * row, 1.0f);
    const int slot[3] = {2, 0, 3}; /* the sequence's blocks in the pool of 5 */
    for (int type = 0; type < 6; type++) {
        const int keys = type >= 3;
        const gt_dtype t = type % 3 == 2 ? GT_BF16 : type % 3 ? GT_F16 : GT_F32;
        const size_t elem = t == GT_F32 ? 4 : 2, part = (size_t)bs * hd * elem;
        const size_t hs = 5 * part; /* a pool of 5 parts per head */
        for (size_t i = 0; i < N_ISAS; i++) {
            gt_kernels *k = make(k_isas[i]);
            if (!k) continue;
            uint8_t *side = calloc(5, (size_t)heads * part), *pooled = calloc(heads, hs);
            void *bs_side[3], *bs_pool[3];
            for (int b = 0; b < nb; b++) {
                bs_side[b] = side + (size_t)slot[b] * heads * part;
                bs_pool[b] = pooled + (size_t)slot[b] * part;
            }
            gt_kv_store_args a = {rows, pos, n, row, bs_side, bs, 0, t, heads, keys};
            assert_int_equal(gt_kv_store(k, &a), GT_OK);
            a.blocks = bs_pool;
            a.head_stride = hs;
            assert_int_equal(gt_kv_store(k, &a), GT_OK);
            for (int b = 0; b < 5; b++)
                for (int g = 0; g < heads; g++)
                    if (memcmp(side + ((size_t)b * heads + g) * part, pooled + g * hs + b * part,
                               part) != 0)
                        fail_msg(
                            "%s type %d: pool slot %d, kv head %d differs from the side-by-side "
                            "layout",
                            k_isas[i], type, b, g);
            free(side);
            free(pooled);
            gt_kernels_destroy(k);
        }
    }
    free(rows);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bias_scale_softcap_zero),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_router_topk),
        cmocka_unit_test(test_gather_scatter_gate),
        cmocka_unit_test(test_kv_store),
        cmocka_unit_test(test_kv_store_head_stride),
        cmocka_unit_test(test_kv_store_f16_rounding),
        cmocka_unit_test(test_router_topk_wide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
