/* Token sampling from one row of logits: greedy, temperature, top-k, top-p,
 * min-p, seeded.
 *
 * Order: the logits are divided by the temperature, then top-k keeps the k
 * best, top-p keeps the smallest prefix of those whose renormalised
 * probability reaches top_p, and min-p drops every token whose probability
 * is below min_p times the most likely one's. Top-k, top-p, min-p is the
 * order of llama.cpp's default chain (penalties, dry, top_n_sigma, top_k,
 * typ_p, top_p, min_p, xtc, temperature); unlike it, the temperature comes
 * first here, as it always has for Gantry's top-p, so both filters see the
 * tempered probabilities. Typical-p (between top-k and top-p, as in
 * llama.cpp) keeps the tokens whose surprisal -log p is closest to the
 * distribution's entropy until their probability passes typical_p; the
 * kept ones stay in probability order for top-p and min-p. Tokens whose
 * logit is -inf (banned by a logit bias or a grammar) are never drawn.
 * Selection is O(n log k) with top-k and
 * O(n) without it, never a comparison sort of the vocabulary. The sampler owns its scratch and its
 * random state; one sampler per sequence keeps runs reproducible whatever else is batched
 * alongside. */
#ifndef GT_SAMPLER_H
#define GT_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/cand.h"
#include "common/status.h"

typedef struct gt_sampler_config {
    float temperature; /* <= 0: greedy (argmax) */
    int top_k;         /* <= 0: all tokens */
    float top_p;       /* >= 1: no nucleus cut */
    uint64_t seed;
    float min_p; /* 0: off; in [0, 1] */
    float typical_p; /* 0 or >= 1: off; locally typical sampling (Meister et al.) */
} gt_sampler_config;
#define GT_SAMPLER_CONFIG_INIT                                                                     \
    { 0.0f, 40, 0.95f, 1234, 0.0f, 1.0f }

typedef struct gt_sampler gt_sampler;

/* GT_ERR_INVALID_ARG for n_vocab < 1, a negative/NaN parameter, min_p
 * outside [0, 1] or a negative typical_p; GT_ERR_NOMEM. */
gt_status gt_sampler_create(const gt_sampler_config *cfg, int n_vocab, gt_sampler **out);
void gt_sampler_destroy(gt_sampler *s); /* accepts NULL */
/* Picks a token from logits[n_vocab] (not modified). */
int32_t gt_sampler_sample(gt_sampler *s, const float *logits);
/* Picks a token from n candidates (logit, id), sorted by logit descending
 * then id ascending, e.g. the vocabulary-parallel top-k gathered over a
 * stage group. Same result as gt_sampler_sample on the full logits whenever
 * the candidates include the top_k best (n >= top_k). */
int32_t gt_sampler_sample_candidates(gt_sampler *s, const float *vals, const int32_t *ids, int n);
/* The number of candidates a sampler needs (1 for greedy, top_k, or the
 * whole vocabulary when top_k is 0: top-p and min-p then need every token's
 * probability, so across ranks each rank contributes its whole slice, in
 * linear time). */
int gt_sampler_n_candidates(const gt_sampler *s);
/* The distribution gt_sampler_sample draws from for these logits:
 * probs[n_vocab] (zero outside what temperature, top-k, top-p and min-p
 * keep; greedy: 1 at the argmax). Speculative decoding verifies draft
 * tokens against it. Uses the sampler's scratch, not its random state. */
void gt_sampler_probs(gt_sampler *s, const float *logits, float *probs);
/* The next number in [0, 1) of the sampler's seeded random stream. */
double gt_sampler_uniform(gt_sampler *s);
/* True when the sampler takes the argmax. */
bool gt_sampler_greedy(const gt_sampler *s);
/* Index of the largest value; the lowest index wins ties. */
int32_t gt_argmax(const float *x, int n);

/* Penalties on recently seen tokens (llama.cpp's), applied to a copy of
 * the logits before sampling: a seen token's logit is divided by
 * `repetition` when positive and multiplied by it when negative, then
 * `presence` is subtracted once and `frequency` once per occurrence.
 * Zeroed fields mean off (repetition 0 counts as 1). */
typedef struct gt_penalty_config {
    float repetition; /* 1 (or 0): off; in (0, 10] */
    float presence;   /* 0: off */
    float frequency;  /* 0: off */
} gt_penalty_config;
/* Tokens of the sequence the penalties look back on (its last ones). */
#define GT_PENALTY_LAST_N 64
bool gt_penalties_active(const gt_penalty_config *p);
/* logits[n_vocab] in place, for the tokens recent[n_recent] (any order). */
void gt_apply_penalties(float *logits, int n_vocab, const int32_t *recent, int n_recent,
                        const gt_penalty_config *p);
/* Log-probabilities of a logits row (a softmax at temperature 1, in
 * double): *lp of token tok, and the n_top most likely tokens with theirs
 * in top[n_top] (logit field), best first. scratch holds 2 * n_vocab
 * candidates. */
void gt_logprobs(const float *logits, int n_vocab, int32_t tok, int n_top, float *lp, gt_cand *top,
                 gt_cand *scratch);

#endif
