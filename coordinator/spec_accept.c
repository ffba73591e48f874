/* The acceptance of one verification step, shared by `gantry run`'s
 * speculation (spec.c, one sequence) and the server's scheduler (sched.c,
 * any number of speculating requests in one batch): given the target's
 * logits after the last token and after each guess, it keeps the longest
 * acceptable prefix of the guesses and draws the token after them. The
 * rule is the one spec.h describes (greedy: the argmax; sampled: rejection
 * sampling against the proposer's distribution, a point mass for prompt
 * lookup); every draw comes from the sequence's sampler's random stream. */
#include "coordinator/spec.h"

int32_t gt_spec_draw(gt_sampler *smp, const float *w, int V, double sum) {
    double r = gt_sampler_uniform(smp) * sum;
    int32_t last = 0;
    for (int i = 0; i < V; i++) {
        if (w[i] <= 0) continue;
        last = i;
        r -= w[i];
        if (r < 0) return i;
    }
    return last;
}

int gt_spec_accept(gt_sampler *smp, int n_vocab, const float *rows, const int32_t *guess, int k,
                   const float *q, float *p, int32_t *next) {
    size_t V = (size_t)n_vocab;
    int m = 0;
    *next = -1;
    for (; m < k; m++) {
        const float *row = rows + (size_t)m * V;
        int32_t x = guess[m];
        gt_sampler_probs(smp, row, p);
        double px = p[x], qx = q ? q[(size_t)m * V + (size_t)x] : 1.0;
        /* Keep x with probability min(1, p(x) / q(x)); greedy p and q are
         * point masses, so this keeps exactly the argmax. */
        if (px >= qx || (px > 0 && gt_sampler_uniform(smp) * qx < px)) continue;
        /* Rejected: draw from normalize(max(0, p - q)). */
        double sum = 0;
        for (size_t i = 0; i < V; i++) {
            float qi = q ? q[(size_t)m * V + i] : (i == (size_t)x ? 1.0f : 0.0f);
            float r = p[i] - qi;
            p[i] = r > 0 ? r : 0;
            sum += p[i];
        }
        if (sum <= 0) { /* p <= q everywhere after rounding: p itself, without x */
            gt_sampler_probs(smp, row, p);
            p[x] = 0;
            for (size_t i = 0; i < V; i++) sum += p[i];
        }
        *next = sum > 0 ? gt_spec_draw(smp, p, n_vocab, sum) : gt_argmax(row, n_vocab);
        break;
    }
    /* Every guess kept (or none made): the bonus token, drawn exactly as a
     * plain decode step draws it. */
    if (*next < 0) *next = gt_sampler_sample(smp, rows + (size_t)k * V);
    return m;
}
