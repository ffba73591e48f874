/* The CUDA backend's buffers, copies, weights and ops against the CPU
 * backend (isa "ref": the scalar oracles) on seeded random inputs with
 * awkward shapes: lengths that are not multiples of 32 or 256, single rows,
 * odd head dimensions, a partial rotation. Ops that do the same float
 * operations as the CPU (adds, scale, gathers, the scatter-add, the
 * embedding) must match bit for bit; the rest within the tolerance table
 * below, which reuses the CPU tests' bounds where the reason is the same.
 * A deliberately wrong comparison (rope in the other pair order) must fail.
 *
 * Built only with the CUDA toolkit (label `cuda`); without a visible GPU the
 * binary exits 77 and ctest reports it skipped. GANTRY_TEST_CUDA_ON_CPU=1
 * runs the comparisons with the CPU backend (best ISA) in the GPU's place,
 * leaving out the CUDA-only checks: a check of this test itself on machines
 * without a GPU, never of the CUDA code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cuda_runtime_api.h>

#include "common/dtype.h"
#include "common/quant.h"
#include "kernels/kernels.h"
#include "util/test_util.h"

/* ---- tolerances (atol, rtol for gt_test_allclose) ---- */

typedef struct {
    const char *what;
    double atol, rtol;
    const char *why;
} tol;

static const tol TOL_RMSNORM = {"rmsnorm", 1e-6, 2e-6,
                                "sums of squares in double added in another order, as on the CPU"};
static const tol TOL_ROPE = {"rope", 2e-6, 2e-6,
                             "CUDA's double pow/cos/sin are within 2 ulp of glibc's: after "
                             "rounding to float at most 1 ulp of the table, 1-2 ulp of |x|"};
static const tol TOL_SWIGLU = {"swiglu", 1e-7, 2e-6,
                               "CUDA's expf is within 2 ulp, then a division"};
static const tol TOL_GEGLU = {"geglu", 1e-6, 4e-6,
                              "CUDA's tanhf is within 2 ulp; 1 + tanh cancels for g < -3, so "
                              "an absolute bound as on the CPU"};
static const tol TOL_SOFTCAP = {"softcap", 1e-7, 6e-7, "CUDA's tanhf is within 2 ulp, times c"};
static const tol TOL_SIGMOID = {"sigmoid gate", 1e-7, 3e-7,
                                "the gate's exp in double differs from glibc's by an ulp of double "
                                "at most: after rounding to float, one ulp of the gate"};
static const tol TOL_ROUTER = {"router", 1e-9, 3e-7,
                               "softmax in double: CUDA's exp vs glibc's, one float ulp"};

static int close_tol(const char *label, const float *got, const float *want, size_t n,
                     const tol *t) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s [%s]", label, t->what);
    return gt_test_allclose(buf, got, want, n, t->atol, t->rtol);
}

/* Bit-for-bit equality of n floats (or int32s), naming the first difference. */
static int same_bits(const char *label, const void *got, const void *want, size_t n) {
    const uint32_t *g = got, *w = want;
    for (size_t i = 0; i < n; i++)
        if (g[i] != w[i]) {
            float gf, wf;
            memcpy(&gf, &g[i], 4);
            memcpy(&wf, &w[i], 4);
            fprintf(stderr, "%s: differs at %zu of %zu: got %.9g (0x%08x) want %.9g (0x%08x)\n",
                    label, i, n, (double)gf, g[i], (double)wf, w[i]);
            return 0;
        }
    return 1;
}

/* ---- the two backends and device copies of host arrays ---- */

static gt_kernels *g_cpu, *g_gpu;
static bool g_on_cpu; /* GANTRY_TEST_CUDA_ON_CPU: the CPU stands in for the GPU */

#define MAX_BUFS 16
static gt_buffer *g_bufs[MAX_BUFS];
static int g_n_bufs;

/* A device copy of host[bytes]; freed by release(). */
static void *dev(const void *host, size_t bytes) {
    assert_true(g_n_bufs < MAX_BUFS);
    gt_buffer *b = NULL;
    assert_int_equal(gt_buffer_alloc(g_gpu, bytes ? bytes : 1, &b), GT_OK);
    if (!g_on_cpu) assert_null(gt_buffer_host_ptr(b));
    if (host && bytes) assert_int_equal(gt_buffer_upload(b, 0, host, bytes), GT_OK);
    g_bufs[g_n_bufs++] = b;
    return gt_buffer_addr(b);
}

/* Downloads the buffer whose device address is addr into host[bytes]. */
static void fetch(const void *addr, void *host, size_t bytes) {
    for (int i = 0; i < g_n_bufs; i++)
        if (gt_buffer_addr(g_bufs[i]) == addr) {
            assert_int_equal(gt_buffer_download(g_bufs[i], 0, host, bytes), GT_OK);
            return;
        }
    fail_msg("no device buffer at %p", addr);
}

static void release(void) {
    for (int i = 0; i < g_n_bufs; i++) gt_buffer_free(g_bufs[i]);
    g_n_bufs = 0;
}

static float *rnd(gt_test_rng *r, size_t n, float sd) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    gt_test_fill_normal(r, x, n, sd);
    return x;
}

static float *dup(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static const int64_t k_lengths[] = {1, 31, 33, 255, 1001, 4099};
#define N_LENGTHS (sizeof k_lengths / sizeof k_lengths[0])

/* ---- buffers and copies ---- */

static void test_buffers(void **state) {
    if (g_on_cpu) skip();
    gt_test_rng r;
    gt_test_rng_seed(&r, 1);
    const size_t n = 3001;
    float *x = rnd(&r, n, 1.0f), *y = calloc(n, sizeof(float));
    gt_buffer *a = NULL, *b = NULL;
    assert_int_equal(gt_buffer_alloc(g_gpu, n * 4, &a), GT_OK);
    assert_int_equal(gt_buffer_alloc(g_gpu, n * 4, &b), GT_OK);
    /* zero-filled */
    assert_int_equal(gt_buffer_download(a, 0, y, n * 4), GT_OK);
    for (size_t i = 0; i < n; i++) assert_true(y[i] == 0.0f);
    /* round trip at an odd offset, a device copy, a range check */
    assert_int_equal(gt_buffer_upload(a, 4, x, (n - 1) * 4), GT_OK);
    assert_int_equal(gt_buffer_copy(b, 0, a, 4, (n - 1) * 4), GT_OK);
    assert_int_equal(gt_buffer_download(b, 0, y, (n - 1) * 4), GT_OK);
    assert_true(same_bits("upload, device copy, download", y, x, n - 1));
    assert_int_equal(gt_buffer_upload(a, 8, x, n * 4), GT_ERR_RANGE);
    /* a copy between the CPU and the GPU backend goes through the host */
    gt_buffer *h = NULL;
    assert_int_equal(gt_buffer_alloc(g_cpu, n * 4, &h), GT_OK);
    assert_int_equal(gt_buffer_copy(h, 0, b, 0, (n - 1) * 4), GT_OK);
    assert_true(same_bits("device to CPU buffer", gt_buffer_host_ptr(h), x, n - 1));

    /* asynchronous copies from pinned memory: tickets in order, the last wait covers all */
    float *pinned = NULL;
    assert_int_equal(cudaHostAlloc((void **)&pinned, n * 4, cudaHostAllocDefault), cudaSuccess);
    memcpy(pinned, x, n * 4);
    uint64_t t[100];
    for (int i = 0; i < 100; i++) { /* more tickets than the event ring holds */
        const size_t off = (size_t)(i % 3) * 4;
        assert_int_equal(gt_copy_start(g_gpu, a, off, pinned, (n - 3) * 4, &t[i]), GT_OK);
        assert_true(t[i] > 0 && (i == 0 || t[i] > t[i - 1]));
    }
    assert_int_equal(gt_copy_wait(g_gpu, t[3]), GT_OK);
    assert_int_equal(gt_copy_wait(g_gpu, t[99]), GT_OK);
    assert_int_not_equal(gt_copy_wait(g_gpu, t[99] + 5), GT_OK); /* never issued */
    assert_int_equal(gt_buffer_download(a, 0, y, (n - 3) * 4), GT_OK);
    assert_true(same_bits("asynchronous copies (last at offset 0)", y, x, n - 3));
    (void)cudaFreeHost(pinned);
    gt_buffer_free(h);
    gt_buffer_free(a);
    gt_buffer_free(b);
    free(x);
    free(y);
}

/* ---- weights: F32/F16/BF16 rows as they are, others refused ---- */

static void test_weights(void **state) {
    if (g_on_cpu) skip();
    gt_test_rng r;
    gt_test_rng_seed(&r, 2);
    const int64_t n_in = 33, n_out = 7;
    float *x = rnd(&r, (size_t)(n_in * n_out), 1.0f);
    uint16_t h[33 * 7], back[33 * 7];
    assert_int_equal(gt_quantize_row(GT_F16, x, h, n_in * n_out), GT_OK);
    gt_weight w;
    assert_int_equal(gt_weight_init(g_gpu, GT_F16, n_in, n_out, h, &w), GT_OK);
    assert_int_equal(gt_weight_prepared_bytes(g_gpu, GT_F16, n_in, n_out), sizeof h);
    assert_non_null(w.owned);
    assert_ptr_equal(w.data, w.owned);
    assert_int_equal(cudaMemcpy(back, w.data, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_memory_equal(back, h, sizeof h);
    gt_weight_free(&w);
    assert_int_equal(gt_weight_prepared_bytes(g_gpu, GT_Q4_K, 256, 2), 0);
    assert_int_equal(gt_weight_init(g_gpu, GT_Q4_K, 256, 2, h, &w), GT_ERR_UNSUPPORTED);
    /* no matrix product yet: the dispatch says so */
    assert_false(gt_kernels_matmul_supports(g_gpu, GT_F32));
    free(x);
}

/* ---- element-wise ---- */

static void test_elementwise(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 3);
    for (size_t li = 0; li < N_LENGTHS; li++) {
        const int64_t n = k_lengths[li];
        const size_t nb = (size_t)n * 4;
        char label[96];
        float *g = rnd(&r, n, 2.0f), *u = rnd(&r, n, 1.0f), *want = malloc(nb), *got = malloc(nb);
        float *dg = dev(g, nb), *du = dev(u, nb), *dout = dev(NULL, nb);

        assert_int_equal(gt_swiglu(g_cpu, g, u, want, n), GT_OK);
        assert_int_equal(gt_swiglu(g_gpu, dg, du, dout, n), GT_OK);
        fetch(dout, got, nb);
        snprintf(label, sizeof label, "swiglu n=%lld", (long long)n);
        assert_true(close_tol(label, got, want, n, &TOL_SWIGLU));

        assert_int_equal(gt_geglu(g_cpu, g, u, want, n), GT_OK);
        assert_int_equal(gt_geglu(g_gpu, dg, du, dout, n), GT_OK);
        fetch(dout, got, nb);
        snprintf(label, sizeof label, "geglu n=%lld", (long long)n);
        assert_true(close_tol(label, got, want, n, &TOL_GEGLU));

        /* y += x, then y *= s: same float operations, same bits */
        memcpy(want, g, nb);
        assert_int_equal(gt_add(g_cpu, want, u, n), GT_OK);
        assert_int_equal(gt_scale(g_cpu, want, 0.3f, n), GT_OK);
        float *dy = dev(g, nb);
        assert_int_equal(gt_add(g_gpu, dy, du, n), GT_OK);
        assert_int_equal(gt_scale(g_gpu, dy, 0.3f, n), GT_OK);
        fetch(dy, got, nb);
        snprintf(label, sizeof label, "add+scale n=%lld", (long long)n);
        assert_true(same_bits(label, got, want, n));

        assert_int_equal(gt_softcap(g_cpu, want, 1.7f, n), GT_OK);
        assert_int_equal(gt_softcap(g_gpu, dy, 1.7f, n), GT_OK);
        fetch(dy, got, nb);
        snprintf(label, sizeof label, "softcap n=%lld", (long long)n);
        assert_true(close_tol(label, got, want, n, &TOL_SOFTCAP));

        assert_int_equal(gt_zero(g_gpu, dy, n), GT_OK);
        fetch(dy, got, nb);
        for (int64_t i = 0; i < n; i++) assert_true(got[i] == 0.0f);
        release();
        free(g), free(u), free(want), free(got);
    }
}

static void test_bias_and_gate(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 4);
    static const int64_t shapes[][2] = {{1, 1}, {1, 4099}, {5, 1001}, {17, 33}};
    for (size_t si = 0; si < 4; si++) {
        const int64_t rows = shapes[si][0], n = shapes[si][1];
        const size_t nb = (size_t)(rows * n) * 4;
        char label[96];
        float *y = rnd(&r, rows * n, 3.0f), *b = rnd(&r, n, 1.0f), *src = rnd(&r, rows * n, 1.0f);
        float *gate = rnd(&r, rows, 2.0f), *want = dup(y, rows * n), *got = malloc(nb);
        float *dy = dev(y, nb), *db = dev(b, n * 4), *dsrc = dev(src, nb),
              *dgate = dev(gate, rows * 4);

        assert_int_equal(gt_add_bias(g_cpu, want, b, rows, n), GT_OK);
        assert_int_equal(gt_add_bias(g_gpu, dy, db, rows, n), GT_OK);
        fetch(dy, got, nb);
        snprintf(label, sizeof label, "bias add %lldx%lld", (long long)rows, (long long)n);
        assert_true(same_bits(label, got, want, rows * n));

        /* no gate: a gate of 1, exact */
        assert_int_equal(gt_sigmoid_gate_add(g_cpu, NULL, src, want, rows, n), GT_OK);
        assert_int_equal(gt_sigmoid_gate_add(g_gpu, NULL, dsrc, dy, rows, n), GT_OK);
        fetch(dy, got, nb);
        snprintf(label, sizeof label, "ungated add %lldx%lld", (long long)rows, (long long)n);
        assert_true(same_bits(label, got, want, rows * n));

        assert_int_equal(gt_sigmoid_gate_add(g_cpu, gate, src, want, rows, n), GT_OK);
        assert_int_equal(gt_sigmoid_gate_add(g_gpu, dgate, dsrc, dy, rows, n), GT_OK);
        fetch(dy, got, nb);
        snprintf(label, sizeof label, "sigmoid gate add %lldx%lld", (long long)rows, (long long)n);
        assert_true(close_tol(label, got, want, rows * n, &TOL_SIGMOID));
        release();
        free(y), free(b), free(src), free(gate), free(want), free(got);
    }
}

/* ---- rmsnorm and rope ---- */

static void test_rmsnorm(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 5);
    static const int64_t shapes[][2] = {{1, 1}, {1, 4099}, {3, 33}, {7, 1001}, {2, 257}};
    for (size_t si = 0; si < 5; si++) {
        const int64_t rows = shapes[si][0], n = shapes[si][1];
        const size_t nb = (size_t)(rows * n) * 4;
        for (int with_w = 0; with_w < 2; with_w++) {
            char label[96];
            float *x = rnd(&r, rows * n, 2.0f), *w = rnd(&r, n, 1.0f);
            float *want = malloc(nb), *got = malloc(nb);
            float *dx = dev(x, nb), *dw = dev(w, n * 4), *dy = dev(NULL, nb);
            assert_int_equal(gt_rmsnorm(g_cpu, x, with_w ? w : NULL, want, rows, n, 1e-6f), GT_OK);
            assert_int_equal(gt_rmsnorm(g_gpu, dx, with_w ? dw : NULL, dy, rows, n, 1e-6f), GT_OK);
            fetch(dy, got, nb);
            snprintf(label, sizeof label, "rmsnorm %lldx%lld w=%d", (long long)rows, (long long)n,
                     with_w);
            assert_true(close_tol(label, got, want, rows * n, &TOL_RMSNORM));
            /* in place */
            assert_int_equal(gt_rmsnorm(g_gpu, dx, with_w ? dw : NULL, dx, rows, n, 1e-6f), GT_OK);
            fetch(dx, got, nb);
            assert_true(close_tol(label, got, want, rows * n, &TOL_RMSNORM));
            release();
            free(x), free(w), free(want), free(got);
        }
    }
}

typedef struct {
    int64_t n_tok;
    int n_head, head_dim, n_rot;
    float base, scale;
} rope_case;

static void test_rope(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 6);
    static const rope_case cases[] = {
        {1, 1, 2, 2, 10000.0f, 1.0f},     {3, 5, 66, 66, 10000.0f, 1.0f},
        {7, 3, 96, 32, 500000.0f, 0.25f}, {2, 32, 128, 128, 1000000.0f, 1.0f},
        {5, 2, 80, 64, 10000.0f, 0.125f}, {3, 3, 75, 64, 10000.0f, 1.0f}, /* odd head */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const rope_case *c = &cases[ci];
        const int64_t n = c->n_tok * c->n_head * c->head_dim;
        int32_t pos[8];
        for (int64_t t = 0; t < c->n_tok; t++) pos[t] = (int32_t)(gt_test_rng_u64(&r) % 40000);
        for (int neox = 0; neox < 2; neox++) {
            char label[128];
            gt_rope_params p = {c->base, c->scale, c->n_rot, neox != 0};
            float *x = rnd(&r, n, 1.0f), *want = dup(x, n), *got = malloc(n * 4);
            float *dx = dev(x, n * 4);
            int32_t *dpos = dev(pos, c->n_tok * 4);
            assert_int_equal(gt_rope(g_cpu, want, c->n_tok, c->n_head, c->head_dim, pos, &p),
                             GT_OK);
            assert_int_equal(gt_rope(g_gpu, dx, c->n_tok, c->n_head, c->head_dim, dpos, &p), GT_OK);
            fetch(dx, got, n * 4);
            snprintf(label, sizeof label, "rope tok=%lld heads=%d dim=%d rot=%d neox=%d",
                     (long long)c->n_tok, c->n_head, c->head_dim, c->n_rot, neox);
            assert_true(close_tol(label, got, want, n, &TOL_ROPE));
            if (ci == 1) { /* test the test: the other pair order must fail */
                gt_rope_params q = p;
                q.neox = !p.neox;
                float *other = dup(x, n);
                assert_int_equal(gt_rope(g_cpu, other, c->n_tok, c->n_head, c->head_dim, pos, &q),
                                 GT_OK);
                assert_false(close_tol("rope, other pair order (expected to fail)", got, other, n,
                                       &TOL_ROPE));
                free(other);
            }
            release();
            free(x), free(want), free(got);
        }
    }
}

/* ---- embedding, gather, scatter ---- */

static void test_embed(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 7);
    static const gt_dtype types[] = {GT_F32, GT_F16, GT_BF16, GT_Q8_0};
    const int64_t n_rows = 13, v0 = 100, n_ids = 9;
    for (size_t ti = 0; ti < 4; ti++) {
        const int64_t n = types[ti] == GT_Q8_0 ? 96 : 37;
        size_t row_bytes;
        assert_true(gt_dtype_row_bytes(types[ti], n, &row_bytes));
        float *vals = rnd(&r, n_rows * n, 1.0f);
        uint8_t *rows = malloc(row_bytes * n_rows);
        for (int64_t i = 0; i < n_rows; i++)
            assert_int_equal(gt_quantize_row(types[ti], vals + i * n, rows + row_bytes * i, n),
                             GT_OK);
        int32_t ids[9];
        for (int64_t i = 0; i < n_ids; i++)
            ids[i] = (int32_t)(v0 - 2 + (int64_t)(gt_test_rng_u64(&r) % (n_rows + 4)));
        ids[0] = (int32_t)v0; /* first and last rows of the slice, and outside it */
        ids[1] = (int32_t)(v0 + n_rows - 1);
        ids[2] = (int32_t)(v0 + n_rows);
        ids[3] = (int32_t)(v0 - 1);
        for (int sc = 0; sc < 2; sc++) {
            const size_t ob = (size_t)(n_ids * n) * 4;
            float *want = malloc(ob), *got = malloc(ob);
            float *dout = dev(NULL, ob);
            gt_embed_args a = {types[ti], rows,  v0,  n_rows, n, sc ? 0.125f * 3 : 1.0f,
                               ids,       n_ids, want};
            assert_int_equal(gt_embed(g_cpu, &a), GT_OK);
            a.rows = dev(rows, row_bytes * n_rows);
            a.ids = dev(ids, sizeof ids);
            a.out = dout;
            assert_int_equal(gt_embed(g_gpu, &a), GT_OK);
            fetch(dout, got, ob);
            char label[64];
            snprintf(label, sizeof label, "embed %s scale=%d", gt_dtype_name(types[ti]), sc);
            assert_true(same_bits(label, got, want, n_ids * n));
            release();
            free(want), free(got);
        }
        free(vals), free(rows);
    }
    if (g_on_cpu) return;
    gt_embed_args q4 = {GT_Q4_K, NULL, 0, 1, 256, 1.0f, NULL, 0, NULL};
    assert_int_equal(gt_embed(g_gpu, &q4), GT_ERR_UNSUPPORTED);
}

static void test_gather_scatter(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 8);
    static const int64_t shapes[][3] = {{1, 1, 1}, {4, 6, 33}, {9, 3, 1001}, {16, 40, 257}};
    for (size_t si = 0; si < 4; si++) {
        const int64_t n_src = shapes[si][0], m = shapes[si][1], n = shapes[si][2];
        char label[96];
        int32_t rows[64];
        for (int64_t i = 0; i < m; i++) rows[i] = (int32_t)(gt_test_rng_u64(&r) % n_src);
        if (m > 2) rows[m - 1] = rows[0]; /* a repeated row: order of the adds matters */
        float *src = rnd(&r, n_src * n, 1.0f), *w = rnd(&r, m, 1.0f);
        float *want = malloc(m * n * 4), *got = malloc(m * n * 4);
        float *dsrc = dev(src, n_src * n * 4), *ddst = dev(NULL, m * n * 4);
        int32_t *drows = dev(rows, m * 4);
        assert_int_equal(gt_gather_rows(g_cpu, src, rows, m, n, want), GT_OK);
        assert_int_equal(gt_gather_rows(g_gpu, dsrc, drows, m, n, ddst), GT_OK);
        fetch(ddst, got, m * n * 4);
        snprintf(label, sizeof label, "gather %lld rows of %lld", (long long)m, (long long)n);
        assert_true(same_bits(label, got, want, m * n));

        /* scatter the gathered rows back, weighted, onto a random base */
        float *base = rnd(&r, n_src * n, 1.0f), *sw = dup(base, n_src * n),
              *sg = malloc(n_src * n * 4);
        float *dbase = dev(base, n_src * n * 4), *dw = dev(w, m * 4);
        assert_int_equal(gt_scatter_add_rows(g_cpu, want, rows, w, m, n, sw), GT_OK);
        assert_int_equal(gt_scatter_add_rows(g_gpu, ddst, drows, dw, m, n, dbase), GT_OK);
        fetch(dbase, sg, n_src * n * 4);
        snprintf(label, sizeof label, "scatter-add %lld rows of %lld", (long long)m, (long long)n);
        assert_true(same_bits(label, sg, sw, n_src * n));
        release();
        free(src), free(w), free(want), free(got), free(base), free(sw), free(sg);
    }
}

/* ---- router ---- */

static void test_router(void **state) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 9);
    static const int shapes[][3] = {{1, 8, 2}, {37, 60, 4}, {5, 128, 8}, {3, 3, 3}, {200, 16, 1}};
    for (size_t si = 0; si < 5; si++) {
        const int64_t T = shapes[si][0];
        const int E = shapes[si][1], K = shapes[si][2];
        for (int renorm = 0; renorm < 2; renorm++) {
            float *logits = rnd(&r, T * E, 2.0f);
            if (T > 1) { /* exact ties: lowest id first */
                for (int ex = 0; ex < E; ex++) logits[E + ex] = (float)(ex % 2);
            }
            float *pw = dup(logits, T * E), *pg = malloc(T * E * 4);
            float *ww = malloc(T * K * 4), *wg = malloc(T * K * 4);
            int32_t *iw = malloc(T * K * 4), *ig = malloc(T * K * 4);
            float *dp = dev(logits, T * E * 4), *dw = dev(NULL, T * K * 4);
            int32_t *di = dev(NULL, T * K * 4);
            assert_int_equal(gt_router_topk(g_cpu, pw, T, E, K, renorm, iw, ww), GT_OK);
            assert_int_equal(gt_router_topk(g_gpu, dp, T, E, K, renorm, di, dw), GT_OK);
            fetch(dp, pg, T * E * 4);
            fetch(dw, wg, T * K * 4);
            fetch(di, ig, T * K * 4);
            char label[96];
            snprintf(label, sizeof label, "router T=%lld E=%d K=%d renorm=%d", (long long)T, E, K,
                     renorm);
            assert_true(same_bits(label, ig, iw, T * K)); /* the ids, as int32 bits */
            assert_true(close_tol(label, pg, pw, T * E, &TOL_ROUTER));
            assert_true(close_tol(label, wg, ww, T * K, &TOL_ROUTER));
            release();
            free(logits), free(pw), free(pg), free(ww), free(wg), free(iw), free(ig);
        }
    }
    if (!g_on_cpu)
        assert_int_equal(gt_router_topk(g_gpu, NULL, 1, 4, 5, false, NULL, NULL),
                         GT_ERR_INVALID_ARG);
}

/* ---- what is not there yet answers with a sentence ---- */

static void test_missing(void **state) {
    if (g_on_cpu) skip();
    gt_attn_args a;
    memset(&a, 0, sizeof a);
    assert_int_equal(gt_attention(g_gpu, &a), GT_ERR_UNSUPPORTED);
    assert_non_null(strstr(gt_last_error(), "cuda backend has no attention"));
    gt_weight w;
    memset(&w, 0, sizeof w);
    assert_int_equal(gt_matmul(g_gpu, &w, NULL, NULL, 1), GT_ERR_UNSUPPORTED);
}

int main(void) {
    gt_kernels_config cc = GT_KERNELS_CONFIG_INIT;
    cc.isa = "ref";
    if (gt_kernels_create(&cc, &g_cpu) != GT_OK) {
        fprintf(stderr, "cannot create the CPU backend: %s\n", gt_last_error());
        return 1;
    }
    gt_kernels_config gc = GT_KERNELS_CONFIG_INIT;
    const char *on_cpu = getenv("GANTRY_TEST_CUDA_ON_CPU");
    g_on_cpu = on_cpu && !strcmp(on_cpu, "1");
    gc.backend = g_on_cpu ? "cpu" : "cuda";
    gt_status st = gt_kernels_create(&gc, &g_gpu);
    if (st != GT_OK) {
        gt_kernels_destroy(g_cpu);
        if (st == GT_ERR_UNSUPPORTED && strstr(gt_last_error(), "no GPU is visible")) {
            printf("SKIP: %s\n", gt_last_error());
            return 77;
        }
        fprintf(stderr, "cannot create the CUDA backend: %s\n", gt_last_error());
        return 1;
    }
    printf("%s backend on %s\n", gt_kernels_backend(g_gpu), gt_kernels_isa(g_gpu));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffers),     cmocka_unit_test(test_weights),
        cmocka_unit_test(test_elementwise), cmocka_unit_test(test_bias_and_gate),
        cmocka_unit_test(test_rmsnorm),     cmocka_unit_test(test_rope),
        cmocka_unit_test(test_embed),       cmocka_unit_test(test_gather_scatter),
        cmocka_unit_test(test_router),      cmocka_unit_test(test_missing),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gt_kernels_destroy(g_gpu);
    gt_kernels_destroy(g_cpu);
    return rc;
}
