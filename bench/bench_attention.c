/* Microbenchmark of decode attention (gt_attention, one query token): the
 * rate at which it reads the K and V rows of a paged f16 cache, against the
 * read bandwidth measured in the same round.
 *
 * A decode step reaches each layer's cache cold (the layer's weights have
 * streamed through the caches since), so the calls cycle through enough
 * copies of the cache (>= 256 MiB of K and V in all) that every call reads
 * from memory. The copies lie in two large huge-page allocations (K, V),
 * blocks in position order, each kv head's parts one run, as a layer's
 * per-head pools in the engine (--side: the heads' parts of a block side by
 * side, the layout before them).
 *
 * --kv bf16 times a BF16 cache (pairs for vdpbf16ps; the same bytes).
 *
 * --ntok N times N query tokens at the positions up to pos (a prefill's
 * causal block; the bytes are still those of the keys up to pos, read once).
 *
 * usage: bench_attention [--pos 512,2048] [--ntok 1] [--rounds N] [--isa NAME]
 *                        [--hot] [--side] [--heads 32] [--kv-heads 8] [--head-dim 64]
 *                        [--block 16] [--kv f16|bf16] */
#include <math.h>
#include <stdio.h>
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

typedef struct {
    int n_head, n_kv_head, head_dim, block_size;
    int64_t pos;   /* the last query's position: keys 0..pos are read */
    int64_t n_tok; /* query tokens, at positions pos - n_tok + 1 .. pos */
    int n_blocks;  /* per copy */
    int n_copies;
    int hot;         /* one copy, read from the caches: the kernel's compute ceiling */
    int side;        /* the kv heads' parts side by side in a block, not the engine's pools */
    gt_dtype kv;     /* GT_F16 or GT_BF16 */
    size_t head_stride;
    size_t kv_bytes; /* K and V bytes one call reads */
    uint8_t *k, *v;
    const void **kb, **vb; /* [n_copies * n_blocks] */
    float *q, *out;
    int32_t *qpos;
} cache_set;

static void cache_make(cache_set *s) {
    const size_t block_bytes = (size_t)s->block_size * s->n_kv_head * s->head_dim * 2;
    s->n_blocks = (int)((s->pos + s->block_size) / s->block_size);
    s->kv_bytes = 2 * (size_t)(s->pos + 1) * s->n_kv_head * s->head_dim * 2;
    const size_t copy_bytes = 2 * block_bytes * (size_t)s->n_blocks;
    s->n_copies = s->hot ? 1 : (int)(((size_t)256 << 20) / copy_bytes + 1);
    const size_t n = block_bytes * (size_t)s->n_blocks * (size_t)s->n_copies;
    s->k = gt_alloc(n);
    s->v = gt_alloc(n);
    s->kb = malloc(sizeof *s->kb * (size_t)s->n_blocks * (size_t)s->n_copies);
    s->vb = malloc(sizeof *s->vb * (size_t)s->n_blocks * (size_t)s->n_copies);
    s->q = gt_alloc(sizeof(float) * (size_t)(s->n_tok * s->n_head * s->head_dim));
    s->out = gt_alloc(sizeof(float) * (size_t)(s->n_tok * s->n_head * s->head_dim));
    s->qpos = malloc(sizeof(int32_t) * (size_t)s->n_tok);
    if (!s->k || !s->v || !s->kb || !s->vb || !s->q || !s->out || !s->qpos) {
        fprintf(stderr, "out of memory for %zu bytes of KV copies\n", 2 * n);
        exit(1);
    }
    uint16_t *hk = (uint16_t *)s->k,
             *hv = (uint16_t *)s->v; /* any values: both layouts hold the same bytes */
    for (size_t i = 0; i < n / 2; i++) {
        const float x = gt_bench_frand(-1, 1), y = gt_bench_frand(-1, 1);
        hk[i] = s->kv == GT_BF16 ? gt_f32_to_bf16(x) : gt_f32_to_f16(x);
        hv[i] = s->kv == GT_BF16 ? gt_f32_to_bf16(y) : gt_f32_to_f16(y);
    }
    /* Each copy is one layer's cache: by default kv head g's parts of all
     * its blocks one run (the engine's per-head pools, gt_kv_cache), with
     * --side the heads' parts of a block side by side. */
    const size_t part = block_bytes / (size_t)s->n_kv_head;
    s->head_stride = s->side ? 0 : part * (size_t)s->n_blocks;
    for (int64_t b = 0; b < (int64_t)s->n_blocks * s->n_copies; b++) {
        const int64_t c = b / s->n_blocks, i = b % s->n_blocks;
        const size_t off = s->side ? (size_t)b * block_bytes
                                   : (size_t)c * block_bytes * s->n_blocks + (size_t)i * part;
        s->kb[b] = s->k + off;
        s->vb[b] = s->v + off;
    }
    for (int64_t i = 0; i < s->n_tok * s->n_head * s->head_dim; i++)
        s->q[i] = gt_bench_frand(-1, 1);
    for (int64_t t = 0; t < s->n_tok; t++) s->qpos[t] = (int32_t)(s->pos - s->n_tok + 1 + t);
}

static void cache_free(cache_set *s) {
    gt_free(s->k);
    gt_free(s->v);
    free(s->kb);
    free(s->vb);
    gt_free(s->q);
    gt_free(s->out);
    free(s->qpos);
}

/* Seconds per call, cycling through the copies for >= min_s. */
static double time_calls(gt_kernels *k, const cache_set *s, double min_s) {
    gt_attn_args a = {.q = s->q,
                      .out = s->out,
                      .pos = s->qpos,
                      .n_tok = s->n_tok,
                      .n_head = s->n_head,
                      .n_kv_head = s->n_kv_head,
                      .head_dim = s->head_dim,
                      .block_size = s->block_size,
                      .head_stride = s->head_stride,
                      .kv_type = s->kv,
                      .scale = 1.0f / sqrtf((float)s->head_dim)};
    long calls = 0;
    double t0 = gt_now_s(), el;
    do {
        for (int c = 0; c < s->n_copies; c++) {
            a.k_blocks = s->kb + (size_t)c * s->n_blocks;
            a.v_blocks = s->vb + (size_t)c * s->n_blocks;
            if (gt_attention(k, &a) != GT_OK) {
                fprintf(stderr, "%s\n", gt_last_error());
                exit(1);
            }
        }
        calls += s->n_copies;
        el = gt_now_s() - t0;
    } while (el < min_s);
    return el / (double)calls;
}

static int parse_list(const char *arg, int64_t *v, int max) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    int n = 0;
    for (char *t = strtok(buf, ","); t && n < max; t = strtok(NULL, ",")) v[n++] = atoll(t);
    return n;
}

int main(int argc, char **argv) {
    const char *isa = NULL;
    int rounds = 3, hot = 0, side = 0, n_head = 32, n_kv_head = 8, head_dim = 64, block = 16;
    gt_dtype kv = GT_F16;
    int64_t pos[8] = {512, 2048}, n_tok = 1;
    int n_pos = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pos") && i + 1 < argc)
            n_pos = parse_list(argv[++i], pos, 8);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ntok") && i + 1 < argc)
            n_tok = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc)
            isa = argv[++i];
        else if (!strcmp(argv[i], "--hot"))
            hot = 1;
        else if (!strcmp(argv[i], "--side"))
            side = 1;
        else if (!strcmp(argv[i], "--heads") && i + 1 < argc)
            n_head = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv-heads") && i + 1 < argc)
            n_kv_head = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--head-dim") && i + 1 < argc)
            head_dim = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--block") && i + 1 < argc)
            block = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv") && i + 1 < argc && !strcmp(argv[i + 1], "bf16") && ++i)
            kv = GT_BF16;
        else if (!strcmp(argv[i], "--kv") && i + 1 < argc && !strcmp(argv[i + 1], "f16") && ++i)
            kv = GT_F16;
        else {
            fprintf(
                stderr,
                "usage: %s [--pos 512,2048] [--ntok N] [--rounds N] [--isa NAME] [--hot] [--side] "
                "[--heads N] [--kv-heads N] [--head-dim N] [--block N] [--kv f16|bf16]\n",
                argv[0]);
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    if (n_tok < 1 || n_head < 1 || n_kv_head < 1 || n_head % n_kv_head || head_dim < 1 ||
        block < 1 || n_pos < 1 || (kv == GT_BF16 && (head_dim % 2 || block % 2))) {
        fprintf(stderr,
                "%lld tokens, %d heads over %d kv heads of %d dims in blocks of %d: not a "
                "valid shape%s\n",
                (long long)n_tok, n_head, n_kv_head, head_dim, block,
                kv == GT_BF16 ? " (a BF16 cache needs an even head size and block)" : "");
        return 2;
    }
    gt_kernels *ks[2];
    for (int n = 0; n < 2; n++) ks[n] = gt_bench_kernels(n + 1, isa, NULL);
    printf(
        "isa %s; %lld query tokens, %d heads, %d kv heads of %d dims, %s cache in blocks of %d\n",
        gt_kernels_isa(ks[0]), (long long)n_tok, n_head, n_kv_head, head_dim,
        kv == GT_BF16 ? "bf16" : "f16", block);
    bw_job bj = {.bytes = (size_t)1 << 30};
    bj.buf = gt_alloc(bj.bytes);
    memset((void *)bj.buf, 1, bj.bytes);
    printf("\ndecode attention: K/V read GB/s vs read bandwidth measured in the same round; "
           "best / median of %d rounds\n",
           rounds);
    printf("%6s %3s  %8s %8s  %8s %8s  %7s %7s  %9s\n", "pos", "thr", "attnbest", "attnmed",
           "bw best", "bw med", "%best", "%med", "us/call");
    for (int pi = 0; pi < n_pos; pi++) {
        cache_set s = {.n_head = n_head,
                       .n_kv_head = n_kv_head,
                       .head_dim = head_dim,
                       .block_size = block,
                       .pos = pos[pi],
                       .n_tok = n_tok,
                       .hot = hot,
                       .side = side,
                       .kv = kv};
        if (s.pos < n_tok - 1) continue;
        cache_make(&s);
        double g[2][MAX_ROUNDS], b[2][MAX_ROUNDS], pct[2][MAX_ROUNDS], us[2][MAX_ROUNDS];
        for (int n = 0; n < 2; n++) time_calls(ks[n], &s, 0.05); /* warm up */
        for (int r = 0; r < rounds; r++)
            for (int n = 0; n < 2; n++) {
                b[n][r] = measure_bw(ks[n], &bj) * 1e-9;
                const double t = time_calls(ks[n], &s, 0.25);
                g[n][r] = (double)s.kv_bytes / t * 1e-9;
                us[n][r] = t * 1e6;
                pct[n][r] = 100.0 * g[n][r] / b[n][r];
            }
        for (int n = 0; n < 2; n++)
            printf("%6lld %3d  %8.1f %8.1f  %8.1f %8.1f  %6.0f%% %6.0f%%  %9.1f\n",
                   (long long)s.pos, n + 1, bench_best(g[n], rounds), bench_median(g[n], rounds),
                   bench_best(b[n], rounds), bench_median(b[n], rounds), bench_best(pct[n], rounds),
                   bench_median(pct[n], rounds), bench_median(us[n], rounds));
        fflush(stdout);
        cache_free(&s);
    }
    gt_free((void *)bj.buf);
    gt_kernels_destroy(ks[0]);
    gt_kernels_destroy(ks[1]);
    return (int)(bj.sink & 0);
}
