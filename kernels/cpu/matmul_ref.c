/* Reference matrix product: dequantize one weight row to fp32 with the
 * common codec, then a plain fp32 dot with every token.
 *
 * It is the oracle for the fast paths and the fallback for every type that
 * has a dequantizer but no fast kernel. No activation quantization, so it is
 * also the most accurate path. Each row is decoded once and used for all
 * tokens. */
#include "common/quant.h"
#include "kernels/cpu/matmul_internal.h"

void gt__mm_ref_rows(gt_dtype type, const void *w, int64_t n_in, int64_t n_out,
                     const float *x, float *y, int64_t n_tok, int64_t r0, int64_t r1,
                     float *tmp) {
    size_t rb = 0;
    gt_dtype_row_bytes(type, n_in, &rb);
    for (int64_t r = r0; r < r1; r++) {
        const float *wr = tmp; /* [n_in] */
        if (type == GT_F32)
            wr = (const float *)((const uint8_t *)w + (size_t)r * rb);
        else
            gt_dequantize_row(type, (const uint8_t *)w + (size_t)r * rb, tmp, n_in);
        for (int64_t t = 0; t < n_tok; t++) {
            const float *xt = x + t * n_in; /* [n_in] */
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t i = 0;
            for (; i + 4 <= n_in; i += 4) {
                s0 += xt[i] * wr[i];
                s1 += xt[i + 1] * wr[i + 1];
                s2 += xt[i + 2] * wr[i + 2];
                s3 += xt[i + 3] * wr[i + 3];
            }
            for (; i < n_in; i++) s0 += xt[i] * wr[i];
            y[t * n_out + r] = (s0 + s1) + (s2 + s3);
        }
    }
}
