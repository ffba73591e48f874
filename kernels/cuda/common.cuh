/* Shared helpers of the CUDA kernels: the launch shape of a grid-stride
 * loop over n elements. Grids are capped so that any int64 length launches;
 * each thread then strides over the rest. */
#ifndef GT_KERNELS_CUDA_COMMON_CUH
#define GT_KERNELS_CUDA_COMMON_CUH

#include <stdint.h>

#define GT_CUDA_THREADS    256
#define GT_CUDA_MAX_BLOCKS (1 << 20)

static inline unsigned gt_cuda_blocks(int64_t n) {
    int64_t b = (n + GT_CUDA_THREADS - 1) / GT_CUDA_THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b < GT_CUDA_MAX_BLOCKS ? b : GT_CUDA_MAX_BLOCKS);
}

#define GT_CUDA_FOR(i, n)                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

#endif
