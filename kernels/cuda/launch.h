/* The CUDA backend's kernel launchers (kernels/cuda/ *.cu), called by
 * kernels/cuda/backend.c.
 *
 * One launcher per op, each taking the stream to run on. Every pointer is a
 * device address (inside a gt_buffer of the CUDA backend). This header is
 * plain C shared with C++ (nvcc), so it takes the fields of the public
 * parameter structs one by one rather than including kernels/kernels.h. A
 * launcher only enqueues work: it returns the launch's cudaError_t
 * (cudaSuccess when nothing was enqueued, for n == 0), and faults inside a
 * kernel surface at the next synchronizing call (a download, copy_wait).
 * The arithmetic mirrors the CPU's scalar `_ref` functions (kernels/cpu/
 * ops_ref.c, ops_misc_ref.c, ops_router.c) operation for operation, with
 * explicit round-to-nearest intrinsics where nvcc would otherwise contract a
 * multiply and an add into one FMA, so that most ops match the CPU bit for
 * bit and the rest (those calling expf/tanhf/pow) within a few ulp. */
#ifndef GT_KERNELS_CUDA_LAUNCH_H
#define GT_KERNELS_CUDA_LAUNCH_H

#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element-wise (kernels/cuda/ops_elem.cu). */
cudaError_t gt__cuda_swiglu(cudaStream_t s, const float *gate, const float *up, float *out,
                            int64_t n);
cudaError_t gt__cuda_geglu(cudaStream_t s, const float *gate, const float *up, float *out,
                           int64_t n);
cudaError_t gt__cuda_add(cudaStream_t s, float *y, const float *x, int64_t n);
cudaError_t gt__cuda_add_bias(cudaStream_t s, float *y, const float *b, int64_t n_rows, int64_t n);
cudaError_t gt__cuda_scale(cudaStream_t s, float *y, float c, int64_t n);
cudaError_t gt__cuda_softcap(cudaStream_t s, float *y, float c, int64_t n);
cudaError_t gt__cuda_sigmoid_gate_add(cudaStream_t s, const float *gate, const float *src,
                                      float *dst, int64_t n_tok, int64_t n);

/* Rows (kernels/cuda/ops_rows.cu). */
cudaError_t gt__cuda_gather_rows(cudaStream_t s, const float *src, const int32_t *rows, int64_t m,
                                 int64_t n, float *dst);
cudaError_t gt__cuda_scatter_add_rows(cudaStream_t s, const float *src, const int32_t *rows,
                                      const float *w, int64_t m, int64_t n, float *dst);
/* The embedding rows of gt_embed_args; type is GT_F32, GT_F16, GT_BF16 or
 * GT_Q8_0 (backend.c checks), given as its GGUF id. */
cudaError_t gt__cuda_embed(cudaStream_t s, int type, const void *rows, int64_t v0, int64_t n_rows,
                           int64_t n, size_t row_bytes, float scale, const int32_t *ids,
                           int64_t n_ids, float *out);

/* Normalisation and rotation (kernels/cuda/ops_norm.cu). */
cudaError_t gt__cuda_rmsnorm(cudaStream_t s, const float *x, const float *w, float *y,
                             int64_t n_rows, int64_t n, float eps);
cudaError_t gt__cuda_rope(cudaStream_t s, float *x, int64_t n_tok, int n_head, int head_dim,
                          const int32_t *pos, float freq_base, float freq_scale, int n_rot,
                          bool neox);

/* MoE routing (kernels/cuda/ops_router.cu). */
cudaError_t gt__cuda_router_topk(cudaStream_t s, float *probs, int64_t n_tok, int n_expert,
                                 int k_used, bool renorm, int32_t *ids, float *w);

#ifdef __cplusplus
}
#endif

#endif
