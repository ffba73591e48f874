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
 * block (+7% bytes); Q5_1 (lossless, same bytes) and Q5_K (scales as
 * Q4_K, +9%) become nibbles plus a bit plane with a scale and a min; Q3_K
 * becomes 2-bit codes plus a bit plane with two f16 half-block scales
 * (4 bits per weight against 3.44); Q2_K keeps its super block (the rows'
 * d and dmin per 256 k, its 4-bit scale|min bytes per block) with 2-bit
 * codes: its own 2.63 bits. Panels are independent, so threads pack
 * disjoint panel ranges of one weight. */
#include <string.h>

#include "common/quant.h"
#include "kernels/cpu/matmul_internal.h"

gt_mm_qkind gt__mm_qkind(gt_dtype type) {
    switch (type) {
    case GT_Q8_0: return GT_MMQ_B8;
    case GT_Q5_0: return GT_MMQ_N5;
    case GT_Q4_0: return GT_MMQ_N4;
    case GT_Q4_1:
    case GT_Q4_K: return GT_MMQ_N4M;
    case GT_Q6_K: return GT_MMQ_N6H;
    case GT_Q5_1:
    case GT_Q5_K:
        return GT_MMQ_N5M;
    case GT_Q3_K:
        return GT_MMQ_C3H;
    case GT_Q2_K:
        return GT_MMQ_C2HM;
    default: return GT_MMQ_NONE;
    }
}

size_t gt__mm_qblock_bytes(gt_mm_qkind kind) {
    return kind == GT_MMQ_NONE ? 0 : gt__mmq_block_bytes(kind);
}

static size_t elem_bytes(gt_dtype type) { return type == GT_F32 ? 4 : 2; }

size_t gt__mm_packed_bytes(gt_dtype type, int layout, int64_t n_in, int64_t n_out) {
    size_t np = (size_t)gt__mm_n_panels(n_out);
    if (layout == GT_MM_PF || layout == GT_MM_PB) return np * 16 * (size_t)n_in * elem_bytes(type);
    if (layout == GT_MM_PH) return GT_MM_PH_HEAD + np * 16 * (size_t)n_in * 2;
    return np * (size_t)(n_in / 32) * gt__mm_qblock_bytes(gt__mm_qkind(type));
}

/* Decoded 32-element block: value[j] = d * (code[j] - off) + m, with d1
 * for elements 16..31 where the kind has half-block scales; off is the
 * kind's (gt__mmq_offset: 0 with a min). Q2_K: the codes only. */
typedef struct {
    uint8_t code[32];
    float d, d1, m;
} blk32;

/* Q5_0/Q5_1 codes: nibbles plus bit j of qh for element j. */
static void codes5(const uint8_t *qs, const uint8_t *qh4, uint8_t *code) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        code[j] = (uint8_t)((qs[j] & 0xF) | (((qh >> j) & 1) << 4));
        code[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
}

/* Q2_K/Q3_K: 2-bit code l (0..31) of 32-group s (0..7) of a super block,
 * whose qs holds four 2-bit planes of 32 values per 128 elements. */
static int crumb(const uint8_t *qs, int s, int l) {
    return (qs[32 * (s / 4) + l] >> (2 * (s % 4))) & 3;
}

/* Block b (32 elements) of one row. */
static void decode32(gt_dtype type, const uint8_t *row, int64_t b, blk32 *o) {
    o->d1 = o->m = 0;
    const int s = (int)(b % 8); /* K-quants: elements 32s..32s+31 of the super block */
    switch (type) {
    case GT_Q8_0: {
        const gt_block_q8_0 *x = (const gt_block_q8_0 *)row + b;
        o->d = gt_f16_to_f32(x->d);
        for (int j = 0; j < 32; j++) o->code[j] = (uint8_t)(x->qs[j] + 128);
        break;
    }
    case GT_Q5_0: {
        const gt_block_q5_0 *x = (const gt_block_q5_0 *)row + b;
        o->d = gt_f16_to_f32(x->d);
        codes5(x->qs, x->qh, o->code); /* value code - 16 */
        break;
    }
    case GT_Q5_1: {
        const gt_block_q5_1 *x = (const gt_block_q5_1 *)row + b;
        o->d = gt_f16_to_f32(x->d);
        o->m = gt_f16_to_f32(x->m);
        codes5(x->qs, x->qh, o->code);
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
    case GT_Q4_K:
    case GT_Q5_K: {
        /* the same scales and nibbles; Q5_K adds bit s of qh[l] as bit 4 */
        const gt_block_q4_K *x4 = (const gt_block_q4_K *)row + b / 8;
        const gt_block_q5_K *x5 = (const gt_block_q5_K *)row + b / 8;
        const int five = type == GT_Q5_K;
        uint8_t sc, mn;
        gt_q4_k_scale_min(s, five ? x5->scales : x4->scales, &sc, &mn);
        o->d = gt_f16_to_f32(five ? x5->d : x4->d) * sc;
        o->m = -gt_f16_to_f32(five ? x5->dmin : x4->dmin) * mn;
        const uint8_t *q = (five ? x5->qs : x4->qs) + 32 * (s / 2);
        for (int l = 0; l < 32; l++) {
            int v = (s & 1) ? (q[l] >> 4) : (q[l] & 0xF);
            if (five) v |= ((x5->qh[l] >> s) & 1) << 4;
            o->code[l] = (uint8_t)v;
        }
        break;
    }
    case GT_Q3_K: {
        const gt_block_q3_K *x = (const gt_block_q3_K *)row + b / 8;
        float d = gt_f16_to_f32(x->d);
        for (int l = 0; l < 32; l++) /* value code - 4; hmask's bit s set means +4 */
            o->code[l] = (uint8_t)(crumb(x->qs, s, l) | (((x->hmask[l] >> s) & 1) << 2));
        o->d = d * (float)gt_q3_k_scale(x->scales, 2 * s);
        o->d1 = d * (float)gt_q3_k_scale(x->scales, 2 * s + 1);
        break;
    }
    case GT_Q2_K: { /* the codes; the panel keeps Q2_K's own scale bytes (pack_quant) */
        const gt_block_q2_K *x = (const gt_block_q2_K *)row + b / 8;
        o->d = 0;
        for (int l = 0; l < 32; l++) o->code[l] = (uint8_t)crumb(x->qs, s, l);
        break;
    }
    case GT_Q6_K: {
        const gt_block_q6_K *x = (const gt_block_q6_K *)row + b / 8;
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
    const gt_mm_qkind kind = gt__mm_qkind(type);
    const int nsc = gt__mmq_scales(kind), bits = gt__mmq_bits(kind), planes = gt__mmq_planes(kind);
    size_t bb = gt__mm_qblock_bytes(kind), rb = row_bytes(type, n_in);
    int64_t nb = n_in / 32;
    memset(dst + (size_t)p0 * (size_t)nb * bb, 0, (size_t)(p1 - p0) * (size_t)nb * bb);
    for (int64_t p = p0; p < p1; p++)
        for (int r = 0; r < 16; r++) {
            int64_t row = p * 16 + r;
            if (row >= n_out) break; /* zero scales: contributes nothing */
            const uint8_t *in = src + (size_t)row * rb;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *pan = dst + (size_t)p * (size_t)nb * bb;
                uint8_t *o = (uint8_t *)gt__mmq_blk(kind, pan, b);
                uint8_t *qs = o + 32 * nsc, *hb = qs + 64 * bits; /* [planes][64] */
                blk32 v;
                decode32(type, in, b, &v);
                if (kind == GT_MMQ_C2HM) { /* Q2_K's own d, dmin and 4-bit scale|min bytes */
                    const gt_block_q2_K *x = (const gt_block_q2_K *)in + b / 8;
                    uint8_t *sup = (uint8_t *)gt__mmq_c2_super(pan, b);
                    memcpy(sup + 2 * r, &x->d, 2);
                    memcpy(sup + 32 + 2 * r, &x->dmin, 2);
                    o[r] = x->scales[2 * (b % 8)];
                    o[16 + r] = x->scales[2 * (b % 8) + 1];
                } else {
                    gt_f16 *sc = (gt_f16 *)o; /* [nsc][16 rows] */
                    sc[r] = gt_f32_to_f16(v.d);
                    if (nsc == 2) sc[16 + r] = gt_f32_to_f16(gt__mmq_half(kind) ? v.d1 : v.m);
                }
                for (int c = 0; c < 8; c++)
                    for (int j = 0; j < 4; j++) {
                        const uint8_t code = v.code[4 * c + j];
                        if (bits == 8)
                            qs[64 * c + r * 4 + j] = code;
                        else if (bits == 4)
                            qs[64 * (c % 4) + r * 4 + j] |=
                                (uint8_t)((code & 0xF) << (4 * (c / 4)));
                        else
                            qs[64 * (c % 2) + r * 4 + j] |= (uint8_t)((code & 3) << (2 * (c / 2)));
                        for (int pl = 0; pl < planes; pl++)
                            hb[64 * pl + r * 4 + j] |= (uint8_t)(((code >> (bits + pl)) & 1) << c);
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
