/* The SIMD bodies of the non-matmul ops, written once over a small vector
 * vocabulary and included by ops_avx2.c (8 floats) and ops_avx512.c (16
 * floats), which define that vocabulary first:
 *
 *   vf, VW, v_zero, v_set1, v_load, v_load_n, v_store, v_store_n, v_load_h,
 *   v_load_h_n, v_add, v_sub, v_mul, v_div, v_fma (a*b+c), v_fnma (c-a*b),
 *   v_max, v_min, v_abs, v_hsum, v_hmax, v_swap_pairs, v_round,
 *   v_pow2i (2^n for integral n in [-126, 127]), v_select_lt (x < y ? a : b),
 *   v_copysign (|mag| with the sign of s).
 *
 * The _n forms handle a partial vector of n < VW lanes (zero-filled loads),
 * so every loop ends with a masked step rather than a scalar tail and the
 * tail lanes see the same math as the rest.
 *
 * exp is Cephes' single-precision polynomial (about 1 ulp on [-87, 88], 0
 * below); tanh uses Cephes' odd polynomial for |x| < 0.625 and 1 - 2/(e^2x+1)
 * above, so small arguments keep their relative accuracy.
 *
 * Attention works on one kv head and a tile of query tokens: all the query
 * heads that share the kv head (GQA) and the tile's tokens read each K/V row
 * once per 64-key chunk (converted from F16 once), scores are kept per chunk
 * and folded into an online softmax, and the P·V product runs with the
 * output accumulators in registers. The chunks are aligned to multiples of
 * 64 key positions, so a query's result is the same bits whatever tile it is
 * computed in. */
#ifndef GT_OPS_SIMD_H
#define GT_OPS_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ops.h"

/* vdpbf16ps in two FMAs (each lane: acc += a.hi * b.hi, then a.lo * b.lo,
 * the products exact, each add rounded; denormals are not flushed): the
 * BF16 pairs on CPUs without AVX512_BF16. */
static inline vf v_dpbf16_x(vf acc, vp a, vp b) {
    const vp hi = v_set1_p(0xFFFF0000u);
    acc = v_fma(v_p_as_f(v_and_p(a, hi)), v_p_as_f(v_and_p(b, hi)), acc);
    return v_fma(v_p_as_f(v_p_shl16(a)), v_p_as_f(v_p_shl16(b)), acc);
}

/* x (finite, as probabilities are) rounded to bf16, nearest even, kept as
 * f32 (as gt_f32_to_bf16 for finite values). */
static inline vf v_round_bf16(vf x) {
    const vp u = v_f_as_p(x);
    const vp odd = v_and_p(v_p_shr16(u), v_set1_p(1));
    return v_p_as_f(v_and_p(v_p_add(u, v_p_add(odd, v_set1_p(0x7FFF))), v_set1_p(0xFFFF0000u)));
}

/* ---- transcendental functions ---- */

static inline vf v_exp(vf x) {
    const vf lo = v_set1(-87.33654f);
    vf xc = v_min(v_max(x, lo), v_set1(88.0f));
    vf fx = v_round(v_mul(xc, v_set1(1.44269504088896341f)));
    xc = v_fnma(fx, v_set1(0.693359375f), xc);
    xc = v_fnma(fx, v_set1(-2.12194440e-4f), xc);
    vf y = v_set1(1.9875691500E-4f);
    y = v_fma(y, xc, v_set1(1.3981999507E-3f));
    y = v_fma(y, xc, v_set1(8.3334519073E-3f));
    y = v_fma(y, xc, v_set1(4.1665795894E-2f));
    y = v_fma(y, xc, v_set1(1.6666665459E-1f));
    y = v_fma(y, xc, v_set1(5.0000001201E-1f));
    y = v_fma(y, v_mul(xc, xc), v_add(xc, v_set1(1.0f)));
    y = v_mul(y, v_pow2i(fx));
    return v_select_lt(x, lo, v_zero(), y);
}

static inline vf v_tanh(vf x) {
    const vf z = v_abs(x);
    /* large: 1 - 2 / (exp(2z) + 1) */
    const vf e = v_exp(v_add(z, z));
    const vf big = v_sub(v_set1(1.0f), v_div(v_set1(2.0f), v_add(e, v_set1(1.0f))));
    /* small: x + x^3 P(x^2) */
    const vf s = v_mul(x, x);
    vf p = v_set1(-5.70498872745E-3f);
    p = v_fma(p, s, v_set1(2.06390887954E-2f));
    p = v_fma(p, s, v_set1(-5.37397155531E-2f));
    p = v_fma(p, s, v_set1(1.33314422036E-1f));
    p = v_fma(p, s, v_set1(-3.33332819422E-1f));
    const vf small = v_fma(v_mul(p, s), x, x);
    return v_select_lt(z, v_set1(0.625f), small, v_copysign(big, x));
}

/* ---- element-wise ---- */

static inline vf silu_mul(vf g, vf u) {
    return v_mul(v_div(g, v_add(v_set1(1.0f), v_exp(v_sub(v_zero(), g)))), u);
}

/* gelu_tanh(g) = 0.5 g (1 + tanh(k)) = g / (1 + exp(-2k)): the same function,
 * evaluated without the cancellation of 1 + tanh(k) for negative g. */
static inline vf gelu_mul(vf g, vf u) {
    const vf g3 = v_mul(v_mul(g, g), g);
    const vf k = v_mul(v_set1(0.7978845608028654f), v_fma(v_set1(0.044715f), g3, g));
    const vf e = v_exp(v_mul(v_set1(-2.0f), k));
    return v_mul(v_div(g, v_add(v_set1(1.0f), e)), u);
}

static void simd_swiglu(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) v_store(out + i, silu_mul(v_load(g + i), v_load(u + i)));
    if (i < n) {
        const int r = (int)(n - i);
        v_store_n(out + i, silu_mul(v_load_n(g + i, r), v_load_n(u + i, r)), r);
    }
}

static void simd_geglu(const float *g, const float *u, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) v_store(out + i, gelu_mul(v_load(g + i), v_load(u + i)));
    if (i < n) {
        const int r = (int)(n - i);
        v_store_n(out + i, gelu_mul(v_load_n(g + i, r), v_load_n(u + i, r)), r);
    }
}

static void simd_add(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) v_store(y + i, v_add(v_load(y + i), v_load(x + i)));
    if (i < n) {
        const int r = (int)(n - i);
        v_store_n(y + i, v_add(v_load_n(y + i, r), v_load_n(x + i, r)), r);
    }
}

/* n floats of x rounded to f16 into h: a vector at a time through a
 * staging row, NaNs as gt_f32_to_f16 makes them (F16C keeps payloads). */
static void f16_row(const float *x, gt_f16 *h, int n) {
    for (int i = 0; i < n; i += VW) {
        const int r = n - i < VW ? n - i : VW;
        const vf v = v_load_n(x + i, r);
        gt_f16 t[VW];
        v_store_h(t, v);
        for (unsigned m = v_nan_lanes(v); m; m &= m - 1) {
            const int l = __builtin_ctz(m);
            t[l] = gt_f32_to_f16(x[i + l]);
        }
        memcpy(h + i, t, (size_t)r * sizeof *t);
    }
}

/* gt__kv_store_ref's layout with the rounding vectorised: a value row is
 * written in place, a key row staged and spread over its block's columns. */
static gt_status simd_kv_store(const gt_kv_store_args *a) {
    if (a->kv_type != GT_F16) return gt__kv_store_ref(a);
    if (a->n_kv_head < 1 || a->row_elems % a->n_kv_head)
        return gt__kv_store_ref(a); /* its sentence */
    const int hd = a->row_elems / a->n_kv_head;
    gt_f16 stage[512];
    if (hd > (int)(sizeof stage / sizeof *stage)) return gt__kv_store_ref(a);
    const size_t hs = gt_kv_head_stride(a->head_stride, a->block_size, hd, 2);
    for (int64_t i = 0; i < a->n_tok; i++) {
        const int32_t p = a->pos[i];
        uint8_t *blk = a->blocks[p / a->block_size];
        for (int g = 0; g < a->n_kv_head; g++) {
            const float *src = a->rows + i * a->row_elems + (size_t)g * hd;
            if (!a->keys) {
                f16_row(src, (gt_f16 *)(blk + gt_kv_offset(p, g, a->block_size, hd, 2, hs)), hd);
                continue;
            }
            f16_row(src, stage, hd);
            gt_f16 *k0 = (gt_f16 *)(blk + gt_k_offset(p, g, 0, a->block_size, hd, 2, hs));
            for (int d = 0; d < hd; d++) k0[(size_t)d * a->block_size] = stage[d];
        }
    }
    return GT_OK;
}

static void simd_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps) {
    vf s0 = v_zero(), s1 = v_zero();
    int64_t i = 0;
    for (; i + 2 * VW <= n; i += 2 * VW) {
        const vf a = v_load(x + i), b = v_load(x + i + VW);
        s0 = v_fma(a, a, s0);
        s1 = v_fma(b, b, s1);
    }
    for (; i < n; i += VW) {
        const int r = n - i < VW ? (int)(n - i) : VW;
        const vf a = v_load_n(x + i, r);
        s0 = v_fma(a, a, s0);
    }
    const double ss = (double)v_hsum(v_add(s0, s1));
    const vf scale = v_set1((float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps)));
    for (i = 0; i < n; i += VW) {
        const int r = n - i < VW ? (int)(n - i) : VW;
        vf v = v_mul(v_load_n(x + i, r), scale);
        if (w) v = v_mul(v, v_load_n(w + i, r));
        v_store_n(y + i, v, r);
    }
}

static void simd_rope(float *x, int64_t n_vec, int head_dim, const float *cos_t, const float *sin_t,
                      const gt_rope_params *p) {
    const int half = p->n_rot / 2;
    if (p->neox) {
        const float *c = cos_t, *s = sin_t;
        for (int64_t v = 0; v < n_vec; v++, x += head_dim) {
            for (int i = 0; i < half; i += VW) {
                const int r = half - i < VW ? half - i : VW;
                const vf cv = v_load_n(c + i, r), sv = v_load_n(s + i, r);
                const vf x0 = v_load_n(x + i, r), x1 = v_load_n(x + half + i, r);
                v_store_n(x + i, v_fnma(x1, sv, v_mul(x0, cv)), r);
                v_store_n(x + half + i, v_fma(x1, cv, v_mul(x0, sv)), r);
            }
        }
        return;
    }
    /* Adjacent pairs: expand to per-lane tables (cos, cos) and (-sin, +sin)
     * so that out = x * c2 + swap_pairs(x) * s2. */
    float c[GT_ROPE_MAX_ROT], s[GT_ROPE_MAX_ROT];
    for (int i = 0; i < half; i++) {
        c[2 * i] = c[2 * i + 1] = cos_t[i];
        s[2 * i] = -sin_t[i];
        s[2 * i + 1] = sin_t[i];
    }
    for (int64_t v = 0; v < n_vec; v++, x += head_dim) {
        for (int i = 0; i < p->n_rot; i += VW) {
            const int r = p->n_rot - i < VW ? p->n_rot - i : VW;
            const vf xv = v_load_n(x + i, r);
            const vf out =
                v_fma(v_swap_pairs(xv), v_load_n(s + i, r), v_mul(xv, v_load_n(c + i, r)));
            v_store_n(x + i, out, r);
        }
    }
}

/* ---- attention ---- */

#define ATTN_CHUNK GT_ATTN_CHUNK /* keys per softmax step; a multiple of VW */
#define ATTN_TILE  GT_ATTN_TILE  /* query tokens per work item */

typedef struct {
    int hd, group, m;
    size_t acc_stride; /* floats per accumulator row, a multiple of VW */
} attn_dims;

static attn_dims attn_dims_of(const gt_attn_args *a, int64_t n_tok) {
    attn_dims d;
    d.hd = a->head_dim;
    d.group = a->n_head / a->n_kv_head;
    d.m = (int)n_tok * d.group;
    d.acc_stride = ((size_t)d.hd + VW - 1) / VW * VW;
    return d;
}

static size_t simd_attn_scratch_bytes(const gt_attn_args *a, int64_t n_tok) {
    return gt__attn_simd_scratch_bytes(a->head_dim, a->n_head / a->n_kv_head, n_tok, VW);
}

/* The addresses of rows [c0, c0 + nc) of kv head g. A kv head's rows are
 * contiguous inside a block, so they are taken a block's run at a time;
 * the block and the row in it are divided out once, then stepped. */
static void kv_rows(const gt_attn_args *a, const void *const *blocks, int g, int64_t c0, int nc,
                    const void **rows) {
    const int hd = a->head_dim, bs = a->block_size;
    const size_t esz = gt_kv_elem_bytes(a->kv_type), row = (size_t)hd * esz;
    const size_t head_off =
        gt_kv_offset(0, g, bs, hd, esz, gt_kv_head_stride(a->head_stride, bs, hd, esz));
    int64_t b = c0 / bs;
    int r = (int)(c0 % bs);
    for (int c = 0; c < nc; b++, r = 0) {
        const int n = bs - r < nc - c ? bs - r : nc - c;
        const char *src = (const char *)blocks[b] + head_off + (size_t)r * row;
        for (int i = 0; i < n; i++, c++) rows[c] = src + (size_t)i * row;
    }
}

/* BF16 values: the addresses of the pair rows of chunk keys [c0, c0 + nc)
 * of kv head g, c0 even: rows[j] holds element d of keys c0 + 2j and
 * c0 + 2j + 1 as pair d (gt_kv_v_index). */
static void v_pair_rows(const gt_attn_args *a, int g, int64_t c0, int nc, const uint32_t **rows) {
    const int hd = a->head_dim, bs = a->block_size;
    const size_t head_off = (size_t)g * gt_kv_head_stride(a->head_stride, bs, hd, 2);
    int64_t b = c0 / bs;
    int r = (int)(c0 % bs);
    for (int j = 0; 2 * j < nc; j++) {
        rows[j] =
            (const uint32_t *)((const char *)a->v_blocks[b] + head_off) + (size_t)(r >> 1) * hd;
        if ((r += 2) == bs) {
            r = 0;
            b++;
        }
    }
}

/* Read-ahead of the rows the next phase reads, a few lines at a time inside
 * the current phase's loops: while a chunk's scores are computed, its V
 * rows; while its value sums are, the next chunk's K rows (past a kv
 * head's last chunk, those of the thread's next kv head, which would
 * otherwise start cold). The memory then works while the core computes:
 * the KV cache of a long context is far larger than L2, each chunk of a
 * kv head touches several blocks, and the hardware prefetchers do not
 * follow from block to block. One phase ahead, not further: on Zen 4 a
 * core keeps only so many software prefetches in flight, and those of a
 * chunk two ahead (K and V together during the scores) read the cache
 * at 10-11 GB/s where one phase ahead reads 14-16 (bench_attention,
 * docs/benchmarks.md). A K block's head part is transposed but spans the
 * same bytes, so "row r" of it is simply its r-th row-sized piece: a
 * chunk's pieces cover its keys when the chunk holds whole blocks (blocks
 * of 16, 32 or 64), roughly else. */
typedef struct {
    const void *const *blocks; /* the K or the V blocks */
    size_t head_off, row;      /* kv head g's part: g * head stride; bytes per row */
    int r, bs;                 /* the next run starts at row r of block b */
    int64_t b, left;           /* rows not yet in a run */
    uintptr_t p, end;          /* the current run (a block's rows): next line, end */
    int row_lines;             /* lines per row, rounded up */
} kv_readahead;

/* Rows [from, to) of kv head g in `blocks`, a->k_blocks or a->v_blocks. */
static void kv_readahead_init(kv_readahead *ra, const gt_attn_args *a, const void *const *blocks,
                              int g, int64_t from, int64_t to) {
    const size_t esz = gt_kv_elem_bytes(a->kv_type);
    ra->blocks = blocks;
    ra->bs = a->block_size;
    ra->row = (size_t)a->head_dim * esz;
    ra->head_off = gt_kv_offset(0, g, a->block_size, a->head_dim, esz,
                                gt_kv_head_stride(a->head_stride, a->block_size, a->head_dim, esz));
    ra->b = from / a->block_size;
    ra->r = (int)(from % a->block_size);
    ra->left = to > from ? to - from : 0;
    ra->p = ra->end = 0;
    ra->row_lines = (int)((ra->row + 63) / 64);
}

/* The next run: the remaining rows of the next block, as one span of bytes
 * from the line its first row starts in; 0 when none is left. */
static int kv_readahead_run(kv_readahead *ra) {
    if (ra->left <= 0) return 0;
    const int n = ra->bs - ra->r < ra->left ? ra->bs - ra->r : (int)ra->left;
    const uintptr_t p = (uintptr_t)ra->blocks[ra->b] + ra->head_off + (size_t)ra->r * ra->row;
    ra->p = p & ~(uintptr_t)63;
    ra->end = p + (size_t)n * ra->row;
    ra->left -= n;
    if ((ra->r += n) == ra->bs) {
        ra->r = 0;
        ra->b++;
    }
    return 1;
}

/* The next `lines` lines (every line a row touches, a row need not start on
 * one): a compare, a prefetch and an add per line, a block's rows at a
 * time. */
static inline void kv_readahead_lines(kv_readahead *ra, int lines) {
    for (; lines > 0; lines--) {
        if (ra->p >= ra->end && !kv_readahead_run(ra)) return;
        __builtin_prefetch((const void *)ra->p, 0, 2);
        ra->p += 64;
    }
}

/* Piece [d, d + VW) of a K or V row as f32: widened from f16 (H) or loaded
 * (an f32 cache); the _n form reads the first n elements. */
static inline __attribute__((always_inline)) vf kv_load(const int H, const void *row, int d) {
    return H ? v_load_h((const gt_f16 *)row + d) : v_load((const float *)row + d);
}
static inline __attribute__((always_inline)) vf kv_load_n(const int H, const void *row, int d,
                                                          int n) {
    return H ? v_load_h_n((const gt_f16 *)row + d, n) : v_load_n((const float *)row + d, n);
}

/* K is stored transposed in each block: kv head g's keys as [head_dim][block
 * size] (gt_k_offset), so VW keys' element d lie side by side. A key vector:
 * n (1..VW) consecutive keys of one block, at chunk slot c, p pointing at
 * their element 0 (element d at p + d * block_size elements). */
typedef struct {
    const void *p;
    int c, n;
} kvec;

/* The key vectors of chunk keys [c0, c0 + nc) of kv head g (block and
 * row divided out once, then stepped, as kv_rows). */
static int k_vectors(const gt_attn_args *a, int g, int64_t c0, int nc, kvec *kv) {
    const int hd = a->head_dim, bs = a->block_size;
    const size_t esz = gt_kv_elem_bytes(a->kv_type);
    const size_t kstep = a->kv_type == GT_BF16 ? 2 * esz : esz; /* BF16: a pair per key */
    const size_t head_off =
        gt_k_offset(0, g, 0, bs, hd, esz, gt_kv_head_stride(a->head_stride, bs, hd, esz));
    int64_t b = c0 / bs;
    int r = (int)(c0 % bs), n_v = 0;
    for (int c = 0; c < nc;) {
        int n = bs - r < nc - c ? bs - r : nc - c;
        n = n < VW ? n : VW;
        kv[n_v].p = (const char *)a->k_blocks[b] + head_off + (size_t)r * kstep;
        kv[n_v].c = c;
        kv[n_v].n = n;
        n_v++;
        c += n;
        if ((r += n) == bs) {
            r = 0;
            b++;
        }
    }
    return n_v;
}

/* Queries and key vectors per score call: NQ x NV accumulators and NV
 * keys in registers (32 zmm, 16 ymm). */
#define QKT_NV 4
#define QKT_NQ (VW == 16 ? 6 : 2)

/* Scores of NQ queries against NV key vectors: s[i][c] = q_i . k_c, each
 * lane one key, each score one FMA chain over d = 0..hd-1 in order; its
 * bits depend on nothing else in the call (batch invariance). F (all
 * vectors full) reads whole vectors, else each reads its first n lanes.
 * H: 0 an F32 cache, 1 F16, 2 and 3 BF16 (a chain over the pairs of d,
 * each step both products of a pair; q[i] then points at the query's
 * bf16 pairs; 3 with vdpbf16ps, 2 with its emulation). */
static inline __attribute__((always_inline)) void qkt_n(const int NQ, const int NV, const int H,
                                                        const int F, const float *const *q,
                                                        const kvec *kv, int hd, int bs,
                                                        float *const *s, kv_readahead *ra) {
    vf acc[QKT_NQ][QKT_NV];
    for (int i = 0; i < NQ; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = v_zero();
    const size_t step = (size_t)bs;
    const int n_steps = H >= 2 ? hd / 2 : hd;
    /* a chunk's rows spread over the steps */
    const int ra_lines = (ATTN_CHUNK * ra->row_lines + n_steps - 1) / n_steps;
    for (int d = 0; d < n_steps; d++) {
        kv_readahead_lines(ra, ra_lines);
        if (H >= 2) {
            vp kp2[QKT_NV];
            for (int v = 0; v < NV; v++) {
                const uint32_t *kp = (const uint32_t *)kv[v].p + d * step;
                kp2[v] = F ? v_load_p(kp) : v_load_p_n(kp, kv[v].n);
            }
            for (int i = 0; i < NQ; i++) {
                const vp qd = v_set1_p(((const uint32_t *)q[i])[d]);
                for (int v = 0; v < NV; v++)
                    acc[i][v] = H == 3 ? v_dpbf16(acc[i][v], kp2[v], qd)
                                       : v_dpbf16_x(acc[i][v], kp2[v], qd);
            }
            continue;
        }
        vf k[QKT_NV];
        for (int v = 0; v < NV; v++) {
            if (H) {
                const gt_f16 *kp = (const gt_f16 *)kv[v].p + d * step;
                k[v] = F ? v_load_h(kp) : v_load_h_n(kp, kv[v].n);
            } else {
                const float *kp = (const float *)kv[v].p + d * step;
                k[v] = F ? v_load(kp) : v_load_n(kp, kv[v].n);
            }
        }
        for (int i = 0; i < NQ; i++) {
            const vf qd = v_set1(q[i][d]);
            for (int v = 0; v < NV; v++) acc[i][v] = v_fma(qd, k[v], acc[i][v]);
        }
    }
    for (int i = 0; i < NQ; i++)
        for (int v = 0; v < NV; v++) v_store_n(s[i] + kv[v].c, acc[i][v], kv[v].n);
}

/* Scores of n_q queries against a chunk's n_v key vectors, in calls of up
 * to QKT_NQ queries x QKT_NV vectors (H a constant in each caller below,
 * so each gets its own specialised copies). */
static inline __attribute__((always_inline)) void qkt_h(const int H, const float *const *q, int n_q,
                                                        const kvec *kv, int n_v, int hd, int bs,
                                                        float *const *s, kv_readahead *ra) {
    for (int v0 = 0; v0 < n_v; v0 += QKT_NV) {
        const int nv = n_v - v0 < QKT_NV ? n_v - v0 : QKT_NV;
        int full = 1;
        for (int v = v0; v < v0 + nv; v++) full &= kv[v].n == VW;
        for (int i = 0, m; i < n_q; i += m) {
            m = n_q - i < QKT_NQ ? n_q - i : QKT_NQ;
#define QKT_CALL(NQ, NV)                                                                           \
    do {                                                                                           \
        if (full)                                                                                  \
            qkt_n(NQ, NV, H, 1, q + i, kv + v0, hd, bs, s + i, ra);                                \
        else                                                                                       \
            qkt_n(NQ, NV, H, 0, q + i, kv + v0, hd, bs, s + i, ra);                                \
    } while (0)
#define QKT_Q(NQ)                                                                                  \
    do {                                                                                           \
        if (nv == 4)                                                                               \
            QKT_CALL(NQ, 4);                                                                       \
        else if (nv == 3)                                                                          \
            QKT_CALL(NQ, 3);                                                                       \
        else if (nv == 2)                                                                          \
            QKT_CALL(NQ, 2);                                                                       \
        else                                                                                       \
            QKT_CALL(NQ, 1);                                                                       \
    } while (0)
            if (QKT_NQ >= 6 && m == 6)
                QKT_Q(6);
            else if (QKT_NQ >= 5 && m == 5)
                QKT_Q(5);
            else if (QKT_NQ >= 4 && m == 4)
                QKT_Q(4);
            else if (QKT_NQ >= 3 && m == 3)
                QKT_Q(3);
            else if (m == 2)
                QKT_Q(2);
            else
                QKT_Q(1);
#undef QKT_Q
#undef QKT_CALL
        }
    }
}

static void qkt_group(int H, const float *const *q, int n_q, const kvec *kv, int n_v, int hd,
                      int bs, float *const *s, kv_readahead *ra) {
    if (H == 1)
        qkt_h(1, q, n_q, kv, n_v, hd, bs, s, ra);
    else if (H == 2)
        qkt_h(2, q, n_q, kv, n_v, hd, bs, s, ra);
    else if (H == 3)
        qkt_h(V_DPBF16_NATIVE ? 3 : 2, q, n_q, kv, n_v, hd, bs, s, ra);
    else
        qkt_h(0, q, n_q, kv, n_v, hd, bs, s, ra);
}

/* acc_i[0..hd) = acc_i * alpha_i + sum_c p_i[c] * v[c] for N queries (1..PV_N,
 * a compile-time constant) that see the same keys, as GQA's query heads of
 * one token do: each V piece is loaded (and widened, H) once for all N.
 * Slabs of four vectors of each accumulator stay in registers across the
 * keys; a query's result does not depend on the others sharing the call
 * (each element's chain is the same). A zero probability is multiplied
 * like any other (the rows in [0, nc) are visible, written keys: finite),
 * no branch per key. */
#define PV_N (VW == 16 ? 6 : 4) /* queries per value-sum call: 4 N accumulators */

static inline __attribute__((always_inline)) void
pv_accumulate_n(const int N, const int H, float *const *acc, int hd, const float *alpha,
                const float *const *p, const void *const *v, int nc, kv_readahead *ra) {
    int d0 = 0;
    for (; d0 + 4 * VW <= hd; d0 += 4 * VW) {
        vf a[PV_N][4];
        for (int i = 0; i < N; i++) {
            const vf al = v_set1(alpha[i]);
            for (int j = 0; j < 4; j++) a[i][j] = v_mul(v_load(acc[i] + d0 + j * VW), al);
        }
        for (int c = 0; c < nc; c++) {
            kv_readahead_lines(ra, ra->row_lines);
            const vf v0 = kv_load(H, v[c], d0), v1 = kv_load(H, v[c], d0 + VW),
                     v2 = kv_load(H, v[c], d0 + 2 * VW), v3 = kv_load(H, v[c], d0 + 3 * VW);
            for (int i = 0; i < N; i++) {
                const vf pc = v_set1(p[i][c]);
                a[i][0] = v_fma(pc, v0, a[i][0]);
                a[i][1] = v_fma(pc, v1, a[i][1]);
                a[i][2] = v_fma(pc, v2, a[i][2]);
                a[i][3] = v_fma(pc, v3, a[i][3]);
            }
        }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < 4; j++) v_store(acc[i] + d0 + j * VW, a[i][j]);
    }
    for (int i = 0; i < N; i++) /* the last hd % (4 VW) elements, a vector at a time */
        for (int d = d0; d < hd; d += VW) {
            const int r = hd - d < VW ? hd - d : VW;
            vf a0 = v_mul(v_load_n(acc[i] + d, r), v_set1(alpha[i]));
            for (int c = 0; c < nc; c++) a0 = v_fma(v_set1(p[i][c]), kv_load_n(H, v[c], d, r), a0);
            v_store_n(acc[i] + d, a0, r);
        }
}

/* n queries (any count) in calls of up to four (H constant, as qk_group_h). */
static inline __attribute__((always_inline)) void
pv_group_h(const int H, float *const *acc, int n, int hd, const float *alpha, const float *const *p,
           const void *const *v, int nc, kv_readahead *ra) {
    for (int i = 0, k; i < n; i += k) {
        k = n - i < PV_N ? n - i : PV_N;
        if (PV_N >= 6 && k == 6)
            pv_accumulate_n(6, H, acc + i, hd, alpha + i, p + i, v, nc, ra);
        else if (PV_N >= 5 && k == 5)
            pv_accumulate_n(5, H, acc + i, hd, alpha + i, p + i, v, nc, ra);
        else if (k == 4)
            pv_accumulate_n(4, H, acc + i, hd, alpha + i, p + i, v, nc, ra);
        else if (k == 3)
            pv_accumulate_n(3, H, acc + i, hd, alpha + i, p + i, v, nc, ra);
        else if (k == 2)
            pv_accumulate_n(2, H, acc + i, hd, alpha + i, p + i, v, nc, ra);
        else
            pv_accumulate_n(1, H, acc + i, hd, alpha + i, p + i, v, nc, ra);
    }
}

static void pv_accumulate_group(int H, float *const *acc, int n, int hd, const float *alpha,
                                const float *const *p, const void *const *v, int nc,
                                kv_readahead *ra) {
    if (H)
        pv_group_h(1, acc, n, hd, alpha, p, v, nc, ra);
    else
        pv_group_h(0, acc, n, hd, alpha, p, v, nc, ra);
}

/* The BF16 form of pv_accumulate_n: acc_i = acc_i * alpha_i + the sum over
 * the chunk's key pairs [j0, j1] of both products of each pair (p[i *
 * ATTN_CHUNK + j]: query i's probabilities of keys 2j and 2j + 1 as a bf16
 * pair, in the first half of its score row; v[j]: the
 * pair row of those keys), each element one chain over the pairs in order
 * (NAT: vdpbf16ps, else its emulation). The pairs at the ends may hold a
 * key the queries do not see (probability 0) whose slot was never
 * written: keep_first and keep_last clear such a half of the values, so
 * that whatever it holds adds exactly nothing. */
static inline __attribute__((always_inline)) vf pv_dp(const int NAT, vf acc, vp v, vp p) {
    return NAT ? v_dpbf16(acc, v, p) : v_dpbf16_x(acc, v, p);
}

/* Pair j's values with an unseen end key cleared (the first and last pair). */
static inline __attribute__((always_inline)) vp pv_keep(vp x, int j, int j0, int j1, vp keep_first,
                                                        vp keep_last) {
    if (j == j0) x = v_and_p(x, keep_first);
    if (j == j1) x = v_and_p(x, keep_last);
    return x;
}

static inline __attribute__((always_inline)) void
pv_pairs_n(const int N, const int NAT, float *const *acc, int hd, const float *alpha,
           const uint32_t *p, const uint32_t *const *v, int j0, int j1, vp keep_first, vp keep_last,
           kv_readahead *ra) {
    int d0 = 0;
    for (; d0 + 4 * VW <= hd; d0 += 4 * VW) {
        vf a[PV_N][4];
        for (int i = 0; i < N; i++) {
            const vf al = v_set1(alpha[i]);
            for (int k = 0; k < 4; k++) a[i][k] = v_mul(v_load(acc[i] + d0 + k * VW), al);
        }
        for (int j = j0; j <= j1; j++) {
            kv_readahead_lines(ra, 2 * ra->row_lines); /* a pair row holds two keys */
            vp x[4];
            for (int k = 0; k < 4; k++)
                x[k] = pv_keep(v_load_p(v[j] + d0 + k * VW), j, j0, j1, keep_first, keep_last);
            for (int i = 0; i < N; i++) {
                const vp pj = v_set1_p(p[(size_t)i * ATTN_CHUNK + j]);
                for (int k = 0; k < 4; k++) a[i][k] = pv_dp(NAT, a[i][k], x[k], pj);
            }
        }
        for (int i = 0; i < N; i++)
            for (int k = 0; k < 4; k++) v_store(acc[i] + d0 + k * VW, a[i][k]);
    }
    for (int i = 0; i < N; i++) /* the last hd % (4 VW) elements, a vector at a time */
        for (int d = d0; d < hd; d += VW) {
            const int r = hd - d < VW ? hd - d : VW;
            vf a0 = v_mul(v_load_n(acc[i] + d, r), v_set1(alpha[i]));
            for (int j = j0; j <= j1; j++) {
                const vp x = pv_keep(v_load_p_n(v[j] + d, r), j, j0, j1, keep_first, keep_last);
                a0 = pv_dp(NAT, a0, x, v_set1_p(p[(size_t)i * ATTN_CHUNK + j]));
            }
            v_store_n(acc[i] + d, a0, r);
        }
}

static inline __attribute__((always_inline)) void
pv_pairs_h(const int NAT, float *const *acc, int n, int hd, const float *alpha, const uint32_t *p,
           const uint32_t *const *v, int j0, int j1, vp kf, vp kl, kv_readahead *ra) {
    for (int i = 0, k; i < n; i += k) {
        k = n - i < PV_N ? n - i : PV_N;
        const uint32_t *pi = p + (size_t)i * ATTN_CHUNK; /* query i's row of pairs */
        if (PV_N >= 6 && k == 6)
            pv_pairs_n(6, NAT, acc + i, hd, alpha + i, pi, v, j0, j1, kf, kl, ra);
        else if (PV_N >= 5 && k == 5)
            pv_pairs_n(5, NAT, acc + i, hd, alpha + i, pi, v, j0, j1, kf, kl, ra);
        else if (k == 4)
            pv_pairs_n(4, NAT, acc + i, hd, alpha + i, pi, v, j0, j1, kf, kl, ra);
        else if (k == 3)
            pv_pairs_n(3, NAT, acc + i, hd, alpha + i, pi, v, j0, j1, kf, kl, ra);
        else if (k == 2)
            pv_pairs_n(2, NAT, acc + i, hd, alpha + i, pi, v, j0, j1, kf, kl, ra);
        else
            pv_pairs_n(1, NAT, acc + i, hd, alpha + i, pi, v, j0, j1, kf, kl, ra);
    }
}

static void pv_pairs_group(int H, float *const *acc, int n, int hd, const float *alpha,
                           const uint32_t *p, const uint32_t *const *v, int cl, int ch,
                           kv_readahead *ra) {
    const vp all = v_set1_p(0xFFFFFFFFu);
    const vp kf = cl % 2 ? v_set1_p(0xFFFF0000u) : all; /* key 2j unseen: clear the low half */
    const vp kl = ch % 2 ? all : v_set1_p(0x0000FFFFu); /* key 2j + 1 unseen: the high half */
    if (H == 3)
        pv_pairs_h(V_DPBF16_NATIVE, acc, n, hd, alpha, p, v, cl / 2, ch / 2, kf, kl, ra);
    else
        pv_pairs_h(0, acc, n, hd, alpha, p, v, cl / 2, ch / 2, kf, kl, ra);
}

/* Online softmax over a chunk of the queries of rows [i0, i1) of sc (each
 * ATTN_CHUNK floats), which see the chunk's keys cl..ch: their raw scores
 * become probabilities against each row's new running maximum m[i] (the
 * other slots -inf, then 0), the running sums l[i] are rescaled and
 * extended, and alpha[i] is the factor for the old accumulator (bf16: the
 * probabilities rounded to bf16 first, as the value sums take them). Each row
 * takes the same steps as alone; the rows go through each phase together,
 * so one row's reductions overlap the next's instead of waiting on them. */
static void softmax_rows(const gt_attn_args *a, float *sc, int i0, int i1, int cl, int ch, float *m,
                         float *l, float *alpha, int bf16) {
    const vf cap = v_set1(a->softcap), inv_cap = v_set1(a->softcap > 0 ? 1.0f / a->softcap : 0);
    for (int i = i0; i < i1; i++) {
        float *s = sc + (size_t)i * ATTN_CHUNK;
        for (int c1 = 0; c1 < ATTN_CHUNK; c1 += VW) {
            vf x = v_mul(v_load(s + c1), v_set1(a->scale));
            if (a->softcap > 0) x = v_mul(cap, v_tanh(v_mul(x, inv_cap)));
            v_store(s + c1, x);
        }
        for (int c1 = 0; c1 < cl; c1++) s[c1] = -INFINITY;
        for (int c1 = ch + 1; c1 < ATTN_CHUNK; c1++) s[c1] = -INFINITY;
        vf vmax = v_set1(-INFINITY);
        for (int c1 = 0; c1 < ATTN_CHUNK; c1 += VW) vmax = v_max(vmax, v_load(s + c1));
        const float m_new = fmaxf(m[i], v_hmax(vmax));
        alpha[i] = m[i] == -INFINITY ? 0.f : expf(m[i] - m_new);
        m[i] = m_new;
    }
    for (int i = i0; i < i1; i++) {
        float *s = sc + (size_t)i * ATTN_CHUNK;
        vf vsum = v_zero();
        const vf mv = v_set1(m[i]);
        for (int c1 = 0; c1 < ATTN_CHUNK; c1 += VW) {
            vf pr = v_exp(v_sub(v_load(s + c1), mv));
            if (bf16) pr = v_round_bf16(pr); /* the weights the value sums use */
            vsum = v_add(vsum, pr);
            v_store(s + c1, pr);
        }
        l[i] = l[i] * alpha[i] + v_hsum(vsum);
    }
}

/* The keys cl..ch of chunk [c0, c0 + nc) that a query seeing lo..hi sees,
 * as chunk slots; cl > ch when it sees none. */
static inline void chunk_span(int64_t lo, int64_t hi, int64_t c0, int nc, int64_t *cl,
                              int64_t *ch) {
    *cl = (lo > c0 ? lo : c0) - c0;
    *ch = (hi < c0 + nc - 1 ? hi : c0 + nc - 1) - c0;
}

static void simd_attention(const gt_attn_args *a, int g, int g_next, int64_t t0, int64_t t1,
                           void *scratch) {
    const attn_dims dm = attn_dims_of(a, t1 - t0);
    const int hd = dm.hd, M = dm.m, G = dm.group;
    /* 0 F32, 1 F16, 2 BF16 pairs in FMAs, 3 BF16 pairs in vdpbf16ps */
    const int H = a->kv_type == GT_F16    ? 1
                  : a->kv_type == GT_BF16 ? (V_DPBF16_NATIVE && gt__cpu_has_dpbf16() ? 3 : 2)
                                          : 0;
    const size_t st = dm.acc_stride;
    float *acc = scratch;                        /* [M, st] */
    float *sc = acc + (size_t)M * st;            /* [M, ATTN_CHUNK] */
    float *mrow = sc + (size_t)M * ATTN_CHUNK;   /* [M] */
    float *lrow = mrow + M;                      /* [M] */
    int64_t *lo = (int64_t *)(lrow + M);         /* [M] */
    int64_t *hi = lo + M;                        /* [M] */
    const float **qp = (const float **)(hi + M); /* [M] */
    const float **qs = qp + M;                   /* [M] */
    float **ss = (float **)(qs + M);             /* [M] */
    float **sp = ss + M, **ap = sp + M;          /* [M] each */
    float *alpha = (float *)(ap + M);            /* [M] */
    uint32_t *qq = (uint32_t *)(alpha + M);      /* [M, hd / 2]: BF16, the queries as pairs */
    kvec kv[ATTN_CHUNK];
    const void *vrows[ATTN_CHUNK];
    const uint32_t *vpairs[ATTN_CHUNK / 2];
    int64_t kmin = INT64_MAX, kmax = -1;
    for (int i = 0; i < M; i++) {
        const int64_t t = t0 + i / G;
        hi[i] = a->pos[t];
        lo[i] = gt__attn_first_key(a, hi[i]);
        kmin = lo[i] < kmin ? lo[i] : kmin;
        kmax = hi[i] > kmax ? hi[i] : kmax;
        mrow[i] = -INFINITY;
        lrow[i] = 0;
        for (size_t d = 0; d < st; d++) acc[(size_t)i * st + d] = 0;
        qp[i] = a->q + ((size_t)t * a->n_head + (size_t)g * G + i % G) * hd;
        if (H >= 2) { /* the query rounded to bf16, as pairs (the even element low) */
            uint32_t *qi = qq + (size_t)i * (hd / 2);
            for (int d = 0; d < hd; d += 2)
                qi[d / 2] = (uint32_t)gt_f32_to_bf16(qp[i][d]) |
                            (uint32_t)gt_f32_to_bf16(qp[i][d + 1]) << 16;
            qp[i] = (const float *)qi;
        }
    }
    /* Chunks lie on a fixed grid of key positions (multiples of
     * ATTN_CHUNK), not from the tile's first key: a query's scores, maxima
     * and sums then fall into the same chunks, and reduce in the same order,
     * whichever other queries share its tile (batch invariance; it matters
     * with a sliding window, where the first keys differ per query). */
    const int64_t cfirst = kmin - kmin % ATTN_CHUNK;
    for (int64_t c0 = cfirst; c0 <= kmax; c0 += ATTN_CHUNK) {
        const int nc = kmax + 1 - c0 < ATTN_CHUNK ? (int)(kmax + 1 - c0) : ATTN_CHUNK;
        const int n_v = k_vectors(a, g, c0, nc, kv);
        if (H >= 2)
            v_pair_rows(a, g, c0, nc, vpairs);
        else
            kv_rows(a, a->v_blocks, g, c0, nc, vrows);
        /* Read-ahead (kv_readahead): this chunk's V rows during its
         * scores; during its value sums the next chunk's K rows, past this
         * kv head's last chunk the first chunk of the thread's next kv head
         * (the same tokens, so the same chunks). */
        int64_t k0 = c0 + ATTN_CHUNK;
        int k_g = g;
        if (k0 > kmax) {
            k0 = g_next >= 0 ? cfirst : kmax + 1;
            k_g = g_next >= 0 ? g_next : g;
        }
        kv_readahead ra_v, ra_k;
        kv_readahead_init(&ra_v, a, a->v_blocks, g, c0, c0 + nc);
        kv_readahead_init(&ra_k, a, a->k_blocks, k_g, k0,
                          k0 + ATTN_CHUNK <= kmax + 1 ? k0 + ATTN_CHUNK : kmax + 1);
        /* The scores of every query of the tokens that see a key of this
         * chunk, over all its keys (those a query does not see are dropped
         * by its softmax): one pass over the chunk's K for the tile. */
        int n_s = 0;
        for (int i0 = 0; i0 < M; i0 += G) {
            int64_t cl, ch;
            chunk_span(lo[i0], hi[i0], c0, nc, &cl, &ch);
            if (cl > ch) continue;
            for (int i = i0; i < i0 + G; i++, n_s++) {
                qs[n_s] = qp[i];
                ss[n_s] = sc + (size_t)i * ATTN_CHUNK;
            }
        }
        qkt_group(H, qs, n_s, kv, n_v, hd, a->block_size, ss, &ra_v);
        /* Softmax, then the value sums of consecutive tokens that see the
         * same keys of the chunk (all but the last chunk, without a window)
         * in one call: each V row is read for all their queries. */
        for (int i0 = 0; i0 < M;) { /* a token's G query heads see the same keys */
            int64_t cl64, ch64, nl, nh;
            chunk_span(lo[i0], hi[i0], c0, nc, &cl64, &ch64);
            if (cl64 > ch64) { /* no visible key in this chunk */
                i0 += G;
                continue;
            }
            const int cl = (int)cl64, ch = (int)ch64;
            int i1 = i0 + G;
            for (; i1 < M; i1 += G) {
                chunk_span(lo[i1], hi[i1], c0, nc, &nl, &nh);
                if (nl != cl64 || nh != ch64) break;
            }
            softmax_rows(a, sc, i0, i1, cl, ch, mrow, lrow, alpha, H >= 2);
            if (H >= 2) { /* the probabilities as bf16 pairs, the value sums over key pairs */
                for (int i = i0; i < i1; i++) {
                    /* into the first half of the row, which the scores are done with */
                    float *row = sc + (size_t)i * ATTN_CHUNK;
                    uint32_t pairs[ATTN_CHUNK / 2];
                    for (int c1 = 0; c1 < ATTN_CHUNK; c1 += 2 * VW)
                        v_pack_pairs(row + c1, pairs + c1 / 2);
                    memcpy(row, pairs, sizeof pairs);
                    ap[i] = acc + (size_t)i * st;
                }
                pv_pairs_group(H, ap + i0, i1 - i0, hd, alpha + i0,
                               (const uint32_t *)(sc + (size_t)i0 * ATTN_CHUNK), vpairs, cl, ch,
                               &ra_k);
                i0 = i1;
                continue;
            }
            for (int i = i0; i < i1; i++) {
                sp[i] = sc + (size_t)i * ATTN_CHUNK + cl;
                ap[i] = acc + (size_t)i * st;
            }
            pv_accumulate_group(H, ap + i0, i1 - i0, hd, alpha + i0, (const float *const *)sp + i0,
                                vrows + cl, ch - cl + 1, &ra_k);
            i0 = i1;
        }
    }
    for (int i = 0; i < M; i++) {
        const int64_t t = t0 + i / G;
        float *out = a->out + ((size_t)t * a->n_head + (size_t)g * G + i % G) * hd;
        const vf inv = v_set1(lrow[i] > 0 ? 1.0f / lrow[i] : 0.f);
        for (int d = 0; d < hd; d += VW) {
            const int r = hd - d < VW ? hd - d : VW;
            v_store_n(out + d, v_mul(v_load_n(acc + (size_t)i * st + d, r), inv), r);
        }
    }
}

#endif
