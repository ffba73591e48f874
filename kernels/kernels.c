/* The CPU backend instance and the threaded wrappers of the non-matmul ops.
 *
 * Creation reads the CPU features once and picks an op table (or the one
 * cfg.isa forces). Each wrapper cuts its work into per-thread slices with
 * gt_pool_split and runs the table entry on the pool; the caller is thread 0.
 * Small inputs run on the calling thread alone: waking workers costs more
 * than normalising one row. Attention is split by (query-token tile, kv
 * head) items handed out round-robin, since causal rows grow in cost with
 * their position and contiguous ranges would load one thread with the
 * longest rows. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "kernels/internal.h"
#include "kernels/ops.h"

/* Element-wise ops below this many elements per thread stay on one thread. */
#define GT_ELEMWISE_MIN_PER_THREAD 16384

gt_status gt_kernels_create(const gt_kernels_config *cfg, gt_kernels **out) {
    *out = NULL;
    gt_kernels_config c = GT_KERNELS_CONFIG_INIT;
    if (cfg) c = *cfg;
    if (c.n_threads < 1 || c.n_threads > 1024)
        return gt_fail(GT_ERR_INVALID_ARG, "kernels: thread count %d is outside 1..1024",
                       c.n_threads);
    gt_cpu_features cpu = gt__cpu_detect();
    gt_isa best = gt__cpu_best_isa(&cpu), isa;
    if (!c.isa || !strcmp(c.isa, "auto")) {
        isa = best;
    } else if (!strcmp(c.isa, "ref")) {
        isa = GT_ISA_REF;
    } else if (!strcmp(c.isa, "avx2")) {
        isa = GT_ISA_AVX2;
    } else if (!strcmp(c.isa, "avx512")) {
        isa = GT_ISA_AVX512;
    } else {
        return gt_fail(GT_ERR_INVALID_ARG,
                       "kernels: unknown isa \"%s\" (expected auto, ref, avx2 or avx512)", c.isa);
    }
    if (isa > best)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "kernels: isa %s was requested but this CPU supports at most %s",
                       gt__isa_name(isa), gt__isa_name(best));

    gt_kernels *k = calloc(1, sizeof *k);
    if (!k) return gt_fail(GT_ERR_NOMEM, "kernels: out of memory for the backend");
    gt_status st = gt_pool_create(c.n_threads, &k->pool);
    if (st != GT_OK) {
        free(k);
        return st;
    }
    k->n_threads = c.n_threads;
    k->isa = isa;
    k->cpu = cpu;
    k->ops = isa == GT_ISA_AVX512 ? &gt__ops_avx512
             : isa == GT_ISA_AVX2 ? &gt__ops_avx2
                                  : &gt__ops_ref;
    *out = k;
    return GT_OK;
}

void gt_kernels_destroy(gt_kernels *k) {
    if (!k) return;
    gt_pool_destroy(k->pool);
    gt_free(k->scratch);
    free(k);
}

const char *gt_kernels_isa(const gt_kernels *k) { return gt__isa_name(k->isa); }
int gt_kernels_n_threads(const gt_kernels *k) { return k->n_threads; }
gt_pool *gt_kernels_pool(gt_kernels *k) { return k->pool; }

void *gt__kernels_scratch(gt_kernels *k, size_t bytes) {
    if (bytes <= k->scratch_bytes && k->scratch) return k->scratch;
    size_t want = gt_align_up(bytes > 4096 ? bytes : 4096, GT_ALIGN);
    void *p = gt_alloc(want);
    if (!p) return NULL;
    gt_free(k->scratch);
    k->scratch = p;
    k->scratch_bytes = want;
    return p;
}

/* Threads worth waking for `work` units when each should get at least `min`. */
static int useful_threads(const gt_kernels *k, int64_t work, int64_t min) {
    int64_t n = work / (min > 0 ? min : 1);
    if (n < 1) n = 1;
    return n < k->n_threads ? (int)n : k->n_threads;
}

/* ---- rmsnorm ---- */

typedef struct {
    const struct gt_ops *ops;
    const float *x, *w;
    float *y;
    int64_t n_rows, n;
    float eps;
    int nth;
} rms_job;

static void rms_run(void *arg, int ith, int nth) {
    rms_job *j = arg;
    if (ith >= j->nth) return;
    long b, e;
    gt_pool_split((long)j->n_rows, 1, ith, j->nth, &b, &e);
    for (long r = b; r < e; r++)
        j->ops->rmsnorm(j->x + r * j->n, j->w, j->y + r * j->n, j->n, j->eps);
}

void gt_rmsnorm(gt_kernels *k, const float *x, const float *w, float *y, int64_t n_rows, int64_t n,
                float eps) {
    rms_job j = {k->ops, x, w, y, n_rows, n, eps, 1};
    j.nth = useful_threads(k, n_rows * n, GT_ELEMWISE_MIN_PER_THREAD);
    if (j.nth > n_rows) j.nth = n_rows > 0 ? (int)n_rows : 1;
    if (j.nth == 1)
        rms_run(&j, 0, 1);
    else
        gt_pool_run(k->pool, rms_run, &j);
}

/* ---- rope ---- */

typedef struct {
    const struct gt_ops *ops;
    float *x;
    int64_t n_tok;
    int n_head, head_dim;
    const int32_t *pos;
    const gt_rope_params *p;
    int nth;
} rope_job;

static void rope_run(void *arg, int ith, int nth) {
    rope_job *j = arg;
    if (ith >= j->nth) return;
    long b, e; /* over (token, head) vectors */
    gt_pool_split((long)(j->n_tok * j->n_head), 1, ith, j->nth, &b, &e);
    while (b < e) {
        const long t = b / j->n_head, h0 = b % j->n_head;
        long h1 = j->n_head;
        if ((long)(t * j->n_head + h1) > e) h1 = e - t * j->n_head;
        j->ops->rope(j->x + (t * j->n_head + h0) * j->head_dim, h1 - h0, j->head_dim, j->pos[t],
                     j->p);
        b = t * j->n_head + h1;
    }
}

void gt_rope(gt_kernels *k, float *x, int64_t n_tok, int n_head, int head_dim, const int32_t *pos,
             const gt_rope_params *p) {
    /* Invariants the model loader checks before any forward pass. */
    assert(p->n_rot >= 0 && p->n_rot % 2 == 0 && p->n_rot <= head_dim &&
           p->n_rot <= GT_ROPE_MAX_ROT);
    rope_job j = {k->ops, x, n_tok, n_head, head_dim, pos, p, 1};
    j.nth = useful_threads(k, n_tok * n_head * (int64_t)p->n_rot * 8, GT_ELEMWISE_MIN_PER_THREAD);
    if (j.nth == 1)
        rope_run(&j, 0, 1);
    else
        gt_pool_run(k->pool, rope_run, &j);
}

/* ---- element-wise ---- */

typedef struct {
    void (*bin)(const float *, const float *, float *, int64_t);
    void (*acc)(float *, const float *, int64_t);
    const float *a, *b;
    float *out;
    int64_t n;
    int nth;
} elem_job;

static void elem_run(void *arg, int ith, int nth) {
    elem_job *j = arg;
    if (ith >= j->nth) return;
    long b, e;
    gt_pool_split((long)j->n, 64, ith, j->nth, &b, &e);
    if (e <= b) return;
    if (j->bin)
        j->bin(j->a + b, j->b + b, j->out + b, e - b);
    else
        j->acc(j->out + b, j->a + b, e - b);
}

static void elem_launch(gt_kernels *k, elem_job *j) {
    j->nth = useful_threads(k, j->n, GT_ELEMWISE_MIN_PER_THREAD);
    if (j->nth == 1)
        elem_run(j, 0, 1);
    else
        gt_pool_run(k->pool, elem_run, j);
}

void gt_swiglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n) {
    elem_job j = {k->ops->swiglu, NULL, gate, up, out, n, 1};
    elem_launch(k, &j);
}

void gt_geglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n) {
    elem_job j = {k->ops->geglu, NULL, gate, up, out, n, 1};
    elem_launch(k, &j);
}

void gt_add(gt_kernels *k, float *y, const float *x, int64_t n) {
    elem_job j = {NULL, k->ops->add, x, NULL, y, n, 1};
    elem_launch(k, &j);
}

/* ---- attention ---- */

typedef struct {
    const struct gt_ops *ops;
    const gt_attn_args *a;
    int64_t tile, n_tiles;
    char *scratch;
    size_t per_thread;
} attn_job;

static void attn_run(void *arg, int ith, int nth) {
    attn_job *j = arg;
    const int64_t n_items = j->n_tiles * j->a->n_kv_head;
    void *scratch = j->scratch + (size_t)ith * j->per_thread;
    for (int64_t it = ith; it < n_items; it += nth) {
        const int64_t tile = it / j->a->n_kv_head;
        const int g = (int)(it % j->a->n_kv_head);
        const int64_t t0 = tile * j->tile;
        const int64_t t1 = t0 + j->tile < j->a->n_tok ? t0 + j->tile : j->a->n_tok;
        j->ops->attention(j->a, g, t0, t1, scratch);
    }
}

void gt_attention(gt_kernels *k, const gt_attn_args *a) {
    assert(a->n_kv_head > 0 && a->n_head % a->n_kv_head == 0 && a->block_size > 0 &&
           (a->kv_type == GT_F32 || a->kv_type == GT_F16));
    if (a->n_tok <= 0) return;
    attn_job j = {k->ops, a, k->ops->attn_tile, 0, NULL, 0};
    j.n_tiles = (a->n_tok + j.tile - 1) / j.tile;
    j.per_thread = gt_align_up(k->ops->attn_scratch_bytes(a, j.tile), GT_ALIGN);
    const int64_t n_items = j.n_tiles * a->n_kv_head;
    const int nth = n_items < k->n_threads ? (int)n_items : k->n_threads;
    size_t total = 0;
    const bool fits = gt_size_mul(j.per_thread, (size_t)k->n_threads, &total);
    assert(fits);
    (void)fits;
    j.scratch = gt__kernels_scratch(k, total);
    assert(j.scratch != NULL); /* a few hundred KiB at most; out of memory is fatal here */
    if (nth == 1)
        attn_run(&j, 0, 1);
    else
        gt_pool_run(k->pool, attn_run, &j);
}
