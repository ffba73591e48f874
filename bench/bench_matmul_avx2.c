/* Microbenchmark of the AVX2 matrix-product kernels, called directly on
 * packed panels (one thread, whole panel range), beside the AVX-512
 * kernels and the scalar reference for scale.
 *
 * Decode: GB/s of GGUF weight bytes for n_tok = 1 on a 2048 x 8192 weight,
 * cycling through enough packed copies (>= 256 MiB) that every call streams
 * from memory. Prefill: GOP/s (2 * n_in * n_out * n_tok per second) for
 * n_tok = 512 (the reference on the first 256 output rows only: it is
 * slow). Quant timings include the activation quantization, as in the
 * dispatch. The host is shared and noisy: the kernels run interleaved
 * (avx2, avx512, ref, avx2, ...) over several rounds; best and median.
 *
 * usage: bench_matmul_avx2 [--rounds N] [--types q4_0,q8_0,f16] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_stats.h"
#include "bench/bench_weights.h"
#include "common/alloc.h"
#include "common/dtype.h"
#include "common/timer.h"
#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/cpu.h"

#define MAX_ROUNDS BENCH_MAX_ROUNDS
#define N_IN       2048
#define N_OUT      8192
#define PRE_TOK    512
#define REF_ROWS   256

enum { K_AVX2, K_AVX512, K_REF, N_K };
static const char *KNAME[N_K] = {"avx2", "avx512", "ref"};



typedef struct {
    gt_dtype t;
    gt_mm_qkind kind;
    const uint8_t *rows; /* GGUF [N_OUT][N_IN] */
    uint8_t **packed;    /* copies of the panels */
    int n_copies;
    const float *x; /* [PRE_TOK][N_IN] */
    float *y;       /* [PRE_TOK][N_OUT] */
    gt_mm_q8a *q;
    float *scratch, *tmp;
} bench;

/* One call of kernel k on copy c for n_tok tokens. */
static void call(const bench *b, int k, int c, int64_t n_tok) {
    int64_t np = gt__mm_n_panels(N_OUT), nb = N_IN / 32;
    const uint8_t *w = b->packed[c];
    if (k == K_REF) {
        int64_t r1 = n_tok > 1 ? REF_ROWS : N_OUT;
        gt__mm_ref_rows(b->t, b->rows, N_IN, N_OUT, b->x, b->y, n_tok, 0, r1, b->tmp);
    } else if (b->kind == GT_MMQ_NONE) {
        if (k == K_AVX2)
            gt__mm_pf_avx2(b->t, w, N_IN, N_OUT, b->x, b->y, n_tok, 0, np, b->scratch);
        else
            gt__mm_pf_avx512(b->t, w, N_IN, N_OUT, b->x, b->y, n_tok, 0, np, b->scratch);
    } else if (k == K_AVX2) {
        gt__mm_quantize_avx2(b->kind, b->x, N_IN, 0, n_tok, 0, nb, b->q);
        gt__mm_pq_avx2(b->kind, w, N_IN, N_OUT, b->q, b->y, n_tok, 0, np);
    } else {
        gt__mm_quantize_avx512(b->kind, b->x, N_IN, 0, n_tok, 0, nb, b->q);
        gt__mm_pq_avx512(b->kind, w, N_IN, N_OUT, b->q, b->y, n_tok, 0, np);
    }
}

/* Seconds per call over >= min_s, cycling through the copies. */
static double time_calls(const bench *b, int k, int64_t n_tok, int n_copies, double min_s) {
    call(b, k, 0, n_tok); /* warm up */
    long calls = 0;
    double t0 = gt_now_s(), el;
    do {
        for (int c = 0; c < n_copies; c++) call(b, k, c, n_tok);
        calls += n_copies;
        el = gt_now_s() - t0;
    } while (el < min_s);
    return el / (double)calls;
}


int main(int argc, char **argv) {
    int rounds = 3;
    const char *types_arg = "q4_0,q8_0,f16";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--types") && i + 1 < argc)
            types_arg = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--rounds N] [--types q4_0,q8_0,f16]\n", argv[0]);
            return 2;
        }
    }
    rounds = rounds < 1 ? 1 : rounds > MAX_ROUNDS ? MAX_ROUNDS : rounds;
    gt_cpu_features f = gt__cpu_detect();
    if (!(f.avx2 && f.fma && f.f16c)) {
        fprintf(stderr, "this CPU lacks AVX2/FMA/F16C\n");
        return 1;
    }
    int have512 = f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
    float *x = gt_alloc(sizeof(float) * PRE_TOK * N_IN),
          *y = gt_alloc(sizeof(float) * PRE_TOK * N_OUT);
    for (size_t i = 0; i < (size_t)PRE_TOK * N_IN; i++) x[i] = gt_bench_frand(-1, 1);
    gt_mm_q8a *q = gt_alloc(sizeof(gt_mm_q8a) * PRE_TOK * (N_IN / 32));
    size_t nsf = gt__mm_pf_scratch_floats(PRE_TOK), ns2 = gt__mm_pf_avx2_scratch_floats(PRE_TOK);
    float *scratch = gt_alloc(sizeof(float) * (nsf > ns2 ? nsf : ns2));
    float *tmp = gt_alloc(sizeof(float) * N_IN);
    printf(
        "one thread, kernels called directly; weight %d x %d (n_in x n_out); best / median of %d "
        "interleaved rounds\n",
        N_IN, N_OUT, rounds);
    printf("%-6s %-7s  %17s  %23s\n", "type", "kernel", "decode GB/s", "prefill GOP/s (512 tok)");

    char tbuf[128];
    snprintf(tbuf, sizeof tbuf, "%s", types_arg);
    for (char *tok = strtok(tbuf, ","); tok; tok = strtok(NULL, ",")) {
        gt_dtype t;
        if (!gt_dtype_parse(tok, &t) || (t != GT_F16 && t != GT_Q4_0 && t != GT_Q8_0)) {
            fprintf(stderr, "type %s: only q4_0, q8_0, f16\n", tok);
            return 2;
        }
        size_t gguf_bytes;
        uint8_t *rows = gt_bench_weights(t, N_IN, N_OUT, &gguf_bytes);
        int layout = t == GT_F16 ? GT_MM_PF : GT_MM_PQ;
        size_t pbytes = gt__mm_packed_bytes(t, layout, N_IN, N_OUT);
        int n_copies = (int)(((size_t)256 << 20) / pbytes) + 1;
        uint8_t *packed[64];
        n_copies = n_copies > 64 ? 64 : n_copies;
        for (int c = 0; c < n_copies; c++) {
            packed[c] = gt_alloc(pbytes);
            if (c == 0)
                gt__mm_pack(t, layout, N_IN, N_OUT, rows, packed[0], 0, gt__mm_n_panels(N_OUT));
            else
                memcpy(packed[c], packed[0], pbytes);
        }
        bench b = {t, gt__mm_qkind(t), rows, packed, n_copies, x, y, q, scratch, tmp};
        double dec[N_K][MAX_ROUNDS], pre[N_K][MAX_ROUNDS];
        double ops = 2.0 * N_IN * N_OUT * PRE_TOK, ref_ops = 2.0 * N_IN * REF_ROWS * PRE_TOK;
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < N_K; k++) {
                if (k == K_AVX512 && !have512) continue;
                /* The reference is compute bound (~1 GB/s): one copy, shorter. */
                int nc = k == K_REF ? 1 : n_copies;
                dec[k][r] =
                    (double)gguf_bytes / time_calls(&b, k, 1, nc, k == K_REF ? 0.1 : 0.25) * 1e-9;
                pre[k][r] =
                    (k == K_REF ? ref_ops : ops) / time_calls(&b, k, PRE_TOK, 1, 0.3) * 1e-9;
            }
        for (int k = 0; k < N_K; k++) {
            if (k == K_AVX512 && !have512) continue;
            printf("%-6s %-7s  %8.1f %8.1f  %11.1f %11.1f\n", gt_dtype_name(t), KNAME[k],
                   bench_best(dec[k], rounds), bench_median(dec[k], rounds), bench_best(pre[k], rounds),
                   bench_median(pre[k], rounds));
        }
        fflush(stdout);
        for (int c = 0; c < n_copies; c++) gt_free(packed[c]);
        gt_free(rows);
    }
    gt_free(x);
    gt_free(y);
    gt_free(q);
    gt_free(scratch);
    gt_free(tmp);
    return 0;
}
