/* Private to kernels/cpu/: the CPU backend instance shared by its files.
 * backend.c owns creation, the CPU check, buffers, the workspace and the
 * threaded non-matmul ops; matmul.c owns weight preparation and the
 * matrix-product dispatch; workspace.c sizes, reserves and lends the
 * workspace. */
#ifndef GT_KERNELS_CPU_H
#define GT_KERNELS_CPU_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/backend.h"

typedef enum gt_isa { GT_ISA_REF = 0, GT_ISA_AVX2, GT_ISA_AVX512 } gt_isa;

typedef struct gt_cpu_features {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16, avx512fp16;
    /* vdpbf16ps issues at the fp32 FMA's rate, so bf16 dot products are
     * twice its multiply-adds: AMD family 19h (Zen 4) and later. Intel cores
     * with AVX-512 BF16 issue it at half that rate (docs/benchmarks.md). */
    bool bf16_full_rate;
} gt_cpu_features;

/* Reads CPUID (and XGETBV for OS support of the wide registers). */
gt_cpu_features gt__cpu_detect(void);
/* The best ISA these features allow. */
gt_isa gt__cpu_best_isa(const gt_cpu_features *f);
/* Whether this CPU runs vdpbf16ps (AVX512_BF16), detected once. */
bool gt__cpu_has_dpbf16(void);
const char *gt__isa_name(gt_isa isa);
/* The --half-matmul (--bf16-matmul) mode (NULL: GANTRY_BF16_MATMUL, then
 * auto) for these kernels: whether F16 and BF16 weights take bf16 dot
 * products (f16, bf16) or fp16 products (fp16: F16 weights, and BF16
 * weights whose values fit) (kernels/cpu/bf16_mode.c).
 * GT_ERR_INVALID_ARG, GT_ERR_UNSUPPORTED. */
gt_status gt__cpu_bf16_mode(const char *mode, gt_isa isa, const gt_cpu_features *f, bool *f16,
                            bool *bf16, bool *fp16);

/* The rope tables the backend keeps (kernels/cpu/rope.c): the cos/sin rows
 * of the last GT_ROPE_TABLES (positions, parameters) a rope call brought. */
#define GT_ROPE_TABLES 2
typedef struct gt__rope_tab {
    float freq_base, freq_scale;
    int n_rot;
    int64_t n_tok; /* rows held; 0: none */
    uint64_t used; /* rope_clock at the last use */
    int32_t *pos;  /* [rope_cap_tok] the positions of the rows */
    float *cs;     /* [rope_cap_tok][rope_cap_rot]: n_rot/2 cos, then n_rot/2 sin */
} gt__rope_tab;

typedef struct gt_cpu {
    gt_kernels base; /* first: gt_kernels * and gt_cpu * convert */
    gt_pool *pool;
    int n_threads;
    gt_isa isa;
    gt_cpu_features cpu;
    bool bf16_f16, bf16_bf16; /* F16 / BF16 weights take the bf16 pair panels (matmul_bf16.c) */
    bool fp16;                /* F16 (and fitting BF16) weights take fp16 panels (matmul_fp16.c) */
    const struct gt_ops *ops; /* non-matmul op table (kernels/cpu/ops.h) */
    void *scratch;            /* the workspace; see gt__cpu_scratch */
    size_t scratch_bytes;
    bool reserved;            /* gt_kernels_reserve fixed the workspace: no growth */
    struct gt_cpu_copier *copier; /* started by the first asynchronous copy */
    gt__rope_tab rope[GT_ROPE_TABLES];
    void *rope_mem; /* the tables' rows; see kernels/cpu/rope.c */
    int64_t rope_cap_tok;
    int rope_cap_rot;
    uint64_t rope_clock;
} gt_cpu;

static inline gt_cpu *gt__cpu(gt_kernels *k) { return (gt_cpu *)k; }
static inline const gt_cpu *gt__cpu_c(const gt_kernels *k) { return (const gt_cpu *)k; }

/* A 64-byte aligned scratch buffer of at least `bytes`, owned by c and valid
 * until the next op. Before gt_kernels_reserve it grows on demand (NULL only
 * when that allocation fails); after, it is NULL when `bytes` exceeds the
 * reservation, and the caller fails with GT_ERR_RANGE naming its numbers. */
void *gt__cpu_scratch(gt_cpu *c, size_t bytes);
/* gt_kernels_reserve for the CPU (kernels/cpu/workspace.c, with gt__cpu_scratch). */
gt_status gt__cpu_reserve(gt_kernels *k, const gt_workspace_req *r);

/* Element-wise ops below this many elements per thread stay on one thread. */
#define GT_ELEMWISE_MIN_PER_THREAD 16384

/* Threads worth waking for `work` units when each should get at least `min`. */
static inline int gt__cpu_useful_threads(const gt_cpu *k, int64_t work, int64_t min) {
    int64_t n = work / (min > 0 ? min : 1);
    if (n < 1) n = 1;
    return n < k->n_threads ? (int)n : k->n_threads;
}

/* Runs fn(arg, ith, nth) for ith in 0..nth-1 (nth at most the pool's
 * threads): on the calling thread when nth is 1, else on the pool, whose
 * threads past nth stay idle. */
typedef struct {
    gt_pool_fn fn;
    void *arg;
    int nth;
} gt__cpu_run_job;

static inline void gt__cpu_run_some(void *arg, int ith, int nth) {
    const gt__cpu_run_job *j = arg;
    if (ith < j->nth) j->fn(j->arg, ith, j->nth);
    (void)nth;
}

static inline void gt__cpu_run(gt_cpu *k, gt_pool_fn fn, void *arg, int nth) {
    if (nth == 1) {
        fn(arg, 0, 1);
        return;
    }
    gt__cpu_run_job j = {fn, arg, nth};
    gt_pool_run(k->pool, gt__cpu_run_some, &j);
}

/* The rope op (kernels/cpu/rope.c); its tables' bytes for calls of up to
 * max_tok tokens and max_rot rotated dimensions, their allocation at that
 * size (replacing any held) and release. */
gt_status gt__cpu_rope(gt_kernels *k, float *x, int64_t n_tok, int n_head, int head_dim,
                       const int32_t *pos, const gt_rope_params *p);
size_t gt__cpu_rope_bytes(int64_t max_tok, int max_rot);
gt_status gt__cpu_rope_alloc(gt_cpu *k, int64_t max_tok, int max_rot);
void gt__cpu_rope_free(gt_cpu *k);

/* Matrix product and weights (kernels/cpu/matmul.c). */
bool gt__cpu_matmul_supports(const gt_kernels *k, gt_dtype type);
gt_status gt__cpu_weight_init(gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                              const void *data, bool invariant, gt_weight *w);
gt_status gt__cpu_weight_free(gt_kernels *k, gt_weight *w);
size_t gt__cpu_weight_bytes(const gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                           bool invariant);

/* Asynchronous copies on the backend's copy thread (kernels/cpu/copy.c). */
typedef struct gt_cpu_copier gt_cpu_copier; /* kernels/cpu/copy.c */
gt_status gt__cpu_copy_start(gt_kernels *k, gt_buffer *dst, size_t off, const void *src, size_t n,
                             uint64_t *ticket);
gt_status gt__cpu_copy_wait(gt_kernels *k, uint64_t ticket);
void gt__cpu_copier_destroy(gt_cpu_copier *c); /* accepts NULL */
gt_status gt__cpu_matmul(gt_kernels *k, const gt_weight *w, const float *x, float *y,
                         int64_t n_tok);
gt_status gt__cpu_matmul_multi(gt_kernels *k, const gt_matmul_item *items, int n, const float *x,
                               int64_t n_tok);

/* Per-thread scratch of the matrix product for one ISA's kernels
 * (kernels/cpu/workspace.c): the reference's widened row, the Q8 activations
 * (fused decode: one copy per thread) and the float panels' packing. */
size_t gt__mm_ref_scratch_bytes(int64_t n_in, int n_threads);
size_t gt__mm_q8_scratch_bytes(int64_t n_in, int64_t n_tok, int n_threads);
size_t gt__mm_pf_scratch_bytes(gt_isa isa, int64_t n_tok, int n_threads);

#endif
