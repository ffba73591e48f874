/* Speculative decoding on rank 0: a proposer guesses the next K tokens of a
 * sequence, one step of the target model evaluates the last accepted token
 * and the K guesses together (K + 1 rows, each with its full logits), and
 * the longest acceptable prefix of the guesses is kept, plus one token drawn
 * from the target. The rejected guesses' KV rows are dropped on every rank
 * with the next step (gt_coord_truncate_seq).
 *
 * Proposers: prompt lookup (the last n-gram of the context, n = lookup down
 * to 1, found earlier in the context: the tokens that followed it), a draft
 * model (a second engine on rank 0 with its own KV cache and the same
 * vocabulary), or the target's own first layers (self-speculation: a second
 * engine on rank 0 that runs only those layers, then the output norm and LM
 * head).
 *
 * Exactness: the target distribution p of a row is the sequence's sampler's
 * (gt_sampler_probs: temperature, top-k, top-p, min-p). Greedy: a guess is
 * kept when it is the argmax, so the output is the plain decode's token for
 * token (the kernels are batch-invariant, so a row's logits do not depend
 * on the K + 1 rows beside it). Sampling: Leviathan et al. / Chen et al.
 * rejection sampling, a guess x drawn from q kept with probability
 * min(1, p(x) / q(x)); on a rejection the token is drawn from
 * normalize(max(0, p - q)); when all K are kept, a bonus token from the last
 * row's p. For prompt lookup q is a point mass. The draws come from the
 * sequence's sampler's random stream. Not thread-safe. */
#ifndef GT_SPEC_H
#define GT_SPEC_H

#include <stdint.h>

#include "coordinator/coord.h"

typedef struct gt_spec_config {
    int lookup;             /* prompt lookup: longest n-gram matched (0: off) */
    const char *draft_path; /* draft model GGUF (NULL: none) */
    int self_draft_layers;  /* draft = the target's first layers (0: off) */
    int draft_tokens;       /* K: guesses per verification step */
    int n_threads;          /* the draft engine's threads */
} gt_spec_config;
#define GT_SPEC_CONFIG_INIT                                                                        \
    { 0, NULL, 0, 4, 1 }

typedef struct gt_spec_stats {
    uint64_t steps;    /* verification steps */
    uint64_t drafted;  /* guesses verified */
    uint64_t accepted; /* of them, kept */
    uint64_t emitted;  /* tokens produced by the steps (accepted + one per step) */
} gt_spec_stats;

typedef struct gt_spec gt_spec;

/* True when cfg asks for any proposer. */
bool gt_spec_enabled(const gt_spec_config *cfg);
/* Rank 0: the proposer for sequences of c (the draft engine, when there is
 * one, is created here). GT_ERR_INVALID_ARG for a bad K or more than one
 * proposer, or a draft whose vocabulary size differs from the target's;
 * what gt_engine_create returns for the draft. */
gt_status gt_spec_create(gt_coord *c, const gt_spec_config *cfg, gt_spec **out);
void gt_spec_destroy(gt_spec *sp); /* accepts NULL */
/* Output rows one verification step needs (K + 1): the job's
 * max_out_rows must be at least this. */
int gt_spec_rows(const gt_spec_config *cfg);

/* Evaluates prompt[n] on sequence seq (empty) and draws its first token
 * with smp (borrowed; also set as seq's sampler): *first. With logits !=
 * NULL, the prompt's full logits [n, n_vocab] as gt_coord_prefill gives
 * them. */
gt_status gt_spec_start(gt_spec *sp, int seq, gt_sampler *smp, const int32_t *prompt, int n,
                        float *logits, int32_t *first);
/* Continues sequence seq, which holds the KV rows of ctx[0, n - 1): ctx[n
 * - 1] is the next token to evaluate (the state gt_spec_start leaves).
 * smp becomes seq's sampler. GT_ERR_INVALID_ARG when seq's length is not
 * n - 1. */
gt_status gt_spec_resume(gt_spec *sp, int seq, gt_sampler *smp, const int32_t *ctx, int n);
/* One verification step after the tokens produced so far: writes 1 to
 * max_new tokens (max_new >= 1) to out and their count to *n_out. The
 * last of them is not yet in the KV cache, like a plain decode's next
 * token. GT_ERR_RANGE at the end of the context. */
gt_status gt_spec_round(gt_spec *sp, int max_new, int32_t *out, int *n_out);
gt_spec_stats gt_spec_get_stats(const gt_spec *sp);
void gt_spec_reset_stats(gt_spec *sp);

/* Prompt lookup: finds the latest earlier occurrence of the last g tokens
 * of ctx[n] (g = max_ngram down to 1) and copies up to k tokens that
 * followed it into out; returns their count (0: no match). */
int gt_spec_lookup(const int32_t *ctx, int n, int max_ngram, int k, int32_t *out);

/* The acceptance of one verification, shared by gt_spec_round and the
 * server's scheduler (spec_accept.c). rows[k + 1, n_vocab]: the target's
 * logits after the last accepted token and after each of the k guesses
 * (penalties already applied, when the sequence has any); guess[k]; q[k,
 * n_vocab] the proposer's distribution of each guess, NULL for prompt
 * lookup (point masses); p[n_vocab] scratch. Returns m, the guesses kept
 * (0..k), and the token after them in *next (the bonus token when m == k).
 * Draws from smp's random stream. */
int gt_spec_accept(gt_sampler *smp, int n_vocab, const float *rows, const int32_t *guess, int k,
                   const float *q, float *p, int32_t *next);
/* A token drawn from w[n_vocab] (weights, not necessarily normalised; sum
 * > 0) with smp's random stream. */
int32_t gt_spec_draw(gt_sampler *smp, const float *w, int n_vocab, double sum);

#endif
