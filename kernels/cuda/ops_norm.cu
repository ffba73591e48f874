/* RMSNorm and RoPE for the CUDA backend.
 *
 * RMSNorm: one block per row (grid-stride over rows); each thread sums the
 * squares of its strided elements in double, and a shared-memory tree adds
 * the partial sums in a fixed order, so a row's result does not depend on
 * which other rows share the launch (batch-invariant). The scale and the
 * products are those of gt__rmsnorm_ref (kernels/cpu/ops_ref.c).
 *
 * RoPE: one thread per rotated pair; the angle in double exactly as
 * gt__rope_table computes it (pos * freq_scale * base^(-2i/n_rot)), cos and
 * sin rounded to float, then the rotation with separately rounded products
 * as the reference does. Dimensions past n_rot stay as they are. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

#define RMS_THREADS 256

static __global__ void rmsnorm_k(const float *x, const float *w, float *y, int64_t n_rows,
                                 int64_t n, float eps) {
    __shared__ double part[RMS_THREADS];
    for (int64_t r = blockIdx.x; r < n_rows; r += gridDim.x) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double ss = 0;
        for (int64_t i = threadIdx.x; i < n; i += RMS_THREADS) ss += (double)xr[i] * xr[i];
        part[threadIdx.x] = ss;
        __syncthreads();
        for (int h = RMS_THREADS / 2; h > 0; h /= 2) {
            if ((int)threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
            __syncthreads();
        }
        const float scale = (float)(1.0 / sqrt(part[0] / (double)(n > 0 ? n : 1) + eps));
        for (int64_t i = threadIdx.x; i < n; i += RMS_THREADS) {
            const float v = __fmul_rn(xr[i], scale);
            yr[i] = w ? __fmul_rn(v, w[i]) : v;
        }
        /* part[0] is read above by every thread before the next row resets it. */
        __syncthreads();
    }
}

static __global__ void rope_k(float *x, int64_t total, int n_head, int head_dim, const int32_t *pos,
                              float freq_base, float freq_scale, int n_rot, bool neox) {
    const int half = n_rot / 2;
    GT_CUDA_FOR(idx, total) { /* over (token, head, pair) */
        const int i = (int)(idx % half);
        const int64_t v = idx / half, t = v / n_head;
        const double theta =
            (double)pos[t] * (double)freq_scale * pow((double)freq_base, -2.0 * i / (double)n_rot);
        const float c = (float)cos(theta), s = (float)sin(theta);
        float *xv = x + v * head_dim;
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float x0 = xv[i0], x1 = xv[i1];
        xv[i0] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
        xv[i1] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
    }
}

extern "C" cudaError_t gt__cuda_rmsnorm(cudaStream_t s, const float *x, const float *w, float *y,
                                        int64_t n_rows, int64_t n, float eps) {
    if (n_rows <= 0) return cudaSuccess;
    const unsigned blocks = (unsigned)(n_rows < GT_CUDA_MAX_BLOCKS ? n_rows : GT_CUDA_MAX_BLOCKS);
    rmsnorm_k<<<blocks, RMS_THREADS, 0, s>>>(x, w, y, n_rows, n, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t gt__cuda_rope(cudaStream_t s, float *x, int64_t n_tok, int n_head,
                                     int head_dim, const int32_t *pos, float freq_base,
                                     float freq_scale, int n_rot, bool neox) {
    const int64_t total = n_tok * n_head * (int64_t)(n_rot / 2);
    if (total <= 0) return cudaSuccess;
    rope_k<<<gt_cuda_blocks(total), GT_CUDA_THREADS, 0, s>>>(x, total, n_head, head_dim, pos,
                                                             freq_base, freq_scale, n_rot, neox);
    return cudaGetLastError();
}
