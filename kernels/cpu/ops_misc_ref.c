/* Scalar versions of the small ops of the forward pass: bias add, scale,
 * softcap, embedding look-up, MoE routing, row gather / weighted scatter,
 * the sigmoid-gated add and the KV store. They are cheap next to the
 * matrices, so the CPU backend runs them as they are (bias add runs the
 * table's SIMD add per row); the tests compare them with double-precision
 * oracles. */
#include <math.h>
#include <string.h>

#include "common/quant.h"
#include "kernels/cpu/ops.h"

void gt__add_bias_ref(float *y, const float *b, int64_t n_rows, int64_t n) {
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t i = 0; i < n; i++) y[r * n + i] += b[i];
}

void gt__scale_ref(float *y, float s, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] *= s;
}

void gt__softcap_ref(float *y, float c, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = c * tanhf(y[i] / c);
}

gt_status gt__embed_ref(const gt_embed_args *a) {
    size_t row_bytes;
    if (!gt_dtype_row_bytes(a->type, a->n, &row_bytes))
        return gt_fail(GT_ERR_INVALID_ARG, "embedding: rows of %lld %s elements are not whole blocks",
                       (long long)a->n, gt_dtype_name(a->type));
    for (int64_t i = 0; i < a->n_ids; i++) {
        float *x = a->out + i * a->n;
        const int64_t r = (int64_t)a->ids[i] - a->v0;
        if (r < 0 || r >= a->n_rows) {
            memset(x, 0, (size_t)a->n * sizeof *x);
            continue;
        }
        GT_TRY(gt_dequantize_row(a->type, (const uint8_t *)a->rows + row_bytes * (size_t)r, x, a->n));
        if (a->scale != 1.0f)
            for (int64_t j = 0; j < a->n; j++) x[j] *= a->scale;
    }
    return GT_OK;
}

void gt__router_topk_ref(float *probs, int64_t n_tok, int n_expert, int k_used, bool renorm,
                         int32_t *ids_all, float *w_all) {
    const int E = n_expert, K = k_used;
    for (int64_t t = 0; t < n_tok; t++) {
        float *r = probs + t * E;
        float max = -INFINITY;
        for (int ex = 0; ex < E; ex++)
            if (r[ex] > max) max = r[ex];
        double sum = 0;
        for (int ex = 0; ex < E; ex++) sum += exp((double)(r[ex] - max));
        for (int ex = 0; ex < E; ex++) r[ex] = (float)(exp((double)(r[ex] - max)) / sum);
        int32_t *ids = ids_all + t * K;
        float *w = w_all + t * K, wsum = 0;
        for (int j = 0; j < K; j++) { /* selection of the K largest, lowest id on ties */
            int best = -1;
            for (int ex = 0; ex < E; ex++) {
                bool taken = false;
                for (int q = 0; q < j; q++) taken |= ids[q] == ex;
                if (!taken && (best < 0 || r[ex] > r[best])) best = ex;
            }
            ids[j] = best;
            w[j] = r[best];
            wsum += r[best];
        }
        if (renorm)
            for (int j = 0; j < K; j++) w[j] /= wsum;
    }
}

void gt__gather_rows_ref(const float *src, const int32_t *rows, int64_t m, int64_t n, float *dst) {
    for (int64_t i = 0; i < m; i++)
        memcpy(dst + i * n, src + (int64_t)rows[i] * n, (size_t)n * sizeof(float));
}

void gt__scatter_add_rows_ref(const float *src, const int32_t *rows, const float *w, int64_t m,
                              int64_t n, float *dst) {
    for (int64_t i = 0; i < m; i++) {
        float *d = dst + (int64_t)rows[i] * n;
        const float *s = src + i * n;
        for (int64_t j = 0; j < n; j++) d[j] += w[i] * s[j];
    }
}

void gt__sigmoid_gate_add_ref(const float *gate, const float *src, float *dst, int64_t n_tok,
                              int64_t n) {
    for (int64_t t = 0; t < n_tok; t++) {
        const float g = gate ? (float)(1.0 / (1.0 + exp(-(double)gate[t]))) : 1.0f;
        for (int64_t j = 0; j < n; j++) dst[t * n + j] += g * src[t * n + j];
    }
}

gt_status gt__kv_store_ref(const gt_kv_store_args *a) {
    if (a->n_kv_head < 1 || a->row_elems % a->n_kv_head)
        return gt_fail(GT_ERR_INVALID_ARG, "KV store: a row of %d elements is not %d kv heads",
                       a->row_elems, a->n_kv_head);
    const int hd = a->row_elems / a->n_kv_head;
    const size_t elem = gt_kv_elem_bytes(a->kv_type);
    const size_t hs = gt_kv_head_stride(a->head_stride, a->block_size, hd, elem);
    for (int64_t i = 0; i < a->n_tok; i++) {
        const int32_t p = a->pos[i];
        for (int g = 0; g < a->n_kv_head; g++) {
            uint8_t *blk = a->blocks[p / a->block_size];
            if (a->kv_type == GT_BF16) { /* pairs: each element where its index says */
                const int r = p % a->block_size;
                gt_bf16 *part = (gt_bf16 *)(blk + (size_t)g * hs);
                const float *src = a->rows + i * a->row_elems + (size_t)g * hd;
                for (int d = 0; d < hd; d++)
                    part[a->keys ? gt_kv_k_index(GT_BF16, r, d, a->block_size)
                                 : gt_kv_v_index(GT_BF16, r, d, a->block_size, hd)] =
                        gt_f32_to_bf16(src[d]);
                continue;
            }
            uint8_t *dst = blk + gt_kv_offset(p, g, a->block_size, hd, elem, hs);
            const float *src = a->rows + i * a->row_elems + (size_t)g * hd;
            if (a->keys) { /* element d of each key of the block side by side */
                for (int d = 0; d < hd; d++) {
                    uint8_t *e = blk + gt_k_offset(p, g, d, a->block_size, hd, elem, hs);
                    if (a->kv_type == GT_F32)
                        memcpy(e, src + d, elem);
                    else {
                        const gt_f16 h = gt_f32_to_f16(src[d]);
                        memcpy(e, &h, elem);
                    }
                }
            } else if (a->kv_type == GT_F32)
                memcpy(dst, src, (size_t)hd * elem);
            else
                GT_TRY(gt_quantize_row(GT_F16, src, dst, hd));
        }
    }
    return GT_OK;
}
