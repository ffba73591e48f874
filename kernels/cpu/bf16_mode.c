/* Which F16/BF16 weights the CPU multiplies with bf16 dot products
 * (kernels/cpu/matmul_bf16.c): "on" both, "off" neither (fp32 FMA),
 * "auto" the measured default below. The choice holds for every token
 * count, decode included, so that a row's result never depends on the
 * batch it rides in (docs/architecture.md, Kernels).
 *
 * The default is off (docs/benchmarks.md, "BF16 dot products"): on the
 * development host's Intel Xeon `vdpbf16ps` retires one per two cycles, 16
 * multiply-adds a cycle against 32 for two fp32 FMAs, so the fp32 path is
 * the faster one there, and it is exact in the activations. "on" is for
 * CPUs where the bf16 dot runs at the FMA rate (then twice the products).
 * The environment variable is a test hook that applies where it can: "on"
 * leaves other ISAs (ref, avx2) in fp32 rather than failing. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

gt_status gt__cpu_bf16_mode(const char *mode, gt_isa isa, const gt_cpu_features *f, bool *f16,
                            bool *bf16) {
    const char *src = "--bf16-matmul";
    if (!mode) {
        mode = getenv("GANTRY_BF16_MATMUL");
        src = "GANTRY_BF16_MATMUL";
    }
    const bool can = isa == GT_ISA_AVX512 && f->avx512bf16;
    *f16 = *bf16 = false;
    if (!mode || !*mode || !strcmp(mode, "auto") || !strcmp(mode, "off")) return GT_OK;
    if (strcmp(mode, "on"))
        return gt_fail(GT_ERR_INVALID_ARG, "kernels: %s is \"%s\" (expected on, off or auto)", src,
                       mode);
    if (!can && !strcmp(src, "GANTRY_BF16_MATMUL")) return GT_OK; /* the hook: where it can */
    if (!can)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "kernels: %s on needs the avx512 kernels on a CPU with AVX-512 BF16, but "
                       "the kernels are %s%s",
                       src, gt__isa_name(isa), f->avx512bf16 ? "" : " and the CPU lacks AVX-512 BF16");
    *f16 = *bf16 = true;
    return GT_OK;
}
