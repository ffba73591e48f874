/* The read rate one core gets from a layer's KV cache in the order decode
 * attention walks it (one kv head after another, K then V), against the
 * same bytes read front to back: what each cache layout allows before any
 * arithmetic. A plain sum of 64-byte loads, one thread, cycling through
 * 256 copies of one layer (512 positions by default, 8 kv heads of 64 f16
 * elements, blocks of 16) so that every read comes from memory.
 *
 *   sequential  the whole K, then the whole V
 *   parts       each head's part of every block (the heads' parts side by
 *               side in a block: 2 KiB parts 16 KiB apart)
 *   parts+pf    the same with a software prefetch of the part 8 ahead,
 *               one line per line read
 *   pools       each head's parts as one run (one pool per kv head, as
 *               worker/kv_cache.c lays the cache out)
 *
 * usage: bench_kv_read [--pos N] [--block N] [--passes N] */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/timer.h"

#define N_KV_HEAD 8
#define HEAD_DIM  64
#define COPIES    256

static __m512i g_acc;

__attribute__((target("avx512f"))) static void read_run(const char *p, size_t n, const char *pf) {
    __m512i a = g_acc;
    for (size_t o = 0; o < n; o += 64) {
        if (pf) __builtin_prefetch(pf + o, 0, 2);
        a = _mm512_add_epi64(a, _mm512_load_si512(p + o));
    }
    g_acc = a;
}

int main(int argc, char **argv) {
    int pos = 512, block = 16, passes = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pos") && i + 1 < argc)
            pos = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--block") && i + 1 < argc)
            block = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc)
            passes = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--pos N] [--block N] [--passes N]\n", argv[0]);
            return 2;
        }
    }
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "bench_kv_read needs AVX-512\n");
        return 0;
    }
    if (pos < block || block < 1 || pos % block || passes < 1 ||
        ((size_t)block * HEAD_DIM * 2) % 64) {
        fprintf(stderr,
                "%d positions in blocks of %d: need a whole number of blocks of whole "
                "lines\n",
                pos, block);
        return 2;
    }
    const size_t part = (size_t)block * HEAD_DIM * 2, nb = (size_t)pos / (size_t)block;
    const size_t layer = part * N_KV_HEAD * nb, total = 2 * layer * COPIES;
    char *buf = gt_alloc(total);
    if (!buf) {
        fprintf(stderr, "out of memory for %zu bytes\n", total);
        return 1;
    }
    memset(buf, 1, total);
    /* the part addresses of the walk of one copy, for the prefetch's look-ahead */
    const size_t n_parts = 2 * N_KV_HEAD * nb;
    const char **run = malloc(sizeof *run * n_parts * COPIES);
    printf("one layer: %d positions, %d kv heads of %d f16, blocks of %d (parts of %zu bytes); "
           "%d copies; GB/s per pass\n",
           pos, N_KV_HEAD, HEAD_DIM, block, part, COPIES);
    const char *names[4] = {"sequential", "parts", "parts+pf", "pools"};
    for (int mode = 0; mode < 4; mode++) {
        size_t n = 0;
        for (int c = 0; c < COPIES; c++) {
            const char *k = buf + (size_t)c * 2 * layer, *v = k + layer;
            for (int g = 0; g < N_KV_HEAD; g++)
                for (int side = 0; side < 2; side++)
                    for (size_t b = 0; b < nb; b++) {
                        const char *base = side ? v : k;
                        run[n++] = mode == 3 ? base + ((size_t)g * nb + b) * part
                                             : base + (b * N_KV_HEAD + (size_t)g) * part;
                    }
        }
        printf("%-11s", names[mode]);
        for (int p = 0; p < passes; p++) {
            const double t0 = gt_now_s();
            if (mode == 0)
                read_run(buf, total, NULL);
            else
                for (size_t i = 0; i < n; i++)
                    read_run(run[i], part, mode == 2 && i + 8 < n ? run[i + 8] : NULL);
            printf(" %6.1f", (double)total / (gt_now_s() - t0) * 1e-9);
        }
        printf("\n");
    }
    long long s[8];
    memcpy(s, &g_acc, sizeof s);
    free(run);
    gt_free(buf);
    return s[0] == 12345;
}
