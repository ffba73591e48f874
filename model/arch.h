/* Architecture table: what a GGUF file's metadata and tensor names mean.
 *
 * gt_hparams_load() reads `{arch}.*` keys into one struct for every supported
 * architecture, so that the forward pass branches on feature flags (QKV bias,
 * QK-norm, MoE, sliding window...) rather than on architecture names.
 * Tensor names follow the GGUF ecosystem: "blk.%d.attn_q.weight" etc. */
#ifndef GT_ARCH_H
#define GT_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "model/gguf.h"

typedef enum gt_arch {
    GT_ARCH_LLAMA = 0, /* also Mixtral-style MoE when expert_count > 0 */
    GT_ARCH_QWEN2,     /* QKV bias */
    GT_ARCH_QWEN3,     /* QK-norm */
    GT_ARCH_QWEN2MOE,  /* routed experts + gated shared expert */
    GT_ARCH_GEMMA3,
    GT_ARCH_QWEN3MOE,  /* QK-norm + routed experts, chosen weights renormalised, no shared expert */
    GT_ARCH_COUNT
} gt_arch;

typedef struct gt_hparams {
    gt_arch arch;
    char arch_name[32];
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_ff;          /* dense MLP width (0 for pure MoE layers) */
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim;      /* key_length; n_head * head_dim may differ from n_embd */
    uint32_t head_dim_v;    /* value_length */
    uint32_t n_rot;         /* rope.dimension_count, default head_dim */
    float norm_eps;
    float rope_base;
    float rope_base_swa;    /* local (sliding-window) layers; = rope_base when absent */
    float rope_freq_scale;  /* 1 / rope.scaling.factor for linear scaling */
    bool rope_neox;
    bool qkv_bias;
    bool qk_norm;
    bool post_norms;        /* gemma3: post-attention and post-ffn norms */
    bool gelu;              /* GELU-tanh gated MLP instead of SiLU */
    bool embd_scale;        /* multiply embeddings by sqrt(n_embd) */
    bool tied_output;       /* no output.weight: reuse token_embd */
    uint32_t sliding_window;  /* 0: none */
    uint32_t swa_pattern;     /* layer i is global when i % pattern == pattern - 1 */
    float final_softcap;      /* 0: none */
    /* MoE */
    uint32_t n_expert;
    uint32_t n_expert_used;
    uint32_t n_ff_exp;        /* expert MLP width */
    uint32_t n_ff_shexp;      /* shared expert MLP width (0: none) */
    bool moe_norm_topk;       /* the chosen experts' weights are divided by their sum
                                 (Mixtral, qwen3moe); qwen2moe keeps the softmax values */
} gt_hparams;

/* Reads and validates the hyper-parameters. GT_ERR_UNSUPPORTED for an unknown
 * general.architecture, GT_ERR_NOT_FOUND for a missing required key,
 * GT_ERR_FORMAT for inconsistent values (heads not dividing, zero sizes). */
gt_status gt_hparams_load(const gt_gguf *g, gt_hparams *hp);
const char *gt_arch_name(gt_arch arch);
bool gt_arch_parse(const char *name, gt_arch *out);
/* True when layer il uses sliding-window attention. */
bool gt_hparams_layer_is_swa(const gt_hparams *hp, uint32_t il);

/* The context a job uses when none is asked for: the training context,
 * capped at 4096 positions (the plan and the engine both take it from here). */
uint32_t gt_hparams_default_ctx(const gt_hparams *hp);

#endif
