/* Synthetic-model writer tests.
 *
 * Each architecture is synthesized small, reopened with the GGUF reader and
 * checked against the layout the GGUF ecosystem expects (keys, tensor names,
 * shapes, types), written down here by hand from the conventions rather than
 * taken from synth.c. The weights are checked statistically against the
 * documented distributions (dequantized with gt_dequantize_row), files are
 * compared byte for byte across runs and thread counts, and invalid
 * configurations must be refused with a sentence naming the numbers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/file.h"

#include "common/alloc.h"
#include "common/quant.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "model/synth.h"
#include "util/test_util.h"

static gt_synth_config tiny(const char *arch, gt_dtype type) {
    gt_synth_config c = GT_SYNTH_CONFIG_INIT;
    c.arch = arch;
    c.type = type;
    c.n_layer = 2;
    c.n_embd = 64;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 96;
    c.n_vocab = 300;
    c.n_threads = 2;
    return c;
}

static gt_gguf *synth_open(const gt_synth_config *c, const char *file) {
    const char *path = gt_test_tmp_path(0, file);
    gt_status st = gt_synth_write(c, path);
    if (st != GT_OK) fprintf(stderr, "synth failed: %s\n", gt_last_error());
    assert_int_equal(st, GT_OK);
    gt_gguf *g = NULL;
    st = gt_gguf_open(path, &g);
    if (st != GT_OK) fprintf(stderr, "open failed: %s\n", gt_last_error());
    assert_int_equal(st, GT_OK);
    return g;
}

static uint32_t u32(const gt_gguf *g, const char *key) {
    uint32_t v = 0;
    gt_status st = gt_gguf_get_u32(g, key, &v);
    if (st != GT_OK) fprintf(stderr, "%s\n", gt_last_error());
    assert_int_equal(st, GT_OK);
    return v;
}

static void expect_str(const gt_gguf *g, const char *key, const char *want) {
    gt_str s;
    assert_int_equal(gt_gguf_get_str(g, key, &s), GT_OK);
    if (s.len != strlen(want) || memcmp(s.ptr, want, s.len) != 0)
        fail_msg("%s is '%.*s', expected '%s'", key, (int)s.len, s.ptr, want);
}

/* Checks a tensor's presence, type and shape (ne0, ne1, ne2; 0 = unused). */
static void expect_tensor(const gt_gguf *g, const char *name, gt_dtype type, int64_t ne0,
                          int64_t ne1, int64_t ne2) {
    const gt_tensor_info *t = gt_gguf_find_tensor(g, name);
    if (!t) fail_msg("tensor %s is missing", name);
    int n_dims = ne2 ? 3 : ne1 ? 2 : 1;
    if (t->type != type || t->n_dims != n_dims || t->ne[0] != ne0 || (ne1 && t->ne[1] != ne1) ||
        (ne2 && t->ne[2] != ne2))
        fail_msg("tensor %s is %s %dd [%lld %lld %lld], expected %s [%lld %lld %lld]", name,
                 gt_dtype_name(t->type), t->n_dims, (long long)t->ne[0], (long long)t->ne[1],
                 (long long)t->ne[2], gt_dtype_name(type), (long long)ne0, (long long)ne1,
                 (long long)ne2);
}

/* Dequantizes a whole tensor and returns its mean and standard deviation. */
static void tensor_stats(const gt_gguf *g, const char *name, double *mean, double *sd) {
    const gt_tensor_info *t = gt_gguf_find_tensor(g, name);
    assert_non_null(t);
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    float *x = malloc((size_t)n * sizeof *x);
    assert_non_null(x);
    int64_t rows = n / t->ne[0];
    size_t rb;
    assert_true(gt_dtype_row_bytes(t->type, t->ne[0], &rb));
    for (int64_t r = 0; r < rows; r++)
        assert_int_equal(gt_dequantize_row(t->type, (const uint8_t *)t->data + r * rb,
                                           x + r * t->ne[0], t->ne[0]),
                         GT_OK);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *sd = sqrt(s2 / (double)n);
    free(x);
}

static void check_common(const gt_gguf *g, const char *arch, uint32_t ftype) {
    char k[128];
    expect_str(g, "general.architecture", arch);
    assert_int_equal(u32(g, "general.file_type"), ftype);
    assert_int_equal(u32(g, "general.quantization_version"), 2);
    assert_int_equal(u32(g, "general.alignment"), 32);
#define K(s) (snprintf(k, sizeof k, "%s." s, arch), k)
    assert_int_equal(u32(g, K("embedding_length")), 64);
    assert_int_equal(u32(g, K("block_count")), 2);
    assert_int_equal(u32(g, K("context_length")), 2048);
    assert_int_equal(u32(g, K("attention.head_count")), 4);
    assert_int_equal(u32(g, K("attention.head_count_kv")), 2);
    assert_int_equal(u32(g, K("vocab_size")), 300);
    float eps;
    assert_int_equal(gt_gguf_get_f32(g, K("attention.layer_norm_rms_epsilon"), &eps), GT_OK);
    assert_true(fabsf(eps - (strcmp(arch, "llama") == 0 ? 1e-5f : 1e-6f)) < 1e-9f);
    float base;
    assert_int_equal(gt_gguf_get_f32(g, K("rope.freq_base"), &base), GT_OK);
    assert_true(base == 10000.0f);
#undef K
    const gt_gguf_value *tok = gt_gguf_find(g, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->arr.n, 300);
    expect_str(g, "tokenizer.ggml.model", "llama");
    expect_tensor(g, "token_embd.weight", GT_Q8_0, 64, 300, 0);
    expect_tensor(g, "output_norm.weight", GT_F32, 64, 0, 0);
    expect_tensor(g, "output.weight", GT_Q8_0, 64, 300, 0);
    for (int il = 0; il < 2; il++) {
        char n[64];
#define T(s) (snprintf(n, sizeof n, "blk.%d." s, il), n)
        expect_tensor(g, T("attn_norm.weight"), GT_F32, 64, 0, 0);
        expect_tensor(g, T("attn_q.weight"), GT_Q8_0, 64, 64, 0);
        expect_tensor(g, T("attn_k.weight"), GT_Q8_0, 64, 32, 0);
        expect_tensor(g, T("attn_v.weight"), GT_Q8_0, 64, 32, 0);
        expect_tensor(g, T("attn_output.weight"), GT_Q8_0, 64, 64, 0);
        expect_tensor(g, T("ffn_norm.weight"), GT_F32, 64, 0, 0);
#undef T
    }
}

static void test_llama(void **state) {
    gt_synth_config c = tiny("llama", GT_Q8_0);
    gt_gguf *g = synth_open(&c, "synth_llama.gguf");
    check_common(g, "llama", 7);
    assert_int_equal(u32(g, "llama.feed_forward_length"), 96);
    assert_int_equal(u32(g, "llama.rope.dimension_count"), 16);
    assert_null(gt_gguf_find(g, "llama.attention.key_length")); /* head_dim = hidden/heads */
    expect_tensor(g, "blk.1.ffn_gate.weight", GT_Q8_0, 64, 96, 0);
    expect_tensor(g, "blk.1.ffn_up.weight", GT_Q8_0, 64, 96, 0);
    expect_tensor(g, "blk.1.ffn_down.weight", GT_Q8_0, 96, 64, 0);
    assert_null(gt_gguf_find_tensor(g, "blk.0.attn_q.bias"));
    assert_null(gt_gguf_find_tensor(g, "blk.0.attn_q_norm.weight"));
    assert_int_equal(gt_gguf_n_tensors(g), 3 + 2 * 9);
    gt_gguf_close(g);
}

static void test_qwen2(void **state) {
    gt_synth_config c = tiny("qwen2", GT_Q8_0);
    gt_gguf *g = synth_open(&c, "synth_qwen2.gguf");
    check_common(g, "qwen2", 7);
    expect_tensor(g, "blk.0.attn_q.bias", GT_F32, 64, 0, 0);
    expect_tensor(g, "blk.0.attn_k.bias", GT_F32, 32, 0, 0);
    expect_tensor(g, "blk.1.attn_v.bias", GT_F32, 32, 0, 0);
    assert_null(gt_gguf_find(g, "qwen2.rope.dimension_count"));
    double mean, sd;
    tensor_stats(g, "blk.0.attn_q.bias", &mean, &sd); /* biases: 0.1 noise */
    assert_true(fabs(mean) < 0.05 && sd > 0.06 && sd < 0.14);
    gt_gguf_close(g);
}

static void test_qwen3_head_dim(void **state) {
    gt_synth_config c = tiny("qwen3", GT_Q8_0);
    c.head_dim = 32; /* n_head * head_dim = 128 != hidden 64 */
    gt_gguf *g = synth_open(&c, "synth_qwen3.gguf");
    expect_str(g, "general.architecture", "qwen3");
    assert_int_equal(u32(g, "qwen3.attention.key_length"), 32);
    assert_int_equal(u32(g, "qwen3.attention.value_length"), 32);
    expect_tensor(g, "blk.0.attn_q.weight", GT_Q8_0, 64, 128, 0);
    expect_tensor(g, "blk.0.attn_k.weight", GT_Q8_0, 64, 64, 0);
    expect_tensor(g, "blk.0.attn_output.weight", GT_Q8_0, 128, 64, 0);
    expect_tensor(g, "blk.0.attn_q_norm.weight", GT_F32, 32, 0, 0);
    expect_tensor(g, "blk.1.attn_k_norm.weight", GT_F32, 32, 0, 0);
    assert_null(gt_gguf_find_tensor(g, "blk.0.attn_q.bias"));
    gt_gguf_close(g);
}

static void test_llama_moe(void **state) {
    gt_synth_config c = tiny("llama-moe", GT_Q4_0);
    c.n_expert = 4;
    c.n_expert_used = 2;
    c.n_ff_exp = 64;
    gt_gguf *g = synth_open(&c, "synth_llama_moe.gguf");
    expect_str(g, "general.architecture", "llama"); /* Mixtral convention */
    assert_int_equal(u32(g, "general.file_type"), 2);
    assert_int_equal(u32(g, "llama.expert_count"), 4);
    assert_int_equal(u32(g, "llama.expert_used_count"), 2);
    assert_int_equal(u32(g, "llama.feed_forward_length"), 64);
    expect_tensor(g, "blk.0.ffn_gate_inp.weight", GT_F32, 64, 4, 0);
    expect_tensor(g, "blk.0.ffn_gate_exps.weight", GT_Q4_0, 64, 64, 4);
    expect_tensor(g, "blk.0.ffn_up_exps.weight", GT_Q4_0, 64, 64, 4);
    expect_tensor(g, "blk.1.ffn_down_exps.weight", GT_Q4_0, 64, 64, 4);
    assert_null(gt_gguf_find_tensor(g, "blk.0.ffn_gate.weight"));
    assert_null(gt_gguf_find_tensor(g, "blk.0.ffn_gate_inp_shexp.weight"));
    gt_gguf_close(g);
}

static void test_qwen2moe(void **state) {
    gt_synth_config c = tiny("qwen2moe", GT_Q8_0);
    c.n_expert = 8;
    c.n_expert_used = 2;
    c.n_ff_exp = 32;
    c.n_ff_shexp = 128;
    gt_gguf *g = synth_open(&c, "synth_qwen2moe.gguf");
    expect_str(g, "general.architecture", "qwen2moe");
    assert_int_equal(u32(g, "qwen2moe.expert_count"), 8);
    assert_int_equal(u32(g, "qwen2moe.expert_used_count"), 2);
    assert_int_equal(u32(g, "qwen2moe.feed_forward_length"), 96);
    assert_int_equal(u32(g, "qwen2moe.expert_feed_forward_length"), 32);
    assert_int_equal(u32(g, "qwen2moe.expert_shared_feed_forward_length"), 128);
    expect_tensor(g, "blk.0.attn_q.bias", GT_F32, 64, 0, 0);
    expect_tensor(g, "blk.0.ffn_gate_inp.weight", GT_F32, 64, 8, 0);
    expect_tensor(g, "blk.0.ffn_gate_exps.weight", GT_Q8_0, 64, 32, 8);
    expect_tensor(g, "blk.0.ffn_down_exps.weight", GT_Q8_0, 32, 64, 8);
    expect_tensor(g, "blk.1.ffn_gate_inp_shexp.weight", GT_F32, 64, 0, 0);
    expect_tensor(g, "blk.1.ffn_gate_shexp.weight", GT_Q8_0, 64, 128, 0);
    expect_tensor(g, "blk.1.ffn_up_shexp.weight", GT_Q8_0, 64, 128, 0);
    expect_tensor(g, "blk.1.ffn_down_shexp.weight", GT_Q8_0, 128, 64, 0);
    gt_hparams hp;
    assert_int_equal(gt_hparams_load(g, &hp), GT_OK);
    assert_false(hp.moe_norm_topk); /* qwen2moe keeps the softmax weights */
    gt_gguf_close(g);
}

/* Weights follow the documented distributions: embedding sd 1, matrices sd
 * 1/sqrt(n_in), norms 1 + 0.1 noise (the sum of four uniforms has sd 1). */
/* qwen3moe: qwen3's QK-norm attention, routed experts under their own width
 * key, no shared expert and no biases (llama.cpp's LLM_ARCH_QWEN3MOE). */
static void test_qwen3moe(void **state) {
    gt_synth_config c = tiny("qwen3moe", GT_Q8_0);
    c.n_expert = 8;
    c.n_expert_used = 3;
    c.n_ff_exp = 32;
    c.head_dim = 32;
    gt_gguf *g = synth_open(&c, "synth_qwen3moe.gguf");
    expect_str(g, "general.architecture", "qwen3moe");
    assert_int_equal(u32(g, "qwen3moe.expert_count"), 8);
    assert_int_equal(u32(g, "qwen3moe.expert_used_count"), 3);
    assert_int_equal(u32(g, "qwen3moe.feed_forward_length"), 96);
    assert_int_equal(u32(g, "qwen3moe.expert_feed_forward_length"), 32);
    assert_int_equal(u32(g, "qwen3moe.attention.key_length"), 32);
    assert_null(gt_gguf_find(g, "qwen3moe.expert_shared_feed_forward_length"));
    expect_tensor(g, "blk.0.attn_q_norm.weight", GT_F32, 32, 0, 0);
    expect_tensor(g, "blk.1.attn_k_norm.weight", GT_F32, 32, 0, 0);
    expect_tensor(g, "blk.0.ffn_gate_inp.weight", GT_F32, 64, 8, 0);
    expect_tensor(g, "blk.0.ffn_gate_exps.weight", GT_Q8_0, 64, 32, 8);
    expect_tensor(g, "blk.1.ffn_up_exps.weight", GT_Q8_0, 64, 32, 8);
    expect_tensor(g, "blk.1.ffn_down_exps.weight", GT_Q8_0, 32, 64, 8);
    assert_null(gt_gguf_find_tensor(g, "blk.0.attn_q.bias"));
    assert_null(gt_gguf_find_tensor(g, "blk.0.ffn_gate.weight"));
    assert_null(gt_gguf_find_tensor(g, "blk.0.ffn_gate_shexp.weight"));
    assert_null(gt_gguf_find_tensor(g, "blk.0.ffn_gate_inp_shexp.weight"));
    gt_hparams hp;
    assert_int_equal(gt_hparams_load(g, &hp), GT_OK);
    assert_int_equal(hp.arch, GT_ARCH_QWEN3MOE);
    assert_true(hp.qk_norm && hp.rope_neox && !hp.qkv_bias && hp.moe_norm_topk);
    assert_int_equal(hp.n_expert, 8);
    assert_int_equal(hp.n_expert_used, 3);
    assert_int_equal(hp.n_ff_exp, 32);
    assert_int_equal(hp.n_ff_shexp, 0);
    gt_gguf_close(g);
}

static void test_distributions_and_tied(void **state) {
    gt_synth_config c = tiny("llama", GT_F32);
    c.n_vocab = 1000;
    c.n_ff = 256;
    c.tied = true;
    gt_gguf *g = synth_open(&c, "synth_tied.gguf");
    assert_null(gt_gguf_find_tensor(g, "output.weight"));
    double mean, sd;
    tensor_stats(g, "token_embd.weight", &mean, &sd);
    printf("token_embd mean %.4f sd %.4f\n", mean, sd);
    assert_true(fabs(mean) < 0.02 && fabs(sd - 1.0) < 0.02);
    tensor_stats(g, "blk.0.ffn_down.weight", &mean, &sd);
    printf("ffn_down mean %.4f sd %.4f (want %.4f)\n", mean, sd, 1 / sqrt(256.0));
    assert_true(fabs(mean) < 0.005 && fabs(sd - 1 / sqrt(256.0)) < 0.003);
    tensor_stats(g, "blk.1.attn_norm.weight", &mean, &sd);
    assert_true(fabs(mean - 1.0) < 0.05 && sd > 0.06 && sd < 0.14);
    /* Tensors of the same name are identical with and without --tied. */
    gt_synth_config c2 = c;
    c2.tied = false;
    gt_gguf *g2 = synth_open(&c2, "synth_untied.gguf");
    const gt_tensor_info *a = gt_gguf_find_tensor(g, "blk.1.ffn_up.weight");
    const gt_tensor_info *b = gt_gguf_find_tensor(g2, "blk.1.ffn_up.weight");
    assert_int_equal(a->nbytes, b->nbytes);
    assert_memory_equal(a->data, b->data, a->nbytes);
    gt_gguf_close(g2);
    gt_gguf_close(g);
}

static size_t read_file(const char *path, uint8_t **out) {
    char *b = NULL;
    size_t n = 0;
    assert_int_equal(gt_read_file(path, 0, &b, &n), GT_OK);
    *out = (uint8_t *)b;
    return n;
}

static void test_determinism(void **state) {
    gt_synth_config c = tiny("qwen2moe", GT_Q4_K);
    c.n_embd = 256;
    c.n_ff = 512;
    c.n_ff_exp = 256;
    c.n_threads = 1;
    char p1[1024], p2[1024], p3[1024];
    snprintf(p1, sizeof p1, "%s", gt_test_tmp_path(0, "synth_det1.gguf"));
    snprintf(p2, sizeof p2, "%s", gt_test_tmp_path(1, "synth_det2.gguf"));
    snprintf(p3, sizeof p3, "%s", gt_test_tmp_path(2, "synth_det3.gguf"));
    assert_int_equal(gt_synth_write(&c, p1), GT_OK);
    c.n_threads = 3; /* same bytes whatever the thread count */
    assert_int_equal(gt_synth_write(&c, p2), GT_OK);
    c.seed = 2;
    assert_int_equal(gt_synth_write(&c, p3), GT_OK);
    uint8_t *a, *b, *d;
    size_t na = read_file(p1, &a), nb = read_file(p2, &b), nd = read_file(p3, &d);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++)
        if (a[i] != b[i]) fail_msg("files differ at byte %zu of %zu", i, na);
    assert_int_equal(na, nd);
    size_t n_diff = 0;
    for (size_t i = 0; i < na; i++) n_diff += a[i] != d[i];
    printf("seed 1 vs 2: %zu of %zu bytes differ\n", n_diff, na);
    assert_true(n_diff > na / 2);
    free(a);
    free(b);
    free(d);
}

/* K-quants store matrices whose rows are not whole 256-blocks as Q8_0. */
static void test_kquant_fallback(void **state) {
    gt_synth_config c = tiny("llama", GT_Q6_K);
    c.n_embd = 256;
    c.n_ff = 96;
    gt_gguf *g = synth_open(&c, "synth_fallback.gguf");
    assert_int_equal(u32(g, "general.file_type"), 18);
    expect_tensor(g, "token_embd.weight", GT_Q6_K, 256, 300, 0);
    expect_tensor(g, "blk.0.ffn_gate.weight", GT_Q6_K, 256, 96, 0);
    expect_tensor(g, "blk.0.ffn_down.weight", GT_Q8_0, 96, 256, 0);
    gt_gguf_close(g);
}

static void test_vocab_from(void **state) {
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-llama-spm.gguf", gt_test_shared_dir());
    if (access(path, R_OK) != 0) {
        printf("no %s: vocab-from not checked\n", path);
        skip();
    }
    gt_gguf *v = NULL;
    assert_int_equal(gt_gguf_open(path, &v), GT_OK);
    gt_synth_config c = tiny("qwen3", GT_F16);
    c.vocab_from = path;
    c.n_vocab = 0;
    gt_gguf *g = synth_open(&c, "synth_vocab.gguf");
    const gt_gguf_value *tok = gt_gguf_find(g, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->arr.n, gt_gguf_find(v, "tokenizer.ggml.tokens")->arr.n);
    assert_int_equal(u32(g, "qwen3.vocab_size"), tok->arr.n);
    expect_tensor(g, "token_embd.weight", GT_F16, 64, (int64_t)tok->arr.n, 0);
    /* Every tokenizer.* key of the source is present with the same type. */
    size_t n_tok_keys = 0;
    for (size_t i = 0; i < gt_gguf_n_kv(v); i++) {
        const gt_gguf_kv *kv = gt_gguf_kv_at(v, i);
        if (kv->key.len < 10 || memcmp(kv->key.ptr, "tokenizer.", 10) != 0) continue;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        const gt_gguf_value *w = gt_gguf_find(g, key);
        if (!w || w->type != kv->value.type) fail_msg("key %s not copied", key);
        n_tok_keys++;
    }
    assert_true(n_tok_keys >= 5);
    gt_gguf_close(g);
    gt_gguf_close(v);
}

static void expect_refused(const gt_synth_config *c, const char *must1, const char *must2) {
    gt_clear_error();
    gt_status st = gt_synth_write(c, gt_test_tmp_path(3, "synth_bad.gguf"));
    const char *msg = gt_last_error();
    printf("refused: %s\n", msg);
    assert_int_equal(st, GT_ERR_INVALID_ARG);
    assert_int_equal(gt_synth_validate(c), GT_ERR_INVALID_ARG);
    if (!strstr(msg, must1) || (must2 && !strstr(msg, must2)))
        fail_msg("sentence '%s' should name %s and %s", msg, must1, must2 ? must2 : "");
}

static void test_invalid(void **state) {
    gt_synth_config c = tiny("llama", GT_Q4_0);
    c.n_head = 6;
    c.n_head_kv = 4;
    c.head_dim = 16;
    expect_refused(&c, "6", "4");
    c = tiny("llama", GT_Q4_0);
    c.n_ff = 100;
    expect_refused(&c, "100", "32");
    c = tiny("llama", GT_Q4_K);
    c.n_embd = 200;
    c.n_head = 4;
    expect_refused(&c, "200", "256");
    c = tiny("mamba", GT_F32);
    expect_refused(&c, "mamba", NULL);
    c = tiny("qwen2", GT_F32);
    c.n_expert = 4;
    expect_refused(&c, "qwen2", "4");
    c = tiny("qwen2moe", GT_F32);
    c.n_expert = 4;
    c.n_expert_used = 5;
    expect_refused(&c, "5", "4");
    c = tiny("llama", GT_F32);
    c.n_embd = 60;
    c.n_head = 8;
    expect_refused(&c, "60", "8");
    c = tiny("llama", GT_Q8_K);
    expect_refused(&c, "Q8_K", NULL);
    c = tiny("llama", GT_F32);
    c.n_vocab = 0;
    expect_refused(&c, "0", NULL);
    /* A missing vocabulary file is an I/O error, not a crash. */
    c = tiny("llama", GT_F32);
    c.vocab_from = "/nonexistent/vocab.gguf";
    assert_int_not_equal(gt_synth_write(&c, gt_test_tmp_path(3, "synth_bad.gguf")), GT_OK);
    assert_non_null(strstr(gt_last_error(), "/nonexistent/vocab.gguf"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama),          cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_qwen3_head_dim), cmocka_unit_test(test_llama_moe),
        cmocka_unit_test(test_qwen2moe),       cmocka_unit_test(test_qwen3moe),       cmocka_unit_test(test_distributions_and_tied),
        cmocka_unit_test(test_determinism),    cmocka_unit_test(test_kquant_fallback),
        cmocka_unit_test(test_vocab_from),     cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
