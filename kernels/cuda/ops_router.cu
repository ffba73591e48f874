/* The MoE router's softmax and top-k on the CUDA backend: one thread per
 * token, the arithmetic of gt__router_topk (kernels/cpu/ops_router.c) step
 * for step, so tokens are routed as on the CPU: the softmax in double summed
 * in expert order, and the k largest kept by insertion into a sorted list
 * (decreasing probability, lowest id first among equals). Routers are small
 * (E <= a few hundred, k <= 8 or so) and a token's work is serial by design
 * here; a warp per token is the obvious next step if it ever shows in a
 * profile. The exps are taken twice instead of kept, as the reference does,
 * to need no scratch memory. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

static __global__ void router_k(float *probs, int64_t n_tok, int E, int K, bool renorm,
                                int32_t *ids_all, float *w_all) {
    GT_CUDA_FOR(t, n_tok) {
        float *r = probs + t * E; /* [E] logits in, probabilities out */
        float max = -INFINITY;
        for (int ex = 0; ex < E; ex++)
            if (r[ex] > max) max = r[ex];
        double sum = 0;
        for (int ex = 0; ex < E; ex++) sum += exp((double)(r[ex] - max));
        for (int ex = 0; ex < E; ex++) r[ex] = (float)(exp((double)(r[ex] - max)) / sum);
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
            wsum = __fadd_rn(wsum, w[j]);
        }
        if (renorm)
            for (int j = 0; j < K; j++) w[j] = __fdiv_rn(w[j], wsum);
    }
}

extern "C" cudaError_t gt__cuda_router_topk(cudaStream_t s, float *probs, int64_t n_tok,
                                            int n_expert, int k_used, bool renorm, int32_t *ids,
                                            float *w) {
    if (n_tok <= 0 || n_expert <= 0 || k_used <= 0) return cudaSuccess;
    /* 64 threads a block: a token's loop is long and serial, so spread tokens over SMs. */
    const int64_t want = (n_tok + 63) / 64;
    const unsigned blocks = (unsigned)(want < GT_CUDA_MAX_BLOCKS ? want : GT_CUDA_MAX_BLOCKS);
    router_k<<<blocks, 64, 0, s>>>(probs, n_tok, n_expert, k_used, renorm, ids, w);
    return cudaGetLastError();
}
