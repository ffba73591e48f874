/* Batch invariance of the whole forward pass: with the default kernels, the
 * logits of a prompt position must be the same bits however the prompt was
 * batched. On synthetic llama-, qwen3- and MoE-llama-like models of several
 * weight types, the logits of every position from
 *  - one token per call (--ubatch 1, the oracle),
 *  - one batched prefill of the whole prompt,
 *  - chunks of 7 tokens,
 * at 1 and 2 threads, and of two sequences interleaved in one batch, are
 * compared with memcmp; on the best ISA, and on AVX2 for llama. The model's
 * widths cross the kernels' internal blocks (256-k float blocks, 16-block
 * quant slices) and the prompt crosses a 64-key attention chunk. */
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
#include "kernels/kernels.h"
#include "worker/engine.h"

enum { V = 320, P = 70 };

static const char *make_model(const char *arch, gt_dtype type) {
    static char name[64];
    snprintf(name, sizeof name, "inv_%s_%s.gguf", arch, gt_dtype_name((uint32_t)type));
    const char *path = gt_test_tmp_path(0, name);
    gt_synth_config c = GT_SYNTH_CONFIG_INIT;
    c.arch = arch;
    c.n_layer = 2;
    c.n_embd = 768;
    c.n_head = 12;
    c.n_head_kv = 2;
    c.n_ff = 1280;
    c.n_vocab = V;
    c.n_ctx = 128;
    c.type = type;
    c.seed = 11;
    if (strstr(arch, "moe")) {
        c.n_expert = 4;
        c.n_expert_used = 2;
        c.n_ff_exp = 768;
        c.n_ff_shexp = 0;
    }
    gt_status st = gt_synth_write(&c, path);
    if (st != GT_OK)
        fail_msg("synth %s %s: %s", arch, gt_dtype_name((uint32_t)type), gt_last_error());
    return path;
}

static const char *g_isa; /* NULL: the best this CPU has */

static gt_engine *open_engine(const char *path, int max_seqs, int threads) {
    gt_engine_config c = GT_ENGINE_CONFIG_INIT;
    c.isa = g_isa;
    c.model_path = path;
    c.max_seqs = max_seqs;
    c.n_threads = threads;
    c.n_ctx = 96;
    c.kv_block_size = 16;
    c.max_out_rows = 2 * P;
    gt_engine *e = NULL;
    if (gt_engine_create(&c, &e) != GT_OK) fail_msg("engine: %s", gt_last_error());
    return e;
}

static void prompt(int32_t *t, int n, int salt) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)((i * 37 + salt * 101 + 5) % V);
}

/* Logits of every position of sequence `seq`, fed `step` tokens per call. */
static void run_chunks(gt_engine *e, int seq, const int32_t *t, int n, int step, float *out) {
    int32_t pos[P], s[P];
    int8_t want[P];
    for (int i = 0; i < n; i++) pos[i] = i, s[i] = seq, want[i] = 1;
    for (int i = 0; i < n; i += step) {
        const int m = n - i < step ? n - i : step;
        gt_batch b = {m, t + i, pos + i, s + i, want + i};
        assert_int_equal(gt_engine_decode(e, &b, out + (size_t)i * V), GT_OK);
    }
}

/* 1 when got == want bit for bit; else prints the first difference. */
static int same(const char *label, const float *got, const float *want, int n_pos) {
    for (size_t i = 0; i < (size_t)n_pos * V; i++)
        if (memcmp(got + i, want + i, sizeof(float))) {
            fprintf(stderr, "%s: position %zu logit %zu: %.9g, token by token %.9g (diff %.3g)\n",
                    label, i / V, i % V, (double)got[i], (double)want[i],
                    (double)(got[i] - want[i]));
            return 0;
        }
    return 1;
}

static int check(const char *arch, gt_dtype type) {
    const char *path = make_model(arch, type);
    int32_t ta[P], tb[P];
    prompt(ta, P, 1);
    prompt(tb, P, 2);
    float *ref_a = malloc(sizeof(float) * P * V), *ref_b = malloc(sizeof(float) * P * V);
    float *got = malloc(sizeof(float) * 2 * P * V);
    char label[128];
    int ok = 1;

    gt_engine *e1 = open_engine(path, 1, 1);
    run_chunks(e1, 0, ta, P, 1, ref_a);
    gt_engine_seq_clear(e1, 0);
    run_chunks(e1, 0, tb, P, 1, ref_b);
    gt_engine_destroy(e1);

    for (int threads = 1; threads <= 2 && ok; threads++) {
        gt_engine *e = open_engine(path, 1, threads);
        const int steps[] = {1, P, 7};
        for (int i = threads == 1 ? 1 : 0; i < 3 && ok; i++) {
            gt_engine_seq_clear(e, 0);
            run_chunks(e, 0, ta, P, steps[i], got);
            snprintf(label, sizeof label, "%s %s threads=%d, %d tokens per call", arch,
                     gt_dtype_name((uint32_t)type), threads, steps[i]);
            ok &= same(label, got, ref_a, P);
        }
        gt_engine_destroy(e);
    }

    /* Both sequences interleaved in one batch, in calls of 23 rows, 2 threads. */
    gt_engine *e = open_engine(path, 2, 2);
    int32_t tok[2 * P], pos[2 * P], seq[2 * P];
    int8_t want[2 * P];
    for (int i = 0; i < P; i++) {
        tok[2 * i] = ta[i], pos[2 * i] = i, seq[2 * i] = 0;
        tok[2 * i + 1] = tb[i], pos[2 * i + 1] = i, seq[2 * i + 1] = 1;
    }
    memset(want, 1, sizeof want);
    for (int i = 0; i < 2 * P; i += 23) {
        const int m = 2 * P - i < 23 ? 2 * P - i : 23;
        gt_batch b = {m, tok + i, pos + i, seq + i, want + i};
        assert_int_equal(gt_engine_decode(e, &b, got + (size_t)i * V), GT_OK);
    }
    for (int i = 0; i < P && ok; i++) {
        snprintf(label, sizeof label, "%s %s interleaved, seq a pos %d", arch,
                 gt_dtype_name((uint32_t)type), i);
        ok &= same(label, got + (size_t)(2 * i) * V, ref_a + (size_t)i * V, 1);
        snprintf(label, sizeof label, "%s %s interleaved, seq b pos %d", arch,
                 gt_dtype_name((uint32_t)type), i);
        ok &= same(label, got + (size_t)(2 * i + 1) * V, ref_b + (size_t)i * V, 1);
    }
    gt_engine_destroy(e);
    free(ref_a);
    free(ref_b);
    free(got);
    return ok;
}

static const gt_dtype TYPES[] = {GT_F32, GT_F16, GT_BF16, GT_Q8_0, GT_Q4_0,
                                 GT_Q4_1, GT_Q5_0, GT_Q4_K, GT_Q6_K, GT_Q3_K};

static void check_arch(const char *arch) {
    int ok = 1;
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) ok &= check(arch, TYPES[i]);
    assert_true(ok);
}

static void test_invariance_llama(void **s) { (void)s; check_arch("llama"); }
static void test_invariance_qwen3(void **s) { (void)s; check_arch("qwen3"); }
static void test_invariance_llama_moe(void **s) { (void)s; check_arch("llama-moe"); }
/* The AVX2 kernels on an AVX-512 machine (skipped where the CPU lacks AVX2). */
static void test_invariance_llama_avx2(void **s) {
    (void)s;
    gt_kernels_config kc = GT_KERNELS_CONFIG_INIT;
    kc.isa = "avx2";
    gt_kernels *k = NULL;
    if (gt_kernels_create(&kc, &k) != GT_OK) skip();
    gt_kernels_destroy(k);
    g_isa = "avx2";
    check_arch("llama");
    g_isa = NULL;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invariance_llama),
        cmocka_unit_test(test_invariance_qwen3),
        cmocka_unit_test(test_invariance_llama_moe),
        cmocka_unit_test(test_invariance_llama_avx2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
