/* Run-time CPU feature detection for choosing the op tables.
 *
 * CPUID says what the core implements; XGETBV says whether the OS saves the
 * wide registers on a context switch (YMM for AVX2, ZMM and opmask state for
 * AVX-512). Both must agree before a table built with those instructions is
 * used. This file is compiled for the baseline ISA. */
#include "kernels/cpu/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* AuthenticAMD at family 19h (Zen 3/4) or later; of these only Zen 4 and
 * later have AVX-512 BF16, the caller's other condition. */
static bool amd_family_19h_or_later(unsigned leaf1_eax) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    const bool amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u; /* AuthenticAMD */
    unsigned family = (leaf1_eax >> 8) & 0xf;
    if (family == 0xf) family += (leaf1_eax >> 20) & 0xff;
    return amd && family >= 0x19;
}

gt_cpu_features gt__cpu_detect(void) {
    gt_cpu_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    const unsigned leaf1_eax = a;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    const bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return f;
    const uint64_t xcr0 = read_xcr0();
    const bool ymm_os = (xcr0 & 0x6) == 0x6;             /* SSE + AVX state */
    const bool zmm_os = ymm_os && (xcr0 & 0xe0) == 0xe0; /* opmask, ZMM hi256, hi16 ZMM */
    if (!ymm_os) return f;
    if (__get_cpuid_max(0, NULL) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = (b >> 5) & 1;
    f.fma = fma;
    f.f16c = f16c;
    if (zmm_os) {
        f.avx512f = (b >> 16) & 1;
        f.avx512dq = (b >> 17) & 1;
        f.avx512bw = (b >> 30) & 1;
        f.avx512vl = (b >> 31) & 1;
        f.avx512vnni = (c >> 11) & 1;
        f.avx512fp16 = (d >> 23) & 1;
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        f.avx512bf16 = (a1 >> 5) & 1;
        f.bf16_full_rate = f.avx512bf16 && amd_family_19h_or_later(leaf1_eax);
    }
    return f;
}
#else
gt_cpu_features gt__cpu_detect(void) {
    gt_cpu_features f = {0};
    return f;
}
#endif

bool gt__cpu_has_dpbf16(void) {
    static int known = -1; /* a race only writes the same answer twice */
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        const gt_cpu_features f = gt__cpu_detect();
        v = f.avx512bf16 && gt__cpu_best_isa(&f) == GT_ISA_AVX512;
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
}

gt_isa gt__cpu_best_isa(const gt_cpu_features *f) {
    if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx2 && f->fma && f->f16c)
        return GT_ISA_AVX512;
    if (f->avx2 && f->fma && f->f16c) return GT_ISA_AVX2;
    return GT_ISA_REF;
}

const char *gt__isa_name(gt_isa isa) {
    switch (isa) {
    case GT_ISA_AVX512:
        return "avx512";
    case GT_ISA_AVX2:
        return "avx2";
    default:
        return "ref";
    }
}
