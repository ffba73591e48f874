/* Synthetic GGUF models with seeded random weights; see synth.h.
 *
 * Design: the model is first described as a list of tensor descriptors
 * (name, shape, type, mean and spread), which makes the layout of each
 * architecture readable in one place (add_layer). Every tensor is then filled
 * row by row on a thread pool: a row's generator state is a hash of (seed,
 * tensor name, row index), so the bytes never depend on the thread count or
 * on which other tensors exist. Rows are generated in float and converted
 * with gt_quantize_row (the ecosystem's round-to-nearest quantizers), so a
 * Q4_0 file looks like a real Q4_0 conversion of a float model. */
#include "model/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/pool.h"
#include "common/quant.h"
#include "model/gguf.h"

#define MAX_DIM     1048576u /* any width beyond this is surely a typo */
#define MAX_LAYERS  1024u
#define MAX_EXPERTS 1024u
#define MAX_VOCAB   (1u << 24)

typedef enum {
    ARCH_LLAMA,
    ARCH_QWEN2,
    ARCH_QWEN3,
    ARCH_LLAMA_MOE,
    ARCH_QWEN2MOE,
    ARCH_QWEN3MOE
} synth_arch;

typedef struct arch_desc {
    const char *flag; /* --arch spelling */
    const char *gguf; /* general.architecture */
    bool moe, qkv_bias, qk_norm, shared_expert, rope_dims_key;
    float eps;
} arch_desc;

static const arch_desc k_archs[] = {
    [ARCH_LLAMA] = {"llama", "llama", false, false, false, false, true, 1e-5f},
    [ARCH_QWEN2] = {"qwen2", "qwen2", false, true, false, false, false, 1e-6f},
    [ARCH_QWEN3] = {"qwen3", "qwen3", false, false, true, false, false, 1e-6f},
    [ARCH_LLAMA_MOE] = {"llama-moe", "llama", true, false, false, false, true, 1e-5f},
    [ARCH_QWEN2MOE] = {"qwen2moe", "qwen2moe", true, true, false, true, false, 1e-6f},
    [ARCH_QWEN3MOE] = {"qwen3moe", "qwen3moe", true, false, true, false, false, 1e-6f},
};
#define N_ARCHS (sizeof k_archs / sizeof k_archs[0])

/* The effective configuration after defaults are applied. */
typedef struct resolved {
    synth_arch arch;
    const arch_desc *ad;
    uint32_t head_dim, n_expert, n_expert_used, n_ff_exp, n_ff_shexp;
} resolved;

typedef struct tdesc {
    char name[64];
    int n_dims;
    int64_t ne[3];
    gt_dtype type;
    float mean, sd;
} tdesc;

int gt_synth_file_type(gt_dtype type) {
    switch (type) {
    case GT_F32:
        return 0;
    case GT_F16:
        return 1;
    case GT_Q4_0:
        return 2;
    case GT_Q4_1:
        return 3;
    case GT_Q8_0:
        return 7;
    case GT_Q5_0:
        return 8;
    case GT_Q5_1:
        return 9;
    case GT_Q2_K:
        return 10;
    case GT_Q3_K:
        return 12;
    case GT_Q4_K:
        return 15;
    case GT_Q5_K:
        return 17;
    case GT_Q6_K:
        return 18;
    case GT_BF16:
        return 32;
    default:
        return -1;
    }
}

static bool find_arch(const char *name, synth_arch *out) {
    for (size_t i = 0; name && i < N_ARCHS; i++)
        if (strcmp(name, k_archs[i].flag) == 0) {
            *out = (synth_arch)i;
            return true;
        }
    return false;
}

static bool is_kquant(gt_dtype t) { return t >= GT_Q2_K && t <= GT_Q6_K; }

/* Checks that a row of `n` elements can be stored in cfg->type (or in the
 * Q8_0 fallback of K-quants). `what` names the dimension in the sentence. */
static gt_status check_row(const gt_synth_config *cfg, const char *what, uint32_t n) {
    const gt_dtype_info *info = gt_dtype_get((uint32_t)cfg->type);
    int blk = info->block_elems;
    if (n % (uint32_t)blk == 0) return GT_OK;
    if (is_kquant(cfg->type) && n % GT_QK8_0 == 0) return GT_OK; /* Q8_0 fallback */
    return gt_fail(GT_ERR_INVALID_ARG, "%s %u is not a multiple of the %d-element blocks of %s%s",
                   what, n, blk, info->name,
                   is_kquant(cfg->type) ? " (nor of 32 for the Q8_0 fallback)" : "");
}

static gt_status resolve(const gt_synth_config *cfg, resolved *r) {
    memset(r, 0, sizeof *r);
    if (!cfg->arch || !find_arch(cfg->arch, &r->arch))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "architecture '%s' is not one synth writes (llama, qwen2, qwen3, llama-moe, "
                       "qwen2moe, qwen3moe)",
                       cfg->arch ? cfg->arch : "(none)");
    if (r->arch == ARCH_LLAMA && cfg->n_expert > 0) r->arch = ARCH_LLAMA_MOE;
    r->ad = &k_archs[r->arch];
    const gt_dtype_info *info = gt_dtype_get((uint32_t)cfg->type);
    if (!info || !info->has_codec || cfg->type == GT_Q8_1 || cfg->type == GT_Q8_K ||
        gt_synth_file_type(cfg->type) < 0)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "weight type %s is not one synth writes (f32, f16, bf16, "
                       "q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k)",
                       gt_dtype_name((uint32_t)cfg->type));
    if (cfg->n_layer < 1 || cfg->n_layer > MAX_LAYERS)
        return gt_fail(GT_ERR_INVALID_ARG, "%u layers is outside 1..%u", cfg->n_layer, MAX_LAYERS);
    if (cfg->n_embd < 1 || cfg->n_embd > MAX_DIM || cfg->n_ff < 1 || cfg->n_ff > MAX_DIM)
        return gt_fail(GT_ERR_INVALID_ARG, "hidden %u and ffn %u must be within 1..%u", cfg->n_embd,
                       cfg->n_ff, MAX_DIM);
    if (cfg->n_head < 1 || cfg->n_head_kv < 1 || cfg->n_head > 4096)
        return gt_fail(GT_ERR_INVALID_ARG, "%u heads and %u kv heads must be within 1..4096",
                       cfg->n_head, cfg->n_head_kv);
    if (cfg->n_head % cfg->n_head_kv != 0)
        return gt_fail(GT_ERR_INVALID_ARG, "%u attention heads are not divisible by %u kv heads",
                       cfg->n_head, cfg->n_head_kv);
    r->head_dim = cfg->head_dim;
    if (r->head_dim == 0) {
        if (cfg->n_embd % cfg->n_head != 0)
            return gt_fail(GT_ERR_INVALID_ARG,
                           "hidden %u is not divisible by %u heads (give "
                           "--head-dim)",
                           cfg->n_embd, cfg->n_head);
        r->head_dim = cfg->n_embd / cfg->n_head;
    }
    if (r->head_dim % 2 != 0 || r->head_dim > 4096)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "head size %u must be even and at most 4096 (rope turns "
                       "pairs)",
                       r->head_dim);
    if ((uint64_t)cfg->n_head * r->head_dim > MAX_DIM)
        return gt_fail(GT_ERR_INVALID_ARG, "%u heads of %u make a projection wider than %u",
                       cfg->n_head, r->head_dim, MAX_DIM);
    if (r->ad->moe) {
        r->n_expert = cfg->n_expert ? cfg->n_expert : 4;
        r->n_expert_used = cfg->n_expert_used;
        r->n_ff_exp = cfg->n_ff_exp ? cfg->n_ff_exp : cfg->n_ff;
        r->n_ff_shexp = r->ad->shared_expert ? (cfg->n_ff_shexp ? cfg->n_ff_shexp : cfg->n_ff) : 0;
        if (r->n_expert < 2 || r->n_expert > MAX_EXPERTS)
            return gt_fail(GT_ERR_INVALID_ARG, "%u experts is outside 2..%u", r->n_expert,
                           MAX_EXPERTS);
        if (r->n_expert_used < 1 || r->n_expert_used > r->n_expert)
            return gt_fail(GT_ERR_INVALID_ARG,
                           "%u experts used per token must be within 1..%u "
                           "experts",
                           r->n_expert_used, r->n_expert);
        if (r->n_ff_exp > MAX_DIM || r->n_ff_shexp > MAX_DIM)
            return gt_fail(GT_ERR_INVALID_ARG, "expert ffn %u and shared ffn %u must be at most %u",
                           r->n_ff_exp, r->n_ff_shexp, MAX_DIM);
    } else if (cfg->n_expert != 0) {
        return gt_fail(GT_ERR_INVALID_ARG,
                       "architecture %s has no experts, but %u were asked for "
                       "(use llama-moe, qwen2moe or qwen3moe)",
                       r->ad->flag, cfg->n_expert);
    }
    if (!cfg->vocab_from && (cfg->n_vocab < 3 || cfg->n_vocab > MAX_VOCAB))
        return gt_fail(GT_ERR_INVALID_ARG, "vocabulary of %u tokens is outside 3..%u", cfg->n_vocab,
                       MAX_VOCAB);
    if (cfg->n_ctx < 1 || cfg->n_ctx > (1u << 24))
        return gt_fail(GT_ERR_INVALID_ARG, "context %u is outside 1..%u", cfg->n_ctx, 1u << 24);
    if (!(cfg->rope_base > 0.0f) || !isfinite(cfg->rope_base))
        return gt_fail(GT_ERR_INVALID_ARG, "rope base %g must be a positive number",
                       (double)cfg->rope_base);
    /* Row lengths (ne[0]) of every matrix: hidden for most, n_head*hd for the
     * attention output, ffn widths for the down projections. */
    GT_TRY(check_row(cfg, "hidden", cfg->n_embd));
    GT_TRY(check_row(cfg, "attention width (heads x head size)", cfg->n_head * r->head_dim));
    if (!r->ad->moe) GT_TRY(check_row(cfg, "ffn", cfg->n_ff));
    if (r->ad->moe) GT_TRY(check_row(cfg, "expert ffn", r->n_ff_exp));
    if (r->n_ff_shexp) GT_TRY(check_row(cfg, "shared expert ffn", r->n_ff_shexp));
    return GT_OK;
}

gt_status gt_synth_validate(const gt_synth_config *cfg) {
    resolved r;
    return resolve(cfg, &r);
}

/* ---- tensor list ---- */

typedef struct tlist {
    tdesc *v;
    size_t n, cap;
} tlist;

static gt_status push(tlist *l, const char *name, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2,
                      gt_dtype type, float mean, float sd) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        tdesc *v = realloc(l->v, cap * sizeof *v);
        if (!v) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu tensor descriptors", cap);
        l->v = v;
        l->cap = cap;
    }
    tdesc *d = &l->v[l->n++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n_dims = n_dims;
    d->ne[0] = ne0;
    d->ne[1] = ne1;
    d->ne[2] = ne2;
    d->type = type;
    d->mean = mean;
    d->sd = sd;
    return GT_OK;
}

/* The weight type for a matrix with rows of n_in: K-quants fall back to Q8_0
 * for rows that are not whole 256-element super-blocks, as llama.cpp's
 * quantizer does. */
static gt_dtype matrix_type(const gt_synth_config *cfg, const char *name, int64_t n_in) {
    if (is_kquant(cfg->type) && n_in % GT_QK_K != 0) {
        if (strncmp(name, "blk.", 4) != 0 || strncmp(name, "blk.0.", 6) == 0)
            GT_LOG_WARN(GT_SUB_MODEL,
                        "synth: %s%s has rows of %lld, not a multiple of 256: "
                        "stored as Q8_0 instead of %s",
                        name, strncmp(name, "blk.0.", 6) == 0 ? " (and every layer's)" : "",
                        (long long)n_in, gt_dtype_name((uint32_t)cfg->type));
        return GT_Q8_0;
    }
    return cfg->type;
}

static gt_status push_mat(tlist *l, const gt_synth_config *cfg, const char *name, int64_t n_in,
                          int64_t n_out, int64_t n_mat) {
    float sd = 1.0f / sqrtf((float)n_in);
    return push(l, name, n_mat > 1 ? 3 : 2, n_in, n_out, n_mat, matrix_type(cfg, name, n_in), 0.0f,
                sd);
}

static gt_status add_layer(tlist *l, const gt_synth_config *cfg, const resolved *r, uint32_t il) {
    char nm[64];
    const int64_t e = cfg->n_embd, hd = r->head_dim;
    const int64_t nq = cfg->n_head * hd, nkv = cfg->n_head_kv * hd;
#define NAME(suffix) (snprintf(nm, sizeof nm, "blk.%u." suffix, il), nm)
    GT_TRY(push(l, NAME("attn_norm.weight"), 1, e, 1, 1, GT_F32, 1.0f, 0.1f));
    GT_TRY(push_mat(l, cfg, NAME("attn_q.weight"), e, nq, 1));
    GT_TRY(push_mat(l, cfg, NAME("attn_k.weight"), e, nkv, 1));
    GT_TRY(push_mat(l, cfg, NAME("attn_v.weight"), e, nkv, 1));
    if (r->ad->qkv_bias) {
        GT_TRY(push(l, NAME("attn_q.bias"), 1, nq, 1, 1, GT_F32, 0.0f, 0.1f));
        GT_TRY(push(l, NAME("attn_k.bias"), 1, nkv, 1, 1, GT_F32, 0.0f, 0.1f));
        GT_TRY(push(l, NAME("attn_v.bias"), 1, nkv, 1, 1, GT_F32, 0.0f, 0.1f));
    }
    if (r->ad->qk_norm) {
        GT_TRY(push(l, NAME("attn_q_norm.weight"), 1, hd, 1, 1, GT_F32, 1.0f, 0.1f));
        GT_TRY(push(l, NAME("attn_k_norm.weight"), 1, hd, 1, 1, GT_F32, 1.0f, 0.1f));
    }
    GT_TRY(push_mat(l, cfg, NAME("attn_output.weight"), nq, e, 1));
    GT_TRY(push(l, NAME("ffn_norm.weight"), 1, e, 1, 1, GT_F32, 1.0f, 0.1f));
    if (!r->ad->moe) {
        GT_TRY(push_mat(l, cfg, NAME("ffn_gate.weight"), e, cfg->n_ff, 1));
        GT_TRY(push_mat(l, cfg, NAME("ffn_up.weight"), e, cfg->n_ff, 1));
        GT_TRY(push_mat(l, cfg, NAME("ffn_down.weight"), cfg->n_ff, e, 1));
        return GT_OK;
    }
    const int64_t x = r->n_expert, f = r->n_ff_exp;
    /* Router sd 2/sqrt(n_embd): logits of sd ~2 make top-k near-ties rare. */
    GT_TRY(push(l, NAME("ffn_gate_inp.weight"), 2, e, x, 1, GT_F32, 0.0f, 2.0f / sqrtf((float)e)));
    GT_TRY(push_mat(l, cfg, NAME("ffn_gate_exps.weight"), e, f, x));
    GT_TRY(push_mat(l, cfg, NAME("ffn_up_exps.weight"), e, f, x));
    GT_TRY(push_mat(l, cfg, NAME("ffn_down_exps.weight"), f, e, x));
    if (r->n_ff_shexp) {
        const int64_t s = r->n_ff_shexp;
        GT_TRY(push(l, NAME("ffn_gate_inp_shexp.weight"), 1, e, 1, 1, GT_F32, 0.0f,
                    1.0f / sqrtf((float)e)));
        GT_TRY(push_mat(l, cfg, NAME("ffn_gate_shexp.weight"), e, s, 1));
        GT_TRY(push_mat(l, cfg, NAME("ffn_up_shexp.weight"), e, s, 1));
        GT_TRY(push_mat(l, cfg, NAME("ffn_down_shexp.weight"), s, e, 1));
    }
#undef NAME
    return GT_OK;
}

static gt_status build_list(tlist *l, const gt_synth_config *cfg, const resolved *r,
                            uint32_t n_vocab) {
    const int64_t e = cfg->n_embd;
    GT_TRY(push(l, "token_embd.weight", 2, e, n_vocab, 1, matrix_type(cfg, "token_embd.weight", e),
                0.0f, 1.0f));
    for (uint32_t il = 0; il < cfg->n_layer; il++) GT_TRY(add_layer(l, cfg, r, il));
    GT_TRY(push(l, "output_norm.weight", 1, e, 1, 1, GT_F32, 1.0f, 0.1f));
    if (!cfg->tied) GT_TRY(push_mat(l, cfg, "output.weight", e, n_vocab, 1));
    return GT_OK;
}

/* ---- generator ---- */

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* n values of mean + sd * z, z the sum of four 16-bit uniforms scaled to
 * unit variance (bounded by +-3.46): cheap, integer-exact, portable. */
static void gen_row(uint64_t state, float mean, float sd, float *x, int64_t n) {
    const float scale = sd * 1.7320508f / 65536.0f; /* sqrt(3) / 2^16 */
    for (int64_t j = 0; j < n; j++) {
        uint64_t u = splitmix64(&state);
        int32_t s = (int32_t)(u & 0xffff) + (int32_t)((u >> 16) & 0xffff) +
                    (int32_t)((u >> 32) & 0xffff) + (int32_t)(u >> 48) - 131070;
        x[j] = mean + scale * (float)s;
    }
}

typedef struct fill_job {
    const tdesc *d;
    uint8_t *data;
    size_t row_bytes;
    int64_t n_rows;
    uint64_t tseed;
    float *scratch; /* [n_threads, max_row] */
    int64_t scratch_stride;
    gt_status st[64];
} fill_job;

static void fill_rows(void *arg, int ith, int nth) {
    fill_job *j = arg;
    const tdesc *d = j->d;
    float *x = j->scratch + (size_t)ith * (size_t)j->scratch_stride;
    long r0, r1;
    gt_pool_split((long)j->n_rows, 1, ith, nth, &r0, &r1);
    j->st[ith] = GT_OK;
    for (long r = r0; r < r1; r++) {
        uint64_t s = j->tseed ^ ((uint64_t)r * 0xD1B54A32D192ED03ull);
        uint64_t state = splitmix64(&s);
        void *out = j->data + (size_t)r * j->row_bytes;
        if (d->type == GT_F32) {
            gen_row(state, d->mean, d->sd, out, d->ne[0]);
            continue;
        }
        gen_row(state, d->mean, d->sd, x, d->ne[0]);
        if (d->type == GT_F16) {
            uint16_t *h = out;
            for (int64_t i = 0; i < d->ne[0]; i++) h[i] = gt_f32_to_f16(x[i]);
        } else if (d->type == GT_BF16) {
            uint16_t *h = out;
            for (int64_t i = 0; i < d->ne[0]; i++) h[i] = gt_f32_to_bf16(x[i]);
        } else {
            gt_status st = gt_quantize_row(d->type, x, out, d->ne[0]);
            if (st != GT_OK) {
                j->st[ith] = st;
                return;
            }
        }
    }
}

/* ---- metadata ---- */

static gt_status set_arch_u32(gt_gguf_writer *w, const char *arch, const char *suffix, uint32_t v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    return gt_gguf_writer_set_u32(w, k, v);
}

static gt_status set_arch_f32(gt_gguf_writer *w, const char *arch, const char *suffix, float v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, suffix);
    return gt_gguf_writer_set_f32(w, k, v);
}

static gt_status write_hparams(gt_gguf_writer *w, const gt_synth_config *cfg, const resolved *r,
                               uint32_t n_vocab) {
    const char *a = r->ad->gguf;
    char name[96];
    snprintf(name, sizeof name, "synthetic-%s", r->ad->flag);
    GT_TRY(gt_gguf_writer_set_str(w, "general.architecture", a));
    GT_TRY(gt_gguf_writer_set_str(w, "general.name", cfg->name ? cfg->name : name));
    GT_TRY(gt_gguf_writer_set_u32(w, "general.file_type", (uint32_t)gt_synth_file_type(cfg->type)));
    GT_TRY(gt_gguf_writer_set_u32(w, "general.quantization_version", 2));
    GT_TRY(gt_gguf_writer_set_u32(w, "general.alignment", GT_GGUF_DEFAULT_ALIGNMENT));
    GT_TRY(set_arch_u32(w, a, "context_length", cfg->n_ctx));
    GT_TRY(set_arch_u32(w, a, "embedding_length", cfg->n_embd));
    GT_TRY(set_arch_u32(w, a, "block_count", cfg->n_layer));
    /* Mixtral stores the expert width as feed_forward_length. */
    GT_TRY(set_arch_u32(w, a, "feed_forward_length",
                        r->arch == ARCH_LLAMA_MOE ? r->n_ff_exp : cfg->n_ff));
    GT_TRY(set_arch_u32(w, a, "attention.head_count", cfg->n_head));
    GT_TRY(set_arch_u32(w, a, "attention.head_count_kv", cfg->n_head_kv));
    GT_TRY(set_arch_f32(w, a, "attention.layer_norm_rms_epsilon", r->ad->eps));
    GT_TRY(set_arch_f32(w, a, "rope.freq_base", cfg->rope_base));
    if (r->ad->rope_dims_key) GT_TRY(set_arch_u32(w, a, "rope.dimension_count", r->head_dim));
    if (r->ad->qk_norm || r->head_dim * cfg->n_head != cfg->n_embd) {
        GT_TRY(set_arch_u32(w, a, "attention.key_length", r->head_dim));
        GT_TRY(set_arch_u32(w, a, "attention.value_length", r->head_dim));
    }
    GT_TRY(set_arch_u32(w, a, "vocab_size", n_vocab));
    if (r->ad->moe) {
        GT_TRY(set_arch_u32(w, a, "expert_count", r->n_expert));
        GT_TRY(set_arch_u32(w, a, "expert_used_count", r->n_expert_used));
    }
    /* qwen2moe and qwen3moe keep feed_forward_length for the dense width of the
     * checkpoint's config and give the expert width its own key. */
    if (r->arch == ARCH_QWEN2MOE || r->arch == ARCH_QWEN3MOE)
        GT_TRY(set_arch_u32(w, a, "expert_feed_forward_length", r->n_ff_exp));
    if (r->arch == ARCH_QWEN2MOE)
        GT_TRY(set_arch_u32(w, a, "expert_shared_feed_forward_length", r->n_ff_shexp));
    return GT_OK;
}

/* Opens a vocab-only GGUF and reads its token count. */
static gt_status open_vocab(const char *path, gt_gguf **out, uint32_t *n_vocab) {
    GT_TRY(gt_gguf_open(path, out));
    const gt_gguf_value *tok = gt_gguf_find(*out, "tokenizer.ggml.tokens");
    if (!tok || tok->type != GT_GGUF_ARRAY || tok->arr.type != GT_GGUF_STRING || tok->arr.n < 1 ||
        tok->arr.n > MAX_VOCAB) {
        gt_gguf_close(*out);
        *out = NULL;
        return gt_fail(GT_ERR_FORMAT,
                       "%s: no tokenizer.ggml.tokens string array of 1..%u tokens "
                       "to take the vocabulary from",
                       path, MAX_VOCAB);
    }
    *n_vocab = (uint32_t)tok->arr.n;
    return GT_OK;
}

/* Copies every tokenizer.* key (tokens, scores, types, merges, model, pre,
 * special ids, add_bos...). */
static gt_status copy_vocab(gt_gguf_writer *w, const gt_gguf *g) {
    for (size_t i = 0; i < gt_gguf_n_kv(g); i++) {
        const gt_gguf_kv *kv = gt_gguf_kv_at(g, i);
        if (kv->key.len >= 10 && memcmp(kv->key.ptr, "tokenizer.", 10) == 0)
            GT_TRY(gt_gguf_writer_copy_kv(w, kv));
    }
    return GT_OK;
}

/* A minimal sentencepiece-style ("llama") vocabulary so that tools accept the
 * file: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF> when n >= 259,
 * then "t3", "t4"... as normal tokens with decreasing scores. */
static gt_status minimal_vocab(gt_gguf_writer *w, uint32_t n) {
    gt_status st = GT_OK;
    gt_str *strs = calloc(n, sizeof *strs);
    char *text = malloc((size_t)n * 16);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    if (!strs || !text || !scores || !types) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate a vocabulary of %u tokens", n);
        goto done;
    }
    uint32_t n_bytes = n >= 259 ? 256 : 0;
    for (uint32_t i = 0; i < n; i++) {
        char *p = text + (size_t)i * 16;
        if (i < 3) {
            snprintf(p, 16, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
            types[i] = i == 0 ? 2 : 3; /* UNKNOWN, CONTROL */
        } else if (i < 3 + n_bytes) {
            snprintf(p, 16, "<0x%02X>", i - 3);
            types[i] = 6; /* BYTE */
        } else {
            snprintf(p, 16, "t%u", i);
            types[i] = 1; /* NORMAL */
        }
        strs[i].ptr = p;
        strs[i].len = strlen(p);
        scores[i] = i < 3 + n_bytes ? 0.0f : -(float)(i - 3 - n_bytes);
    }
    GT_TRY_GOTO(gt_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default"), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_arr(w, "tokenizer.ggml.scores", GT_GGUF_FLOAT32, scores, n), st,
                done);
    GT_TRY_GOTO(gt_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GT_GGUF_INT32, types, n), st,
                done);
    GT_TRY_GOTO(gt_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false), st, done);
done:
    free(strs);
    free(text);
    free(scores);
    free(types);
    return st;
}

/* ---- driver ---- */

static int pick_threads(const gt_synth_config *cfg) {
    if (cfg->n_threads > 0) return cfg->n_threads > 64 ? 64 : cfg->n_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

static gt_status fill_tensors(gt_gguf_writer *w, const gt_synth_config *cfg, const tlist *l) {
    gt_status st = GT_OK;
    gt_pool *pool = NULL;
    float *scratch = NULL;
    int nth = pick_threads(cfg);
    int64_t max_row = 1;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].ne[0] > max_row) max_row = l->v[i].ne[0];
    GT_TRY(gt_pool_create(nth, &pool));
    scratch = gt_alloc((size_t)nth * (size_t)max_row * sizeof(float));
    if (!scratch) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate %d rows of %lld floats", nth,
                     (long long)max_row);
        goto done;
    }
    for (size_t i = 0; i < l->n; i++) {
        const tdesc *d = &l->v[i];
        size_t row_bytes, nbytes;
        int64_t n_rows = d->ne[1] * d->ne[2];
        if (!gt_dtype_row_bytes(d->type, d->ne[0], &row_bytes) ||
            !gt_size_mul(row_bytes, (size_t)n_rows, &nbytes)) {
            st =
                gt_fail(GT_ERR_INTERNAL, "synth: tensor %s of %lld x %lld does not fit %s", d->name,
                        (long long)d->ne[0], (long long)n_rows, gt_dtype_name((uint32_t)d->type));
            goto done;
        }
        uint8_t *data = gt_alloc(nbytes);
        if (!data) {
            st = gt_fail(GT_ERR_NOMEM, "cannot allocate %zu bytes for tensor %s", nbytes, d->name);
            goto done;
        }
        fill_job job = {.d = d,
                        .data = data,
                        .row_bytes = row_bytes,
                        .n_rows = n_rows,
                        .scratch = scratch,
                        .scratch_stride = max_row};
        uint64_t s = cfg->seed ^ hash_name(d->name);
        job.tseed = splitmix64(&s);
        if (n_rows >= 2 * nth && nbytes >= 65536) {
            gt_pool_run(pool, fill_rows, &job);
        } else {
            fill_rows(&job, 0, 1);
            for (int t = 1; t < nth; t++) job.st[t] = GT_OK;
        }
        for (int t = 0; t < nth; t++)
            if (job.st[t] != GT_OK) {
                gt_free(data);
                st = job.st[t];
                goto done;
            }
        int64_t ne[3] = {d->ne[0], d->ne[1], d->ne[2]};
        GT_TRY_GOTO(
            gt_gguf_writer_add_tensor(w, d->name, d->type, d->n_dims, ne, data, nbytes, true), st,
            done);
    }
done:
    gt_free(scratch);
    gt_pool_destroy(pool);
    return st;
}

gt_status gt_synth_write(const gt_synth_config *cfg, const char *path) {
    resolved r;
    GT_TRY(resolve(cfg, &r));
    gt_gguf_writer *w = NULL;
    gt_gguf *vocab = NULL;
    tlist l = {0};
    gt_status st;
    uint32_t n_vocab = cfg->n_vocab;
    /* The vocabulary first: its size shapes the embedding and the head. */
    if (cfg->vocab_from) GT_TRY(open_vocab(cfg->vocab_from, &vocab, &n_vocab));
    GT_TRY_GOTO(gt_gguf_writer_create(&w), st, done);
    GT_TRY_GOTO(write_hparams(w, cfg, &r, n_vocab), st, done);
    if (vocab)
        GT_TRY_GOTO(copy_vocab(w, vocab), st, done);
    else
        GT_TRY_GOTO(minimal_vocab(w, n_vocab), st, done);
    GT_TRY_GOTO(build_list(&l, cfg, &r, n_vocab), st, done);
    GT_TRY_GOTO(fill_tensors(w, cfg, &l), st, done);
    GT_TRY_GOTO(gt_gguf_writer_write(w, path), st, done);
    GT_LOG_INFO(
        GT_SUB_MODEL, "synth: wrote %s (%s, %u layers, hidden %u, vocab %u, %zu tensors, %s)", path,
        r.ad->flag, cfg->n_layer, cfg->n_embd, n_vocab, l.n, gt_dtype_name((uint32_t)cfg->type));
done:
    gt_gguf_writer_destroy(w);
    gt_gguf_close(vocab);
    free(l.v);
    return st;
}
