/* Sampling: greedy is a plain argmax; otherwise temperature, then top-k by
 * partial selection, softmax over the survivors, then the top-p prefix of
 * the sorted candidates, and a draw from a seeded xorshift generator. */
#include "coordinator/sampler.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float logit;
    int32_t id;
} cand;

struct gt_sampler {
    gt_sampler_config cfg;
    int n_vocab;
    cand *cands; /* [n_vocab] scratch */
    uint64_t rng;
};

gt_status gt_sampler_create(const gt_sampler_config *cfg, int n_vocab, gt_sampler **out) {
    *out = NULL;
    if (n_vocab < 1) return gt_fail(GT_ERR_INVALID_ARG, "vocabulary size %d is not positive", n_vocab);
    if (isnan(cfg->temperature) || !(cfg->top_p >= 0))
        return gt_fail(GT_ERR_INVALID_ARG, "temperature %g or top-p %g is not a usable number",
                       (double)cfg->temperature, (double)cfg->top_p);
    gt_sampler *s = calloc(1, sizeof *s);
    if (!s) return gt_fail(GT_ERR_NOMEM, "cannot allocate a sampler");
    s->cands = malloc((size_t)n_vocab * sizeof *s->cands);
    if (!s->cands) {
        free(s);
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

static int cmp_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

/* Total order: larger logit first, then lower id, so that ties resolve the
 * same way as gt_argmax whatever the selection algorithm does. */
static inline int before(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* Moves the k first candidates in that order to the front (unordered), by
 * quickselect. */
static void select_top_k(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (before(&c[i], &pivot)) i++;
            while (before(&pivot, &c[j])) j--;
            if (i <= j) {
                cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* Temperature, top-p and the draw over the first k candidates, which are
 * sorted best first. */
static int32_t draw(gt_sampler *s, int k) {
    double max = s->cands[0].logit, sum = 0;
    for (int i = 0; i < k; i++) sum += exp(s->cands[i].logit - max);
    /* Keep the smallest prefix whose probability reaches top_p. */
    int keep = k;
    if (s->cfg.top_p < 1) {
        double acc = 0;
        for (int i = 0; i < k; i++) {
            acc += exp(s->cands[i].logit - max) / sum;
            if (acc >= s->cfg.top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    double kept = 0;
    for (int i = 0; i < keep; i++) kept += exp(s->cands[i].logit - max);
    double r = next_uniform(s) * kept;
    for (int i = 0; i < keep; i++) {
        r -= exp(s->cands[i].logit - max);
        if (r <= 0) return s->cands[i].id;
    }
    return s->cands[keep - 1].id;
}

int32_t gt_sampler_sample(gt_sampler *s, const float *logits) {
    int n = s->n_vocab;
    if (s->cfg.temperature <= 0) return gt_argmax(logits, n);
    for (int i = 0; i < n; i++) s->cands[i] = (cand){logits[i] / s->cfg.temperature, i};
    int k = gt_sampler_n_candidates(s);
    if (k < n) select_top_k(s->cands, n, k);
    qsort(s->cands, (size_t)k, sizeof *s->cands, cmp_desc);
    return draw(s, k);
}

int32_t gt_sampler_sample_candidates(gt_sampler *s, const float *vals, const int32_t *ids, int n) {
    if (s->cfg.temperature <= 0 || n == 1) return ids[0];
    int k = gt_sampler_n_candidates(s);
    if (k > n) k = n;
    for (int i = 0; i < k; i++) s->cands[i] = (cand){vals[i] / s->cfg.temperature, ids[i]};
    return draw(s, k);
}

int gt_sampler_n_candidates(const gt_sampler *s) {
    if (s->cfg.temperature <= 0) return 1;
    return s->cfg.top_k > 0 && s->cfg.top_k < s->n_vocab ? s->cfg.top_k : s->n_vocab;
}
