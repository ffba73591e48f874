/* Private to the matrix-product files: weight layouts, the quantized
 * activation block and the per-ISA kernels that kernels/matmul.c dispatches.
 *
 * Design: the fast paths use one "panel" layout for both decode (GEMV) and
 * prefill (GEMM). A panel is 16 consecutive output rows interleaved so that
 * one 512-bit register holds the same k range of all 16 rows:
 *  - float panels (F32/F16/BF16): [panel][k][16 rows] of the stored type;
 *  - quant panels (Q4_0/Q4_1/Q5_0/Q8_0/Q4_K/Q6_K): per 32-element block,
 *    16 row scales and the weights as unsigned codes in "chunks" of
 *    16 rows x 4 consecutive k (the vpdpbusd operand shape): bytes for
 *    Q8_0; nibbles for the 4-bit types; nibbles plus one (Q5_0) or two
 *    (Q6_K) bit planes for the wider codes, so no type is stored larger
 *    than its GGUF form by more than its f16 scales (Q6_K: +7%). The signed
 *    offset of the stored codes is folded into the activation block as an
 *    integer correction, so the inner loop is only vpdpbusd.
 * The panel count is padded to an even number with zero rows so the GEMM
 * can always work on 32 rows. */
#ifndef GT_MATMUL_INTERNAL_H
#define GT_MATMUL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"

/* gt_weight.layout values. 0 is the GGUF rows. */
enum {
    GT_MM_ROWS = 0,
    GT_MM_PF = 1, /* float panels of the stored type */
    GT_MM_PQ = 2, /* quant panels, kind from gt__mm_qkind(type) */
    GT_MM_PB = 3, /* bf16 pair panels of F16/BF16 weights (matmul_bf16.c) */
    GT_MM_PH = 4, /* fp16 32-row panels of F16/BF16 weights (matmul_fp16.c) */
};

/* Quant panel kinds. Chunk c (0..7) of a block covers k = 4c..4c+3. */
/* The float-panel prefill blocks of both ISAs: k block (a widened panel slab
 * of 16 KiB stays in L1) and tokens per chunk. */
#define GT_MM_PF_KC 256
#define GT_MM_PF_TC 192
/* Panels per group of the AVX-512 float prefill, whose running sums
 * (GT_MM_PF_PG x GT_MM_PF_TC x 16 floats, 384 KiB) it keeps in its scratch
 * (store_group, matmul_avx512_util.h); the same for the bf16 pair panels,
 * whose chunks are GT_MM_PB_TC tokens. */
#define GT_MM_PF_PG 32
#define GT_MM_PB_TC 48
#define GT_MM_PB_PG 128
/* Tokens per register tile of the bf16 pair prefill, and so per tile of its
 * packed activations. */
#define GT_MM_PB_NT 24

typedef enum gt_mm_qkind {
    GT_MMQ_NONE = 0,
    GT_MMQ_B8,   /* bytes code+128 (Q8_0): f16 d[16], u8 qs[8][64] */
    GT_MMQ_N4,   /* nibbles, value q-8 (Q4_0): f16 d[16], u8 qs[4][64] */
    GT_MMQ_N4M,  /* nibbles, value d*q+m (Q4_1, Q4_K): f16 d[16], f16 m[16], u8 qs[4][64] */
    GT_MMQ_N5,   /* 5-bit q, value q-16 (Q5_0): f16 d[16], u8 qs[4][64], u64 hb[8] */
    GT_MMQ_N6H,  /* 6-bit q, value d_half*(q-32) (Q6_K): f16 d0[16], d1[16], u8 qs[4][64],
                    u64 hb[2][8] */
    GT_MMQ_N5M,  /* 5-bit q, value d*q+m (Q5_1, Q5_K): f16 d[16], f16 m[16], u8 qs[4][64],
                    u64 hb[8] */
    GT_MMQ_C3H,  /* 3-bit q, value d_half*(q-4) (Q3_K): f16 d0[16], d1[16], u8 qs[2][64],
                    u64 hb[8] */
    GT_MMQ_C2HM, /* 2-bit q, value d*sc_half*q - dmin*m_half (Q2_K), Q2_K's super
                    block kept: per 256 k f16 d[16], f16 dmin[16], then 8 blocks of
                    u8 sm[2][16] (sc | m << 4 per half and row) and u8 qs[2][64] */
} gt_mm_qkind;
/* In the nibble kinds, register i (0..3) holds chunk i in the low nibbles
 * and chunk i+4 in the high nibbles; in the crumb (2-bit) kinds register i
 * (0..1) holds chunk i + 2j in bits 2j..2j+1 (j = 0..3). Byte r*4+j of a
 * chunk is row r, k 4c+j. A bit plane (64 bytes) holds the next bit of the
 * codes: bit c of its byte r*4+j is that bit of chunk c's code for row r,
 * k 4c+j (bit 4 for nibbles, bit 2 for crumbs; N6H's second plane bit 5),
 * so a shift and a mask restore it in place. The "half"
 * kinds scale k 0-15 and 16-31 of a block separately (d0, d1; C2HM also
 * has a min per half). C2HM's blocks are not all alike (the super block's
 * d and dmin come first): address them with gt__mmq_blk. */

/* A kind's layout, folded to constants where the kind is one. */
static inline int gt__mmq_bits(gt_mm_qkind k) { /* bits per code in qs */
    return k == GT_MMQ_B8 ? 8 : k == GT_MMQ_C3H || k == GT_MMQ_C2HM ? 2 : 4;
}
static inline int gt__mmq_planes(gt_mm_qkind k) { /* bit planes after qs */
    return k == GT_MMQ_N6H ? 2 : k == GT_MMQ_N5 || k == GT_MMQ_N5M || k == GT_MMQ_C3H ? 1 : 0;
}
static inline int gt__mmq_scales(gt_mm_qkind k) { /* 32-byte vectors before qs (C2HM: sm) */
    return k == GT_MMQ_N4M || k == GT_MMQ_N5M || k == GT_MMQ_N6H || k == GT_MMQ_C3H ? 2 : 1;
}
static inline int gt__mmq_half(gt_mm_qkind k) { /* two half-block scales */
    return k == GT_MMQ_N6H || k == GT_MMQ_C3H || k == GT_MMQ_C2HM;
}
static inline int gt__mmq_min(gt_mm_qkind k) { /* a min per block (N4M, N5M) or half (C2HM) */
    return k == GT_MMQ_N4M || k == GT_MMQ_N5M || k == GT_MMQ_C2HM;
}
#define GT_MMQ_C2_SUPER (64 + 8 * 160)                    /* C2HM bytes per 16 rows x 256 k */
static inline size_t gt__mmq_block_bytes(gt_mm_qkind k) { /* per 16 rows x 32 k (C2HM: mean) */
    if (k == GT_MMQ_C2HM) return GT_MMQ_C2_SUPER / 8;
    return (size_t)(32 * gt__mmq_scales(k) + 64 * gt__mmq_bits(k) + 64 * gt__mmq_planes(k));
}
/* Block b of a panel (or of a k slice starting at a multiple of 8 blocks)
 * at wp: its first scale vector (C2HM: its sm bytes). */
static inline const uint8_t *gt__mmq_blk(gt_mm_qkind k, const uint8_t *wp, int64_t b) {
    if (k == GT_MMQ_C2HM)
        return wp + (size_t)(b / 8) * GT_MMQ_C2_SUPER + 64 + (size_t)(b % 8) * 160;
    return wp + (size_t)b * gt__mmq_block_bytes(k);
}
/* C2HM: the d[16], dmin[16] of block b's super block. */
static inline const uint8_t *gt__mmq_c2_super(const uint8_t *wp, int64_t b) {
    return wp + (size_t)(b / 8) * GT_MMQ_C2_SUPER;
}
static inline int gt__mmq_offset(gt_mm_qkind k) { /* value = code - offset (no min) */
    return k == GT_MMQ_B8    ? 128
           : k == GT_MMQ_N4  ? 8
           : k == GT_MMQ_N5  ? 16
           : k == GT_MMQ_N6H ? 32
           : k == GT_MMQ_C3H ? 4
                             : 0;
}

/* One quantized activation block of 32 values: x ~ d * qs. c0/c1 are the
 * integer corrections added to the raw u8·s8 dot (-offset * sum(qs), per
 * half for the half kinds); ds = d * sum(qs) for the kinds with a min.
 * C2HM has no offset: its c0/c1 are the halves' sums of qs, and its min
 * terms -dmin*m_half * (d * (float)c_half). */
typedef struct gt_mm_q8a {
    float d;
    float ds;
    int32_t c0, c1;
    int8_t qs[32];
} gt_mm_q8a;
_Static_assert(sizeof(gt_mm_q8a) == 48, "q8 activation block");

/* The corrections of a block whose halves' sums of qs are s0 and s1. */
static inline void gt__mm_q8a_corrections(gt_mm_qkind k, int32_t s0, int32_t s1, gt_mm_q8a *o) {
    const int32_t off = gt__mmq_offset(k);
    if (k == GT_MMQ_C2HM) {
        o->c0 = s0;
        o->c1 = s1;
    } else if (gt__mmq_half(k)) {
        o->c0 = -off * s0;
        o->c1 = -off * s1;
    } else {
        o->c0 = -off * (s0 + s1);
        o->c1 = 0;
    }
}

gt_mm_qkind gt__mm_qkind(gt_dtype type);
size_t gt__mm_qblock_bytes(gt_mm_qkind kind); /* bytes per 16 rows x 32 k */
/* The weight type's blocks per 32 elements (K-quants: 8 per super block). */

/* Number of 16-row panels after padding (even). */
static inline int64_t gt__mm_n_panels(int64_t n_out) { return ((n_out + 31) / 32) * 2; }

/* Repacks rows [n_out][n_in] of `type` into panels at dst (size from
 * gt__mm_packed_bytes): panels [p0, p1) only, so threads can share a
 * weight. Scalar, run once at load. */
size_t gt__mm_packed_bytes(gt_dtype type, int layout, int64_t n_in, int64_t n_out);
void gt__mm_pack(gt_dtype type, int layout, int64_t n_in, int64_t n_out, const void *src,
                 void *dst, int64_t p0, int64_t p1);

/* ---- reference: dequantize a row, fp32 dot (any type with a codec) ---- */
/* Rows [r0, r1) of y[n_tok][n_out]; tmp holds n_in floats. */
void gt__mm_ref_rows(gt_dtype type, const void *w, int64_t n_in, int64_t n_out,
                     const float *x, float *y, int64_t n_tok, int64_t r0, int64_t r1,
                     float *tmp);

/* ---- AVX-512 ---- */
/* Quantizes x rows [t0, t1) (each n_in long) into q[t][n_in/32] for kind. */
void gt__mm_quantize_avx512(gt_mm_qkind kind, const float *x, int64_t n_in, int64_t t0,
                            int64_t t1, int64_t b0, int64_t b1, gt_mm_q8a *q);
/* Panels [p0, p1) (p0 even for the GEMM), tokens [0, n_tok). */
void gt__mm_pq_avx512(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out,
                      const gt_mm_q8a *q, float *y, int64_t n_tok, int64_t p0, int64_t p1);
/* scratch: gt__mm_pf_scratch_floats(n_tok) floats per thread, 64-byte aligned
 * (defined in the baseline kernels/cpu/workspace.c, so that the workspace can
 * be sized on any CPU). */
size_t gt__mm_pf_scratch_floats(int64_t n_tok);
/* Prefill of the B8, N4, N4M, N5 and N5M kinds on panel pairs
 * (matmul_avx512_q2.c); p0 and p1 even. gt__mm_pq_avx512 calls it for
 * n_tok > 4; the other kinds' prefill runs its one-panel tiles. */
static inline int gt__mm_pq2_kind(gt_mm_qkind k) {
    return k == GT_MMQ_B8 || k == GT_MMQ_N4 || k == GT_MMQ_N4M || k == GT_MMQ_N5 || k == GT_MMQ_N5M;
}
void gt__mm_pq2_avx512(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out,
                       const gt_mm_q8a *q, float *y, int64_t n_tok, int64_t p0, int64_t p1);
/* Decode (n_tok 1..4) of GT_MMQ_N4 or GT_MMQ_N4M panels [p0, p1): the same
 * bits as gt__mm_pq_avx512, in fewer instructions (matmul_avx512_q4dec.c). */
void gt__mm_n4_decode_avx512(gt_mm_qkind kind, const void *wp, int64_t n_in, int64_t n_out,
                             const gt_mm_q8a *q, float *y, int64_t n_tok, int64_t p0, int64_t p1);
void gt__mm_pf_avx512(gt_dtype type, const void *wp, int64_t n_in, int64_t n_out,
                      const float *x, float *y, int64_t n_tok, int64_t p0, int64_t p1,
                      float *scratch);

/* ---- bf16 pair panels (matmul_bf16.c, matmul_avx512_bf16.c) ---- */
/* Whether a weight can take the pair panels: F16 or BF16, n_in even. */
bool gt__mm_pb_ok(gt_dtype type, int64_t n_in);
/* Panels [p0, p1) as [panel][n_in/2][16 rows][2] bf16, zero rows past n_out. */
void gt__mm_pack_pb(gt_dtype type, int64_t n_in, int64_t n_out, const void *src, void *dst,
                    int64_t p0, int64_t p1);
/* The scalar reference of the pair-panel kernels on the GGUF rows [r0, r1)
 * of y[n_tok][n_out]: the same bits as gt__mm_pb_avx512. */
void gt__mm_pb_ref_rows(gt_dtype type, const void *w, int64_t n_in, int64_t n_out,
                        const float *x, float *y, int64_t n_tok, int64_t r0, int64_t r1);
/* Prefill's activations, once per product: tokens [t0, t1) of x[n_tok][n_in]
 * rounded to bf16 pairs into xp[(n_tok + 23) / 24][k block][24][KC / 2]
 * (KC = GT_MM_PF_KC; token t in tile t / 24, row t % 24; a short last block
 * padded), gt__mm_pb_xp_bytes(n_in, n_tok) bytes. Tokens are independent:
 * any split over tiles gives the same bytes. */
/* u32 per tile of packed activations: each k block's KC / 2 pairs for 24 tokens. */
static inline int64_t gt__mm_pb_tile_u32(int64_t n_in) {
    return (n_in + GT_MM_PF_KC - 1) / GT_MM_PF_KC * GT_MM_PB_NT * (GT_MM_PF_KC / 2);
}
void gt__mm_pb_pack_x_avx512(const float *x, int64_t n_in, int64_t t0, int64_t t1, uint32_t *xp);
size_t gt__mm_pb_xp_bytes(int64_t n_in, int64_t n_tok);
/* The whole workspace of a pair-panel product: the shared packed
 * activations (prefill), then per thread the float scratch below. */
size_t gt__mm_pb_scratch_bytes(int64_t n_in, int64_t n_tok, int n_threads);
/* Panels [p0, p1) (p0 even), tokens [0, n_tok). Decode (n_tok <= 4) reads x;
 * prefill reads xp, packed from x by gt__mm_pb_pack_x_avx512, and scratch:
 * gt__mm_pf_scratch_floats(n_tok) floats, 64-byte aligned. */
void gt__mm_pb_avx512(const void *wp, int64_t n_in, int64_t n_out, const float *x,
                      const uint32_t *xp, float *y, int64_t n_tok, int64_t p0, int64_t p1,
                      float *scratch);

/* ---- fp16 panels (matmul_fp16.c, matmul_avx512_fp16.c) ---- */
/* k per fp16 partial sum: the default of GANTRY_FP16_CHUNK (16, 32 or 64). */
#define GT_MM_PH_CHUNK 32
#define GT_MM_PH_HEAD 64 /* bytes of gt_mm_ph_head before the panels */
/* The packed weight's header: the largest |w| 2^sw and the chunk length. */
typedef struct gt_mm_ph_head {
    float wmax;    /* max |w| * 2^sw over the matrix */
    int32_t sw;    /* the weights' power-of-two scale (0 for F16) */
    int32_t chunk; /* k per fp16 partial sum */
} gt_mm_ph_head;
_Static_assert(sizeof(gt_mm_ph_head) <= GT_MM_PH_HEAD, "fp16 panel header");
/* GANTRY_FP16_CHUNK when it is 16, 32 or 64, else GT_MM_PH_CHUNK. */
int gt__mm_ph_chunk(void);
/* Whether a weight type can take the fp16 panels at all: F16 or BF16. */
bool gt__mm_ph_ok(gt_dtype type, int64_t n_in);
/* The header of the rows src [n_out][n_in]: false when some value is not
 * exactly an fp16 after the matrix's power-of-two scale (BF16 out of
 * range, or an inf/nan): the weight then keeps the float panels. One scan. */
bool gt__mm_ph_head_init(gt_dtype type, int64_t n_in, int64_t n_out, const void *src,
                         gt_mm_ph_head *h);
/* Panels [p0, p1) (16 rows each, two to a 32-row panel) after the header,
 * which dst must already hold. */
void gt__mm_pack_ph(gt_dtype type, int64_t n_in, int64_t n_out, const void *src, void *dst,
                    int64_t p0, int64_t p1);
/* The power-of-two activation scale of a row whose max |x| is xmax, and
 * 2^-(e+sw), the factor that folds it (and the weights' scale) back. */
void gt__mm_ph_row_scale(float xmax, const gt_mm_ph_head *h, float *scale, float *inv);
/* The scalar reference on the GGUF rows [r0, r1) of y[n_tok][n_out]: the
 * same bits as gt__mm_ph_avx512. */
void gt__mm_ph_ref_rows(gt_dtype type, const void *w, const gt_mm_ph_head *h, int64_t n_in,
                        int64_t n_out, const float *x, float *y, int64_t n_tok, int64_t r0,
                        int64_t r1);
/* Whether this build has the AVX-512 FP16 kernels (a compiler without
 * -mavx512fp16 leaves them out). */
bool gt__mm_ph_built(void);
/* Panels [p0, p1) (p0 even), tokens [0, n_tok) of the packed weight wp
 * (header first); scratch as for gt__mm_pf_avx512. */
void gt__mm_ph_avx512(const void *wp, int64_t n_in, int64_t n_out, const float *x, float *y,
                      int64_t n_tok, int64_t p0, int64_t p1, float *scratch);

#endif
