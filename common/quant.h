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

#include <stdbool.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"

/* GT_ERR_UNSUPPORTED for types without a codec, GT_ERR_INVALID_ARG when n is
 * not a multiple of the block size. */
gt_status gt_quantize_row(gt_dtype type, const float *x, void *out, int64_t n);
gt_status gt_dequantize_row(gt_dtype type, const void *in, float *y, int64_t n);

/* Importance-weighted quantization (gantry quantize --imatrix): qw[n] holds
 * each column's weight (the imatrix's mean square activation). The block
 * scales minimise sum_i w_i (x_i - q_i d)^2 with w_i = qw_i sqrt(sigma2 +
 * x_i^2), sigma2 = mean(x^2) of the row (Q4_0, Q5_0: over a grid of
 * candidate scales) or 2 mean(x^2) of the 256-element super-block (K-quants:
 * the sub-block scale/min searches weight by w instead of |x| or x^2).
 * Types without a weighted path (gt_quant_uses_imatrix false) and qw NULL
 * give exactly gt_quantize_row's bytes. Statuses as gt_quantize_row. */
gt_status gt_quantize_row_imatrix(gt_dtype type, const float *x, void *out, int64_t n,
                                  const float *qw);
bool gt_quant_uses_imatrix(gt_dtype type);

/* The packed sub-block scales of the K-quants, for code that reads the
 * blocks directly (the CPU panel packing): Q3_K's scale j (0..15), signed,
 * from its 12 bytes (low nibbles in bytes 0..7, the high two bits in bytes
 * 8..11); Q4_K's and Q5_K's 6-bit scale and min j (0..7) from theirs. */
int gt_q3_k_scale(const uint8_t *scales, int j);
void gt_q4_k_scale_min(int j, const uint8_t *scales, uint8_t *sc, uint8_t *m);

#endif
