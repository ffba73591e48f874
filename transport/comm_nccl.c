/* The NCCL backend: device buffers, one CUDA stream per group.
 *
 * Bootstrap: the group is first an MPI group; rank 0 creates the NCCL unique
 * id and broadcasts it over that MPI communicator (with the watchdog), then
 * every member calls ncclCommInitRank. Before the id goes out, the members
 * agree (an MPI allreduce of failure counts) that each could select its
 * device and create its stream, so a rank without a GPU makes every member
 * fail with the same sentence instead of leaving the others in
 * ncclCommInitRank.
 *
 * Each call enqueues its NCCL work on the group's stream and waits in
 * gt__comm_wait, polling ncclCommGetAsyncError and cudaStreamQuery: the same
 * deadline and arrival notices as MPI (over the group's MPI side channel).
 * On a failure or the deadline the NCCL communicator is aborted
 * (ncclCommAbort) so that no kernel stays spinning on the device.
 * All-to-all(-v) is a group of ncclSend/ncclRecv pairs; a barrier is an
 * allreduce of one device integer. f16/bf16 reduce natively in NCCL.
 * Compiled only when CUDA is found (GT_HAVE_NCCL). */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>

#include "common/log.h"
#include "transport/internal.h"

typedef struct nccl_state {
    ncclComm_t nc;
    cudaStream_t stream; /* every collective of this group runs on it, in call order */
    int device;
    int *barrier_buf; /* [1] device integer reduced by gt_comm_barrier, from barrier_alloc */
    gt_comm_allocator barrier_alloc;
    bool aborted;
} nccl_state;

int gt_comm_have_nccl(void) { return 1; }

int gt_comm_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n;
}

static ncclDataType_t nccl_type(gt_dtype dt) {
    switch (dt) {
    case GT_F16:
        return ncclFloat16;
    case GT_BF16:
        return ncclBfloat16;
    case GT_I32:
        return ncclInt32;
    default:
        return ncclFloat32;
    }
}

static void nccl_abort(gt_comm *c) {
    nccl_state *s = c->backend_state;
    if (s && s->nc && !s->aborted) {
        ncclCommAbort(s->nc);
        s->aborted = true;
    }
}

static gt_status nccl_fail(gt_comm *c, const gt__wait_desc *d, const char *call, ncclResult_t r) {
    nccl_state *s = c->backend_state;
    const char *detail = s && s->nc ? ncclGetLastError(s->nc) : "";
    gt_status st =
        gt_fail(GT_ERR_COMM, "%s '%s' on group '%s': %s failed: %s%s%s", gt__comm_op_name(d->op),
                d->what ? d->what : "", c->name, call, ncclGetErrorString(r),
                detail && *detail ? ": " : "", detail ? detail : "");
    nccl_abort(c);
    return st;
}

static gt_status poll_stream(gt_comm *c, void *ctx, bool *done) {
    nccl_state *s = c->backend_state;
    const gt__wait_desc *d = ctx;
    ncclResult_t async = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(s->nc, &async);
    if (r != ncclSuccess) return nccl_fail(c, d, "ncclCommGetAsyncError", r);
    if (async == ncclInProgress) return GT_OK;
    if (async != ncclSuccess) return nccl_fail(c, d, "the communicator", async);
    cudaError_t e = cudaStreamQuery(s->stream);
    if (e == cudaSuccess) {
        *done = true;
    } else if (e != cudaErrorNotReady) {
        gt_status st = gt_fail(GT_ERR_COMM, "%s '%s' on group '%s': the CUDA stream failed: %s",
                               gt__comm_op_name(d->op), d->what ? d->what : "", c->name,
                               cudaGetErrorString(e));
        nccl_abort(c);
        return st;
    }
    return GT_OK;
}

/* Waits for the work just enqueued (enq is the enqueue call's result). */
static gt_status run(gt_comm *c, const gt__wait_desc *d, const char *call, ncclResult_t enq) {
    if (enq != ncclSuccess && enq != ncclInProgress) return nccl_fail(c, d, call, enq);
    gt_status st = gt__comm_wait(c, d, poll_stream, (void *)d);
    if (st != GT_OK) nccl_abort(c);
    return st;
}

static nccl_state *begin(gt_comm *c) {
    nccl_state *s = c->backend_state;
    cudaSetDevice(s->device); /* the caller may have switched devices since */
    return s;
}

static gt_status nccl_allreduce(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                                const char *what) {
    gt__wait_desc d = {GT__OP_ALLREDUCE, what, count, dt, -1, 0};
    nccl_state *s = begin(c);
    gt__comm_next_seq(c);
    return run(c, &d, "ncclAllReduce",
               ncclAllReduce(send, recv, count, nccl_type(dt), ncclSum, s->nc, s->stream));
}

static gt_status nccl_allgather(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                                const char *what) {
    gt__wait_desc d = {GT__OP_ALLGATHER, what, count, dt, -1, 0};
    nccl_state *s = begin(c);
    gt__comm_next_seq(c);
    return run(c, &d, "ncclAllGather",
               ncclAllGather(send, recv, count, nccl_type(dt), s->nc, s->stream));
}

static gt_status nccl_reduce_scatter(gt_comm *c, const void *send, void *recv, size_t count,
                                     gt_dtype dt, const char *what) {
    gt__wait_desc d = {GT__OP_REDUCE_SCATTER, what, count, dt, -1, 0};
    nccl_state *s = begin(c);
    gt__comm_next_seq(c);
    return run(c, &d, "ncclReduceScatter",
               ncclReduceScatter(send, recv, count, nccl_type(dt), ncclSum, s->nc, s->stream));
}

/* One ncclGroupStart/End around a send and a receive per peer. */
static ncclResult_t exchange(gt_comm *c, const void *send, const size_t *scount,
                             const size_t *sdispl, void *recv, const size_t *rcount,
                             const size_t *rdispl, size_t uniform, gt_dtype dt) {
    nccl_state *s = c->backend_state;
    size_t es = gt__dtype_bytes(dt);
    ncclResult_t r = ncclGroupStart();
    if (r != ncclSuccess) return r;
    for (int p = 0; p < c->size; p++) {
        size_t sc = scount ? scount[p] : uniform, rc = rcount ? rcount[p] : uniform;
        size_t so = sdispl ? sdispl[p] : (size_t)p * uniform;
        size_t ro = rdispl ? rdispl[p] : (size_t)p * uniform;
        /* Zero-length pairs are skipped on both sides (counts agree pairwise). */
        if (sc && r == ncclSuccess)
            r = ncclSend((const char *)send + so * es, sc, nccl_type(dt), p, s->nc, s->stream);
        if (rc && r == ncclSuccess)
            r = ncclRecv((char *)recv + ro * es, rc, nccl_type(dt), p, s->nc, s->stream);
    }
    ncclResult_t e = ncclGroupEnd();
    return r != ncclSuccess ? r : e;
}

static gt_status nccl_alltoall(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                               const char *what) {
    gt__wait_desc d = {GT__OP_ALLTOALL, what, count, dt, -1, 0};
    begin(c);
    gt__comm_next_seq(c);
    return run(c, &d, "ncclSend/ncclRecv",
               exchange(c, send, NULL, NULL, recv, NULL, NULL, count, dt));
}

static gt_status nccl_alltoallv(gt_comm *c, const void *send, gt_comm_vlayout sl, void *recv,
                                gt_comm_vlayout rl, gt_dtype dt, const char *what) {
    size_t total = 0;
    for (int p = 0; p < c->size; p++) total += sl.counts[p];
    gt__wait_desc d = {GT__OP_ALLTOALLV, what, total, dt, -1, 0};
    begin(c);
    gt__comm_next_seq(c);
    return run(c, &d, "ncclSend/ncclRecv",
               exchange(c, send, sl.counts, sl.displs, recv, rl.counts, rl.displs, 0, dt));
}

static gt_status nccl_broadcast(gt_comm *c, void *buf, size_t count, gt_dtype dt, int root,
                                const char *what) {
    gt__wait_desc d = {GT__OP_BROADCAST, what, count, dt, -1, 0};
    nccl_state *s = begin(c);
    gt__comm_next_seq(c);
    return run(c, &d, "ncclBroadcast",
               ncclBroadcast(buf, buf, count, nccl_type(dt), root, s->nc, s->stream));
}

static gt_status nccl_barrier(gt_comm *c, const char *what) {
    gt__wait_desc d = {GT__OP_BARRIER, what, 1, GT_I32, -1, 0};
    nccl_state *s = begin(c);
    gt__comm_next_seq(c);
    return run(
        c, &d, "ncclAllReduce",
        ncclAllReduce(s->barrier_buf, s->barrier_buf, 1, ncclInt32, ncclSum, s->nc, s->stream));
}

static gt_status nccl_send(gt_comm *c, const void *buf, size_t count, gt_dtype dt, int peer,
                           int tag, const char *what) {
    gt__wait_desc d = {GT__OP_SEND, what, count, dt, peer, tag};
    nccl_state *s = begin(c);
    return run(c, &d, "ncclSend", ncclSend(buf, count, nccl_type(dt), peer, s->nc, s->stream));
}

static gt_status nccl_recv(gt_comm *c, void *buf, size_t count, gt_dtype dt, int peer, int tag,
                           const char *what) {
    gt__wait_desc d = {GT__OP_RECV, what, count, dt, peer, tag};
    nccl_state *s = begin(c);
    return run(c, &d, "ncclRecv", ncclRecv(buf, count, nccl_type(dt), peer, s->nc, s->stream));
}

/* The default allocator when the layer above supplies none (gt_comm_opts):
 * plain cudaMalloc on the group's device, until kernels/ has a CUDA
 * backend whose buffers the engine wires in instead. ctx is the state. */
static void *dev_alloc(void *ctx, size_t bytes) {
    nccl_state *s = ctx;
    void *p = NULL;
    cudaSetDevice(s->device);
    return cudaMalloc(&p, bytes) == cudaSuccess ? p : NULL;
}

static void dev_free(void *ctx, void *p) {
    (void)ctx;
    cudaFree(p);
}

static gt_status dev_copy(const gt_comm *c, void *dst, const void *src, size_t bytes, int to_dev) {
    nccl_state *s = c->backend_state;
    cudaSetDevice(s->device);
    cudaError_t e =
        cudaMemcpy(dst, src, bytes, to_dev ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost);
    if (e != cudaSuccess)
        return gt_fail(GT_ERR_COMM, "group '%s': copying %zu bytes %s device %d failed: %s",
                       c->name, bytes, to_dev ? "to" : "from", s->device, cudaGetErrorString(e));
    return GT_OK;
}

static void nccl_release(gt_comm *c) {
    nccl_state *s = c->backend_state;
    if (!s) return;
    cudaSetDevice(s->device);
    if (s->nc && !s->aborted) ncclCommDestroy(s->nc);
    if (s->stream) cudaStreamDestroy(s->stream);
    if (s->barrier_buf) s->barrier_alloc.free(s->barrier_alloc.ctx, s->barrier_buf);
    free(s);
    c->backend_state = NULL;
}

static const gt__comm_ops nccl_ops = {
    .allreduce = nccl_allreduce,
    .allgather = nccl_allgather,
    .reduce_scatter = nccl_reduce_scatter,
    .alltoall = nccl_alltoall,
    .alltoallv = nccl_alltoallv,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .send = nccl_send,
    .recv = nccl_recv,
    .mem_copy = dev_copy,
    .release = nccl_release,
    .abort = nccl_abort,
};

/* Selects the device, creates the stream and takes the barrier word from
 * the allocator; a sentence on failure. */
static gt_status local_setup(gt_comm *c, nccl_state *s, int device) {
    int n = gt_comm_cuda_device_count();
    if (device < 0 || device >= n)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "group '%s': rank %d asks for CUDA device %d but sees "
                       "%d device(s)",
                       c->name, c->rank, device, n);
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) {
        s->barrier_buf = s->barrier_alloc.alloc(s->barrier_alloc.ctx, sizeof(int));
        if (!s->barrier_buf)
            return gt_fail(GT_ERR_NOMEM,
                           "group '%s': rank %d cannot allocate the barrier word on "
                           "CUDA device %d",
                           c->name, c->rank, device);
        e = cudaMemset(s->barrier_buf, 0, sizeof(int));
    }
    if (e != cudaSuccess)
        return gt_fail(GT_ERR_COMM, "group '%s': rank %d cannot set up CUDA device %d: %s", c->name,
                       c->rank, device, cudaGetErrorString(e));
    return GT_OK;
}

gt_status gt__comm_nccl_attach(gt_comm *c, const gt_comm_opts *o) {
    int cuda_device = o->cuda_device;
    nccl_state *s = calloc(1, sizeof *s);
    if (!s) return gt_fail(GT_ERR_NOMEM, "group '%s': cannot allocate the NCCL state", c->name);
    s->device = cuda_device;
    s->barrier_alloc = o->alloc.alloc ? o->alloc : (gt_comm_allocator){dev_alloc, dev_free, s};
    c->backend_state = s;
    /* c->ops is still the MPI table here: the bootstrap runs over MPI. */
    gt_status local = local_setup(c, s, cuda_device);
    ncclUniqueId id;
    if (local == GT_OK && c->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess)
            local = gt_fail(GT_ERR_COMM, "group '%s': ncclGetUniqueId failed: %s", c->name,
                            ncclGetErrorString(r));
    }
    int bad = local != GT_OK, n_bad = 0;
    gt_status st = c->ops->allreduce(c, &bad, &n_bad, 1, GT_I32, "nccl bootstrap check");
    if (st == GT_OK && n_bad && local == GT_OK)
        st = gt_fail(GT_ERR_COMM,
                     "group '%s': %d rank(s) could not set up CUDA/NCCL, so the "
                     "NCCL group was not created",
                     c->name, n_bad);
    if (st == GT_OK) st = local;
    _Static_assert(sizeof id % 4 == 0, "unique id broadcast as int32 words");
    if (st == GT_OK) st = c->ops->broadcast(c, &id, sizeof id / 4, GT_I32, 0, "nccl unique id");
    if (st == GT_OK) {
        /* Blocking: bounded by the id broadcast above, which every member
         * has just completed, so all of them are here. */
        ncclResult_t r = ncclCommInitRank(&s->nc, c->size, id, c->rank);
        if (r != ncclSuccess) {
            s->nc = NULL;
            st = gt_fail(GT_ERR_COMM,
                         "group '%s': ncclCommInitRank (rank %d of %d, device %d) "
                         "failed: %s",
                         c->name, c->rank, c->size, cuda_device, ncclGetErrorString(r));
        }
    }
    if (st != GT_OK) {
        nccl_release(c);
        return st;
    }
    c->ops = &nccl_ops;
    c->backend = GT_COMM_NCCL;
    c->alloc = s->barrier_alloc;
    GT_LOG_INFO(GT_SUB_NET, "group '%s': NCCL rank %d of %d on device %d", c->name, c->rank,
                c->size, cuda_device);
    return GT_OK;
}
