/* Read bandwidth: each thread sums its slice of a large buffer with wide
 * loads and several independent accumulators (so the loop is bound by
 * memory, not by the add latency). The AVX-512 loop is chosen at run time. */
#include "tools/bandwidth.h"

#include <immintrin.h>
#include <string.h>

#include "common/alloc.h"
#include "common/timer.h"

gt_status gt_bandwidth_init(gt_bandwidth *bw, size_t bytes) {
    bw->bytes = bytes / 256 * 256;
    bw->buf = gt_alloc(bw->bytes);
    if (!bw->buf) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu bytes for the bandwidth test", bytes);
    memset(bw->buf, 1, bw->bytes);
    return GT_OK;
}

void gt_bandwidth_free(gt_bandwidth *bw) {
    gt_free(bw->buf);
    bw->buf = NULL;
}

typedef struct {
    const uint8_t *buf;
    size_t bytes;
    volatile uint64_t sink[64];
} read_job;

__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void *)(p + i)));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void *)(p + i + 64)));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void *)(p + i + 128)));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void *)(p + i + 192)));
    }
    a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
    return (uint64_t)_mm512_reduce_add_epi64(a0);
}

static uint64_t read_generic(const uint8_t *p, size_t n) {
    uint64_t a[8] = {0};
    for (size_t i = 0; i < n; i += 64) {
        const uint64_t *q = (const uint64_t *)(const void *)(p + i);
        for (int j = 0; j < 8; j++) a[j] += q[j];
    }
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

static void read_task(void *arg, int ith, int nth) {
    read_job *j = arg;
    long b, e;
    gt_pool_split((long)(j->bytes / 256), 1, ith, nth, &b, &e);
    const uint8_t *p = j->buf + (size_t)b * 256;
    size_t n = (size_t)(e - b) * 256;
    uint64_t s = __builtin_cpu_supports("avx512f") ? read_avx512(p, n) : read_generic(p, n);
    j->sink[ith & 63] = s;
}

double gt_bandwidth_read(gt_bandwidth *bw, gt_pool *pool, int passes) {
    read_job j = {.buf = bw->buf, .bytes = bw->bytes};
    double best = 0;
    for (int p = 0; p < passes; p++) {
        uint64_t t0 = gt_now_ns();
        gt_pool_run(pool, read_task, &j);
        double s = (double)(gt_now_ns() - t0) * 1e-9;
        double rate = (double)bw->bytes / s;
        if (rate > best) best = rate;
    }
    return best;
}
