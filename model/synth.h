/* Synthetic models: GGUF files with seeded random weights.
 *
 * A synthetic model has exactly the metadata keys and tensor names that
 * converted models of the same architecture carry (llama, qwen2, qwen3,
 * Mixtral-style llama MoE, qwen2moe, qwen3moe), so every loader path runs on it, but
 * its weights come from a counter-based generator: element j of row r of
 * tensor t is a pure function of (seed, t, r, j). Files are therefore
 * bit-identical across machines and thread counts, and rows can be filled
 * and quantized in parallel without coordination.
 *
 * Weights are "normal-ish" (a sum of four uniforms, bounded at 3.5 sd):
 * matrices have sd 1/sqrt(n_in) so activations keep unit scale, the token
 * embedding sd 1, norm weights 1 + 0.1 noise, biases 0.1 noise, the MoE
 * router sd 2/sqrt(n_embd) so that routing decisions are rarely near-ties. */
#ifndef GT_SYNTH_H
#define GT_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"

typedef struct gt_synth_config {
    const char *arch; /* "llama", "qwen2", "qwen3", "llama-moe", "qwen2moe", "qwen3moe" */
    const char *name; /* general.name; NULL: "synthetic-{arch}" */
    uint32_t n_layer;
    uint32_t n_embd;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim; /* 0: n_embd / n_head */
    uint32_t n_ff;     /* dense MLP width; qwen2moe, qwen3moe: feed_forward_length */
    uint32_t n_expert; /* 0 for dense archs; MoE archs: 0 picks 4 */
    uint32_t n_expert_used;
    uint32_t n_ff_exp;      /* 0: n_ff */
    uint32_t n_ff_shexp;    /* qwen2moe shared expert width; 0: n_ff */
    const char *vocab_from; /* vocab-only GGUF whose tokenizer.* keys are copied, or NULL */
    uint32_t n_vocab;       /* when vocab_from is NULL: size of the minimal vocabulary */
    uint32_t n_ctx;
    gt_dtype type; /* matrices and the token embedding; 1-D tensors are F32 */
    uint64_t seed;
    float rope_base;
    bool tied;     /* no output.weight: the head reuses token_embd */
    int n_threads; /* 0: the online CPUs, at most 8 */
} gt_synth_config;

#define GT_SYNTH_CONFIG_INIT                                                                       \
    {                                                                                              \
        .arch = "llama", .name = NULL, .n_layer = 2, .n_embd = 256, .n_head = 4, .n_head_kv = 2,   \
        .head_dim = 0, .n_ff = 512, .n_expert = 0, .n_expert_used = 2, .n_ff_exp = 0,              \
        .n_ff_shexp = 0, .vocab_from = NULL, .n_vocab = 0, .n_ctx = 2048, .type = GT_F32,          \
        .seed = 1, .rope_base = 10000.0f, .tied = false, .n_threads = 0                            \
    }

/* Checks a configuration without writing anything: GT_ERR_INVALID_ARG with a
 * sentence naming the numbers (heads not divisible by kv heads, a row length
 * not a multiple of the type's block, an unknown arch, a type without a
 * codec...). */
gt_status gt_synth_validate(const gt_synth_config *cfg);

/* Writes the model to `path`. Validates first; GT_ERR_IO when the vocabulary
 * file or the output cannot be read/written, GT_ERR_FORMAT when the
 * vocabulary file has no tokenizer.ggml.tokens, GT_ERR_NOMEM. The whole model
 * is built in memory before it is written. Not thread-safe with itself on the
 * same path; otherwise reentrant. */
gt_status gt_synth_write(const gt_synth_config *cfg, const char *path);

/* llama_ftype number stored in general.file_type for a weight type (F32=0,
 * F16=1, Q4_0=2, Q4_1=3, Q8_0=7, Q5_0=8, Q5_1=9, Q2_K=10, Q3_K_M=12,
 * Q4_K_M=15, Q5_K_M=17, Q6_K=18, BF16=32); -1 when none. */
int gt_synth_file_type(gt_dtype type);

#endif
