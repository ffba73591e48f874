/* What the kernel benchmarks (bench_matmul, bench_attention; header-only,
 * as each bench_*.c is its own program) share: their kernels, and the
 * read-bandwidth probe, where each thread of the kernels' pool sums its
 * slice of a buffer with 512-bit loads (64-bit scalar loads without
 * AVX-512); the best of three passes. */
#ifndef GANTRY_BENCH_BW_H
#define GANTRY_BENCH_BW_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/timer.h"
#include "kernels/kernels.h"

typedef struct {
    const uint8_t *buf;
    size_t bytes;
    volatile long long sink;
} bw_job;

__attribute__((target("avx512f"))) static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    size_t per = j->bytes / (size_t)nth / 256 * 256;
    const uint8_t *p = j->buf + per * (size_t)ith, *e = p + per;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (; p < e; p += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(p));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + 64));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + 128));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + 192));
    }
    a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
    j->sink += _mm512_reduce_add_epi64(a0);
}

static void bw_read_scalar(void *arg, int ith, int nth) {
    bw_job *j = arg;
    size_t per = j->bytes / (size_t)nth / 8 * 8;
    const uint64_t *p = (const uint64_t *)(j->buf + per * (size_t)ith);
    long long s = 0;
    for (size_t i = 0; i < per / 8; i++) s += (long long)p[i];
    j->sink += s;
}

/* One pass over j's buffer: bytes per second. */
static inline double bw_once(gt_kernels *k, bw_job *j) {
    gt_pool_fn fn = __builtin_cpu_supports("avx512f") ? bw_read : bw_read_scalar;
    double t0 = gt_now_s();
    gt_pool_run(gt_kernels_pool(k), fn, j);
    return (double)j->bytes / (gt_now_s() - t0);
}

static double measure_bw(gt_kernels *k, bw_job *j) {
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double s = bw_once(k, j);
        if (s > best) best = s;
    }
    return best;
}

/* CPU kernels of n_threads threads, the given isa (NULL: the best) and
 * products of F16/BF16 weights (half: "on", "off", NULL: auto), or exit
 * with the reason. */
static inline gt_kernels *gt_bench_kernels(int n_threads, const char *isa, const char *half) {
    gt_kernels_config cfg = GT_KERNELS_CONFIG_INIT;
    cfg.n_threads = n_threads;
    cfg.isa = isa;
    cfg.bf16 = half;
    gt_kernels *k = NULL;
    if (gt_kernels_create(&cfg, &k) != GT_OK) {
        fprintf(stderr, "cannot create kernels (isa %s): %s\n", isa ? isa : "auto",
                gt_last_error());
        exit(1);
    }
    return k;
}

#endif
