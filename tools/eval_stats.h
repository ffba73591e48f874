/* The numbers of `gantry eval`: one model's next-token distributions
 * against a base model's, position by position, in double precision.
 *
 * Per scored position (a row of base logits b and model logits f over the
 * vocabulary, and the text's next token t):
 *   KL(P_base || P_file) = sum_i p_b(i) (log p_b(i) - log p_f(i)), natural log;
 *   top-1 agreement: argmax b == argmax f (the lowest index among ties);
 *   max |dlogit| = max_i |f_i - b_i|, the raw logits' largest difference;
 *   dp = p_f(t) - p_b(t), the change in the next token's probability;
 *   -log p_b(t), -log p_f(t) for the two perplexities.
 * Summaries: mean; median and p99 by nearest rank (the value at sorted
 * index ceil(q * n) - 1); max. */
#ifndef GT_EVAL_STATS_H
#define GT_EVAL_STATS_H

#include <stdint.h>

#include "common/status.h"

typedef struct gt_evstats {
    uint64_t n, cap;    /* positions added, capacity of the arrays */
    double *kl;         /* [cap] per-position KL */
    double *dlogit;     /* [cap] per-position max |dlogit| */
    uint64_t top1_same; /* positions whose argmax agrees */
    double nll_base, nll_file, dp_sum, dp_sq;
} gt_evstats;

typedef struct gt_evsummary {
    uint64_t n;
    double ppl_base, ppl_file;
    double kl_mean, kl_median, kl_p99, kl_max;
    uint64_t top1_same;            /* positions whose argmax agrees */
    double top1;                   /* fraction of positions whose argmax agrees */
    double dlogit_p99, dlogit_max; /* over the per-position max |dlogit| */
    double dp_mean, dp_rms;        /* next token's probability change */
} gt_evsummary;

/* Room for n_positions positions. GT_ERR_NOMEM with a sentence. */
gt_status gt_evstats_init(gt_evstats *s, uint64_t n_positions);
void gt_evstats_free(gt_evstats *s); /* accepts a zeroed struct */
/* Adds one position: base[n_vocab] and file[n_vocab] logits and the next
 * token. GT_ERR_INTERNAL past the capacity, GT_ERR_RANGE for a token
 * outside the vocabulary. */
gt_status gt_evstats_add(gt_evstats *s, const float *base, const float *file, int n_vocab,
                         int32_t next);
/* The summaries (sorts the per-position arrays in place). */
void gt_evstats_summary(gt_evstats *s, gt_evsummary *out);
/* Nearest-rank percentile of sorted[n] (n > 0): sorted[ceil(q n) - 1]. */
double gt_evstats_percentile(const double *sorted, uint64_t n, double q);

#endif
