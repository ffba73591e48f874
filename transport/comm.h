/* One communicator API for every collective and transfer between ranks.
 *
 * A gt_comm is a group of ranks with a backend: GT_COMM_MPI moves host
 * buffers with MPI, GT_COMM_NCCL moves device buffers with NCCL (its unique
 * id is broadcast over MPI; built only when CUDA is found). Callers above
 * transport/ do not know which backend a group uses.
 *
 * Every call blocks until its buffers may be reused, but underneath it is
 * non-blocking (MPI_Iallreduce, MPI_Irecv, an NCCL stream) and polled against
 * a deadline, the communicator's timeout (GANTRY_COMM_TIMEOUT_S or 300 s).
 * When the deadline passes the call returns GT_ERR_COMM with one sentence
 * naming the operation, the caller's `what` label, the group and the ranks
 * that did not arrive; the caller then ends the job with gt_comm_abort().
 *
 * How the missing ranks are found (transport/comm.c, "watchdog"): each group
 * has a private side channel (a duplicate MPI communicator). Collectives are
 * numbered per group; a rank that has waited longer than a short threshold
 * (min(0.5 s, timeout/4)) in collective number s tells every other member "I
 * reached s" on the side channel, and drains the notices of others while it
 * waits. At the deadline it keeps waiting one more threshold for late
 * notices, then names the members whose latest notice is older than s. The
 * fast path sends nothing extra. A member that finished the collective
 * without ever being slow and has not entered another one since can be
 * named wrongly (only possible for broadcast's root); this is documented in
 * the message ("did not arrive or already left").
 *
 * Threads: a communicator is used by one thread at a time (MPI is initialised
 * with MPI_THREAD_SERIALIZED). Buffers are typed: GT_F32, GT_F16, GT_BF16 and
 * GT_I32; counts are in elements and at most INT_MAX per call.
 *
 * Reductions are sums. On the MPI backend f16 and bf16 are converted to f32,
 * reduced in f32 and converted back once (convert-reduce-convert: one
 * rounding, independent of the number of ranks, at the cost of a temporary
 * f32 copy); NCCL reduces f16/bf16 natively. */
#ifndef GT_TRANSPORT_COMM_H
#define GT_TRANSPORT_COMM_H

#include <stddef.h>

#include "common/dtype.h"
#include "common/status.h"

typedef struct gt_comm gt_comm; /* opaque */

typedef enum gt_comm_backend {
    GT_COMM_MPI = 0,  /* host buffers */
    GT_COMM_NCCL = 1, /* device buffers on the rank's CUDA device */
} gt_comm_backend;

/* The watchdog deadline when neither GANTRY_COMM_TIMEOUT_S nor
 * gt_comm_set_timeout says otherwise: generous, because a long prefill on a
 * slow stage legitimately keeps its neighbours waiting. */
#define GT_COMM_DEFAULT_TIMEOUT_S 300.0

/* gt_comm_split's color for ranks that join no group (*out becomes NULL). */
#define GT_COMM_UNDEFINED (-1)

/* Where a group's own buffers come from: the reduction scratch, the NCCL
 * barrier word and gt_comm_mem_alloc. Transport never allocates device
 * memory itself when it is given one of these: the layer above wires it to
 * the kernel backend's buffers. For GT_COMM_MPI the memory must be host
 * memory; for GT_COMM_NCCL, memory of the group's CUDA device. alloc
 * returns NULL on failure; free accepts NULL. A zero allocator (alloc NULL)
 * means the default: host memory (gt_alloc) for MPI groups; for NCCL groups,
 * until kernels/ has a CUDA backend to supply them, plain cudaMalloc. */
typedef struct gt_comm_allocator {
    void *(*alloc)(void *ctx, size_t bytes);
    void (*free)(void *ctx, void *p);
    void *ctx;
} gt_comm_allocator;

typedef struct gt_comm_opts {
    gt_comm_backend backend; /* of the new group */
    int cuda_device;         /* GT_COMM_NCCL: the device this rank drives */
    double timeout_s;        /* watchdog deadline; <= 0 inherits the parent's */
    const char *name;        /* label in messages ("stage 1"); NULL: "<parent>/<color>" */
    gt_comm_allocator alloc; /* zero: the parent's when the backend is the same, else the default */
} gt_comm_opts;
#define GT_COMM_OPTS_INIT                                                                          \
    {                                                                                              \
        GT_COMM_MPI, 0, 0.0, NULL, { NULL, NULL, NULL }                                            \
    }

/* Creates the world group ("world"), calling MPI_Init_thread first unless MPI
 * is already initialised; argc/argv may be NULL. Sets the log's rank prefix
 * and MPI_ERRORS_RETURN on every communicator it creates. Returns GT_OK,
 * GT_ERR_COMM (MPI failed to start) or GT_ERR_NOMEM. */
gt_status gt_comm_init_world(int *argc, char ***argv, gt_comm **out);

/* Destroys the world group and finalises MPI if gt_comm_init_world started
 * it. Every other group must be destroyed first. Accepts NULL. */
void gt_comm_finalize(gt_comm *world);

/* Collective over parent: ranks with the same color form one group, ordered
 * by key then parent rank. color GT_COMM_UNDEFINED gives *out = NULL.
 * gt_comm_split uses defaults (MPI backend, the parent's timeout). Returns
 * GT_OK, GT_ERR_INVALID_ARG (negative color other than GT_COMM_UNDEFINED),
 * GT_ERR_UNSUPPORTED (NCCL in a build without it), GT_ERR_COMM or
 * GT_ERR_NOMEM. */
gt_status gt_comm_split(gt_comm *parent, int color, int key, gt_comm **out);
gt_status gt_comm_split_ex(gt_comm *parent, int color, int key, const gt_comm_opts *opts,
                           gt_comm **out);
/* Frees a group (not the world; use gt_comm_finalize). Accepts NULL. */
void gt_comm_destroy(gt_comm *c);

int gt_comm_rank(const gt_comm *c);
int gt_comm_size(const gt_comm *c);
int gt_comm_world_rank(const gt_comm *c, int group_rank); /* -1 when out of range */
const char *gt_comm_name(const gt_comm *c);               /* borrowed */
gt_comm_backend gt_comm_backend_of(const gt_comm *c);
double gt_comm_timeout(const gt_comm *c);
/* GT_ERR_INVALID_ARG unless 0 < seconds <= 1e6. Local; not collective. */
gt_status gt_comm_set_timeout(gt_comm *c, double seconds);
/* Replaces the group's allocator (a zero one restores the default): frees
 * the scratch taken from the old one; buffers the backend took at creation
 * (the NCCL barrier word) stay with the allocator that gave them. Local; not
 * collective; call it before the group's first collective. Returns GT_OK or
 * GT_ERR_INVALID_ARG (free missing beside alloc). */
gt_status gt_comm_set_allocator(gt_comm *c, const gt_comm_allocator *a);

/* True when this build has the NCCL backend. */
int gt_comm_have_nccl(void);
/* CUDA devices visible to this rank (0 without NCCL or without a GPU). */
int gt_comm_cuda_device_count(void);

/* Memory a group's collectives can use, from the group's allocator: host
 * memory for GT_COMM_MPI, device memory for GT_COMM_NCCL, so that code (and
 * tests) can be written once for both. alloc returns NULL (with GT_ERR_NOMEM recorded) on failure
 * or for 0 bytes; free accepts NULL. The copies are synchronous; they return GT_OK or GT_ERR_COMM
 * (a CUDA failure). */
void *gt_comm_mem_alloc(const gt_comm *c, size_t bytes);
void gt_comm_mem_free(const gt_comm *c, void *p);
gt_status gt_comm_mem_upload(const gt_comm *c, void *dst, const void *host_src, size_t bytes);
gt_status gt_comm_mem_download(const gt_comm *c, void *host_dst, const void *src, size_t bytes);

/* Collectives: every member calls them in the same order with the same
 * count, dtype and root. `what` labels the call in error messages ("layer 3
 * attn allreduce"; NULL is allowed). Each returns GT_OK, GT_ERR_INVALID_ARG
 * (bad dtype, root, pointer), GT_ERR_RANGE (count > INT_MAX), GT_ERR_NOMEM
 * (f16/bf16 temporaries) or GT_ERR_COMM (a transport error or the deadline).
 * After GT_ERR_COMM the group is unusable: call gt_comm_abort. */

/* recv[i] = sum over ranks of send[i]; [count]. send == recv is in place. */
gt_status gt_comm_allreduce(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                            const char *what);
/* recv = [size][count], block r from rank r's send [count]. send may equal
 * recv + rank*count (in place). */
gt_status gt_comm_allgather(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                            const char *what);
/* send = [size][count]; recv [count] = sum over ranks of their block `rank`. */
gt_status gt_comm_reduce_scatter(gt_comm *c, const void *send, void *recv, size_t count,
                                 gt_dtype dt, const char *what);
/* send = [size][count], block p goes to rank p; recv = [size][count], block p
 * came from rank p. send and recv must not overlap. */
gt_status gt_comm_alltoall(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                           const char *what);

/* Per-peer layout of an all-to-all-v buffer, in elements: peer p's block is
 * counts[p] elements starting at element displs[p]. Arrays of size() items. */
typedef struct gt_comm_vlayout {
    const size_t *counts;
    const size_t *displs;
} gt_comm_vlayout;
/* Send block p of `send` to rank p; receive rank p's block into block p of
 * `recv`. Counts must agree pairwise (what p sends me is what I receive from
 * p); the MPI backend reports a mismatch as GT_ERR_COMM. */
gt_status gt_comm_alltoallv(gt_comm *c, const void *send, gt_comm_vlayout send_layout, void *recv,
                            gt_comm_vlayout recv_layout, gt_dtype dt, const char *what);
/* buf [count] on root is copied to buf on every member. */
gt_status gt_comm_broadcast(gt_comm *c, void *buf, size_t count, gt_dtype dt, int root,
                            const char *what);
gt_status gt_comm_barrier(gt_comm *c, const char *what);

/* Point to point (pipeline neighbours). Blocks until buf may be reused (a
 * large send waits for the matching receive). tag in [0, 32767]. On MPI,
 * recv fails with GT_ERR_COMM when the message is longer or shorter than
 * count. NCCL has no tags and no length check: messages between two ranks
 * match in the order they were sent, so callers must keep that order. */
gt_status gt_comm_send(gt_comm *c, const void *buf, size_t count, gt_dtype dt, int peer, int tag,
                       const char *what);
gt_status gt_comm_recv(gt_comm *c, void *buf, size_t count, gt_dtype dt, int peer, int tag,
                       const char *what);

/* Ends the whole job: logs gt_last_error() at error level, aborts NCCL on c
 * (if any) and calls MPI_Abort(MPI_COMM_WORLD, code) (code 0 becomes 1).
 * Never returns. c may be NULL. */
_Noreturn void gt_comm_abort(gt_comm *c, int code);

#endif
