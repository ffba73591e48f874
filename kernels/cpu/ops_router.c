/* The MoE router's softmax and top-k for the CPU backend (every ISA).
 *
 * Same arithmetic as gt__router_topk_ref (ops_misc_ref.c), so the two agree
 * bit for bit and a token is routed the same way on every ISA: the softmax
 * in double, summed in expert order. What changes is the work: each exp is
 * taken once (the reference takes it twice), and the k largest are kept in
 * one pass by insertion into a sorted list of k (the reference rescans all
 * experts for each of the k slots: O(E k^2) against O(E) when few experts
 * displace the list, O(E k) at worst). Qwen3-235B routes to 8 of 128
 * experts per token and layer. */
#include <math.h>

#include "kernels/cpu/ops.h"

/* Experts whose exps fit the stack array; wider routers use the reference. */
#define ROUTER_MAX_EXPERTS 1024

void gt__router_topk(float *probs, int64_t n_tok, int n_expert, int k_used, bool renorm,
                     int32_t *ids_all, float *w_all) {
    const int E = n_expert, K = k_used;
    if (E > ROUTER_MAX_EXPERTS) {
        gt__router_topk_ref(probs, n_tok, n_expert, k_used, renorm, ids_all, w_all);
        return;
    }
    double ex_[ROUTER_MAX_EXPERTS];
    for (int64_t t = 0; t < n_tok; t++) {
        float *r = probs + t * E; /* [E] logits in, probabilities out */
        float max = -INFINITY;
        for (int ex = 0; ex < E; ex++)
            if (r[ex] > max) max = r[ex];
        double sum = 0;
        for (int ex = 0; ex < E; ex++) {
            ex_[ex] = exp((double)(r[ex] - max));
            sum += ex_[ex];
        }
        for (int ex = 0; ex < E; ex++) r[ex] = (float)(ex_[ex] / sum);
        /* ids[0..n) stays sorted by decreasing probability, lower id first
         * among equals: a later expert passes only a strictly smaller one. */
        int32_t *ids = ids_all + t * K;
        int n = 0;
        for (int ex = 0; ex < E; ex++) {
            const float v = r[ex];
            if (n == K && !(v > r[ids[K - 1]])) continue;
            int at = n < K ? n++ : K - 1;
            for (; at > 0 && v > r[ids[at - 1]]; at--) ids[at] = ids[at - 1];
            ids[at] = ex;
        }
        float *w = w_all + t * K, wsum = 0;
        for (int j = 0; j < K; j++) {
            w[j] = r[ids[j]];
            wsum += w[j];
        }
        if (renorm)
            for (int j = 0; j < K; j++) w[j] /= wsum;
    }
}
