/* The table of transport backends by gt_comm_backend: the one file that
 * names them, so that comm.c picks a group's table by its enum and the
 * backends never see comm.c. The NCCL entry points are comm_nccl.c's, or
 * nccl_none.c's refusals in a build without CUDA. */
#include "transport/internal.h"

static const gt__comm_backend_entry k_backends[] = {
    [GT_COMM_MPI] = {"mpi", &gt__comm_mpi_ops, NULL},
    /* An NCCL group is bootstrapped as an MPI group, then attached. */
    [GT_COMM_NCCL] = {"nccl", &gt__comm_mpi_ops, gt__comm_nccl_attach},
};

const gt__comm_backend_entry *gt__comm_backend(gt_comm_backend b) {
    if ((int)b < 0 || (size_t)b >= sizeof k_backends / sizeof *k_backends) return NULL;
    return &k_backends[b];
}
