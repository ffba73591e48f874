/* Private to kernels/: the backend instance shared by the op files.
 * kernels.c owns creation, the CPU check and the non-matmul op table;
 * matmul.c owns weight preparation and the matrix-product dispatch. */
#ifndef GT_KERNELS_INTERNAL_H
#define GT_KERNELS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/kernels.h"

typedef enum gt_isa { GT_ISA_REF = 0, GT_ISA_AVX2, GT_ISA_AVX512 } gt_isa;

typedef struct gt_cpu_features {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16;
} gt_cpu_features;

/* Reads CPUID (and XGETBV for OS support of the wide registers). */
gt_cpu_features gt__cpu_detect(void);
/* The best ISA these features allow. */
gt_isa gt__cpu_best_isa(const gt_cpu_features *f);
const char *gt__isa_name(gt_isa isa);

struct gt_kernels {
    gt_pool *pool;
    int n_threads;
    gt_isa isa;
    gt_cpu_features cpu;
    const struct gt_ops *ops; /* non-matmul op table (kernels/ops.h) */
    void *scratch;            /* grown on demand; see gt__kernels_scratch */
    size_t scratch_bytes;
};

/* A 64-byte aligned scratch buffer of at least `bytes`, owned by k and valid
 * until the next call. NULL only when allocation fails. */
void *gt__kernels_scratch(gt_kernels *k, size_t bytes);

#endif
