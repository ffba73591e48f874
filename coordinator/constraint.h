/* What a sequence's logits go through between the model and the sampler
 * beyond the penalties: a per-token logit bias and a grammar.
 *
 * The grammar's mask is lazy: the token is first drawn from the biased row
 * as if unconstrained and only checked (its bytes walked through the
 * matcher); only when the grammar rejects it is the full mask computed
 * (one walk of the vocabulary trie), applied as -inf, and the token drawn
 * again from the masked row. End-of-generation tokens are allowed exactly
 * when the grammar can end, and are the only ones allowed once nothing may
 * follow. The drawn token is accepted into the grammar at once.
 *
 * One constraint per sequence, used from one thread; it borrows the
 * grammar and the trie, which may be shared. */
#ifndef GT_CONSTRAINT_H
#define GT_CONSTRAINT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/grammar.h"
#include "coordinator/sampler.h"

typedef struct gt_constraint_config {
    const int32_t *bias_ids; /* [n_bias] token ids (copied) */
    const float *bias;       /* [n_bias] added to their logits; -inf bans */
    int n_bias;
    gt_grammar *grammar;       /* borrowed (owned with owns_grammar); NULL: no grammar */
    bool owns_grammar;         /* the constraint frees the grammar, also when create fails */
    const gt_vocab_trie *trie; /* borrowed; required with a grammar */
    const int32_t *eog;        /* [n_eog] end-of-generation tokens (copied) */
    int n_eog;
} gt_constraint_config;

/* Counters of the lazy mask, for benchmarks and logs. */
typedef struct gt_constraint_stats {
    uint64_t draws;    /* tokens drawn */
    uint64_t masks;    /* full masks computed (the first draw was rejected) */
    uint64_t check_ns; /* time in single-token checks */
    uint64_t mask_ns;  /* time in full masks (the second draw not included) */
} gt_constraint_stats;

typedef struct gt_constraint gt_constraint;

/* GT_ERR_INVALID_ARG for a bias id outside [0, n_vocab), a NaN or +inf
 * bias, a grammar without a trie or a trie of another vocabulary size;
 * GT_ERR_NOMEM; the grammar's GT_ERR_RANGE when its start is too large. */
gt_status gt_constraint_create(const gt_constraint_config *cfg, int n_vocab, gt_constraint **out);
void gt_constraint_free(gt_constraint *c); /* accepts NULL */
/* True when there is something to do (a bias or a grammar). */
bool gt_constraint_active(const gt_constraint *c);
/* Applies the bias and the grammar to row[n_vocab] (modified) and draws
 * *tok with s, then advances the grammar. GT_ERR_INVALID_ARG when the bias
 * and the grammar leave no token (the sentence says which). */
gt_status gt_constraint_draw(gt_constraint *c, gt_sampler *s, float *row, int32_t *tok);
gt_constraint_stats gt_constraint_get_stats(const gt_constraint *c);

#endif
