/* The MPI backend: host buffers, MPI-3 non-blocking collectives.
 *
 * Each call starts one non-blocking operation (MPI_Iallreduce, MPI_Irecv...)
 * and waits for it in gt__comm_wait, so the watchdog sees every stall.
 * Types without a reduction (allgather, all-to-all, broadcast, send/recv)
 * move f16/bf16 as 16-bit integers. Sums over f16/bf16 use
 * convert-reduce-convert: the buffer is widened to f32 in the group's
 * scratch, reduced as MPI_FLOAT and rounded back once, so the result is the
 * correctly rounded f32 sum whatever the rank count (a user-defined MPI op on
 * 16-bit values would round after every partial sum). The price is a
 * temporary of 4 bytes per element, in the group's scratch (from its
 * allocator, comm_core.c). */
#include <stdlib.h>
#include <string.h>

#include "transport/internal.h"

static MPI_Datatype mpi_type(gt_dtype dt) {
    switch (dt) {
    case GT_F32:
        return MPI_FLOAT;
    case GT_I32:
        return MPI_INT32_T;
    default:
        return MPI_UINT16_T; /* f16, bf16: moved, never reduced as such */
    }
}

/* One pending MPI request and what it is, for the error sentence. */
typedef struct pending {
    MPI_Request req;
    MPI_Status status;
    const gt__wait_desc *d;
} pending;

static gt_status poll_pending(gt_comm *c, void *ctx, bool *done) {
    pending *pd = ctx;
    int flag = 0;
    int err = MPI_Test(&pd->req, &flag, &pd->status);
    if (err != MPI_SUCCESS) return gt__comm_mpi_fail(c, pd->d, err);
    *done = flag != 0;
    return GT_OK;
}

/* Waits for the request started with start_err, turning an MPI error into
 * the sentence for pd->d. */
static gt_status finish(gt_comm *c, int start_err, pending *pd) {
    if (start_err != MPI_SUCCESS) return gt__comm_mpi_fail(c, pd->d, start_err);
    return gt__comm_wait(c, pd->d, poll_pending, pd);
}

static void widen(const uint16_t *src, float *dst, size_t n, gt_dtype dt) {
    if (dt == GT_F16)
        for (size_t i = 0; i < n; i++) dst[i] = gt_f16_to_f32(src[i]);
    else
        for (size_t i = 0; i < n; i++) dst[i] = gt_bf16_to_f32(src[i]);
}

static void narrow(const float *src, uint16_t *dst, size_t n, gt_dtype dt) {
    if (dt == GT_F16)
        for (size_t i = 0; i < n; i++) dst[i] = gt_f32_to_f16(src[i]);
    else
        for (size_t i = 0; i < n; i++) dst[i] = gt_f32_to_bf16(src[i]);
}

static bool is_half(gt_dtype dt) { return dt == GT_F16 || dt == GT_BF16; }

static gt_status mpi_allreduce(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                               const char *what) {
    gt__wait_desc d = {GT__OP_ALLREDUCE, what, count, dt, -1, 0};
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    gt__comm_next_seq(c);
    if (is_half(dt)) {
        float *tmp = gt__comm_scratch(c, count * sizeof(float)); /* [count] */
        if (count && !tmp) return GT_ERR_NOMEM;
        widen(send, tmp, count, dt);
        int err =
            MPI_Iallreduce(MPI_IN_PLACE, tmp, (int)count, MPI_FLOAT, MPI_SUM, c->comm, &pd.req);
        GT_TRY(finish(c, err, &pd));
        narrow(tmp, recv, count, dt);
        return GT_OK;
    }
    int err = MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, mpi_type(dt),
                             MPI_SUM, c->comm, &pd.req);
    return finish(c, err, &pd);
}

static gt_status mpi_allgather(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                               const char *what) {
    gt__wait_desc d = {GT__OP_ALLGATHER, what, count, dt, -1, 0};
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    gt__comm_next_seq(c);
    const char *mine = (const char *)recv + (size_t)c->rank * count * gt__dtype_bytes(dt);
    int err = MPI_Iallgather(send == mine ? MPI_IN_PLACE : send, (int)count, mpi_type(dt), recv,
                             (int)count, mpi_type(dt), c->comm, &pd.req);
    return finish(c, err, &pd);
}

static gt_status mpi_reduce_scatter(gt_comm *c, const void *send, void *recv, size_t count,
                                    gt_dtype dt, const char *what) {
    gt__wait_desc d = {GT__OP_REDUCE_SCATTER, what, count, dt, -1, 0};
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    gt__comm_next_seq(c);
    if (is_half(dt)) {
        size_t total = count * (size_t)c->size;
        float *tmp = gt__comm_scratch(c, (total + count) * sizeof(float));
        if (total && !tmp) return GT_ERR_NOMEM;
        float *wide_send = tmp;         /* [size][count] */
        float *wide_recv = tmp + total; /* [count] */
        widen(send, wide_send, total, dt);
        int err = MPI_Ireduce_scatter_block(wide_send, wide_recv, (int)count, MPI_FLOAT, MPI_SUM,
                                            c->comm, &pd.req);
        GT_TRY(finish(c, err, &pd));
        narrow(wide_recv, recv, count, dt);
        return GT_OK;
    }
    int err =
        MPI_Ireduce_scatter_block(send, recv, (int)count, mpi_type(dt), MPI_SUM, c->comm, &pd.req);
    return finish(c, err, &pd);
}

static gt_status mpi_alltoall(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                              const char *what) {
    gt__wait_desc d = {GT__OP_ALLTOALL, what, count, dt, -1, 0};
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    gt__comm_next_seq(c);
    int err = MPI_Ialltoall(send, (int)count, mpi_type(dt), recv, (int)count, mpi_type(dt), c->comm,
                            &pd.req);
    return finish(c, err, &pd);
}

static gt_status mpi_alltoallv(gt_comm *c, const void *send, gt_comm_vlayout sl, void *recv,
                               gt_comm_vlayout rl, gt_dtype dt, const char *what) {
    size_t n = (size_t)c->size, total = 0;
    for (size_t p = 0; p < n; p++) total += sl.counts[p];
    gt__wait_desc d = {GT__OP_ALLTOALLV, what, total, dt, -1, 0};
    /* MPI wants int arrays; comm.c checked that every value fits. The
     * arrays must live until the operation completes. */
    int *iv = malloc(4 * n * sizeof *iv);
    if (!iv)
        return gt_fail(GT_ERR_NOMEM,
                       "alltoallv '%s' on group '%s': cannot allocate %zu "
                       "counts",
                       what ? what : "", c->name, 4 * n);
    for (size_t p = 0; p < n; p++) {
        iv[p] = (int)sl.counts[p];
        iv[n + p] = (int)sl.displs[p];
        iv[2 * n + p] = (int)rl.counts[p];
        iv[3 * n + p] = (int)rl.displs[p];
    }
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    gt__comm_next_seq(c);
    int err = MPI_Ialltoallv(send, iv, iv + n, mpi_type(dt), recv, iv + 2 * n, iv + 3 * n,
                             mpi_type(dt), c->comm, &pd.req);
    gt_status st = finish(c, err, &pd);
    /* After a watchdog failure the request may still use the arrays; the
     * job is about to end, so they are leaked rather than freed under it. */
    if (st == GT_OK || pd.req == MPI_REQUEST_NULL) free(iv);
    return st;
}

static gt_status mpi_broadcast(gt_comm *c, void *buf, size_t count, gt_dtype dt, int root,
                               const char *what) {
    gt__wait_desc d = {GT__OP_BROADCAST, what, count, dt, -1, 0};
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    gt__comm_next_seq(c);
    int err = MPI_Ibcast(buf, (int)count, mpi_type(dt), root, c->comm, &pd.req);
    return finish(c, err, &pd);
}

static gt_status mpi_barrier(gt_comm *c, const char *what) {
    gt__wait_desc d = {GT__OP_BARRIER, what, 0, GT_I32, -1, 0};
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    gt__comm_next_seq(c);
    int err = MPI_Ibarrier(c->comm, &pd.req);
    return finish(c, err, &pd);
}

static gt_status mpi_send(gt_comm *c, const void *buf, size_t count, gt_dtype dt, int peer, int tag,
                          const char *what) {
    gt__wait_desc d = {GT__OP_SEND, what, count, dt, peer, tag};
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    int err = MPI_Isend(buf, (int)count, mpi_type(dt), peer, tag, c->comm, &pd.req);
    return finish(c, err, &pd);
}

static gt_status mpi_recv(gt_comm *c, void *buf, size_t count, gt_dtype dt, int peer, int tag,
                          const char *what) {
    gt__wait_desc d = {GT__OP_RECV, what, count, dt, peer, tag};
    pending pd = {.req = MPI_REQUEST_NULL, .d = &d};
    int err = MPI_Irecv(buf, (int)count, mpi_type(dt), peer, tag, c->comm, &pd.req);
    GT_TRY(finish(c, err, &pd));
    int got = 0;
    MPI_Get_count(&pd.status, mpi_type(dt), &got);
    if ((size_t)got != count)
        return gt_fail(GT_ERR_COMM,
                       "recv '%s' from rank %d on group '%s' (tag %d): expected %zu "
                       "%s elements, the message holds %d",
                       what ? what : "", peer, c->name, tag, count, gt_dtype_name((uint32_t)dt),
                       got);
    return GT_OK;
}

static gt_status host_copy(const gt_comm *c, void *dst, const void *src, size_t bytes, int to_dev) {
    memmove(dst, src, bytes);
    return GT_OK;
}

const gt__comm_ops gt__comm_mpi_ops = {
    .allreduce = mpi_allreduce,
    .allgather = mpi_allgather,
    .reduce_scatter = mpi_reduce_scatter,
    .alltoall = mpi_alltoall,
    .alltoallv = mpi_alltoallv,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .send = mpi_send,
    .recv = mpi_recv,
    .mem_copy = host_copy,
    .release = NULL,
    .abort = NULL,
};
