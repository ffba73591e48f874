/* AVX2 (+FMA, F16C; no VNNI) matrix-product kernels over the panel layouts
 * of matmul_internal.h, for CPUs without AVX-512.
 *
 * Design: the same packed weights and the same quantized activation blocks
 * (gt_mm_q8a) as the AVX-512 kernels, so a weight packed once serves either
 * ISA and the two are interchangeable in the dispatch. Each function mirrors
 * its AVX-512 counterpart argument for argument and computes the same
 * numbers: the same activation codes, the same exact integer dot per
 * 32-k block (vpmaddubsw/vpmaddwd instead of vpdpbusd, arranged so that no
 * int16 intermediate can saturate), and the same sequence of fp32 scalings
 * and FMAs (the same k slicing too), so on equal inputs the outputs agree
 * to the last bit or to fp32 rounding (tests/kernel/test_matmul_avx2.c).
 *
 * Contract shared by all of them (identical to the AVX-512 ones):
 *  - thread-safe over disjoint ranges: no global state; concurrent calls on
 *    the same weight with disjoint panel ranges [p0, p1) (or disjoint
 *    token/block ranges for the quantizer) write disjoint outputs;
 *  - a panel is 16 output rows; panels p with 16*p >= n_out (the padding
 *    panel) are skipped, so p1 may be rounded up to even as the dispatch
 *    does; p0 need not be even here (no panel-pair tile), but the
 *    dispatch's even p0 works unchanged;
 *  - y is [n_tok][n_out], only rows [16*p0, min(16*p1, n_out)) are written;
 *  - the caller has checked the CPU (AVX2, FMA, F16C: gt__cpu_detect) and
 *    n_in is a multiple of 32 for the quant kinds.
 * Only the files whose names contain "avx2" are built with -mavx2 -mfma
 * -mf16c; this header itself holds no intrinsics. */
#ifndef GT_MATMUL_AVX2_H
#define GT_MATMUL_AVX2_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/matmul_internal.h"

/* Quantizes x rows [t0, t1) (each n_in long, x is [n_tok][n_in]), blocks
 * [b0, b1) of each, into q[t][n_in/32] for kind; bit-identical to
 * gt__mm_quantize_avx512 (d = amax/127, round to nearest even). */
void gt__mm_quantize_avx2(gt_mm_qkind kind, const float *x, int64_t n_in, int64_t t0, int64_t t1,
                          int64_t b0, int64_t b1, gt_mm_q8a *q);

/* y[t][16p..16p+15] = panel p of the quant weight wp (kind, [n_out][n_in]
 * packed) times the quantized tokens q[t][n_in/32], for panels [p0, p1)
 * and tokens [0, n_tok). Decode tiles for n_tok <= 4, prefill tiles
 * beyond (token chunks that stay in L2); both sum 16-block k slices in
 * order, so each row is bit-identical for any n_tok. */
void gt__mm_pq_avx2(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out,
                    const gt_mm_q8a *q, float *y, int64_t n_tok, int64_t p0, int64_t p1);

/* Floats of per-thread scratch gt__mm_pf_avx2 needs for n_tok tokens (0
 * for decode, 4096 beyond: one widened 256-k panel slab); the caller gives
 * each thread its own (unaligned works; the dispatch's 64-byte aligned
 * gt__kernels_scratch is best). */
size_t gt__mm_pf_avx2_scratch_floats(int64_t n_tok);

/* Float panels (type F32, F16 or BF16) times fp32 x [n_tok][n_in]; panels
 * [p0, p1), tokens [0, n_tok); scratch as above (may be NULL for
 * n_tok <= 4). Exact fp32 FMA arithmetic, no activation rounding. */
void gt__mm_pf_avx2(gt_dtype type, const void *wp, int64_t n_in, int64_t n_out, const float *x,
                    float *y, int64_t n_tok, int64_t p0, int64_t p1, float *scratch);

#endif
