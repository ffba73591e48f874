/* Hyper-parameters from GGUF metadata for every supported architecture.
 *
 * One table row per architecture sets its fixed traits (rope order, biases,
 * norms); the numbers come from `{arch}.*` keys, with the defaults the GGUF
 * ecosystem uses when a key is optional. Validation happens here, once, so
 * the forward pass can trust the struct. */
#include "model/arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct arch_traits {
    const char *name;
    bool rope_neox, qkv_bias, qk_norm, post_norms, gelu, embd_scale, moe_norm_topk;
    float default_eps;
} arch_traits;

static const arch_traits k_arch[GT_ARCH_COUNT] = {
    [GT_ARCH_LLAMA] = {"llama", false, false, false, false, false, false, true, 1e-5f},
    [GT_ARCH_QWEN2] = {"qwen2", true, true, false, false, false, false, true, 1e-6f},
    [GT_ARCH_QWEN3] = {"qwen3", true, false, true, false, false, false, true, 1e-6f},
    [GT_ARCH_QWEN2MOE] = {"qwen2moe", true, true, false, false, false, false, false, 1e-6f},
    [GT_ARCH_GEMMA3] = {"gemma3", true, false, true, true, true, true, true, 1e-6f},
    [GT_ARCH_QWEN3MOE] = {"qwen3moe", true, false, true, false, false, false, true, 1e-6f},
};

const char *gt_arch_name(gt_arch arch) {
    return (unsigned)arch < GT_ARCH_COUNT ? k_arch[arch].name : "unknown";
}

bool gt_arch_parse(const char *name, gt_arch *out) {
    for (int a = 0; a < GT_ARCH_COUNT; a++)
        if (strcmp(name, k_arch[a].name) == 0) {
            *out = (gt_arch)a;
            return true;
        }
    return false;
}

bool gt_hparams_layer_is_swa(const gt_hparams *hp, uint32_t il) {
    if (hp->sliding_window == 0 || hp->swa_pattern == 0) return false;
    return il % hp->swa_pattern != hp->swa_pattern - 1;
}

/* "{arch}.{suffix}" into buf. */
static const char *key(char *buf, size_t n, const gt_hparams *hp, const char *suffix) {
    snprintf(buf, n, "%s.%s", hp->arch_name, suffix);
    return buf;
}

static gt_status need_u32(const gt_gguf *g, const gt_hparams *hp, const char *suffix, uint32_t *out) {
    char k[128];
    return gt_gguf_get_u32(g, key(k, sizeof k, hp, suffix), out);
}

static gt_status opt_u32(const gt_gguf *g, const gt_hparams *hp, const char *suffix, uint32_t def,
                         uint32_t *out) {
    char k[128];
    return gt_gguf_get_u32_or(g, key(k, sizeof k, hp, suffix), def, out);
}

static gt_status opt_f32(const gt_gguf *g, const gt_hparams *hp, const char *suffix, float def,
                         float *out) {
    char k[128];
    return gt_gguf_get_f32_or(g, key(k, sizeof k, hp, suffix), def, out);
}

/* The vocabulary size: {arch}.vocab_size, else the token list, else the
 * embedding's row count. */
static gt_status load_vocab_size(const gt_gguf *g, gt_hparams *hp) {
    GT_TRY(opt_u32(g, hp, "vocab_size", 0, &hp->n_vocab));
    if (hp->n_vocab) return GT_OK;
    const gt_gguf_value *tok = gt_gguf_find(g, "tokenizer.ggml.tokens");
    if (tok && tok->type == GT_GGUF_ARRAY && tok->arr.n <= UINT32_MAX) {
        hp->n_vocab = (uint32_t)tok->arr.n;
        return GT_OK;
    }
    const gt_tensor_info *emb = gt_gguf_find_tensor(g, "token_embd.weight");
    if (emb && emb->n_dims == 2 && emb->ne[1] <= UINT32_MAX) {
        hp->n_vocab = (uint32_t)emb->ne[1];
        return GT_OK;
    }
    return gt_fail(GT_ERR_NOT_FOUND, "%s: no vocabulary size (%s.vocab_size, tokenizer.ggml.tokens "
                   "or token_embd.weight)", gt_gguf_name(g), hp->arch_name);
}

static gt_status validate(const gt_gguf *g, const gt_hparams *hp) {
    const char *f = gt_gguf_name(g);
    if (!hp->n_embd || !hp->n_layer || !hp->n_head || !hp->n_head_kv || !hp->head_dim || !hp->n_vocab)
        return gt_fail(GT_ERR_FORMAT, "%s: embedding %u, layers %u, heads %u, kv heads %u, head size "
                       "%u and vocabulary %u must all be positive", f, hp->n_embd, hp->n_layer,
                       hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_vocab);
    if (hp->n_head % hp->n_head_kv)
        return gt_fail(GT_ERR_FORMAT, "%s: %u attention heads do not divide into %u kv heads", f,
                       hp->n_head, hp->n_head_kv);
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return gt_fail(GT_ERR_FORMAT, "%s: rope dimension %u must be even and at most the head size %u",
                       f, hp->n_rot, hp->head_dim);
    if (hp->head_dim_v != hp->head_dim)
        return gt_fail(GT_ERR_UNSUPPORTED, "%s: key size %u differs from value size %u", f,
                       hp->head_dim, hp->head_dim_v);
    if (hp->n_embd > (1u << 20) || hp->n_layer > 4096 || hp->n_head > 4096 || hp->head_dim > 4096)
        return gt_fail(GT_ERR_FORMAT, "%s: embedding %u, layers %u, heads %u or head size %u is beyond "
                       "any model Gantry serves", f, hp->n_embd, hp->n_layer, hp->n_head, hp->head_dim);
    if (hp->n_expert && (hp->n_expert_used == 0 || hp->n_expert_used > hp->n_expert))
        return gt_fail(GT_ERR_FORMAT, "%s: %u experts used per token out of %u experts", f,
                       hp->n_expert_used, hp->n_expert);
    if (!(hp->norm_eps > 0) || !(hp->rope_base > 0) || !(hp->rope_freq_scale > 0))
        return gt_fail(GT_ERR_FORMAT, "%s: norm epsilon %g, rope base %g and rope scale %g must be "
                       "positive", f, (double)hp->norm_eps, (double)hp->rope_base,
                       (double)hp->rope_freq_scale);
    return GT_OK;
}

gt_status gt_hparams_load(const gt_gguf *g, gt_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    gt_str name;
    GT_TRY(gt_gguf_get_str(g, "general.architecture", &name));
    if (name.len >= sizeof hp->arch_name)
        return gt_fail(GT_ERR_UNSUPPORTED, "%s: architecture name of %llu bytes is not one Gantry knows",
                       gt_gguf_name(g), (unsigned long long)name.len);
    memcpy(hp->arch_name, name.ptr, name.len);
    hp->arch_name[name.len] = '\0';
    if (!gt_arch_parse(hp->arch_name, &hp->arch))
        return gt_fail(GT_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (llama, qwen2, qwen3, "
                       "qwen2moe, qwen3moe, gemma3)", gt_gguf_name(g), hp->arch_name);
    const arch_traits *t = &k_arch[hp->arch];
    hp->rope_neox = t->rope_neox;
    hp->qkv_bias = t->qkv_bias;
    hp->qk_norm = t->qk_norm;
    hp->post_norms = t->post_norms;
    hp->gelu = t->gelu;
    hp->embd_scale = t->embd_scale;
    hp->moe_norm_topk = t->moe_norm_topk;

    GT_TRY(need_u32(g, hp, "embedding_length", &hp->n_embd));
    GT_TRY(need_u32(g, hp, "block_count", &hp->n_layer));
    GT_TRY(need_u32(g, hp, "attention.head_count", &hp->n_head));
    GT_TRY(opt_u32(g, hp, "attention.head_count_kv", hp->n_head, &hp->n_head_kv));
    GT_TRY(opt_u32(g, hp, "context_length", 2048, &hp->n_ctx_train));
    GT_TRY(opt_u32(g, hp, "feed_forward_length", 0, &hp->n_ff));
    uint32_t hd_default = hp->n_head ? hp->n_embd / hp->n_head : 0;
    GT_TRY(opt_u32(g, hp, "attention.key_length", hd_default, &hp->head_dim));
    GT_TRY(opt_u32(g, hp, "attention.value_length", hp->head_dim, &hp->head_dim_v));
    GT_TRY(opt_u32(g, hp, "rope.dimension_count", hp->head_dim, &hp->n_rot));
    GT_TRY(opt_f32(g, hp, "attention.layer_norm_rms_epsilon", t->default_eps, &hp->norm_eps));
    float base_default = hp->arch == GT_ARCH_GEMMA3 ? 1e6f : 10000.0f;
    GT_TRY(opt_f32(g, hp, "rope.freq_base", base_default, &hp->rope_base));
    float factor = 1.0f;
    char k[128];
    const gt_gguf_value *stype = gt_gguf_find(g, key(k, sizeof k, hp, "rope.scaling.type"));
    if (stype && stype->type == GT_GGUF_STRING && !(stype->str.len == 4 && !memcmp(stype->str.ptr, "none", 4))) {
        if (!(stype->str.len == 6 && !memcmp(stype->str.ptr, "linear", 6)))
            return gt_fail(GT_ERR_UNSUPPORTED, "%s: rope scaling '%.*s' is not supported (linear only)",
                           gt_gguf_name(g), (int)stype->str.len, stype->str.ptr);
        GT_TRY(opt_f32(g, hp, "rope.scaling.factor", 1.0f, &factor));
    }
    hp->rope_freq_scale = factor > 0 ? 1.0f / factor : 0.0f;
    GT_TRY(opt_u32(g, hp, "attention.sliding_window", 0, &hp->sliding_window));
    GT_TRY(opt_u32(g, hp, "attention.sliding_window_pattern", hp->sliding_window ? 6 : 0,
                   &hp->swa_pattern));
    GT_TRY(opt_f32(g, hp, "rope.freq_base_swa", 10000.0f, &hp->rope_base_swa));
    if (hp->arch != GT_ARCH_GEMMA3) hp->rope_base_swa = hp->rope_base;
    GT_TRY(opt_f32(g, hp, "final_logit_softcapping", 0.0f, &hp->final_softcap));
    GT_TRY(opt_u32(g, hp, "expert_count", 0, &hp->n_expert));
    GT_TRY(opt_u32(g, hp, "expert_used_count", 0, &hp->n_expert_used));
    GT_TRY(opt_u32(g, hp, "expert_feed_forward_length", hp->n_ff, &hp->n_ff_exp));
    GT_TRY(opt_u32(g, hp, "expert_shared_feed_forward_length", 0, &hp->n_ff_shexp));
    GT_TRY(load_vocab_size(g, hp));
    hp->tied_output = gt_gguf_find_tensor(g, "output.weight") == NULL;
    if (!hp->n_expert && !hp->n_ff)
        return gt_fail(GT_ERR_NOT_FOUND, "%s: key %s.feed_forward_length is missing", gt_gguf_name(g),
                       hp->arch_name);
    return validate(g, hp);
}

uint32_t gt_hparams_default_ctx(const gt_hparams *hp) {
    return hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
}
