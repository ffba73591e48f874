/* Weight preparation and the threaded dispatch of y = x · W^T.
 *
 * Design: the choice of kernel is made once, at gt_weight_init, and recorded
 * in w->layout. On AVX-512 every type with a fast kernel is repacked into
 * 16-row panels (kernels/cpu/matmul_internal.h), which replace the mmap'd
 * rows for computation; everything else (and every type under the "ref" and
 * "avx2" ISAs) keeps the GGUF rows and runs the reference kernel, which
 * handles every type with a dequantizer; so do the weights prepared with
 * gt_weight_init_invariant (the router: unquantized activations). Every
 * path is batch-invariant: the decode (GEMV) and prefill (GEMM) kernels of
 * an ISA sum each row in the same order (float panels: one FMA chain per
 * 256-k block, blocks added in order; quant panels: per 32-k block an exact
 * integer dot, scaled and FMA'd in block order within 16-block slices,
 * slices added in order), activations are quantized per row and block, and
 * no row's sum is split across threads. A product is at most two fork-join
 * regions on the pool: quantize the activations to Q8 (split over tokens;
 * for decode, n_tok <= 4, each thread quantizes them all into its own copy
 * instead, so decode has a single region), then the product split over
 * output panels (or rows for the reference), so each thread streams its own
 * contiguous part of the weights. Packing at load is split over panels on
 * the pool too. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/alloc.h"
#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/cpu.h"

bool gt__cpu_matmul_supports(const gt_kernels *k, gt_dtype type) {
    const gt_dtype_info *info = gt_dtype_get((uint32_t)type);
    return info && info->has_codec;
}

/* The panel kernels of one instruction set; both share the packed layouts. */
typedef struct mm_isa {
    void (*quantize)(gt_mm_qkind kind, const float *x, int64_t n_in, int64_t t0, int64_t t1,
                     int64_t b0, int64_t b1, gt_mm_q8a *q);
    void (*pq)(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out, const gt_mm_q8a *q,
               float *y, int64_t n_tok, int64_t p0, int64_t p1);
    void (*pf)(gt_dtype type, const void *wp, int64_t n_in, int64_t n_out, const float *x,
               float *y, int64_t n_tok, int64_t p0, int64_t p1, float *scratch);
    size_t (*pf_scratch_floats)(int64_t n_tok);
} mm_isa;

static const mm_isa k_mm_avx512 = {gt__mm_quantize_avx512, gt__mm_pq_avx512, gt__mm_pf_avx512,
                                   gt__mm_pf_scratch_floats};
static const mm_isa k_mm_avx2 = {gt__mm_quantize_avx2, gt__mm_pq_avx2, gt__mm_pf_avx2,
                                 gt__mm_pf_avx2_scratch_floats};

static const mm_isa *isa_kernels(const gt_cpu *k) {
    return k->isa == GT_ISA_AVX512 ? &k_mm_avx512 : k->isa == GT_ISA_AVX2 ? &k_mm_avx2 : NULL;
}

static int pick_layout(const gt_cpu *k, gt_dtype type, int64_t n_in) {
    if (!isa_kernels(k)) return GT_MM_ROWS;
    if (k->fp16 && gt__mm_ph_ok(type, n_in)) return GT_MM_PH;
    if (gt__mm_pb_ok(type, n_in) && (type == GT_F16 ? k->bf16_f16 : k->bf16_bf16)) return GT_MM_PB;
    if (type == GT_F32 || type == GT_F16 || type == GT_BF16) return GT_MM_PF;
    if (gt__mm_qkind(type) != GT_MMQ_NONE) return GT_MM_PQ;
    return GT_MM_ROWS;
}

/* Packed weights are streamed once per token: 2 MiB aligned and advised as
 * huge pages, so a decode step takes a few hundred TLB misses instead of one
 * per 4 KiB (the kernel may decline; then it is an ordinary allocation). */
#define HUGE_BYTES ((size_t)2 << 20)
static void *alloc_packed(size_t bytes) {
    void *p = NULL;
    size_t align = bytes >= HUGE_BYTES ? HUGE_BYTES : GT_ALIGN;
    if (posix_memalign(&p, align, gt_align_up(bytes, align)) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_BYTES) (void)madvise(p, gt_align_up(bytes, align), MADV_HUGEPAGE);
#endif
    return p;
}

/* The pack job: panels [p0, p1) of one weight per thread. */
typedef struct {
    gt_dtype type;
    int layout;
    int64_t n_in, n_out;
    const void *src;
    void *dst;
} pack_job;

static void run_pack(void *arg, int ith, int nth) {
    pack_job *j = arg;
    long p0, p1;
    gt_pool_split((long)gt__mm_n_panels(j->n_out), 1, ith, nth, &p0, &p1);
    if (p0 < p1) gt__mm_pack(j->type, j->layout, j->n_in, j->n_out, j->src, j->dst, p0, p1);
}

gt_status gt__cpu_weight_init(gt_kernels *kb, gt_dtype type, int64_t n_in, int64_t n_out,
                              const void *data, bool invariant, gt_weight *w) {
    gt_cpu *k = gt__cpu(kb);
    const gt_dtype_info *info = gt_dtype_get((uint32_t)type);
    if (!info || !info->has_codec)
        return gt_fail(GT_ERR_UNSUPPORTED, "matmul: weight type %s has no matrix product",
                       gt_dtype_name((uint32_t)type));
    if (n_in <= 0 || n_out <= 0 || n_in % info->block_elems != 0)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "matmul: a %s weight of %lld x %lld needs a positive row length that is "
                       "a multiple of %d",
                       info->name, (long long)n_out, (long long)n_in, info->block_elems);
    w->type = type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->data = data;
    /* The reference computes each output the same way for any token count. */
    int layout = invariant ? GT_MM_ROWS : pick_layout(k, type, n_in);
    if (layout == GT_MM_ROWS) return GT_OK;
    size_t bytes = gt__mm_packed_bytes(type, layout, n_in, n_out);
    gt_mm_ph_head head;
    /* fp16 panels: a BF16 weight whose values are not all fp16 (after one
     * power-of-two scale) keeps the float panels, in the bytes planned. */
    if (layout == GT_MM_PH && !gt__mm_ph_head_init(type, n_in, n_out, data, &head))
        layout = GT_MM_PF;
    void *p = alloc_packed(bytes);
    if (!p)
        return gt_fail(GT_ERR_NOMEM, "matmul: cannot allocate %zu bytes to repack a %s weight",
                       bytes, info->name);
    if (layout == GT_MM_PH) memcpy(p, &head, sizeof head);
    pack_job pj = {type, layout, n_in, n_out, data, p};
    gt_pool_run(k->pool, run_pack, &pj);
    w->owned = p;
    w->data = p;
    w->layout = layout;
    return GT_OK;
}

size_t gt__cpu_weight_bytes(const gt_kernels *kb, gt_dtype type, int64_t n_in, int64_t n_out,
                           bool invariant) {
    const gt_dtype_info *info = gt_dtype_get((uint32_t)type);
    if (!info || !info->has_codec || n_in <= 0 || n_out <= 0 || n_in % info->block_elems != 0) return 0;
    int layout = invariant ? GT_MM_ROWS : pick_layout(gt__cpu_c(kb), type, n_in);
    if (layout != GT_MM_ROWS) return gt__mm_packed_bytes(type, layout, n_in, n_out);
    size_t row;
    if (!gt_dtype_row_bytes(type, n_in, &row)) return 0;
    return row * (size_t)n_out;
}

gt_status gt__cpu_weight_free(gt_kernels *k, gt_weight *w) {
    free(w->owned); /* alloc_packed: posix_memalign */
    return GT_OK;
}

typedef struct {
    const gt_weight *w;
    const float *x; /* [n_tok, n_in] */
    float *y;       /* [n_tok, n_out] */
    int64_t n_tok;
    const mm_isa *isa;
    gt_mm_qkind kind;
    gt_mm_q8a *q;   /* [n_tok, n_in / 32], or [n_threads, q_stride] when fused */
    size_t q_stride;
    int fused;      /* each thread quantizes x itself: one fork-join per product */
    long grain;     /* panels per grab (even) */
    _Atomic long next; /* next panel to grab */
    uint32_t *xp;      /* pair panels' prefill: the activations packed once */
    float *fs;      /* [n_threads, fs_stride] float-panel packing scratch */
    size_t fs_stride;
    float *tmp;     /* [n_threads, tmp_stride] for the reference */
    size_t tmp_stride;
} mm_job;

static void run_ref(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long r0, r1;
    gt_pool_split((long)j->w->n_out, 1, ith, nth, &r0, &r1);
    if (r0 < r1)
        gt__mm_ref_rows(j->w->type, j->w->data, j->w->n_in, j->w->n_out, j->x, j->y, j->n_tok, r0,
                        r1, j->tmp + (size_t)ith * j->tmp_stride);
}

static void run_quantize(void *arg, int ith, int nth) {
    mm_job *j = arg;
    int64_t nb = j->w->n_in / 32;
    long a, b;
    if (j->n_tok >= nth) {
        gt_pool_split((long)j->n_tok, 1, ith, nth, &a, &b);
        j->isa->quantize(j->kind, j->x, j->w->n_in, a, b, 0, nb, j->q);
    } else {
        gt_pool_split((long)nb, 1, ith, nth, &a, &b);
        j->isa->quantize(j->kind, j->x, j->w->n_in, 0, j->n_tok, a, b, j->q);
    }
}

/* Panels [p0, p1) of j's weight on thread ith; q: the quantized activations
 * this thread reads (PQ layouts). */
static void run_grain(const mm_job *j, int ith, long p0, long p1, const gt_mm_q8a *q) {
    if (p1 % 2) p1++; /* the GEMMs work on panel pairs; the padding panel exists */
    if (j->w->layout == GT_MM_PH)
        gt__mm_ph_avx512(j->w->data, j->w->n_in, j->w->n_out, j->x, j->y, j->n_tok, p0, p1,
                         j->fs ? j->fs + (size_t)ith * j->fs_stride : NULL);
    else if (j->w->layout == GT_MM_PB)
        gt__mm_pb_avx512(j->w->data, j->w->n_in, j->w->n_out, j->x, j->xp, j->y, j->n_tok, p0, p1,
                         j->fs ? j->fs + (size_t)ith * j->fs_stride : NULL);
    else if (j->w->layout == GT_MM_PF)
        j->isa->pf(j->w->type, j->w->data, j->w->n_in, j->w->n_out, j->x, j->y, j->n_tok, p0, p1,
                   j->fs ? j->fs + (size_t)ith * j->fs_stride : NULL);
    else
        j->isa->pq(j->kind, j->w->data, j->w->n_in, j->w->n_out, q, j->y, j->n_tok, p0, p1);
}

/* The decode case's own copy of the activations, quantized by thread ith. */
static const gt_mm_q8a *quantize_mine(const mm_job *j, int ith) {
    gt_mm_q8a *mine = j->q + (size_t)ith * j->q_stride;
    j->isa->quantize(j->kind, j->x, j->w->n_in, 0, j->n_tok, 0, j->w->n_in / 32, mine);
    return mine;
}

/* The pair panels' prefill activations, split over whole tiles of tokens
 * so that no two threads write one cache line. */
static void run_pack_x(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long a, b;
    gt_pool_split((long)((j->n_tok + GT_MM_PB_NT - 1) / GT_MM_PB_NT), 1, ith, nth, &a, &b);
    const int64_t t1 = (int64_t)b * GT_MM_PB_NT < j->n_tok ? (int64_t)b * GT_MM_PB_NT : j->n_tok;
    if (a < b) gt__mm_pb_pack_x_avx512(j->x, j->w->n_in, (int64_t)a * GT_MM_PB_NT, t1, j->xp);
}

/* Panels are handed out in grains from a shared counter rather than split
 * statically: on a shared host one thread is often slower (its core busy
 * with another process) and the others then take its share. */
static void run_panels(void *arg, int ith, int nth) {
    mm_job *j = arg;
    long n_panels = (long)((j->w->n_out + 15) / 16);
    const gt_mm_q8a *q = j->q;
    int quantized = 0;
    for (;;) {
        long p0 = atomic_fetch_add_explicit(&j->next, j->grain, memory_order_relaxed);
        if (p0 >= n_panels) return;
        long p1 = p0 + j->grain < n_panels ? p0 + j->grain : n_panels;
        if (j->fused && !quantized) {
            q = quantize_mine(j, ith);
            quantized = 1;
        }
        run_grain(j, ith, p0, p1, q);
    }
    (void)nth;
}

/* The workspace for one product, or a sentence naming the numbers. */
static gt_status mm_scratch(gt_cpu *k, const gt_weight *w, int64_t n_tok, size_t bytes, void **out) {
    *out = gt__cpu_scratch(k, bytes);
    if (*out) return GT_OK;
    if (k->reserved)
        return gt_fail(GT_ERR_RANGE,
                       "matmul: %lld tokens of a %lld-long row need %zu bytes of kernel workspace, "
                       "more than the %zu reserved", (long long)n_tok, (long long)w->n_in, bytes,
                       k->scratch_bytes);
    return gt_fail(GT_ERR_NOMEM, "matmul: out of memory for %zu bytes of kernel workspace", bytes);
}

/* Panels per grab: about 4 per thread for decode (streams of >= 8 panels),
 * 2 for prefill (each grain repacks its activations, so not too small);
 * even, since the GEMMs work on panel pairs. */
static long mm_grain(const gt_cpu *k, const gt_weight *w, int64_t n_tok) {
    long n_panels = (long)((w->n_out + 15) / 16);
    long grain = n_panels / ((n_tok <= 4 ? 4L : 2L) * k->n_threads);
    grain = k->n_threads == 1 ? n_panels : grain < 8 ? 8 : grain;
    return (grain + 1) / 2 * 2;
}

/* Everything of a panel-layout product but the panel region: the kind, the
 * workspace, and for prefill the activations prepared in a region of their
 * own (quantized for quant panels, rounded and packed for pair panels), so
 * that every grain of every weight of a gt_matmul_multi reads them. j->y,
 * j->grain and j->next are the caller's. */
static gt_status mm_prepare(gt_cpu *k, const gt_weight *w, const float *x, int64_t n_tok,
                            mm_job *j) {
    void *scratch;
    j->w = w;
    j->x = x;
    j->n_tok = n_tok;
    j->isa = isa_kernels(k);
    if (w->layout == GT_MM_PQ) {
        /* Decode: every thread quantizes the few activation rows itself (a
         * microsecond) rather than meeting the others at a second barrier,
         * which costs far more when a core is shared and a worker is late. */
        size_t nq = (size_t)n_tok * (size_t)(w->n_in / 32);
        j->kind = gt__mm_qkind(w->type);
        j->fused = n_tok <= 4;
        j->q_stride = j->fused ? (nq + 3) / 4 * 4 : nq; /* 4 blocks = 192 B: 64-byte aligned */
        GT_TRY(mm_scratch(k, w, n_tok, gt__mm_q8_scratch_bytes(w->n_in, n_tok, k->n_threads),
                          &scratch));
        j->q = scratch;
        if (!j->fused) gt_pool_run(k->pool, run_quantize, j);
    } else if (w->layout == GT_MM_PB && n_tok > 4) {
        const size_t xb = gt__mm_pb_xp_bytes(w->n_in, n_tok);
        GT_TRY(mm_scratch(k, w, n_tok, gt__mm_pb_scratch_bytes(w->n_in, n_tok, k->n_threads),
                          &scratch));
        j->xp = scratch;
        j->fs = (float *)((char *)scratch + xb);
        j->fs_stride = j->isa->pf_scratch_floats(n_tok);
        gt_pool_run(k->pool, run_pack_x, j);
    } else if ((j->fs_stride = j->isa->pf_scratch_floats(n_tok)) > 0) {
        GT_TRY(mm_scratch(k, w, n_tok, gt__mm_pf_scratch_bytes(k->isa, n_tok, k->n_threads),
                          &scratch));
        j->fs = scratch;
    }
    return GT_OK;
}

gt_status gt__cpu_matmul(gt_kernels *kb, const gt_weight *w, const float *x, float *y, int64_t n_tok) {
    gt_cpu *k = gt__cpu(kb);
    if (n_tok <= 0) return GT_OK;
    mm_job j = {.w = w, .x = x, .y = y, .n_tok = n_tok, .isa = isa_kernels(k)};
    if (w->layout == GT_MM_ROWS) {
        void *scratch;
        j.tmp_stride = gt_align_up((size_t)w->n_in * sizeof(float), GT_ALIGN) / sizeof(float);
        GT_TRY(mm_scratch(k, w, n_tok, gt__mm_ref_scratch_bytes(w->n_in, k->n_threads), &scratch));
        j.tmp = scratch;
        gt_pool_run(k->pool, run_ref, &j);
        return GT_OK;
    }
    GT_TRY(mm_prepare(k, w, x, n_tok, &j));
    j.grain = mm_grain(k, w, n_tok);
    atomic_init(&j.next, 0);
    gt_pool_run(k->pool, run_panels, &j);
    return GT_OK;
}

/* ---- several products of one input in one region (gt_matmul_multi) ----
 * The weights' grains are numbered one after the other (weight 0's, then
 * weight 1's, ...) and handed out from one counter, so the threads meet
 * once for all of them instead of once per weight. A grain is computed by
 * the same call (run_grain) on the same panels as in gt__cpu_matmul, and
 * no panel's sums depend on which grain or thread computes it, so every
 * output is bit-identical to the separate products. This needs one layout,
 * row length and activation quantization for all the weights (they then
 * share the quantized activations); anything else runs them one by one. */
#define MM_MULTI_MAX 4

typedef struct {
    mm_job jobs[MM_MULTI_MAX];
    long end[MM_MULTI_MAX]; /* grains of weights [0, i], cumulated */
    int n;
    _Atomic long next; /* next grain over all the weights */
} mm_multi_job;

static void run_multi(void *arg, int ith, int nth) {
    mm_multi_job *m = arg;
    const gt_mm_q8a *q = m->jobs[0].q;
    int quantized = 0, i = 0;
    for (;;) {
        long g = atomic_fetch_add_explicit(&m->next, 1, memory_order_relaxed);
        if (g >= m->end[m->n - 1]) return;
        while (g >= m->end[i]) i++; /* a thread's grains only increase */
        const mm_job *j = &m->jobs[i];
        long n_panels = (long)((j->w->n_out + 15) / 16);
        long p0 = (g - (i > 0 ? m->end[i - 1] : 0)) * j->grain;
        long p1 = p0 + j->grain < n_panels ? p0 + j->grain : n_panels;
        if (j->fused && !quantized) { /* the same rows for every weight */
            q = quantize_mine(j, ith);
            quantized = 1;
        }
        run_grain(j, ith, p0, p1, q);
    }
    (void)nth;
}

static bool mm_multi_ok(const gt_matmul_item *items, int n) {
    if (n < 2 || n > MM_MULTI_MAX || items[0].w->layout == GT_MM_ROWS) return false;
    const gt_weight *w0 = items[0].w;
    for (int i = 1; i < n; i++) {
        const gt_weight *w = items[i].w;
        if (w->layout != w0->layout || w->n_in != w0->n_in) return false;
        if (w0->layout == GT_MM_PQ && gt__mm_qkind(w->type) != gt__mm_qkind(w0->type)) return false;
        if (w0->layout == GT_MM_PF && w->type != w0->type) return false;
    }
    return true;
}

gt_status gt__cpu_matmul_multi(gt_kernels *kb, const gt_matmul_item *items, int n, const float *x,
                               int64_t n_tok) {
    gt_cpu *k = gt__cpu(kb);
    if (n_tok <= 0 || n <= 0) return GT_OK;
    if (!mm_multi_ok(items, n)) {
        for (int i = 0; i < n; i++) GT_TRY(gt__cpu_matmul(kb, items[i].w, x, items[i].y, n_tok));
        return GT_OK;
    }
    mm_multi_job m = {.n = n};
    GT_TRY(mm_prepare(k, items[0].w, x, n_tok, &m.jobs[0]));
    for (int i = 0; i < n; i++) {
        mm_job *j = &m.jobs[i];
        if (i > 0) { /* the first weight's workspace and quantized activations */
            const mm_job *j0 = &m.jobs[0];
            j->w = items[i].w;
            j->x = x;
            j->n_tok = n_tok;
            j->isa = j0->isa;
            j->kind = j0->kind;
            j->q = j0->q;
            j->q_stride = j0->q_stride;
            j->fused = j0->fused;
            j->xp = j0->xp;
            j->fs = j0->fs;
            j->fs_stride = j0->fs_stride;
        }
        j->y = items[i].y;
        j->grain = mm_grain(k, j->w, n_tok);
        long n_panels = (long)((j->w->n_out + 15) / 16);
        m.end[i] = (i > 0 ? m.end[i - 1] : 0) + (n_panels + j->grain - 1) / j->grain;
    }
    atomic_init(&m.next, 0);
    gt_pool_run(k->pool, run_multi, &m);
    return GT_OK;
}
