/* Which element type each tensor of `gantry quantize` gets: the preset
 * (a plain type, or a mix after llama.cpp's `_M` recipes), --keep
 * overrides, and the fallback for rows that are not whole blocks.
 *
 * The mixes (src/llama-quant.cpp, llama_tensor_get_type_impl, for the
 * llama family; `use_more_bits(i, n)` is i < n/8 || i >= 7n/8 ||
 * (i - n/8) % 3 == 2):
 *   q4_k_m, q5_k_m: base Q4_K / Q5_K; attn_v and ffn_down (dense, _exps and
 *     _shexp) Q6_K in the layers where use_more_bits holds;
 *   q3_k_m: base Q3_K; attn_v Q5_K in layers 0 and 1, Q4_K elsewhere;
 *     ffn_down Q5_K in layers < n/16, Q4_K elsewhere; attn_output Q4_K;
 *   every mix: output.weight Q6_K, and token_embd.weight Q6_K as well (here
 *     the token embedding is kept higher even when the head is untied;
 *     llama.cpp leaves an untied token_embd at the base type). */
#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/quantize.h"
#include "model/synth.h"

typedef struct mix_name {
    const char *name;
    gt_dtype base;
    int mix, file_type;
} mix_name;

static const mix_name k_mixes[] = {
    {"q3_k_m", GT_Q3_K, 3, 12},
    {"q4_k_m", GT_Q4_K, 4, 15},
    {"q5_k_m", GT_Q5_K, 5, 17},
};

#define TYPE_LIST                                                                                  \
    "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, q3_k_m, "         \
    "q4_k_m, q5_k_m"

/* The types the engine computes with (and synth writes). */
static bool is_target_type(gt_dtype t) {
    switch (t) {
    case GT_F32:
    case GT_F16:
    case GT_BF16:
    case GT_Q8_0:
    case GT_Q4_0:
    case GT_Q4_1:
    case GT_Q5_0:
    case GT_Q5_1:
    case GT_Q2_K:
    case GT_Q3_K:
    case GT_Q4_K:
    case GT_Q5_K:
    case GT_Q6_K:
        return true;
    default:
        return false;
    }
}

gt_status gt_quant_preset_parse(const char *name, gt_quant_preset *out) {
    memset(out, 0, sizeof *out);
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof out->name)
        return gt_fail(GT_ERR_INVALID_ARG, "--type '%s' is not a type (%s)", name, TYPE_LIST);
    for (size_t i = 0; i < n; i++) out->name[i] = (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < sizeof k_mixes / sizeof k_mixes[0]; i++) {
        if (strcmp(out->name, k_mixes[i].name) == 0) {
            out->base = k_mixes[i].base;
            out->mix = k_mixes[i].mix;
            out->file_type = k_mixes[i].file_type;
            return GT_OK;
        }
    }
    if (!gt_dtype_parse(out->name, &out->base) || !is_target_type(out->base))
        return gt_fail(GT_ERR_INVALID_ARG, "--type '%s' is not a type (%s)", name, TYPE_LIST);
    out->file_type = gt_synth_file_type(out->base);
    return GT_OK;
}

gt_status gt_quant_keep_parse(const char *arg, gt_quant_keep *out) {
    const char *eq = strrchr(arg, '=');
    if (!eq || eq == arg || !eq[1])
        return gt_fail(GT_ERR_INVALID_ARG, "--keep '%s' is not PATTERN=TYPE (e.g. '*attn_v*=q8_0')",
                       arg);
    if (!gt_dtype_parse(eq + 1, &out->type) || !is_target_type(out->type))
        return gt_fail(GT_ERR_INVALID_ARG, "--keep '%s': '%s' is not a weight type (%s)", arg,
                       eq + 1, "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k .. q6_k");
    /* The pattern is the text before '='; keep a NUL-terminated copy. */
    size_t n = (size_t)(eq - arg);
    char *p = malloc(n + 1);
    if (!p) return gt_fail(GT_ERR_NOMEM, "cannot copy --keep '%s'", arg);
    memcpy(p, arg, n);
    p[n] = '\0';
    out->pattern = p;
    return GT_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool gt_quant_is_matrix(const gt_tensor_info *t) {
    if (t->n_dims < 2 || t->ne[1] < 2 || !ends_with(t->name, ".weight")) return false;
    if (strstr(t->name, "norm") || strstr(t->name, "ffn_gate_inp")) return false;
    const gt_dtype_info *info = gt_dtype_get((uint32_t)t->type);
    return info && info->has_codec;
}

static bool use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

gt_dtype gt_quant_preset_type(const gt_quant_preset *p, const char *name, int layer, int n_layer) {
    if (!p->mix) return p->base;
    if (strcmp(name, "output.weight") == 0 || strcmp(name, "token_embd.weight") == 0)
        return GT_Q6_K;
    if (layer < 0) return p->base;
    bool attn_v = strstr(name, ".attn_v.") != NULL;
    bool down = strstr(name, ".ffn_down") != NULL;
    if (p->mix == 3) {
        if (attn_v) return layer < 2 ? GT_Q5_K : GT_Q4_K;
        if (down) return layer < n_layer / 16 ? GT_Q5_K : GT_Q4_K;
        if (strstr(name, ".attn_output.")) return GT_Q4_K;
        return p->base;
    }
    if ((attn_v || down) && use_more_bits(layer, n_layer)) return GT_Q6_K;
    return p->base;
}

/* The type to use when rows of n are not whole blocks of `want`: llama.cpp's
 * choices (llama-quant.cpp, "tensor cols ... are not divisible by"), with
 * Q4_0 where it uses IQ4_NL, which Gantry does not compute with; F16 when
 * the rows are not whole 32-element blocks either. */
static gt_dtype fallback_type(gt_dtype want, int64_t n) {
    if (n % GT_QK8_0 != 0) return GT_F16;
    switch (want) {
    case GT_Q2_K:
    case GT_Q3_K:
        return GT_Q4_0;
    case GT_Q4_K:
        return GT_Q5_0;
    case GT_Q5_K:
        return GT_Q5_1;
    default:
        return GT_Q8_0;
    }
}

gt_quant_choice gt_quant_choose(const gt_quant_preset *p, const gt_tensor_info *t, int n_layer,
                                const gt_quant_keep *keep, int n_keep) {
    gt_quant_choice c = {
        .type = t->type, .wanted = t->type, .why = GT_QUANT_AS_IS, .keep_index = -1};
    if (!gt_quant_is_matrix(t)) return c;
    int layer = -1;
    if (sscanf(t->name, "blk.%d.", &layer) != 1) layer = -1;
    c.wanted = gt_quant_preset_type(p, t->name, layer, n_layer);
    c.why = GT_QUANT_PRESET;
    for (int i = 0; i < n_keep; i++) {
        if (fnmatch(keep[i].pattern, t->name, 0) == 0) {
            c.wanted = keep[i].type;
            c.why = GT_QUANT_KEEP;
            c.keep_index = i;
        }
    }
    c.type = c.wanted;
    const gt_dtype_info *info = gt_dtype_get((uint32_t)c.wanted);
    if (t->ne[0] % info->block_elems != 0) {
        c.type = fallback_type(c.wanted, t->ne[0]);
        c.why = GT_QUANT_FALLBACK;
    }
    return c;
}
