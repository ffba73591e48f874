/* AVX-512 table of the non-matmul ops: 16-float vectors, opmask registers
 * for partial vectors, F16 keys and values widened with vcvtph2ps. The op
 * bodies are shared with the AVX2 table (kernels/cpu/ops_simd.h); this file
 * only defines the vector vocabulary. Built with -mavx512f/bw/vl/dq and
 * used only after the run-time CPU check. */
#include <immintrin.h>

#include "common/dtype.h"

typedef __m512 vf;
#define VW 16

static inline __mmask16 lanes(int n) { return (__mmask16)((1u << n) - 1u); }
static inline vf v_zero(void) { return _mm512_setzero_ps(); }
static inline vf v_set1(float x) { return _mm512_set1_ps(x); }
static inline vf v_load(const float *p) { return _mm512_loadu_ps(p); }
static inline vf v_load_n(const float *p, int n) { return _mm512_maskz_loadu_ps(lanes(n), p); }
static inline void v_store(float *p, vf x) { _mm512_storeu_ps(p, x); }
static inline void v_store_n(float *p, vf x, int n) { _mm512_mask_storeu_ps(p, lanes(n), x); }
/* Lanes [l0, l0 + n) of x to p[0..n) (a masked store: the lanes outside
 * write nothing, so p - l0 is never written). */
static inline vf v_load_h(const gt_f16 *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline vf v_load_h_n(const gt_f16 *p, int n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes(n), p));
}
/* x rounded to f16 (nearest even, as gt_f32_to_f16) into h[VW]; NaN lanes
 * are left to the caller (v_nan_lanes). */
static inline void v_store_h(gt_f16 *h, vf x) {
    _mm256_storeu_si256((__m256i *)h,
                        _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline unsigned v_nan_lanes(vf x) { return _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q); }
static inline vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf v_fnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }
static inline vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf v_abs(vf a) { return _mm512_abs_ps(a); }
static inline float v_hsum(vf a) { return _mm512_reduce_add_ps(a); }
static inline float v_hmax(vf a) { return _mm512_reduce_max_ps(a); }
static inline vf v_swap_pairs(vf a) { return _mm512_permute_ps(a, 0xB1); }
static inline vf v_round(vf a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline vf v_pow2i(vf n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
static inline vf v_select_lt(vf x, vf y, vf a, vf b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, y, _CMP_LT_OQ), b, a);
}
static inline vf v_copysign(vf mag, vf s) {
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_andnot_si512(sign, _mm512_castps_si512(mag)),
                                               _mm512_and_si512(sign, _mm512_castps_si512(s))));
}

/* BF16 pairs (a BF16 KV cache, probabilities and queries rounded to bf16):
 * VW 32-bit lanes of two bf16 each, the even element in the low half.
 * v_dpbf16 adds both products of each lane to acc as vdpbf16ps does (the
 * odd one first, each add rounded to nearest even; needs AVX512_BF16, a
 * run-time check: gt__cpu_has_dpbf16); ops_simd.h's v_dpbf16_x does the
 * same with two FMAs (denormals are not flushed). */
typedef __m512i vp;
#define V_DPBF16_NATIVE 1
static inline vp v_load_p(const uint32_t *p) { return _mm512_loadu_si512(p); }
static inline vp v_load_p_n(const uint32_t *p, int n) {
    return _mm512_maskz_loadu_epi32(lanes(n), p);
}
static inline vp v_set1_p(uint32_t x) { return _mm512_set1_epi32((int)x); }
static inline vp v_and_p(vp a, vp b) { return _mm512_and_si512(a, b); }
static inline vf v_dpbf16(vf acc, vp a, vp b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}
/* The pieces of the emulation and the rounding (ops_simd.h). */
static inline vf v_p_as_f(vp a) { return _mm512_castsi512_ps(a); }
static inline vp v_f_as_p(vf a) { return _mm512_castps_si512(a); }
static inline vp v_p_shl16(vp a) { return _mm512_slli_epi32(a, 16); }
static inline vp v_p_shr16(vp a) { return _mm512_srli_epi32(a, 16); }
static inline vp v_p_add(vp a, vp b) { return _mm512_add_epi32(a, b); }
/* 2 VW floats already rounded to bf16 (x) as VW pairs (out): the high
 * halves, in order. */
static inline void v_pack_pairs(const float *x, uint32_t *out) {
    static const uint16_t idx[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21,
                                     23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43,
                                     45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
    const __m512i lo = _mm512_loadu_si512(x), hi = _mm512_loadu_si512(x + 16);
    _mm512_storeu_si512(out, _mm512_permutex2var_epi16(lo, _mm512_loadu_si512(idx), hi));
}

#include "kernels/cpu/ops_simd.h"

const struct gt_ops gt__ops_avx512 = {
    .name = "avx512",
    .rmsnorm = simd_rmsnorm,
    .rope = simd_rope,
    .swiglu = simd_swiglu,
    .geglu = simd_geglu,
    .add = simd_add,
    .kv_store = simd_kv_store,
    .attention = simd_attention,
    .attn_scratch_bytes = simd_attn_scratch_bytes,
    .attn_tile = ATTN_TILE,
};
