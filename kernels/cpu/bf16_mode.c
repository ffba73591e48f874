/* Which F16/BF16 weights the CPU multiplies with half-precision products
 * (--half-matmul, or its older name --bf16-matmul): "bf16" (or "on") both
 * types on bf16 dot products (kernels/cpu/matmul_bf16.c), "fp16" both on
 * fp16 FMAs (kernels/cpu/matmul_fp16.c; a BF16 weight whose values are not
 * all fp16 stays in fp32), "off" neither (fp32 FMA), "auto" the measured
 * default below. The choice holds for every token count, decode included,
 * so that a row's result never depends on the batch it rides in
 * (docs/architecture.md, Kernels).
 *
 * auto: fp16 where the kernels are avx512, the CPU has AVX-512 FP16 and
 * this build has its kernels; else bf16 where the kernels are avx512 and
 * the CPU issues `vdpbf16ps` at its fp32 FMA's rate (AMD Zen 4 and later:
 * gt_cpu_features.bf16_full_rate); else off (docs/benchmarks.md, "FP16
 * products" and "BF16 dot products"). The rule: a half-precision mode is
 * automatic when `gantry eval` against the fp32 path's logits shows a
 * negligible cost (mean KL under 1e-3 nats, a tenth of what Q8_0 weights
 * cost, with top-1 agreement of at least 99%) on SmolLM2 and Gemma 3 in
 * F16, and it is faster: fp16 measured 7.6e-5 and 1.2e-4 nats (99.6%,
 * 99.7%) at 1.4-1.7x the fp32 products on a Xeon; bf16 4.0e-4 and 7.3e-4
 * nats (99.0%, 99.2%) at 1.9-2.05x on Zen 4. Where both are possible fp16
 * wins (five times less KL). On Intel cores `vdpbf16ps` retires one per
 * two cycles, slower than fp32, so bf16 is not automatic there.
 * The environment variable is a test hook that applies where it can: "bf16"
 * or "fp16" leave other ISAs (ref, avx2) in fp32 rather than failing. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul_internal.h"

gt_status gt__cpu_bf16_mode(const char *mode, gt_isa isa, const gt_cpu_features *f, bool *f16,
                            bool *bf16, bool *fp16) {
    const char *src = "--half-matmul";
    if (!mode) {
        mode = getenv("GANTRY_BF16_MATMUL");
        src = "GANTRY_BF16_MATMUL";
    }
    const bool hook = !strcmp(src, "GANTRY_BF16_MATMUL");
    const bool can_bf16 = isa == GT_ISA_AVX512 && f->avx512bf16;
    const bool can_fp16 = isa == GT_ISA_AVX512 && f->avx512fp16 && gt__mm_ph_built();
    *f16 = *bf16 = *fp16 = false;
    if (!mode || !*mode || !strcmp(mode, "auto")) {
        *fp16 = can_fp16;
        *f16 = *bf16 = !can_fp16 && can_bf16 && f->bf16_full_rate;
        return GT_OK;
    }
    if (!strcmp(mode, "off")) return GT_OK;
    const bool want_bf16 = !strcmp(mode, "on") || !strcmp(mode, "bf16");
    if (!want_bf16 && strcmp(mode, "fp16"))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "kernels: %s is \"%s\" (expected off, bf16, fp16 or auto; on means bf16)",
                       src, mode);
    if (want_bf16 ? can_bf16 : can_fp16) {
        *f16 = *bf16 = want_bf16;
        *fp16 = !want_bf16;
        return GT_OK;
    }
    if (hook) return GT_OK; /* the hook: where it can */
    if (want_bf16)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "kernels: %s %s needs the avx512 kernels on a CPU with AVX-512 BF16, but "
                       "the kernels are %s%s",
                       src, mode, gt__isa_name(isa),
                       f->avx512bf16 ? "" : " and the CPU lacks AVX-512 BF16");
    return gt_fail(GT_ERR_UNSUPPORTED,
                   "kernels: %s fp16 needs the avx512 kernels on a CPU with AVX-512 FP16, but the "
                   "kernels are %s%s%s",
                   src, gt__isa_name(isa), f->avx512fp16 ? "" : " and the CPU lacks AVX-512 FP16",
                   gt__mm_ph_built() ? ""
                                     : " and this build has no fp16 kernels (compiler "
                                       "without -mavx512fp16)");
}
