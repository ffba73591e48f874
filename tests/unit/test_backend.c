/* Tests of the backend interface (kernels/kernels.c, kernels/backend.h):
 * choosing a backend by name (and the sentences for CUDA, whichever this
 * build has), buffers (zeroed, upload, download, copy, range checks), and
 * the workspace: reserved once, large enough for every ISA this CPU has at
 * the requested sizes, and refusing (GT_ERR_RANGE, never allocating) beyond
 * them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/quant.h"
#include "kernels/kernels.h"
#include "util/test_util.h"

static void test_backend_names(void **state) {
    gt_kernels *k = NULL;
    assert_int_equal(gt_kernels_create(NULL, &k), GT_OK);
    assert_string_equal(gt_kernels_backend(k), "cpu");
    gt_kernels_destroy(k);

    gt_kernels_config cpu = {1, NULL, "cpu", GT_KERNELS_DEVICE_AUTO, NULL};
    assert_int_equal(gt_kernels_create(&cpu, &k), GT_OK);
    assert_string_equal(gt_kernels_backend(k), "cpu");
    assert_non_null(gt_kernels_pool(k));
    gt_kernels_destroy(k);

    gt_kernels_config odd = {1, NULL, "tpu", GT_KERNELS_DEVICE_AUTO, NULL};
    assert_int_equal(gt_kernels_create(&odd, &k), GT_ERR_INVALID_ARG);
    assert_null(k);
    assert_non_null(strstr(gt_last_error(), "\"tpu\""));

    gt_kernels_config cuda = GT_KERNELS_CONFIG_INIT;
    cuda.backend = "cuda";
#ifdef GT_KERNELS_CUDA
    /* Built with CUDA: a GPU is used when one is visible, else one sentence. */
    gt_status st = gt_kernels_create(&cuda, &k);
    if (st == GT_OK) {
        assert_string_equal(gt_kernels_backend(k), "cuda");
        assert_null(gt_kernels_pool(k));
        gt_kernels_destroy(k);
    } else {
        assert_int_equal(st, GT_ERR_UNSUPPORTED);
        assert_null(k);
        assert_non_null(strstr(gt_last_error(), "cuda: no GPU is visible to this process"));
    }
    cuda.device = 1 << 20;
    assert_int_not_equal(gt_kernels_create(&cuda, &k), GT_OK);
    assert_null(k);
#else
    assert_int_equal(gt_kernels_create(&cuda, &k), GT_ERR_UNSUPPORTED);
    assert_null(k);
    assert_string_equal(gt_last_error(),
                        "gantry was built without CUDA (-DGANTRY_CUDA=OFF or no toolkit found)");
#endif
}

static void test_buffers(void **state) {
    gt_kernels *k = NULL;
    assert_int_equal(gt_kernels_create(NULL, &k), GT_OK);
    gt_buffer *a = NULL, *b = NULL;
    assert_int_equal(gt_buffer_alloc(k, 0, &a), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_buffer_alloc(k, 1000, &a), GT_OK);
    assert_int_equal(gt_buffer_alloc(k, 600, &b), GT_OK);
    assert_int_equal(gt_buffer_size(a), 1000);
    /* host-visible on the CPU, zero-filled, 64-byte aligned */
    uint8_t *ha = gt_buffer_host_ptr(a);
    assert_non_null(ha);
    assert_ptr_equal(ha, gt_buffer_addr(a));
    assert_int_equal((uintptr_t)ha % 64, 0);
    for (int i = 0; i < 1000; i++) assert_int_equal(ha[i], 0);

    uint8_t src[300], dst[300];
    for (int i = 0; i < 300; i++) src[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(gt_buffer_upload(a, 700, src, 300), GT_OK);
    assert_int_equal(gt_buffer_upload(a, 701, src, 300), GT_ERR_RANGE);
    assert_non_null(strstr(gt_last_error(), "1000"));
    assert_int_equal(gt_buffer_download(a, 700, dst, 300), GT_OK);
    assert_memory_equal(dst, src, 300);
    assert_int_equal(gt_buffer_download(a, SIZE_MAX, dst, 2), GT_ERR_RANGE);

    assert_int_equal(gt_buffer_copy(b, 10, a, 700, 300), GT_OK);
    memset(dst, 0, sizeof dst);
    assert_int_equal(gt_buffer_download(b, 10, dst, 300), GT_OK);
    assert_memory_equal(dst, src, 300);
    assert_int_equal(gt_buffer_copy(b, 400, a, 700, 300), GT_ERR_RANGE);

    /* between two backends (two CPU instances here) */
    gt_kernels *k2 = NULL;
    assert_int_equal(gt_kernels_create(NULL, &k2), GT_OK);
    gt_buffer *c = NULL;
    assert_int_equal(gt_buffer_alloc(k2, 300, &c), GT_OK);
    assert_int_equal(gt_buffer_copy(c, 0, b, 10, 300), GT_OK);
    assert_memory_equal(gt_buffer_host_ptr(c), src, 300);
    gt_buffer_free(c);
    gt_kernels_destroy(k2);

    gt_buffer_free(a);
    gt_buffer_free(b);
    gt_buffer_free(NULL);
    gt_kernels_destroy(k);
}

/* ---- workspace ---- */

static const char *const k_isas[] = {"ref", "avx2", "avx512"};

static gt_kernels *make(const char *isa, int n_threads) {
    gt_kernels_config cfg = {n_threads, isa, NULL, GT_KERNELS_DEVICE_AUTO, NULL};
    gt_kernels *k = NULL;
    gt_status st = gt_kernels_create(&cfg, &k);
    if (st == GT_ERR_UNSUPPORTED) return NULL;
    assert_int_equal(st, GT_OK);
    return k;
}

static void test_workspace_bytes(void **state) {
    gt_workspace_req r = {.max_tokens = 512, .max_n_in = 4096, .max_heads = 32, .head_dim = 128,
                          .max_kv = 4096, .n_threads = 4};
    size_t b = gt_kernels_workspace_bytes(&r);
    assert_true(b > 0);
    assert_int_equal(b % 64, 0);
    assert_int_equal(gt_kernels_workspace_bytes(&r), b); /* pure */
    /* grows with each dimension it depends on */
    gt_workspace_req more = r;
    more.max_tokens *= 2;
    assert_true(gt_kernels_workspace_bytes(&more) > b);
    more = r;
    more.max_tokens = 4; /* decode: every thread quantizes its own copy */
    size_t b4 = gt_kernels_workspace_bytes(&more);
    more.n_threads *= 2;
    assert_true(gt_kernels_workspace_bytes(&more) > b4);
    more = r;
    more.max_n_in = 32;
    more.max_heads = 64;
    assert_true(gt_kernels_workspace_bytes(&more) >= gt_kernels_workspace_bytes(&(gt_workspace_req){
        .max_tokens = 512, .max_n_in = 32, .max_heads = 32, .head_dim = 128, .n_threads = 4}));
    printf("workspace for 512 tokens, rows of 4096, 32 heads of 128, 4 threads: %zu bytes\n", b);
}

static void fill_q8(gt_test_rng *rng, int64_t n_in, int64_t n_out, uint8_t **out) {
    size_t rb;
    assert_true(gt_dtype_row_bytes(GT_Q8_0, n_in, &rb));
    *out = malloc(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * sizeof(float));
    for (int64_t r = 0; r < n_out; r++) {
        gt_test_fill_normal(rng, row, (size_t)n_in, 1.0f);
        assert_int_equal(gt_quantize_row(GT_Q8_0, row, *out + rb * (size_t)r, n_in), GT_OK);
    }
    free(row);
}

/* Every ISA this CPU has runs its largest products and attention inside the
 * reservation, and one token, one row element or one head more is refused
 * with the numbers. */
static void test_reserve(void **state) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 3);
    const int64_t T = 37, N = 320, O = 48;
    const int H = 6, HD = 64, P = 3;
    float *x = malloc((size_t)4 * 32768 * sizeof(float)); /* covers [T, N] too */
    float *y = malloc((size_t)T * O * sizeof(float));
    gt_test_fill_normal(&rng, x, (size_t)4 * 32768, 1.0f);
    uint8_t *wq, *wq_long;
    fill_q8(&rng, N, O, &wq);
    fill_q8(&rng, 32768, 16, &wq_long);
    float *wf = malloc((size_t)N * O * sizeof(float));
    gt_test_fill_normal(&rng, wf, (size_t)N * O, 1.0f);
    for (size_t i = 0; i < sizeof k_isas / sizeof k_isas[0]; i++) {
        gt_kernels *k = make(k_isas[i], P);
        if (!k) continue;
        gt_workspace_req r = {.max_tokens = T, .max_n_in = N, .max_heads = H, .head_dim = HD,
                              .max_kv = 256, .n_threads = P};
        assert_int_equal(gt_kernels_reserve(k, &r), GT_OK);
        gt_weight q, ql, f;
        assert_int_equal(gt_weight_init(k, GT_Q8_0, N, O, wq, &q), GT_OK);
        assert_int_equal(gt_weight_init(k, GT_Q8_0, 32768, 16, wq_long, &ql), GT_OK);
        assert_int_equal(gt_weight_init(k, GT_F32, N, O, wf, &f), GT_OK);
        for (int64_t t = 1; t <= T; t++) {
            assert_int_equal(gt_matmul(k, &q, x, y, t), GT_OK);
            assert_int_equal(gt_matmul(k, &f, x, y, t), GT_OK);
        }
        /* attention at the reserved heads (all on one kv head), then more heads */
        const int64_t nq = 9;
        float *qv = malloc((size_t)nq * (8 * H) * HD * sizeof(float));
        float *out = malloc((size_t)nq * (8 * H) * HD * sizeof(float));
        gt_test_fill_normal(&rng, qv, (size_t)nq * (8 * H) * HD, 1.0f);
        float *kvb = calloc(16 * HD, sizeof(float));
        gt_test_fill_normal(&rng, kvb, 16 * HD, 1.0f);
        const void *blocks[1] = {kvb};
        int32_t pos[9];
        for (int j = 0; j < 9; j++) pos[j] = j + 4;
        gt_attn_args a = {.q = qv, .out = out, .pos = pos, .n_tok = nq, .n_head = H,
                          .n_kv_head = 1, .head_dim = HD, .k_blocks = blocks,
                          .v_blocks = blocks, .block_size = 16, .kv_type = GT_F32,
                          .scale = 0.125f};
        gt_status st = gt_attention(k, &a);
        if (st != GT_OK) printf("%s: %s\n", k_isas[i], gt_last_error());
        assert_int_equal(st, GT_OK);
        /* beyond a decode-sized reservation: a long row, a prefill of floats,
         * more heads per kv head */
        r.max_tokens = 4;
        r.max_heads = 4; /* the attention's scratch (heads x tile) below a prefill's panels */
        assert_int_equal(gt_kernels_reserve(k, &r), GT_OK);
        assert_int_equal(gt_matmul(k, &q, x, y, 4), GT_OK);
        assert_int_equal(gt_matmul(k, &ql, x, y, 4), GT_ERR_RANGE);
        assert_non_null(strstr(gt_last_error(), "32768-long row"));
        printf("%s: %s\n", k_isas[i], gt_last_error());
        gt_status st2 = gt_matmul(k, &f, x, y, T);
        if (strcmp(k_isas[i], "ref") != 0) { /* panels per thread; the reference needs a row */
            assert_int_equal(st2, GT_ERR_RANGE);
            assert_non_null(strstr(gt_last_error(), "37 tokens"));
            printf("%s: %s\n", k_isas[i], gt_last_error());
        } else {
            assert_int_equal(st2, GT_OK);
        }
        a.n_head = 8 * H;
        st = gt_attention(k, &a);
        if (strcmp(k_isas[i], "ref") != 0) { /* nor with heads */
            assert_int_equal(st, GT_ERR_RANGE);
            assert_non_null(strstr(gt_last_error(), "48 heads per kv head"));
            printf("%s: %s\n", k_isas[i], gt_last_error());
        } else {
            assert_int_equal(st, GT_OK);
        }
        free(qv);
        free(out);
        free(kvb);
        gt_weight_free(&q);
        gt_weight_free(&ql);
        gt_weight_free(&f);
        gt_kernels_destroy(k);
    }
    free(x);
    free(y);
    free(wq);
    free(wq_long);
    free(wf);
}

/* gt_weight_init_invariant: a row's product is bit-identical whatever the
 * token count of the call; the default preparation of an F32 matrix on a SIMD
 * ISA is not, which is why the router needs it. */
static void test_invariant_weights(void **state) {
    gt_test_rng rng;
    gt_test_rng_seed(&rng, 4);
    const int64_t T = 40, N = 512, O = 24;
    float *x = malloc((size_t)T * N * sizeof(float)), *w = malloc((size_t)N * O * sizeof(float));
    float *y1 = malloc((size_t)O * sizeof(float)), *yt = malloc((size_t)T * O * sizeof(float));
    gt_test_fill_normal(&rng, x, (size_t)T * N, 1.0f);
    gt_test_fill_normal(&rng, w, (size_t)N * O, 1.0f);
    for (size_t i = 0; i < sizeof k_isas / sizeof k_isas[0]; i++) {
        gt_kernels *k = make(k_isas[i], 2);
        if (!k) continue;
        gt_weight wi;
        assert_int_equal(gt_weight_init_invariant(k, GT_F32, N, O, w, &wi), GT_OK);
        assert_int_equal(gt_matmul(k, &wi, x, yt, T), GT_OK);
        for (int64_t t = 0; t < T; t += 13) {
            assert_int_equal(gt_matmul(k, &wi, x + t * N, y1, 1), GT_OK);
            assert_memory_equal(y1, yt + t * O, (size_t)O * sizeof(float));
        }
        gt_weight_free(&wi);
        gt_kernels_destroy(k);
    }
    free(x);
    free(w);
    free(y1);
    free(yt);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_names),  cmocka_unit_test(test_buffers),
        cmocka_unit_test(test_workspace_bytes), cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_invariant_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
