/* The model's tensors as the forward pass uses them: matrices prepared for
 * the kernels (borrowed from the mmap, or repacked), small vectors (norms,
 * biases) converted to f32, and the token embedding kept in its stored type
 * for row look-ups. Every tensor's presence, type and shape is checked here
 * against the hyper-parameters, with one sentence naming the tensor. */
#ifndef GT_WEIGHTS_H
#define GT_WEIGHTS_H

#include "kernels/kernels.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "parallel/plan.h"

typedef struct gt_expert_weights {
    gt_weight gate, up, down; /* [n_ff_exp, n_embd] ×2, [n_embd, n_ff_exp] */
    uint64_t bytes;           /* of the three as this rank holds them: what one use reads */
} gt_expert_weights;

typedef struct gt_layer_weights {
    float *attn_norm;           /* [n_embd] */
    gt_weight wq, wk, wv, wo;   /* [n_head*hd, n_embd], [n_kv*hd, n_embd] ×2, [n_embd, n_head*hd] */
    float *bq, *bk, *bv;        /* QKV bias or NULL */
    float *q_norm, *k_norm;     /* [head_dim] or NULL */
    float *post_attn_norm;      /* [n_embd] or NULL */
    float *ffn_norm;            /* [n_embd] */
    float *post_ffn_norm;       /* [n_embd] or NULL */
    gt_weight gate, up, down;   /* dense MLP (n_out 0 when the layer is MoE) */
    /* MoE */
    float *router;              /* [n_expert, n_embd] f32 */
    gt_weight router_w;         /* router as a matrix: logits = x · router^T */
    gt_expert_weights *experts; /* [n_expert] views into the stacked tensors */
    gt_weight sh_gate, sh_up, sh_down; /* shared expert (n_out 0 when absent) */
    float *sh_gate_inp;         /* [n_embd] or NULL */
    gt_weight sh_gate_inp_w;    /* [1, n_embd] as a matrix (n_out 0 when absent) */
} gt_layer_weights;

typedef struct gt_model_weights {
    const gt_tensor_info *tok_embd; /* borrowed: [n_vocab, n_embd] stored type */
    const uint8_t *embd_rows;       /* borrowed: row vocab.begin of tok_embd (first stage) */
    float *output_norm;             /* [n_embd] (last stage) */
    gt_weight output;               /* [n_vocab_local, n_embd] (the embedding when tied) */
    gt_layer_weights *layers;       /* [n_layer_local]: layers [layer0, layer0 + n_layer) */
    int layer0;
    int n_layer;
    int n_expert;
    int64_t vocab0, n_vocab_local;  /* the vocabulary rows of the embedding and head */
    void **owned;                   /* column slices copied out of the mmap */
    int n_owned, cap_owned;
    uint64_t matmul_bytes;          /* bytes of every matrix read per decoded token:
                                       dense_bytes + n_expert_used experts per layer */
    uint64_t dense_bytes;           /* every matrix but the routed experts (attention, router,
                                       shared expert and its gate, dense MLP, head) */
    uint64_t expert_bytes;          /* every routed expert held */
} gt_model_weights;

/* Loads the whole model (shard NULL) or one rank's shard of it: only its
 * layers, heads, MLP columns and vocabulary rows. */
gt_status gt_weights_load(const gt_gguf *g, const gt_hparams *hp, const gt_shard *shard,
                          gt_kernels *k, gt_model_weights *w);
void gt_weights_free(gt_model_weights *w);
/* The longest row (n_in) of any matrix w holds: what the kernels' matmul
 * workspace is sized for. */
int64_t gt_weights_max_n_in(const gt_model_weights *w);

#endif
