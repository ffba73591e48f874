/* The CUDA backend's place: compiled when the build finds the CUDA toolkit
 * (GANTRY_CUDA=AUTO or ON), it answers every creation with a clear "not
 * built yet" until its kernels arrive with the CUDA issue. */
#include "kernels/backend.h"

gt_status gt__cuda_backend_create(const gt_kernels_config *cfg, gt_kernels **out) {
    *out = NULL;
    return gt_fail(GT_ERR_UNSUPPORTED, "the CUDA backend is not built yet: its kernels arrive with "
                   "the CUDA issue; use --backend cpu");
}
