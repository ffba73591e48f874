/* BF16 dot-product matrix products: the scalar rounding, the load-time
 * repacking into pair panels and the scalar reference of the AVX-512 BF16
 * kernels (kernels/cpu/matmul_avx512_bf16.c).
 *
 * Design: `vdpbf16ps` multiplies 16 pairs of bf16 values and adds both
 * products to an fp32 accumulator: acc += w[2i+1]*x[2i+1], then acc +=
 * w[2i]*x[2i], each add rounded to nearest even (the product of two bf16
 * values is exact in fp32), with denormal inputs read as zero and denormal
 * results flushed. The weights (F16 or BF16) are stored as bf16 pairs
 * [panel][k/2][16 rows][2] so that one 512-bit load holds two k of 16 rows;
 * F16 weights lose 3 mantissa bits on the way (10 -> 7). Activations are
 * rounded to bf16 (nearest even) per product. The reference below does the
 * same arithmetic in the same order (an add chain over k pairs within each
 * GT_MM_PF_KC block, from zero; the blocks' sums added to y in order), so
 * the kernels match it bit for bit on any row count. Baseline code. */
#include <pthread.h>
#include <string.h>

#include "kernels/cpu/matmul_internal.h"

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Denormals become signed zero, as the hardware's DAZ/FTZ treats them. */
static float flush(float f) {
    uint32_t u = f32_bits(f);
    return (u & 0x7f800000u) == 0 ? bits_f32(u & 0x80000000u) : f;
}

static uint16_t weight_bf16(gt_dtype type, const uint8_t *row, int64_t k) {
    uint16_t h;
    memcpy(&h, row + 2 * k, 2);
    return type == GT_BF16 ? h : gt_f32_to_bf16(gt_f16_to_f32(h));
}

bool gt__mm_pb_ok(gt_dtype type, int64_t n_in) {
    return (type == GT_F16 || type == GT_BF16) && n_in % 2 == 0;
}

/* weight_bf16 of every F16 value, built once: packing a 1B model's F16
 * weights converted each one through two portable scalar conversions and
 * took about 1.4 s of CPU at load. */
static uint16_t f16_to_bf16[1 << 16];
static pthread_once_t f16_to_bf16_once = PTHREAD_ONCE_INIT;

static void f16_to_bf16_init(void) {
    for (uint32_t h = 0; h < 1u << 16; h++)
        f16_to_bf16[h] = gt_f32_to_bf16(gt_f16_to_f32((gt_f16)h));
}

void gt__mm_pack_pb(gt_dtype type, int64_t n_in, int64_t n_out, const void *src, void *dst,
                    int64_t p0, int64_t p1) {
    const size_t rb = (size_t)n_in * 2;
    if (type == GT_F16) pthread_once(&f16_to_bf16_once, f16_to_bf16_init);
    for (int64_t p = p0; p < p1; p++) {
        uint16_t *o = (uint16_t *)dst + (size_t)p * (size_t)n_in * 16; /* [n_in/2][16][2] */
        const uint8_t *in[16];
        for (int r = 0; r < 16; r++)
            in[r] = p * 16 + r < n_out ? (const uint8_t *)src + (size_t)(p * 16 + r) * rb : NULL;
        for (int64_t k = 0; k < n_in; k += 2, o += 32) /* written in order, 16 rows at a time */
            for (int r = 0; r < 16; r++)
                for (int j = 0; j < 2; j++) {
                    uint16_t h = 0; /* rows past n_out: zero, in both types */
                    if (in[r]) memcpy(&h, in[r] + 2 * (k + j), 2);
                    o[r * 2 + j] = type == GT_BF16 ? h : f16_to_bf16[h];
                }
    }
}

void gt__mm_pb_ref_rows(gt_dtype type, const void *w, int64_t n_in, int64_t n_out,
                        const float *x, float *y, int64_t n_tok, int64_t r0, int64_t r1) {
    const size_t rb = (size_t)n_in * 2;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * rb;
        for (int64_t t = 0; t < n_tok; t++) {
            const float *xt = x + t * n_in; /* [n_in] */
            float sum = 0;
            for (int64_t k0 = 0; k0 < n_in; k0 += GT_MM_PF_KC) {
                const int64_t k1 = n_in - k0 < GT_MM_PF_KC ? n_in : k0 + GT_MM_PF_KC;
                float acc = 0;
                for (int64_t k = k0; k < k1; k += 2)
                    for (int j = 1; j >= 0; j--) { /* the odd element first */
                        float a = flush(gt_bf16_to_f32(weight_bf16(type, wr, k + j)));
                        float b = flush(gt_bf16_to_f32(gt_f32_to_bf16(xt[k + j])));
                        acc = flush(acc + flush(a * b)); /* a * b is exact */
                    }
                sum = k0 == 0 ? acc : sum + acc;
            }
            y[t * n_out + r] = sum;
        }
    }
}
