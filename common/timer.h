/* Monotonic clock for benchmarks and watchdogs. */
#ifndef GT_TIMER_H
#define GT_TIMER_H

#include <stdint.h>
#include <time.h>

static inline uint64_t gt_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double gt_now_s(void) { return (double)gt_now_ns() * 1e-9; }

#endif
