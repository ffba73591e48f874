/* The CPU backend's workspace: how many bytes each op's scratch takes, the
 * maximum over every op and every ISA for a gt_workspace_req, and the one
 * buffer that reserve allocates and the ops borrow. Baseline
 * code (no wide instructions), so that any CPU can size the workspace of any
 * ISA; the kernels call these same functions for their own scratch. */
#include "common/alloc.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul_avx2.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/ops.h"

size_t gt__mm_pf_scratch_floats(int64_t n_tok) {
    if (n_tok <= 4) return 0;
    const size_t pf = (size_t)GT_MM_PF_KC * GT_MM_PF_TC + (size_t)GT_MM_PF_KC * 16 /* x, slab */
                      + (size_t)GT_MM_PF_PG * GT_MM_PF_TC * 16;                    /* sums */
    const size_t pb = (size_t)GT_MM_PB_PG * GT_MM_PB_TC * 16; /* a group's sums */
    return pf > pb ? pf : pb;
}

size_t gt__mm_pb_xp_bytes(int64_t n_in, int64_t n_tok) {
    if (n_tok <= 4) return 0;
    const size_t tiles = ((size_t)n_tok + GT_MM_PB_NT - 1) / GT_MM_PB_NT;
    return gt_align_up(tiles * (size_t)gt__mm_pb_tile_u32(n_in) * sizeof(uint32_t), GT_ALIGN);
}

size_t gt__mm_pb_scratch_bytes(int64_t n_in, int64_t n_tok, int n_threads) {
    return gt__mm_pb_xp_bytes(n_in, n_tok) +
           gt__mm_pf_scratch_bytes(GT_ISA_AVX512, n_tok, n_threads);
}

size_t gt__mm_pf_avx2_scratch_floats(int64_t n_tok) {
    if (n_tok <= 4) return 0;
    return (size_t)GT_MM_PF_KC * 16;
}

size_t gt__attn_simd_scratch_bytes(int head_dim, int group, int64_t n_tok, int vw) {
    const size_t m = (size_t)n_tok * (size_t)group;
    const size_t acc_stride = ((size_t)head_dim + (size_t)vw - 1) / (size_t)vw * (size_t)vw;
    size_t floats = m * acc_stride                      /* accumulators */
                    + m * GT_ATTN_CHUNK                 /* scores / probabilities */
                    + 2 * m                             /* running max and sum */
                    + m                                 /* the queries' rescale factors */
                    + m * (((size_t)head_dim + 1) / 2); /* BF16 cache: queries as bf16 pairs */
    return floats * sizeof(float) + 2 * m * sizeof(int64_t) + 5 * m * sizeof(void *) + 4 * 64;
}

size_t gt__mm_ref_scratch_bytes(int64_t n_in, int n_threads) {
    return gt_align_up((size_t)n_in * sizeof(float), GT_ALIGN) * (size_t)n_threads;
}

/* Decode (n_tok <= 4) quantizes into one copy per thread, a multiple of 4
 * blocks (192 bytes, 64-byte aligned); prefill into one shared copy. */
size_t gt__mm_q8_scratch_bytes(int64_t n_in, int64_t n_tok, int n_threads) {
    const size_t nq = (size_t)n_tok * (size_t)(n_in / 32);
    if (n_tok <= 4) return (nq + 3) / 4 * 4 * sizeof(gt_mm_q8a) * (size_t)n_threads;
    return nq * sizeof(gt_mm_q8a);
}

size_t gt__mm_pf_scratch_bytes(gt_isa isa, int64_t n_tok, int n_threads) {
    size_t floats = isa == GT_ISA_AVX512 ? gt__mm_pf_scratch_floats(n_tok)
                    : isa == GT_ISA_AVX2 ? gt__mm_pf_avx2_scratch_floats(n_tok)
                                         : 0;
    return floats * sizeof(float) * (size_t)n_threads;
}

static size_t max2(size_t a, size_t b) { return a > b ? a : b; }

/* Attention's per-thread bytes for the worst grouping (every query head on one
 * kv head) over the tables of every ISA, computed without calling into them;
 * a call's tile is at most its tokens (cpu_attention). */
static size_t attn_bytes(const gt_workspace_req *r) {
    if (r->max_heads < 1 || r->head_dim < 1) return 0;
    gt_attn_args a = {.n_head = r->max_heads, .n_kv_head = 1, .head_dim = r->head_dim};
    const int64_t tile =
        r->max_tokens >= 1 && r->max_tokens < GT_ATTN_TILE ? r->max_tokens : GT_ATTN_TILE;
    size_t ref = gt_align_up(gt__attn_scratch_bytes_ref(&a, 1), GT_ALIGN);
    size_t avx2 =
        gt_align_up(gt__attn_simd_scratch_bytes(r->head_dim, r->max_heads, tile, 8), GT_ALIGN);
    size_t avx512 =
        gt_align_up(gt__attn_simd_scratch_bytes(r->head_dim, r->max_heads, tile, 16), GT_ALIGN);
    return max2(ref, max2(avx2, avx512)) * (size_t)r->n_threads;
}

/* The matrix product's worst case over every ISA and every token count up to
 * max_tokens (decode and prefill take different paths). */
static size_t matmul_bytes(const gt_workspace_req *r) {
    if (r->max_tokens < 1 || r->max_n_in < 1) return 0;
    const int64_t t = r->max_tokens, decode = t < 4 ? t : 4;
    size_t b = gt__mm_ref_scratch_bytes(r->max_n_in, r->n_threads);
    b = max2(b, gt__mm_q8_scratch_bytes(r->max_n_in, decode, r->n_threads));
    b = max2(b, gt__mm_q8_scratch_bytes(r->max_n_in, t, r->n_threads));
    b = max2(b, gt__mm_pf_scratch_bytes(GT_ISA_AVX2, t, r->n_threads));
    b = max2(b, gt__mm_pf_scratch_bytes(GT_ISA_AVX512, t, r->n_threads));
    b = max2(b, gt__mm_pb_scratch_bytes(r->max_n_in, t, r->n_threads));
    return b;
}

/* max_kv does not enter: the CPU attention streams the keys in chunks of
 * GT_ATTN_CHUNK with an online softmax, so its scratch is independent of the
 * context (a device backend that materialises scores would use it). */
static size_t scratch_bytes(const gt_workspace_req *r) {
    if (r->n_threads < 1) return 0;
    return gt_align_up(max2(matmul_bytes(r), attn_bytes(r)), GT_ALIGN);
}

/* The rope tables (kernels/cpu/rope.c): rows of up to head_dim rotated
 * dimensions for max_tokens positions. */
static int rope_rot(const gt_workspace_req *r) {
    return r->head_dim < GT_ROPE_MAX_ROT ? r->head_dim : GT_ROPE_MAX_ROT;
}

size_t gt__cpu_workspace_bytes(const gt_workspace_req *r) {
    if (r->n_threads < 1) return 0;
    return scratch_bytes(r) + gt__cpu_rope_bytes(r->max_tokens, rope_rot(r));
}

gt_status gt__cpu_reserve(gt_kernels *kb, const gt_workspace_req *r) {
    gt_cpu *k = gt__cpu(kb);
    if (r->n_threads < 1 || r->max_tokens < 0 || r->max_n_in < 0 || r->max_heads < 0 ||
        r->head_dim < 0)
        return gt_fail(GT_ERR_INVALID_ARG, "kernels: a workspace for %lld tokens, rows of %lld, %d "
                       "heads of %d and %d threads is not a valid request", (long long)r->max_tokens,
                       (long long)r->max_n_in, r->max_heads, r->head_dim, r->n_threads);
    size_t bytes = scratch_bytes(r);
    void *p = bytes ? gt_alloc(bytes) : NULL;
    if (bytes && !p)
        return gt_fail(GT_ERR_NOMEM, "kernels: cannot allocate a workspace of %zu bytes", bytes);
    gt_status st = gt__cpu_rope_alloc(k, r->max_tokens, rope_rot(r));
    if (st != GT_OK) {
        gt_free(p);
        return st;
    }
    gt_free(k->scratch);
    k->scratch = p;
    k->scratch_bytes = bytes;
    k->reserved = true;
    return GT_OK;
}

void *gt__cpu_scratch(gt_cpu *k, size_t bytes) {
    if (k->scratch && bytes <= k->scratch_bytes) return k->scratch;
    if (k->reserved) return NULL;
    size_t want = gt_align_up(bytes > 4096 ? bytes : 4096, GT_ALIGN);
    void *p = gt_alloc(want);
    if (!p) return NULL;
    gt_free(k->scratch);
    k->scratch = p;
    k->scratch_bytes = want;
    return p;
}
