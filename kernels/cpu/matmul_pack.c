/* Load-time repacking of GGUF weight rows into the panel layouts of
 * matmul_internal.h.
 *
 * Scalar and simple on purpose: it runs once per tensor. Every quantized
 * type is first decoded, per 32-element block, into unsigned codes plus a
 * scale (and a min or a second half-block scale), then scattered into the
 * 16-row interleaved panel. Q5_0 becomes nibbles plus a bit plane
 * (lossless, same bytes); Q4_K becomes nibbles with per-32 f16 scale and
 * min (d*sc and dmin*m rounded to f16: relative 2^-11 per block, +11%
 * bytes); Q6_K becomes nibbles plus two bit planes with two f16 scales per
 * block (+7% bytes). Panels are independent, so threads pack disjoint
 * panel ranges of one weight. */
#include <string.h>

#include "kernels/cpu/matmul_internal.h"

gt_mm_qkind gt__mm_qkind(gt_dtype type) {
    switch (type) {
    case GT_Q8_0: return GT_MMQ_B8;
    case GT_Q5_0: return GT_MMQ_N5;
    case GT_Q4_0: return GT_MMQ_N4;
    case GT_Q4_1:
    case GT_Q4_K: return GT_MMQ_N4M;
    case GT_Q6_K: return GT_MMQ_N6H;
    default: return GT_MMQ_NONE;
    }
}

size_t gt__mm_qblock_bytes(gt_mm_qkind kind) {
    switch (kind) {
    case GT_MMQ_B8: return 32 + 512;
    case GT_MMQ_N4: return 32 + 256;
    case GT_MMQ_N4M: return 64 + 256;
    case GT_MMQ_N5: return 32 + 256 + 64;
    case GT_MMQ_N6H: return 64 + 256 + 128;
    default: return 0;
    }
}

static size_t elem_bytes(gt_dtype type) { return type == GT_F32 ? 4 : 2; }

size_t gt__mm_packed_bytes(gt_dtype type, int layout, int64_t n_in, int64_t n_out) {
    size_t np = (size_t)gt__mm_n_panels(n_out);
    if (layout == GT_MM_PF || layout == GT_MM_PB) return np * 16 * (size_t)n_in * elem_bytes(type);
    if (layout == GT_MM_PH) return GT_MM_PH_HEAD + np * 16 * (size_t)n_in * 2;
    return np * (size_t)(n_in / 32) * gt__mm_qblock_bytes(gt__mm_qkind(type));
}

/* Decoded 32-element block: value[j] = d * (code[j] - off) (+ m), with d1
 * for elements 16..31 where the type has half-block scales; off is the
 * kind's (128 for B8, 8 for N4, 16 for N5, 32 for N6H, none with a min). */
typedef struct {
    uint8_t code[32];
    float d, d1, m;
} blk32;

static void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Block b (32 elements) of one row. */
static void decode32(gt_dtype type, const uint8_t *row, int64_t b, blk32 *o) {
    o->d1 = o->m = 0;
    switch (type) {
    case GT_Q8_0: {
        const gt_block_q8_0 *x = (const gt_block_q8_0 *)row + b;
        o->d = gt_f16_to_f32(x->d);
        for (int j = 0; j < 32; j++) o->code[j] = (uint8_t)(x->qs[j] + 128);
        break;
    }
    case GT_Q5_0: {
        const gt_block_q5_0 *x = (const gt_block_q5_0 *)row + b;
        uint32_t qh;
        memcpy(&qh, x->qh, 4);
        o->d = gt_f16_to_f32(x->d);
        for (int j = 0; j < 16; j++) {
            int lo = (x->qs[j] & 0xF) | (((qh >> j) & 1) << 4);
            int hi = (x->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
            o->code[j] = (uint8_t)lo; /* value lo - 16 */
            o->code[j + 16] = (uint8_t)hi;
        }
        break;
    }
    case GT_Q4_0:
    case GT_Q4_1: {
        const uint8_t *qs;
        if (type == GT_Q4_0) {
            const gt_block_q4_0 *x = (const gt_block_q4_0 *)row + b;
            o->d = gt_f16_to_f32(x->d);
            qs = x->qs;
        } else {
            const gt_block_q4_1 *x = (const gt_block_q4_1 *)row + b;
            o->d = gt_f16_to_f32(x->d);
            o->m = gt_f16_to_f32(x->m);
            qs = x->qs;
        }
        for (int j = 0; j < 16; j++) {
            o->code[j] = qs[j] & 0xF;
            o->code[j + 16] = qs[j] >> 4;
        }
        break;
    }
    case GT_Q4_K: {
        const gt_block_q4_K *x = (const gt_block_q4_K *)row + b / 8;
        int s = (int)(b % 8);
        uint8_t sc, mn;
        get_scale_min_k4(s, x->scales, &sc, &mn);
        o->d = gt_f16_to_f32(x->d) * sc;
        o->m = -gt_f16_to_f32(x->dmin) * mn;
        const uint8_t *q = x->qs + 32 * (s / 2);
        for (int l = 0; l < 32; l++) o->code[l] = (s & 1) ? (q[l] >> 4) : (q[l] & 0xF);
        break;
    }
    case GT_Q6_K: {
        const gt_block_q6_K *x = (const gt_block_q6_K *)row + b / 8;
        int s = (int)(b % 8); /* elements 32s..32s+31 of the super block */
        int n = s / 4, g = s % 4; /* 128-half, 32-group within it */
        const uint8_t *ql = x->ql + 64 * n, *qh = x->qh + 32 * n;
        float d = gt_f16_to_f32(x->d);
        for (int l = 0; l < 32; l++) {
            int lo = (g & 1) ? ql[l + 32] : ql[l];
            lo = (g >= 2) ? (lo >> 4) : (lo & 0xF);
            int hi = (qh[l] >> (2 * g)) & 3;
            o->code[l] = (uint8_t)(lo | (hi << 4));
        }
        o->d = d * x->scales[2 * s];
        o->d1 = d * x->scales[2 * s + 1];
        break;
    }
    default: memset(o, 0, sizeof(*o)); break;
    }
}

static size_t row_bytes(gt_dtype type, int64_t n_in) {
    size_t rb = 0;
    gt_dtype_row_bytes(type, n_in, &rb);
    return rb;
}

/* Panels [p0, p1): dst[p][k][16 rows], zero rows past n_out. */
static void pack_float(gt_dtype type, int64_t n_in, int64_t n_out, const uint8_t *src,
                       uint8_t *dst, int64_t p0, int64_t p1) {
    size_t rb = row_bytes(type, n_in);
    for (int64_t p = p0; p < p1; p++) {
        const uint8_t *rows[16];
        for (int r = 0; r < 16; r++) rows[r] = p * 16 + r < n_out ? src + (size_t)(p * 16 + r) * rb : NULL;
        if (type == GT_F32) {
            float *o = (float *)dst + (size_t)p * (size_t)n_in * 16; /* [n_in][16] */
            for (int r = 0; r < 16; r++) {
                const float *in = (const float *)rows[r];
                for (int64_t kk = 0; kk < n_in; kk++) o[kk * 16 + r] = in ? in[kk] : 0.0f;
            }
        } else {
            uint16_t *o = (uint16_t *)dst + (size_t)p * (size_t)n_in * 16; /* [n_in][16] */
            for (int r = 0; r < 16; r++) {
                const uint16_t *in = (const uint16_t *)rows[r];
                if (in)
                    for (int64_t kk = 0; kk < n_in; kk++) memcpy(&o[kk * 16 + r], in + kk, 2);
                else
                    for (int64_t kk = 0; kk < n_in; kk++) o[kk * 16 + r] = 0;
            }
        }
    }
}

static void pack_quant(gt_dtype type, int64_t n_in, int64_t n_out, const uint8_t *src,
                       uint8_t *dst, int64_t p0, int64_t p1) {
    gt_mm_qkind kind = gt__mm_qkind(type);
    size_t bb = gt__mm_qblock_bytes(kind), rb = row_bytes(type, n_in);
    int64_t nb = n_in / 32;
    memset(dst + (size_t)p0 * (size_t)nb * bb, 0, (size_t)(p1 - p0) * (size_t)nb * bb);
    for (int64_t p = p0; p < p1; p++)
        for (int r = 0; r < 16; r++) {
            int64_t row = p * 16 + r;
            if (row >= n_out) break; /* zero scales: contributes nothing */
            const uint8_t *in = src + (size_t)row * rb;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *o = dst + ((size_t)p * (size_t)nb + (size_t)b) * bb;
                gt_f16 *d0 = (gt_f16 *)o, *d1 = (gt_f16 *)(o + 32);
                int two = kind == GT_MMQ_N4M || kind == GT_MMQ_N6H;
                uint8_t *qs = o + (two ? 64 : 32), *hb = qs + 256; /* [planes][8 chunks][8] */
                blk32 v;
                decode32(type, in, b, &v);
                d0[r] = gt_f32_to_f16(v.d);
                if (kind == GT_MMQ_N4M) d1[r] = gt_f32_to_f16(v.m);
                if (kind == GT_MMQ_N6H) d1[r] = gt_f32_to_f16(v.d1);
                if (kind == GT_MMQ_B8) {
                    for (int c = 0; c < 8; c++) memcpy(qs + 64 * c + r * 4, v.code + 4 * c, 4);
                    continue;
                }
                for (int c = 0; c < 4; c++)
                    for (int j = 0; j < 4; j++)
                        qs[64 * c + r * 4 + j] =
                            (uint8_t)((v.code[4 * c + j] & 0xF) | ((v.code[4 * c + 16 + j] & 0xF) << 4));
                int planes = kind == GT_MMQ_N5 ? 1 : kind == GT_MMQ_N6H ? 2 : 0;
                for (int pl = 0; pl < planes; pl++)
                    for (int c = 0; c < 8; c++)
                        for (int j = 0; j < 4; j++) {
                            int bit = r * 4 + j;
                            hb[64 * pl + 8 * c + bit / 8] |=
                                (uint8_t)(((v.code[4 * c + j] >> (4 + pl)) & 1) << (bit % 8));
                        }
            }
        }
}

void gt__mm_pack(gt_dtype type, int layout, int64_t n_in, int64_t n_out, const void *src,
                 void *dst, int64_t p0, int64_t p1) {
    if (layout == GT_MM_PB)
        gt__mm_pack_pb(type, n_in, n_out, src, dst, p0, p1);
    else if (layout == GT_MM_PH)
        gt__mm_pack_ph(type, n_in, n_out, src, dst, p0, p1);
    else if (layout == GT_MM_PF)
        pack_float(type, n_in, n_out, src, dst, p0, p1);
    else
        pack_quant(type, n_in, n_out, src, dst, p0, p1);
}
