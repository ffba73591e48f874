/* Best and median over benchmark rounds, shared by the bench programs
 * (rounds are interleaved on this noisy host and both figures reported). */
#ifndef GT_BENCH_STATS_H
#define GT_BENCH_STATS_H

#include <stdlib.h>
#include <string.h>

#define BENCH_MAX_ROUNDS 16

static int bench_cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* n <= BENCH_MAX_ROUNDS. */
static inline double bench_median(const double *v, int n) {
    double s[BENCH_MAX_ROUNDS];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), bench_cmp_d);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static inline double bench_best(const double *v, int n) {
    double b = 0;
    for (int i = 0; i < n; i++) b = v[i] > b ? v[i] : b;
    return b;
}

#endif
