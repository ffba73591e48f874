/* The NCCL backend's entry points in a build without CUDA: every request for
 * an NCCL group is refused with a sentence, so callers need no #ifdef. Built
 * instead of comm_nccl.c when CUDA is not found (transport/CMakeLists.txt). */
#include "transport/internal.h"

int gt_comm_have_nccl(void) { return 0; }

int gt_comm_cuda_device_count(void) { return 0; }

gt_status gt__comm_nccl_attach(gt_comm *c, const gt_comm_opts *o) {
    (void)o;
    return gt_fail(GT_ERR_UNSUPPORTED,
                   "group '%s': this build has no NCCL backend (configure "
                   "with CUDA to get it)",
                   c->name);
}
