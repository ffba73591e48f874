/* The CPU backend: its instance, buffers (host memory), workspace and the
 * threaded wrappers of the non-matmul ops, and its function table.
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
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ops.h"

static const gt_backend_iface cpu_iface;

gt_status gt__cpu_backend_create(const gt_kernels_config *cfg, gt_kernels **out) {
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
    bool bf16_f16, bf16_bf16, fp16;
    GT_TRY(gt__cpu_bf16_mode(c.bf16, isa, &cpu, &bf16_f16, &bf16_bf16, &fp16));

    gt_cpu *k = calloc(1, sizeof *k);
    if (!k) return gt_fail(GT_ERR_NOMEM, "kernels: out of memory for the backend");
    gt_status st = gt_pool_create(c.n_threads, &k->pool);
    if (st != GT_OK) {
        free(k);
        return st;
    }
    k->base.iface = &cpu_iface;
    k->n_threads = c.n_threads;
    k->isa = isa;
    k->cpu = cpu;
    k->bf16_f16 = bf16_f16;
    k->bf16_bf16 = bf16_bf16;
    k->fp16 = fp16;
    k->ops = isa == GT_ISA_AVX512 ? &gt__ops_avx512
             : isa == GT_ISA_AVX2 ? &gt__ops_avx2
                                  : &gt__ops_ref;
    *out = &k->base;
    return GT_OK;
}

static void cpu_destroy(gt_kernels *kb) {
    gt_cpu *k = gt__cpu(kb);
    gt__cpu_copier_destroy(k->copier);
    gt_pool_destroy(k->pool);
    gt_free(k->scratch);
    gt__cpu_rope_free(k);
    free(k);
}

static const char *cpu_isa(const gt_kernels *k) { return gt__isa_name(gt__cpu_c(k)->isa); }
static const char *cpu_half(const gt_kernels *k) {
    const gt_cpu *c = gt__cpu_c(k);
    return c->fp16 ? "fp16" : c->bf16_f16 ? "bf16" : "off";
}
static int cpu_n_threads(const gt_kernels *k) { return gt__cpu_c(k)->n_threads; }
static gt_pool *cpu_pool(gt_kernels *k) { return gt__cpu(k)->pool; }

/* ---- buffers ---- */

static gt_status cpu_buffer_alloc(gt_kernels *k, gt_buffer *b) {
    b->addr = gt_calloc(b->bytes, 1);
    if (!b->addr) return gt_fail(GT_ERR_NOMEM, "kernels: cannot allocate a buffer of %zu bytes", b->bytes);
    b->host = true;
    return GT_OK;
}

static gt_status cpu_buffer_free(gt_kernels *k, gt_buffer *b) {
    gt_free(b->addr);
    b->addr = NULL;
    return GT_OK;
}

/* ---- rmsnorm ---- */

typedef struct {
    const struct gt_ops *ops;
    const float *x, *w;
    float *y;
    int64_t n_rows, n;
    float eps;
} rms_job;

static void rms_run(void *arg, int ith, int nth) {
    rms_job *j = arg;
    long b, e;
    gt_pool_split((long)j->n_rows, 1, ith, nth, &b, &e);
    for (long r = b; r < e; r++)
        j->ops->rmsnorm(j->x + r * j->n, j->w, j->y + r * j->n, j->n, j->eps);
}

static gt_status cpu_rmsnorm(gt_kernels *kb, const float *x, const float *w, float *y,
                             int64_t n_rows, int64_t n, float eps) {
    gt_cpu *k = gt__cpu(kb);
    rms_job j = {k->ops, x, w, y, n_rows, n, eps};
    int nth = gt__cpu_useful_threads(k, n_rows * n, GT_ELEMWISE_MIN_PER_THREAD);
    if (nth > n_rows) nth = n_rows > 0 ? (int)n_rows : 1;
    gt__cpu_run(k, rms_run, &j, nth);
    return GT_OK;
}

/* ---- element-wise ---- */

typedef struct {
    void (*bin)(const float *, const float *, float *, int64_t);
    void (*acc)(float *, const float *, int64_t);
    const float *a, *b;
    float *out;
    int64_t n;
} elem_job;

static void elem_run(void *arg, int ith, int nth) {
    elem_job *j = arg;
    long b, e;
    gt_pool_split((long)j->n, 64, ith, nth, &b, &e);
    if (e <= b) return;
    if (j->bin)
        j->bin(j->a + b, j->b + b, j->out + b, e - b);
    else
        j->acc(j->out + b, j->a + b, e - b);
}

static gt_status elem_launch(gt_kernels *kb, elem_job *j) {
    gt_cpu *k = gt__cpu(kb);
    gt__cpu_run(k, elem_run, j, gt__cpu_useful_threads(k, j->n, GT_ELEMWISE_MIN_PER_THREAD));
    return GT_OK;
}

static gt_status cpu_swiglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n) {
    elem_job j = {gt__cpu(k)->ops->swiglu, NULL, gate, up, out, n};
    return elem_launch(k, &j);
}

static gt_status cpu_geglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n) {
    elem_job j = {gt__cpu(k)->ops->geglu, NULL, gate, up, out, n};
    return elem_launch(k, &j);
}

static gt_status cpu_add(gt_kernels *k, float *y, const float *x, int64_t n) {
    elem_job j = {NULL, gt__cpu(k)->ops->add, x, NULL, y, n};
    return elem_launch(k, &j);
}

/* ---- the small ops: on the calling thread (kernels/cpu/ops_misc_ref.c) ---- */

static gt_status cpu_add_bias(gt_kernels *k, float *y, const float *b, int64_t n_rows, int64_t n) {
    for (int64_t r = 0; r < n_rows; r++) gt__cpu(k)->ops->add(y + r * n, b, n);
    return GT_OK;
}

static gt_status cpu_scale(gt_kernels *k, float *y, float s, int64_t n) {
    gt__scale_ref(y, s, n);
    return GT_OK;
}

static gt_status cpu_softcap(gt_kernels *k, float *y, float c, int64_t n) {
    if (!(c > 0)) return gt_fail(GT_ERR_INVALID_ARG, "softcap: the cap %g is not positive", (double)c);
    gt__softcap_ref(y, c, n);
    return GT_OK;
}

static gt_status cpu_zero(gt_kernels *k, float *y, int64_t n) {
    if (n > 0) memset(y, 0, (size_t)n * sizeof *y);
    return GT_OK;
}

static gt_status cpu_embed(gt_kernels *k, const gt_embed_args *a) { return gt__embed_ref(a); }

static gt_status cpu_router_topk(gt_kernels *k, float *probs, int64_t n_tok, int n_expert,
                                 int k_used, bool renorm, int32_t *ids, float *w) {
    if (n_expert < 1 || k_used < 1 || k_used > n_expert)
        return gt_fail(GT_ERR_INVALID_ARG, "router: %d of %d experts per token is not a valid choice",
                       k_used, n_expert);
    gt__router_topk(probs, n_tok, n_expert, k_used, renorm, ids, w);
    return GT_OK;
}

static gt_status cpu_gather_rows(gt_kernels *k, const float *src, const int32_t *rows, int64_t m,
                                 int64_t n, float *dst) {
    gt__gather_rows_ref(src, rows, m, n, dst);
    return GT_OK;
}

static gt_status cpu_scatter_add_rows(gt_kernels *k, const float *src, const int32_t *rows,
                                      const float *w, int64_t m, int64_t n, float *dst) {
    gt__scatter_add_rows_ref(src, rows, w, m, n, dst);
    return GT_OK;
}

static gt_status cpu_sigmoid_gate_add(gt_kernels *k, const float *gate, const float *src,
                                      float *dst, int64_t n_tok, int64_t n) {
    gt__sigmoid_gate_add_ref(gate, src, dst, n_tok, n);
    return GT_OK;
}

static gt_status cpu_kv_store(gt_kernels *k, const gt_kv_store_args *a) {
    if ((a->kv_type != GT_F32 && a->kv_type != GT_F16 && a->kv_type != GT_BF16) ||
        a->block_size < 1 ||
        (a->kv_type == GT_BF16 && a->n_kv_head > 0 &&
         (a->block_size % 2 || a->row_elems / a->n_kv_head % 2)))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "KV store: a cache of %s in blocks of %d (head size %d) is not supported%s",
                       gt_dtype_name(a->kv_type), a->block_size,
                       a->n_kv_head > 0 ? a->row_elems / a->n_kv_head : 0,
                       a->kv_type == GT_BF16 ? " (BF16 pairs need an even block and head size)"
                                             : "");
    return gt__cpu(k)->ops->kv_store(a);
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
        const int g_next = it + nth < n_items && (it + nth) / j->a->n_kv_head == tile
                               ? (int)((it + nth) % j->a->n_kv_head)
                               : -1;
        j->ops->attention(j->a, g, g_next, t0, t1, scratch);
    }
}

static gt_status cpu_attention(gt_kernels *kb, const gt_attn_args *a) {
    gt_cpu *k = gt__cpu(kb);
    assert(a->n_kv_head > 0 && a->n_head % a->n_kv_head == 0 && a->block_size > 0 &&
           (a->kv_type == GT_F32 || a->kv_type == GT_F16 ||
            (a->kv_type == GT_BF16 && a->block_size % 2 == 0 && a->head_dim % 2 == 0)));
    if (a->n_tok <= 0) return GT_OK;
    /* The largest tile (fewest passes over the keys) that still gives each
     * of several threads four items; a query's bits do not depend on its
     * tile. */
    attn_job j = {k->ops, a,    k->ops->attn_tile < a->n_tok ? k->ops->attn_tile : a->n_tok,
                  0,      NULL, 0};
    while (k->n_threads > 1 && j.tile > 1 &&
           (a->n_tok + j.tile - 1) / j.tile * a->n_kv_head < 4 * k->n_threads)
        j.tile /= 2;
    j.n_tiles = (a->n_tok + j.tile - 1) / j.tile;
    j.per_thread = gt_align_up(k->ops->attn_scratch_bytes(a, j.tile), GT_ALIGN);
    const int64_t n_items = j.n_tiles * a->n_kv_head;
    const int nth = n_items < k->n_threads ? (int)n_items : k->n_threads;
    const size_t total = j.per_thread * (size_t)k->n_threads;
    j.scratch = gt__cpu_scratch(k, total);
    if (!j.scratch && k->reserved)
        return gt_fail(GT_ERR_RANGE, "attention: %d heads per kv head of %d dims on %d threads need "
                       "%zu bytes of kernel workspace, more than the %zu reserved",
                       a->n_head / a->n_kv_head, a->head_dim, k->n_threads, total, k->scratch_bytes);
    if (!j.scratch)
        return gt_fail(GT_ERR_NOMEM, "attention: out of memory for %zu bytes of kernel workspace", total);
    gt__cpu_run(k, attn_run, &j, nth);
    return GT_OK;
}

static const gt_backend_iface cpu_iface = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .isa = cpu_isa,
    .half = cpu_half,
    .n_threads = cpu_n_threads,
    .pool = cpu_pool,
    .reserve = gt__cpu_reserve,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .matmul_supports = gt__cpu_matmul_supports,
    .weight_init = gt__cpu_weight_init,
    .weight_free = gt__cpu_weight_free,
    .weight_bytes = gt__cpu_weight_bytes,
    .copy_start = gt__cpu_copy_start,
    .copy_wait = gt__cpu_copy_wait,
    .matmul = gt__cpu_matmul,
    .matmul_multi = gt__cpu_matmul_multi,
    .rmsnorm = cpu_rmsnorm,
    .rope = gt__cpu_rope,
    .swiglu = cpu_swiglu,
    .geglu = cpu_geglu,
    .add = cpu_add,
    .add_bias = cpu_add_bias,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .zero = cpu_zero,
    .embed = cpu_embed,
    .router_topk = cpu_router_topk,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .sigmoid_gate_add = cpu_sigmoid_gate_add,
    .attention = cpu_attention,
    .kv_store = cpu_kv_store,
};
