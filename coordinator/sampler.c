/* Sampling: greedy is a plain argmax; otherwise temperature, then the
 * candidates in order (common/cand.h: the top-k by a heap of k, or all of
 * them by a linear-time radix sort when top-k is off), softmax over them,
 * the top-p prefix, the min-p prefix, and a draw from a seeded xorshift
 * generator.
 *
 * The normaliser is summed over the sorted candidates, best first, exactly
 * as a full sort would order them, so the drawn token is bit-for-bit the
 * one a straightforward sort-everything sampler draws (tests/unit/
 * test_sampler.c keeps such a reference). Each exp is computed once. */
#include "coordinator/sampler.h"

#include <math.h>
#include <stdlib.h>

#include "common/cand.h"

struct gt_sampler {
    gt_sampler_config cfg;
    int n_vocab;
    gt_cand *cands; /* [n_vocab] scratch */
    gt_cand *tmp;   /* [n_vocab] radix sort scratch */
    double *w;      /* [n_vocab] exp(logit - max) of the sorted candidates */
    gt_cand *typ;   /* [n_vocab] typical-p: (-|surprisal - entropy|, index) */
    uint64_t rng;
};

gt_status gt_sampler_create(const gt_sampler_config *cfg, int n_vocab, gt_sampler **out) {
    *out = NULL;
    if (n_vocab < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "vocabulary size %d is not positive", n_vocab);
    if (isnan(cfg->temperature) || !(cfg->top_p >= 0))
        return gt_fail(GT_ERR_INVALID_ARG, "temperature %g or top-p %g is not a usable number",
                       (double)cfg->temperature, (double)cfg->top_p);
    if (!(cfg->min_p >= 0 && cfg->min_p <= 1))
        return gt_fail(GT_ERR_INVALID_ARG, "min-p %g is not in [0, 1]", (double)cfg->min_p);
    if (!(cfg->typical_p >= 0))
        return gt_fail(GT_ERR_INVALID_ARG, "typical-p %g is not a number >= 0", (double)cfg->typical_p);
    gt_sampler *s = calloc(1, sizeof *s);
    if (!s) return gt_fail(GT_ERR_NOMEM, "cannot allocate a sampler");
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    s->tmp = malloc((size_t)n_vocab * sizeof *s->tmp);
    s->w = malloc((size_t)n_vocab * sizeof *s->w);
    s->typ = malloc((size_t)n_vocab * sizeof *s->typ);
    if (!s->cands || !s->tmp || !s->w || !s->typ) {
        gt_sampler_destroy(s);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate a sampler for %d tokens", n_vocab);
    }
    s->cfg = *cfg;
    s->n_vocab = n_vocab;
    s->rng = cfg->seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    *out = s;
    return GT_OK;
}

void gt_sampler_destroy(gt_sampler *s) {
    if (!s) return;
    free(s->cands);
    free(s->tmp);
    free(s->w);
    free(s->typ);
    free(s);
}

int32_t gt_argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static double next_uniform(gt_sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

/* Typical-p over the first k candidates (weights w, total *sum): keeps
 * those with the smallest |-log p - H| until their probability passes
 * typical_p (at least one), compacted in their original order; returns how
 * many, *sum their total weight. The order by distance is a radix sort
 * (common/cand.h), never a comparison sort of the vocabulary. */
static int typical(gt_sampler *s, int k, double *sum) {
    gt_cand *c = s->cands;
    double *w = s->w;
    double ent = 0;
    for (int i = 0; i < k; i++) {
        double p = w[i] / *sum;
        if (p > 0) ent -= p * log(p);
    }
    for (int i = 0; i < k; i++) {
        double p = w[i] / *sum;
        double d = p > 0 ? fabs(-log(p) - ent) : INFINITY;
        s->typ[i] = (gt_cand){(float)-d, i};
    }
    gt_cand_select(s->typ, k, k, s->tmp);
    double cum = 0;
    int m = k;
    for (int i = 0; i < k; i++) {
        cum += w[s->typ[i].id] / *sum;
        if (cum > s->cfg.typical_p) {
            m = i + 1;
            break;
        }
    }
    /* Mark the kept indices (w[i] < 0), then compact in order. */
    for (int i = 0; i < m; i++) w[s->typ[i].id] = -w[s->typ[i].id] - 1;
    int n = 0;
    double kept = 0;
    for (int i = 0; i < k; i++)
        if (w[i] < 0) {
            c[n] = c[i];
            w[n] = -w[i] - 1;
            kept += w[n++];
        }
    *sum = kept;
    return n;
}

/* Typical-p, top-p and min-p over the first k candidates, sorted best first
 * and already divided by the temperature: fills s->w with their weights
 * and returns how many are kept, *kept their total weight. */
static int nucleus(gt_sampler *s, int k, double *kept_out) {
    const gt_cand *c = s->cands;
    double *w = s->w;
    double max = c[0].logit, sum = 0;
    for (int i = 0; i < k; i++) {
        w[i] = exp(c[i].logit - max);
        sum += w[i];
    }
    while (k > 1 && w[k - 1] == 0) k--; /* banned (-inf) tokens, sorted last */
    if (s->cfg.typical_p > 0 && s->cfg.typical_p < 1 && k > 1) k = typical(s, k, &sum);
    /* Top-p: the smallest prefix whose probability reaches top_p. */
    int keep = k;
    if (s->cfg.top_p < 1) {
        double acc = 0;
        for (int i = 0; i < k; i++) {
            acc += w[i] / sum;
            if (acc >= s->cfg.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    /* Min-p: drop what is less likely than min_p times the best (w[0] = 1). */
    if (s->cfg.min_p > 0)
        for (int i = 1; i < keep; i++)
            if (w[i] < s->cfg.min_p * w[0]) {
                keep = i;
                break;
            }
    double kept = 0;
    for (int i = 0; i < keep; i++) kept += w[i];
    *kept_out = kept;
    return keep;
}

/* The draw over the first k candidates (see nucleus). */
static int32_t draw(gt_sampler *s, int k) {
    const gt_cand *c = s->cands;
    const double *w = s->w;
    double kept;
    int keep = nucleus(s, k, &kept);
    double r = next_uniform(s) * kept;
    for (int i = 0; i < keep; i++) {
        r -= w[i];
        if (r <= 0) return c[i].id;
    }
    return c[keep - 1].id;
}

int32_t gt_sampler_sample(gt_sampler *s, const float *logits) {
    int n = s->n_vocab;
    if (s->cfg.temperature <= 0) return gt_argmax(logits, n);
    for (int i = 0; i < n; i++) s->cands[i] = (gt_cand){logits[i] / s->cfg.temperature, i};
    int k = gt_sampler_n_candidates(s);
    gt_cand_select(s->cands, n, k, s->tmp);
    return draw(s, k);
}

int32_t gt_sampler_sample_candidates(gt_sampler *s, const float *vals, const int32_t *ids, int n) {
    if (s->cfg.temperature <= 0 || n == 1) return ids[0];
    int k = gt_sampler_n_candidates(s);
    if (k > n) k = n;
    for (int i = 0; i < k; i++) s->cands[i] = (gt_cand){vals[i] / s->cfg.temperature, ids[i]};
    return draw(s, k);
}

int gt_sampler_n_candidates(const gt_sampler *s) {
    if (s->cfg.temperature <= 0) return 1;
    return s->cfg.top_k > 0 && s->cfg.top_k < s->n_vocab ? s->cfg.top_k : s->n_vocab;
}

bool gt_penalties_active(const gt_penalty_config *p) {
    return (p->repetition > 0 && p->repetition != 1.0f) || p->presence != 0.0f || p->frequency != 0.0f;
}

void gt_apply_penalties(float *logits, int n_vocab, const int32_t *recent, int n_recent,
                        const gt_penalty_config *p) {
    float rep = p->repetition > 0 ? p->repetition : 1.0f;
    for (int i = 0; i < n_recent; i++) {
        int32_t t = recent[i];
        bool first = true;
        int count = 0;
        for (int j = 0; j < n_recent; j++) { /* each distinct token once, at its first place */
            if (recent[j] != t) continue;
            if (j < i) first = false;
            count++;
        }
        if (!first || t < 0 || t >= n_vocab) continue;
        float l = logits[t];
        if (rep != 1.0f) l = l > 0 ? l / rep : l * rep;
        logits[t] = l - (float)count * p->frequency - p->presence;
    }
}

void gt_logprobs(const float *logits, int n_vocab, int32_t tok, int n_top, float *lp, gt_cand *top,
                 gt_cand *scratch) {
    double max = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - max);
    double lse = max + log(sum);
    *lp = (float)((double)logits[tok] - lse);
    if (n_top <= 0) return;
    if (n_top > n_vocab) n_top = n_vocab;
    for (int i = 0; i < n_vocab; i++) scratch[i] = (gt_cand){logits[i], i};
    gt_cand_select(scratch, n_vocab, n_top, scratch + n_vocab);
    for (int i = 0; i < n_top; i++) top[i] = (gt_cand){(float)((double)scratch[i].logit - lse), scratch[i].id};
}

void gt_sampler_probs(gt_sampler *s, const float *logits, float *probs) {
    int n = s->n_vocab;
    for (int i = 0; i < n; i++) probs[i] = 0.0f;
    if (s->cfg.temperature <= 0) {
        probs[gt_argmax(logits, n)] = 1.0f;
        return;
    }
    for (int i = 0; i < n; i++) s->cands[i] = (gt_cand){logits[i] / s->cfg.temperature, i};
    int k = gt_sampler_n_candidates(s);
    gt_cand_select(s->cands, n, k, s->tmp);
    double kept;
    int keep = nucleus(s, k, &kept);
    for (int i = 0; i < keep; i++) probs[s->cands[i].id] = (float)(s->w[i] / kept);
}

double gt_sampler_uniform(gt_sampler *s) { return next_uniform(s); }

bool gt_sampler_greedy(const gt_sampler *s) { return s->cfg.temperature <= 0; }
