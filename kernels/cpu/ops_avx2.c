/* AVX2 table of the non-matmul ops: 8-float vectors with FMA, partial
 * vectors through vmaskmov, F16 keys and values widened with F16C. The op
 * bodies are shared with the AVX-512 table (kernels/cpu/ops_simd.h); this
 * file only defines the vector vocabulary. Built with -mavx2 -mfma -mf16c
 * and used only after the run-time CPU check. */
#include <immintrin.h>
#include <string.h>

#include "common/dtype.h"

typedef __m256 vf;
#define VW 8

static const int32_t lane_mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static inline __m256i lanes(int n) {
    return _mm256_loadu_si256((const __m256i *)(lane_mask_tab + 8 - n));
}
static inline vf v_zero(void) { return _mm256_setzero_ps(); }
static inline vf v_set1(float x) { return _mm256_set1_ps(x); }
static inline vf v_load(const float *p) { return _mm256_loadu_ps(p); }
static inline vf v_load_n(const float *p, int n) { return _mm256_maskload_ps(p, lanes(n)); }
static inline void v_store(float *p, vf x) { _mm256_storeu_ps(p, x); }
/* vmaskmovps stores are slow on AMD cores: full vectors take the plain store. */
static inline void v_store_n(float *p, vf x, int n) {
    if (n == VW)
        _mm256_storeu_ps(p, x);
    else
        _mm256_maskstore_ps(p, lanes(n), x);
}
/* Lanes [l0, l0 + n) of x to p[0..n). */
static inline vf v_load_h(const gt_f16 *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline vf v_load_h_n(const gt_f16 *p, int n) {
    gt_f16 tmp[8] = {0};
    memcpy(tmp, p, (size_t)n * sizeof *p);
    return v_load_h(tmp);
}
/* x rounded to f16 (nearest even, as gt_f32_to_f16) into h[VW]; NaN lanes
 * are left to the caller (v_nan_lanes). */
static inline void v_store_h(gt_f16 *h, vf x) {
    _mm_storeu_si128((__m128i *)h,
                     _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline unsigned v_nan_lanes(vf x) {
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
static inline vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf v_fnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf v_abs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline float v_hsum(vf a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float v_hmax(vf a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline vf v_swap_pairs(vf a) { return _mm256_permute_ps(a, 0xB1); }
static inline vf v_round(vf a) {
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
static inline vf v_pow2i(vf n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static inline vf v_select_lt(vf x, vf y, vf a, vf b) {
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, y, _CMP_LT_OQ));
}
static inline vf v_copysign(vf mag, vf s) {
    const vf sign = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(sign, mag), _mm256_and_ps(sign, s));
}

/* BF16 pairs, as in the AVX-512 table; no AVX2 CPU has vdpbf16ps, so the
 * products are two FMAs per pair (v_dpbf16_x, ops_simd.h). */
typedef __m256i vp;
#define V_DPBF16_NATIVE 0
#define v_dpbf16        v_dpbf16_x
static inline vp v_load_p(const uint32_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline vp v_load_p_n(const uint32_t *p, int n) {
    return _mm256_maskload_epi32((const int *)p, lanes(n));
}
static inline vp v_set1_p(uint32_t x) { return _mm256_set1_epi32((int)x); }
static inline vp v_and_p(vp a, vp b) { return _mm256_and_si256(a, b); }
static inline vf v_p_as_f(vp a) { return _mm256_castsi256_ps(a); }
static inline vp v_f_as_p(vf a) { return _mm256_castps_si256(a); }
static inline vp v_p_shl16(vp a) { return _mm256_slli_epi32(a, 16); }
static inline vp v_p_shr16(vp a) { return _mm256_srli_epi32(a, 16); }
static inline vp v_p_add(vp a, vp b) { return _mm256_add_epi32(a, b); }
/* 2 VW floats already rounded to bf16 as VW pairs. */
static inline void v_pack_pairs(const float *x, uint32_t *out) {
    for (int j = 0; j < VW; j++) {
        uint32_t e, o;
        memcpy(&e, x + 2 * j, 4);
        memcpy(&o, x + 2 * j + 1, 4);
        out[j] = (o & 0xFFFF0000u) | (e >> 16);
    }
}

#include "kernels/cpu/ops_simd.h"

const struct gt_ops gt__ops_avx2 = {
    .name = "avx2",
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
