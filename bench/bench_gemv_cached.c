/* The compute ceiling of the decode GEMV: one thread multiplies weights that
 * stay in L2, so no memory traffic limits it, timed with the thread's CPU
 * clock, so the time other processes take on a shared host does not count.
 *
 * The figure is GGUF bytes per CPU second. Set beside the read bandwidth of
 * one core (bench_matmul, `gantry bench`), it says whether a type's decode
 * kernel can keep up with memory: a kernel whose ceiling is not well above
 * the bandwidth cannot overlap its arithmetic with the loads and decodes
 * below the roofline even with no fork-join at all. Rounds alternate the
 * types so that a change of clock or load hits all of them alike.
 *
 * usage: bench_gemv_cached [--types q4_0,q8_0,f16] [--rounds N] [--ntok N]
 *                          [--n-in N] [--n-out N] [--isa NAME] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_stats.h"
#include "bench/bench_weights.h"
#include "common/alloc.h"
#include "common/dtype.h"
#include "kernels/kernels.h"


static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


int main(int argc, char **argv) {
    const char *types_arg = "q4_0,q8_0,f16";
    const char *isa = NULL;
    int rounds = 5;
    int64_t n_tok = 1, n_in = 2048, n_out = 256;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc)
            types_arg = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ntok") && i + 1 < argc)
            n_tok = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--n-in") && i + 1 < argc)
            n_in = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--n-out") && i + 1 < argc)
            n_out = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            isa = argv[++i];
        else {
            fprintf(stderr,
                    "usage: %s [--types q4_0,q8_0,f16] [--rounds N] [--ntok N] [--n-in N] "
                    "[--n-out N] [--isa NAME]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    if (rounds > BENCH_MAX_ROUNDS) rounds = BENCH_MAX_ROUNDS;
    if (n_tok < 1 || n_tok > 64 || n_in < 256 || n_in % 256 || n_out < 16 || n_out > 65536) {
        fprintf(stderr,
                "bench_gemv_cached: --ntok must be 1..64, --n-in a multiple of 256 and "
                "--n-out 16..65536 (got %lld, %lld, %lld)\n",
                (long long)n_tok, (long long)n_in, (long long)n_out);
        return 2;
    }
    gt_kernels *k;
    gt_kernels_config cfg = GT_KERNELS_CONFIG_INIT;
    cfg.n_threads = 1;
    cfg.isa = isa;
    if (gt_kernels_create(&cfg, &k) != GT_OK) {
        fprintf(stderr, "cannot create kernels (isa %s)\n", isa ? isa : "auto");
        return 1;
    }
    gt_workspace_req wr = {.max_tokens = n_tok, .max_n_in = n_in, .n_threads = 1};
    if (gt_kernels_reserve(k, &wr) != GT_OK) {
        fprintf(stderr, "%s\n", gt_last_error());
        return 1;
    }
    char tbuf[256];
    snprintf(tbuf, sizeof tbuf, "%s", types_arg);
    gt_dtype types[8];
    gt_weight w[8];
    uint8_t *raw[8];
    size_t bytes[8];
    int n_types = 0;
    for (char *tok = strtok(tbuf, ","); tok && n_types < 8; tok = strtok(NULL, ",")) {
        if (!gt_dtype_parse(tok, &types[n_types])) {
            fprintf(stderr, "unknown type %s\n", tok);
            return 2;
        }
        raw[n_types] = gt_bench_weights(types[n_types], n_in, n_out, &bytes[n_types]);
        if (gt_weight_init(k, types[n_types], n_in, n_out, raw[n_types], &w[n_types]) != GT_OK) {
            fprintf(stderr, "%s\n", gt_last_error());
            return 1;
        }
        n_types++;
    }
    float *x = gt_alloc(sizeof(float) * (size_t)(n_tok * n_in));
    float *y = gt_alloc(sizeof(float) * (size_t)(n_tok * n_out));
    for (int64_t i = 0; i < n_tok * n_in; i++)
        x[i] = (float)((int64_t)(gt_bench_rnd() >> 40) - (1 << 23)) / (1 << 23);

    double g[8][BENCH_MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int ti = 0; ti < n_types; ti++) {
            for (int i = 0; i < 20; i++) gt_matmul(k, &w[ti], x, y, n_tok); /* into L2 */
            long calls = 0;
            double t0 = cpu_s(), el;
            do {
                for (int i = 0; i < 50; i++) gt_matmul(k, &w[ti], x, y, n_tok);
                calls += 50;
                el = cpu_s() - t0;
            } while (el < 0.3);
            g[ti][r] = (double)bytes[ti] * (double)calls / el * 1e-9;
        }
    printf("isa %s, 1 thread, CPU time, weights in cache: %lld x %lld, n_tok %lld, %d rounds\n",
           gt_kernels_isa(k), (long long)n_in, (long long)n_out, (long long)n_tok, rounds);
    printf("%-6s %10s %10s %10s\n", "type", "KiB", "GB/s best", "GB/s med");
    for (int ti = 0; ti < n_types; ti++)
        printf("%-6s %10zu %10.1f %10.1f\n", gt_dtype_name(types[ti]), bytes[ti] >> 10,
               bench_best(g[ti], rounds), bench_median(g[ti], rounds));
    for (int ti = 0; ti < n_types; ti++) {
        gt_weight_free(&w[ti]);
        gt_free(raw[ti]);
    }
    gt_free(x);
    gt_free(y);
    gt_kernels_destroy(k);
    return 0;
}
