/* Element-wise ops of the CUDA backend: SwiGLU, GeGLU, adds, scale, softcap
 * and the sigmoid-gated add, as grid-stride loops (memory-bound: one load
 * and one store per element, nothing to share between threads).
 *
 * Each body is the CPU reference's formula (kernels/cpu/ops_ref.c,
 * ops_misc_ref.c) written with __fmul_rn/__fadd_rn where the reference
 * rounds a product before adding it, so nvcc cannot fuse them into an FMA:
 * add, bias add, scale and the gated add then equal the CPU bit for bit;
 * SwiGLU, GeGLU and softcap differ only by CUDA's expf/tanhf (2 ulp). */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

static __global__ void swiglu_k(const float *g, const float *u, float *out, int64_t n) {
    GT_CUDA_FOR(i, n) {
        const float x = g[i];
        out[i] = __fmul_rn(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x))), u[i]);
    }
}

static __global__ void geglu_k(const float *g, const float *u, float *out, int64_t n) {
    const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
    GT_CUDA_FOR(i, n) {
        const float x = g[i];
        const float x3 = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, x), x), x);
        const float t = tanhf(__fmul_rn(k0, __fadd_rn(x, x3)));
        out[i] = __fmul_rn(__fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, t)), u[i]);
    }
}

static __global__ void add_k(float *y, const float *x, int64_t n) {
    GT_CUDA_FOR(i, n) y[i] = __fadd_rn(y[i], x[i]);
}

static __global__ void add_bias_k(float *y, const float *b, int64_t total, int64_t n) {
    GT_CUDA_FOR(i, total) y[i] = __fadd_rn(y[i], b[i % n]);
}

static __global__ void scale_k(float *y, float s, int64_t n) {
    GT_CUDA_FOR(i, n) y[i] = __fmul_rn(y[i], s);
}

static __global__ void softcap_k(float *y, float c, int64_t n) {
    GT_CUDA_FOR(i, n) y[i] = __fmul_rn(c, tanhf(__fdiv_rn(y[i], c)));
}

/* One gate per row of n: sigmoid in double as the reference takes it. */
static __global__ void sigmoid_gate_add_k(const float *gate, const float *src, float *dst,
                                          int64_t total, int64_t n) {
    GT_CUDA_FOR(i, total) {
        const float g = gate ? (float)(1.0 / (1.0 + exp(-(double)gate[i / n]))) : 1.0f;
        dst[i] = __fadd_rn(dst[i], __fmul_rn(g, src[i]));
    }
}

#define LAUNCH(kernel, n, ...)                                                                     \
    do {                                                                                           \
        if ((n) <= 0) return cudaSuccess;                                                          \
        kernel<<<gt_cuda_blocks(n), GT_CUDA_THREADS, 0, s>>>(__VA_ARGS__);                         \
        return cudaGetLastError();                                                                 \
    } while (0)

extern "C" cudaError_t gt__cuda_swiglu(cudaStream_t s, const float *gate, const float *up,
                                       float *out, int64_t n) {
    LAUNCH(swiglu_k, n, gate, up, out, n);
}

extern "C" cudaError_t gt__cuda_geglu(cudaStream_t s, const float *gate, const float *up,
                                      float *out, int64_t n) {
    LAUNCH(geglu_k, n, gate, up, out, n);
}

extern "C" cudaError_t gt__cuda_add(cudaStream_t s, float *y, const float *x, int64_t n) {
    LAUNCH(add_k, n, y, x, n);
}

extern "C" cudaError_t gt__cuda_add_bias(cudaStream_t s, float *y, const float *b, int64_t n_rows,
                                         int64_t n) {
    LAUNCH(add_bias_k, n_rows * n, y, b, n_rows * n, n);
}

extern "C" cudaError_t gt__cuda_scale(cudaStream_t s, float *y, float c, int64_t n) {
    LAUNCH(scale_k, n, y, c, n);
}

extern "C" cudaError_t gt__cuda_softcap(cudaStream_t s, float *y, float c, int64_t n) {
    LAUNCH(softcap_k, n, y, c, n);
}

extern "C" cudaError_t gt__cuda_sigmoid_gate_add(cudaStream_t s, const float *gate,
                                                 const float *src, float *dst, int64_t n_tok,
                                                 int64_t n) {
    LAUNCH(sigmoid_gate_add_k, n_tok * n, gate, src, dst, n_tok * n, n);
}
