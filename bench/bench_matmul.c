/* Microbenchmark of gt_matmul: decode GEMV bandwidth against a measured
 * STREAM-style read bandwidth, and prefill GEMM throughput.
 *
 * The host is shared and noisy, so every figure is taken in interleaved
 * rounds (bandwidth, GEMV 1 thread, bandwidth, GEMV 2 threads, ...) and
 * reported as best and median. Decode cycles through enough copies of the
 * weight (>= 512 MiB in all) that every call streams from memory; bytes are
 * the GGUF bytes of the weight (what a model file holds).
 *
 * usage: bench_matmul [--types f16,q8_0,...] [--rounds N] [--decode-only|--prefill-only]
 *                     [--ntok N (decode tokens, default 1)] [--isa NAME] [--cpu-time]
 *                     [--shapes NxM,... (n_in x n_out; default 2048x8192,8192x2048,2048x32000,
 *                      prefill without the last)]
 *                     [--half on|off (F16/BF16 weights in bf16 or fp32 products; default auto)]
 *                     [--paired N (decode: N back-to-back pairs of one read pass and one sweep
 *                      of GEMVs; the median and range of the pairs' ratios)]
 *
 * --paired is the steadier measure on a host whose bandwidth moves within
 * seconds: each GEMV sweep (~10-40 ms) is set against a read of the probe's
 * buffer taken just before it, not against the best of a round's passes. */
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_bw.h"
#include "bench/bench_stats.h"
#include "bench/bench_weights.h"
#include "common/alloc.h"
#include "common/dtype.h"
#include "common/timer.h"
#include "kernels/kernels.h"

#define MAX_ROUNDS BENCH_MAX_ROUNDS

/* Copies of one prepared weight so that decode streams from memory: enough
 * that even a small matrix's copies are many times the last-level cache. */
#define WSET_MAX 1024
typedef struct {
    gt_weight w[WSET_MAX];
    uint8_t *raw[WSET_MAX];
    int n;
    size_t gguf_bytes;
} wset;

static void wset_make(gt_kernels *k, gt_dtype t, int64_t n_in, int64_t n_out, size_t min_total,
                      wset *s) {
    size_t bytes;
    uint8_t *raw = gt_bench_weights(t, n_in, n_out, &bytes);
    s->gguf_bytes = bytes;
    s->n = (int)((min_total + bytes - 1) / bytes);
    if (s->n > WSET_MAX) s->n = WSET_MAX;
    if (s->n < 1) s->n = 1;
    for (int i = 0; i < s->n; i++) {
        if (gt_weight_init(k, t, n_in, n_out, raw, &s->w[i]) != GT_OK) {
            fprintf(stderr, "weight init failed for %s\n", gt_dtype_name(t));
            exit(1);
        }
        s->raw[i] = raw;
        if (!s->w[i].owned && i + 1 < s->n) { /* borrowed rows: the next copy needs its own */
            uint8_t *c = gt_alloc(bytes);
            memcpy(c, raw, bytes);
            raw = c;
        }
    }
    if (s->w[s->n - 1].owned) s->raw[s->n - 1] = raw; /* last raw unused by weights */
}

static void wset_free(wset *s) {
    uint8_t *last = NULL;
    for (int i = 0; i < s->n; i++) {
        gt_weight_free(&s->w[i]);
        if (s->raw[i] != last) gt_free(s->raw[i]);
        last = s->raw[i];
    }
}

/* --cpu-time: time with the calling thread's CPU clock instead of the wall
 * clock. On a shared host this removes the time the thread was descheduled
 * (meaningful for 1 thread only; the 2-thread figures are then left out). */
static int use_cpu_time = 0;
static double clock_s(void) {
    if (!use_cpu_time) return gt_now_s();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds per call, cycling through the copies for >= min_s. */
static double time_calls(gt_kernels *k, wset *s, const float *x, float *y, int64_t n_tok,
                         double min_s) {
    for (int i = 0; i < s->n; i++) /* warm up */
        if (gt_matmul(k, &s->w[i], x, y, n_tok) != GT_OK) {
            fprintf(stderr, "%s\n", gt_last_error());
            exit(1);
        }
    long calls = 0;
    double t0 = clock_s(), el;
    do {
        for (int i = 0; i < s->n; i++) gt_matmul(k, &s->w[i], x, y, n_tok);
        calls += s->n;
        el = clock_s() - t0;
    } while (el < min_s);
    return el / (double)calls;
}

/* --paired: n pairs (read pass, GEMV sweep) back to back; the ratios'
 * median, min and max in pct[3]. */
static void paired(gt_kernels *k, bw_job *bj, wset *s, const float *x, float *y, int64_t n_tok,
                   int n, double pct[3]) {
    double r[256];
    if (n > 256) n = 256;
    (void)time_calls(k, s, x, y, n_tok, 0); /* warm up */
    for (int i = 0; i < n; i++) {
        const double bw = bw_once(k, bj);
        const double g = (double)s->gguf_bytes / time_calls(k, s, x, y, n_tok, 0);
        r[i] = 100.0 * g / bw;
    }
    pct[0] = bench_median(r, n);
    pct[1] = pct[2] = r[0];
    for (int i = 1; i < n; i++) {
        pct[1] = r[i] < pct[1] ? r[i] : pct[1];
        pct[2] = r[i] > pct[2] ? r[i] : pct[2];
    }
}

int main(int argc, char **argv) {
    const char *types_arg = "f16,q8_0,q4_0,bf16,q4_k,q6_k,q4_1,q5_0";
    const char *isa = NULL, *half = NULL, *shapes_arg = "2048x8192,8192x2048,2048x32000";
    int rounds = 3, do_decode = 1, do_prefill = 1, shapes_given = 0, n_paired = 0;
    int64_t dec_tok = 1, pre_tok = 512;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--types") && i + 1 < argc) types_arg = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ntok") && i + 1 < argc) dec_tok = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) isa = argv[++i];
        else if (!strcmp(argv[i], "--half") && i + 1 < argc)
            half = argv[++i];
        else if (!strcmp(argv[i], "--decode-only")) do_prefill = 0;
        else if (!strcmp(argv[i], "--prefill-only")) do_decode = 0;
        else if (!strcmp(argv[i], "--cpu-time")) use_cpu_time = 1;
        else if (!strcmp(argv[i], "--paired") && i + 1 < argc)
            n_paired = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc)
            shapes_arg = argv[++i], shapes_given = 1;
        else {
            fprintf(
                stderr,
                "usage: %s [--types f16,q8_0,...] [--rounds N] [--ntok N] [--isa NAME] "
                "[--decode-only|--prefill-only] [--cpu-time] [--half on|off] [--shapes NxM,...] "
                "[--paired N]\n",
                argv[0]);
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    gt_kernels *ks[2];
    for (int n = 0; n < 2; n++) {
        ks[n] = gt_bench_kernels(n + 1, isa, half);
        /* The workspace reserved once, as the engine does: the largest shapes below. */
        gt_workspace_req wr = {.max_tokens = dec_tok > pre_tok ? dec_tok : pre_tok,
                               .max_n_in = 8192, .n_threads = n + 1};
        if (gt_kernels_reserve(ks[n], &wr) != GT_OK) {
            fprintf(stderr, "%s\n", gt_last_error());
            return 1;
        }
    }
    printf("isa %s\n", gt_kernels_isa(ks[0]));
    bw_job bj = {.bytes = (size_t)1 << 30};
    bj.buf = gt_alloc(bj.bytes);
    memset((void *)bj.buf, 1, bj.bytes);

    char tbuf[256];
    snprintf(tbuf, sizeof tbuf, "%s", types_arg);
    gt_dtype types[16];
    int n_types = 0;
    for (char *tok = strtok(tbuf, ","); tok && n_types < 16; tok = strtok(NULL, ",")) {
        if (!gt_dtype_parse(tok, &types[n_types])) {
            fprintf(stderr, "unknown type %s\n", tok);
            return 2;
        }
        n_types++;
    }
    int64_t shapes[8][2]; /* n_in, n_out */
    int n_shapes = 0;
    snprintf(tbuf, sizeof tbuf, "%s", shapes_arg);
    for (char *tok = strtok(tbuf, ","); tok && n_shapes < 8; tok = strtok(NULL, ",")) {
        long long a, b;
        if (sscanf(tok, "%lldx%lld", &a, &b) != 2 || a < 32 || b < 1 || a > 8192 || b > 65536) {
            fprintf(stderr, "bad shape %s (want N_INxN_OUT, n_in 32..8192, n_out 1..65536)\n", tok);
            return 2;
        }
        shapes[n_shapes][0] = a;
        shapes[n_shapes++][1] = b;
    }
    const int n_pre = shapes_given ? n_shapes : 2; /* by default prefill leaves out the LM head */
    float *x = gt_alloc(sizeof(float) * 512 * 8192), *y = gt_alloc(sizeof(float) * 512 * 65536);
    for (size_t i = 0; i < 512 * 8192; i++) x[i] = gt_bench_frand(-1, 1);

    if (do_decode) {
        printf("\ndecode n_tok=%lld: GEMV GB/s (GGUF bytes) vs read bandwidth measured in the same "
               "round; best / median of %d rounds\n", (long long)dec_tok, rounds);
        printf("%-6s %-12s %3s  %8s %8s  %8s %8s  %7s %7s%s\n", "type", "n_in x n_out", "thr",
               "gemvbest", "gemvmed", "bw best", "bw med", "%best", "%med",
               n_paired > 0 ? "  %pair med (min-max)" : "");
        for (int ti = 0; ti < n_types; ti++)
            for (int si = 0; si < n_shapes; si++) {
                wset s;
                wset_make(ks[0], types[ti], shapes[si][0], shapes[si][1], (size_t)320 << 20, &s);
                double g[2][MAX_ROUNDS], b[2][MAX_ROUNDS], pct[2][MAX_ROUNDS];
                for (int r = 0; r < rounds; r++)
                    for (int n = 0; n < 2; n++) {
                        b[n][r] = measure_bw(ks[n], &bj) * 1e-9;
                        g[n][r] = (double)s.gguf_bytes / time_calls(ks[n], &s, x, y, dec_tok, 0.25) * 1e-9;
                        pct[n][r] = 100.0 * g[n][r] / b[n][r];
                    }
                for (int n = 0; n < 2; n++) {
                    printf("%-6s %5lldx%-6lld %3d  %8.1f %8.1f  %8.1f %8.1f  %6.0f%% %6.0f%%",
                           gt_dtype_name(types[ti]), (long long)shapes[si][0],
                           (long long)shapes[si][1], n + 1, bench_best(g[n], rounds),
                           bench_median(g[n], rounds), bench_best(b[n], rounds),
                           bench_median(b[n], rounds), bench_best(pct[n], rounds),
                           bench_median(pct[n], rounds));
                    if (n_paired > 0) {
                        double pp[3];
                        paired(ks[n], &bj, &s, x, y, dec_tok, n_paired, pp);
                        printf("  %6.0f%% (%.0f-%.0f)", pp[0], pp[1], pp[2]);
                    }
                    printf("\n");
                }
                fflush(stdout);
                wset_free(&s);
            }
    }
    if (do_prefill) {
        printf("\nprefill n_tok=%lld: GOP/s (2*n_in*n_out*n_tok per second); best / median of %d rounds\n",
               (long long)pre_tok, rounds);
        printf("%-6s %-12s  %9s %9s  %9s %9s\n", "type", "n_in x n_out", "1T best", "1T med", "2T best", "2T med");
        for (int ti = 0; ti < n_types; ti++)
            for (int si = 0; si < n_pre; si++) {
                wset s;
                wset_make(ks[0], types[ti], shapes[si][0], shapes[si][1], 0, &s);
                double g[2][MAX_ROUNDS];
                double ops = 2.0 * (double)shapes[si][0] * (double)shapes[si][1] * (double)pre_tok;
                for (int r = 0; r < rounds; r++)
                    for (int n = 0; n < 2; n++)
                        g[n][r] = ops / time_calls(ks[n], &s, x, y, pre_tok, 0.3) * 1e-9;
                printf("%-6s %5lldx%-6lld  %9.1f %9.1f  %9.1f %9.1f\n", gt_dtype_name(types[ti]),
                       (long long)shapes[si][0], (long long)shapes[si][1], bench_best(g[0], rounds),
                       bench_median(g[0], rounds), bench_best(g[1], rounds), bench_median(g[1], rounds));
                fflush(stdout);
                wset_free(&s);
            }
    }
    gt_free(x);
    gt_free(y);
    gt_free((void *)bj.buf);
    gt_kernels_destroy(ks[0]);
    gt_kernels_destroy(ks[1]);
    return (int)(bj.sink & 0);
}
