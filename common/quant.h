/* Scalar codecs for every element type Gantry stores: the reference for
 * quantized formats, used by the synthetic-model writer, by embedding
 * look-ups and as the oracle in kernel tests.
 *
 * Rows are n elements, n a multiple of the type's block size. Quantizers
 * choose scales the way the GGUF ecosystem's reference quantizers do
 * (round-to-nearest per block; K-quants with per-sub-block scale/min search)
 * so that files look like real quantized models. Thread-safe, no state. */
#ifndef GT_QUANT_H
#define GT_QUANT_H

#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"

/* GT_ERR_UNSUPPORTED for types without a codec, GT_ERR_INVALID_ARG when n is
 * not a multiple of the block size. */
gt_status gt_quantize_row(gt_dtype type, const float *x, void *out, int64_t n);
gt_status gt_dequantize_row(gt_dtype type, const void *in, float *y, int64_t n);

#endif
