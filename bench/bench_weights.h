/* Random inputs for the kernel benchmarks (bench_matmul, bench_matmul_avx2,
 * bench_gemv_cached; header-only, as each bench_*.c is its own program):
 * one xorshift stream, and GGUF rows of any weight type whose scales are
 * small normal values, so every kernel runs on sane data (their speed does
 * not depend on the values). gt_bench_weights' rows come from gt_alloc. */
#ifndef GANTRY_BENCH_WEIGHTS_H
#define GANTRY_BENCH_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "common/dtype.h"

static uint64_t gt__bench_rng = 88172645463325252ull;

static inline uint64_t gt_bench_rnd(void) {
    gt__bench_rng ^= gt__bench_rng << 13;
    gt__bench_rng ^= gt__bench_rng >> 7;
    gt__bench_rng ^= gt__bench_rng << 17;
    return gt__bench_rng;
}

static inline float gt_bench_frand(float lo, float hi) {
    return lo + (hi - lo) * (float)(gt_bench_rnd() >> 40) / 16777216.0f;
}

static inline void gt__bench_put_h(uint8_t *p, float f) {
    gt_f16 h = gt_f32_to_f16(f);
    memcpy(p, &h, 2);
}

static inline uint8_t *gt_bench_weights(gt_dtype t, int64_t n_in, int64_t n_out, size_t *bytes) {
    const gt_dtype_info *info = gt_dtype_get(t);
    size_t rb;
    gt_dtype_row_bytes(t, n_in, &rb);
    *bytes = rb * (size_t)n_out;
    uint8_t *w = gt_alloc(*bytes);
    for (size_t i = 0; i + 8 <= *bytes; i += 8) {
        uint64_t v = gt_bench_rnd();
        memcpy(w + i, &v, 8);
    }
    size_t nblk = *bytes / info->block_bytes;
    for (size_t i = 0; i < nblk; i++) {
        uint8_t *b = w + i * info->block_bytes;
        float s = gt_bench_frand(0.002f, 0.02f);
        switch (t) {
        case GT_F32: {
            float f = gt_bench_frand(-1, 1);
            memcpy(b, &f, 4);
            break;
        }
        case GT_F16: gt__bench_put_h(b, gt_bench_frand(-1, 1)); break;
        case GT_BF16: {
            gt_bf16 h = gt_f32_to_bf16(gt_bench_frand(-1, 1));
            memcpy(b, &h, 2);
            break;
        }
        case GT_Q4_0:
        case GT_Q5_0:
        case GT_Q8_0: gt__bench_put_h(b, s); break;
        case GT_Q4_1:
        case GT_Q5_1:
            gt__bench_put_h(b, s);
            gt__bench_put_h(b + 2, -s);
            break;
        case GT_Q4_K:
        case GT_Q5_K:
            gt__bench_put_h(b, s * 0.1f);
            gt__bench_put_h(b + 2, s * 0.1f);
            break;
        case GT_Q6_K: gt__bench_put_h(b + 208, s * 0.05f); break;
        default: break;
        }
    }
    return w;
}

#endif
