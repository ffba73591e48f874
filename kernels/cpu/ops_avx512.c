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
