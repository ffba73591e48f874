/* The numbers of `gantry eval`; see eval_stats.h. Every per-position sum
 * runs in double over the float logits, so that identical rows give exactly
 * zero: log p_b(i) - log p_f(i) is then the same double minus itself. */
#include "tools/eval_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

gt_status gt_evstats_init(gt_evstats *s, uint64_t n_positions) {
    memset(s, 0, sizeof *s);
    size_t n = n_positions ? (size_t)n_positions : 1;
    s->kl = malloc(n * sizeof *s->kl);
    s->dlogit = malloc(n * sizeof *s->dlogit);
    if (!s->kl || !s->dlogit) {
        gt_evstats_free(s);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate the statistics of %llu positions",
                       (unsigned long long)n_positions);
    }
    s->cap = n_positions;
    return GT_OK;
}

void gt_evstats_free(gt_evstats *s) {
    free(s->kl);
    free(s->dlogit);
    memset(s, 0, sizeof *s);
}

/* The row's maximum, its first index, and log sum exp(x - max). */
static void row_norm(const float *x, int n, double *max, int *arg, double *lse) {
    double m = x[0];
    int a = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > m) {
            m = x[i];
            a = i;
        }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - m);
    *max = m;
    *arg = a;
    *lse = log(sum);
}

gt_status gt_evstats_add(gt_evstats *s, const float *base, const float *file, int n_vocab,
                         int32_t next) {
    if (s->n >= s->cap)
        return gt_fail(GT_ERR_INTERNAL, "statistics for %llu positions are full",
                       (unsigned long long)s->cap);
    if (next < 0 || next >= n_vocab)
        return gt_fail(GT_ERR_RANGE, "next token %d is outside the vocabulary of %d", next,
                       n_vocab);
    double mb, mf, lb, lf;
    int ab, af;
    row_norm(base, n_vocab, &mb, &ab, &lb);
    row_norm(file, n_vocab, &mf, &af, &lf);
    double kl = 0, dmax = 0;
    for (int i = 0; i < n_vocab; i++) {
        double log_pb = (double)base[i] - mb - lb;
        double log_pf = (double)file[i] - mf - lf;
        kl += exp(log_pb) * (log_pb - log_pf);
        double d = fabs((double)file[i] - (double)base[i]);
        if (d > dmax) dmax = d;
    }
    double log_pb_t = (double)base[next] - mb - lb, log_pf_t = (double)file[next] - mf - lf;
    double dp = exp(log_pf_t) - exp(log_pb_t);
    s->kl[s->n] = kl;
    s->dlogit[s->n] = dmax;
    s->top1_same += ab == af;
    s->nll_base -= log_pb_t;
    s->nll_file -= log_pf_t;
    s->dp_sum += dp;
    s->dp_sq += dp * dp;
    s->n++;
    return GT_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double gt_evstats_percentile(const double *sorted, uint64_t n, double q) {
    uint64_t k = (uint64_t)ceil(q * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return sorted[k - 1];
}

void gt_evstats_summary(gt_evstats *s, gt_evsummary *out) {
    memset(out, 0, sizeof *out);
    uint64_t n = s->n;
    out->n = n;
    if (!n) return;
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) sum += s->kl[i];
    qsort(s->kl, (size_t)n, sizeof *s->kl, cmp_double);
    qsort(s->dlogit, (size_t)n, sizeof *s->dlogit, cmp_double);
    out->ppl_base = exp(s->nll_base / (double)n);
    out->ppl_file = exp(s->nll_file / (double)n);
    out->kl_mean = sum / (double)n;
    out->kl_median = gt_evstats_percentile(s->kl, n, 0.5);
    out->kl_p99 = gt_evstats_percentile(s->kl, n, 0.99);
    out->kl_max = s->kl[n - 1];
    out->top1_same = s->top1_same;
    out->top1 = (double)s->top1_same / (double)n;
    out->dlogit_p99 = gt_evstats_percentile(s->dlogit, n, 0.99);
    out->dlogit_max = s->dlogit[n - 1];
    out->dp_mean = s->dp_sum / (double)n;
    out->dp_rms = sqrt(s->dp_sq / (double)n);
}
