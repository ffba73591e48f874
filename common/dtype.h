/* Element types and quantized block layouts, as GGUF/ggml define them.
 *
 * This is the shared vocabulary between model/ (which sizes and slices
 * tensors) and kernels/ (which computes with them); it lives in common/ so
 * that neither depends on the other. The numeric values are the GGUF tensor
 * type ids and must never change. Block structs match the on-disk bytes
 * exactly (checked by static asserts). */
#ifndef GT_DTYPE_H
#define GT_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum gt_dtype {
    GT_F32 = 0,
    GT_F16 = 1,
    GT_Q4_0 = 2,
    GT_Q4_1 = 3,
    GT_Q5_0 = 6,
    GT_Q5_1 = 7,
    GT_Q8_0 = 8,
    GT_Q8_1 = 9,
    GT_Q2_K = 10,
    GT_Q3_K = 11,
    GT_Q4_K = 12,
    GT_Q5_K = 13,
    GT_Q6_K = 14,
    GT_Q8_K = 15,
    GT_I8 = 24,
    GT_I16 = 25,
    GT_I32 = 26,
    GT_I64 = 27,
    GT_F64 = 28,
    GT_BF16 = 30,
    GT_DTYPE_MAX = 40, /* ids >= this are unknown */
} gt_dtype;

typedef struct gt_dtype_info {
    const char *name;   /* "Q4_K" */
    int block_elems;    /* elements per block (1 for plain types) */
    size_t block_bytes; /* bytes per block */
    bool quantized;
    bool has_codec;     /* gt_quantize_row / gt_dequantize_row support it */
} gt_dtype_info;

/* NULL for an id Gantry does not know the layout of. */
const gt_dtype_info *gt_dtype_get(uint32_t type);
const char *gt_dtype_name(uint32_t type); /* "type 17" style fallback, static */
/* Parses "q4_k", "Q4_K", "f16"...; false when unknown. */
bool gt_dtype_parse(const char *name, gt_dtype *out);
/* Bytes for n elements (n a multiple of block_elems); false on overflow or
 * a partial block. */
bool gt_dtype_row_bytes(gt_dtype type, int64_t n, size_t *out);

#define GT_QK4_0 32
#define GT_QK4_1 32
#define GT_QK5_0 32
#define GT_QK5_1 32
#define GT_QK8_0 32
#define GT_QK8_1 32
#define GT_QK_K 256
#define GT_K_SCALE_SIZE 12

typedef uint16_t gt_f16;  /* IEEE half, raw bits */
typedef uint16_t gt_bf16; /* bfloat16, raw bits */

typedef struct { gt_f16 d; uint8_t qs[GT_QK4_0 / 2]; } gt_block_q4_0;
typedef struct { gt_f16 d, m; uint8_t qs[GT_QK4_1 / 2]; } gt_block_q4_1;
typedef struct { gt_f16 d; uint8_t qh[4]; uint8_t qs[GT_QK5_0 / 2]; } gt_block_q5_0;
typedef struct { gt_f16 d, m; uint8_t qh[4]; uint8_t qs[GT_QK5_1 / 2]; } gt_block_q5_1;
typedef struct { gt_f16 d; int8_t qs[GT_QK8_0]; } gt_block_q8_0;
typedef struct { gt_f16 d, s; int8_t qs[GT_QK8_1]; } gt_block_q8_1;
typedef struct { uint8_t scales[GT_QK_K / 16]; uint8_t qs[GT_QK_K / 4]; gt_f16 d, dmin; } gt_block_q2_K;
typedef struct { uint8_t hmask[GT_QK_K / 8]; uint8_t qs[GT_QK_K / 4]; uint8_t scales[12]; gt_f16 d; } gt_block_q3_K;
typedef struct { gt_f16 d, dmin; uint8_t scales[GT_K_SCALE_SIZE]; uint8_t qs[GT_QK_K / 2]; } gt_block_q4_K;
typedef struct { gt_f16 d, dmin; uint8_t scales[GT_K_SCALE_SIZE]; uint8_t qh[GT_QK_K / 8]; uint8_t qs[GT_QK_K / 2]; } gt_block_q5_K;
typedef struct { uint8_t ql[GT_QK_K / 2]; uint8_t qh[GT_QK_K / 4]; int8_t scales[GT_QK_K / 16]; gt_f16 d; } gt_block_q6_K;
typedef struct { float d; int8_t qs[GT_QK_K]; int16_t bsums[GT_QK_K / 16]; } gt_block_q8_K;

_Static_assert(sizeof(gt_block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(gt_block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(gt_block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(gt_block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(gt_block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(gt_block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(gt_block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(gt_block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(gt_block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(gt_block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(gt_block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(gt_block_q8_K) == 292, "q8_K layout");

/* Portable scalar conversions (round-to-nearest-even). */
static inline float gt_f16_to_f32(gt_f16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                mant <<= 1;
                e++;
            } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline gt_f16 gt_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (gt_f16)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (gt_f16)(sign | 0x7c00); /* overflow to inf */
    if (absx < 0x38800000u) { /* subnormal or zero in half */
        if (absx < 0x33000000u) return (gt_f16)sign;
        /* The 24-bit significand shifted into half-subnormal units, RNE. */
        uint32_t e = absx >> 23, m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;
        uint32_t hm = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1))) hm++;
        return (gt_f16)(sign | hm);
    }
    uint32_t r = absx + 0xc8000fffu + ((absx >> 13) & 1); /* rebias exponent, RNE */
    return (gt_f16)(sign | (r >> 13));
}

static inline float gt_bf16_to_f32(gt_bf16 h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline gt_bf16 gt_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (gt_bf16)((x >> 16) | 64); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1);
    return (gt_bf16)(x >> 16);
}

#endif
