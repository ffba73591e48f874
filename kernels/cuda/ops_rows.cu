/* Row ops of the CUDA backend: row gather, the weighted scatter-add of the
 * MoE combine, and the embedding look-up (F32, F16, BF16, Q8_0 rows).
 *
 * Gather and embedding are one thread per output element. The scatter-add
 * must add rows in order of i (rows may repeat: two experts of one token),
 * so it gives each thread one column and walks the m rows in order: the sums
 * are those of the CPU's loop, bit for bit, and no atomics are needed. */
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/launch.h"

/* The GGUF type ids (common/dtype.h, which is C-only). */
enum { T_F32 = 0, T_F16 = 1, T_Q8_0 = 8, T_BF16 = 30 };

static __global__ void gather_k(const float *src, const int32_t *rows, int64_t total, int64_t n,
                                float *dst) {
    GT_CUDA_FOR(i, total) dst[i] = src[(int64_t)rows[i / n] * n + i % n];
}

static __global__ void scatter_add_k(const float *src, const int32_t *rows, const float *w,
                                     int64_t m, int64_t n, float *dst) {
    GT_CUDA_FOR(j, n) {
        for (int64_t i = 0; i < m; i++) {
            float *d = dst + (int64_t)rows[i] * n + j;
            *d = __fadd_rn(*d, __fmul_rn(w[i], src[i * n + j]));
        }
    }
}

/* Element j of a row of `type` at `row`, as gt_dequantize_row gives it. */
static __device__ float element(int type, const unsigned char *row, int64_t j) {
    switch (type) {
    case T_F32:
        return ((const float *)row)[j];
    case T_F16:
        return __half2float(__ushort_as_half(((const unsigned short *)row)[j]));
    case T_BF16:
        return __uint_as_float((unsigned)((const unsigned short *)row)[j] << 16);
    default: { /* Q8_0: blocks of {f16 d; int8 qs[32]}, 34 bytes */
        const unsigned char *b = row + (j / 32) * 34;
        const float d = __half2float(__ushort_as_half(*(const unsigned short *)b));
        return __fmul_rn(d, (float)((const signed char *)(b + 2))[j % 32]);
    }
    }
}

static __global__ void embed_k(int type, const unsigned char *rows, int64_t v0, int64_t n_rows,
                               int64_t n, size_t row_bytes, float scale, const int32_t *ids,
                               int64_t total, float *out) {
    GT_CUDA_FOR(i, total) {
        const int64_t r = (int64_t)ids[i / n] - v0, j = i % n;
        float x = 0.0f;
        if (r >= 0 && r < n_rows) {
            x = element(type, rows + row_bytes * (size_t)r, j);
            if (scale != 1.0f) x = __fmul_rn(x, scale);
        }
        out[i] = x;
    }
}

extern "C" cudaError_t gt__cuda_gather_rows(cudaStream_t s, const float *src, const int32_t *rows,
                                            int64_t m, int64_t n, float *dst) {
    if (m <= 0 || n <= 0) return cudaSuccess;
    gather_k<<<gt_cuda_blocks(m * n), GT_CUDA_THREADS, 0, s>>>(src, rows, m * n, n, dst);
    return cudaGetLastError();
}

extern "C" cudaError_t gt__cuda_scatter_add_rows(cudaStream_t s, const float *src,
                                                 const int32_t *rows, const float *w, int64_t m,
                                                 int64_t n, float *dst) {
    if (m <= 0 || n <= 0) return cudaSuccess;
    scatter_add_k<<<gt_cuda_blocks(n), GT_CUDA_THREADS, 0, s>>>(src, rows, w, m, n, dst);
    return cudaGetLastError();
}

extern "C" cudaError_t gt__cuda_embed(cudaStream_t s, int type, const void *rows, int64_t v0,
                                      int64_t n_rows, int64_t n, size_t row_bytes, float scale,
                                      const int32_t *ids, int64_t n_ids, float *out) {
    if (n_ids <= 0 || n <= 0) return cudaSuccess;
    embed_k<<<gt_cuda_blocks(n_ids * n), GT_CUDA_THREADS, 0, s>>>(
        type, (const unsigned char *)rows, v0, n_rows, n, row_bytes, scale, ids, n_ids * n, out);
    return cudaGetLastError();
}
