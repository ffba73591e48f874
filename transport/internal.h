/* Private to transport/: the communicator struct, the backend table and the
 * watchdog's wait loop.
 *
 * Backends are tables of function pointers (ggml-backend style): comm.c
 * checks the arguments once, then calls c->ops. A backend starts a
 * non-blocking operation and hands a poll function to gt__comm_wait, which
 * owns the deadline, the arrival notices and the failure sentence, so that
 * every backend reports a stall the same way.
 *
 * Files, each using only those below it (no two call each other):
 *   comm.c            lifecycle, argument checks, dispatch
 *   backends.c        the table of backends by gt_comm_backend (the only
 *                     file that names them)
 *   comm_mpi.c, comm_nccl.c (or nccl_none.c)   the backends
 *   comm_core.c, watchdog.c, liveness.c   what every backend shares: sizes,
 *                     scratch and allocators; sequence numbers, waiting,
 *                     failure sentences; which peers on this host have died */
#ifndef GT_TRANSPORT_INTERNAL_H
#define GT_TRANSPORT_INTERNAL_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "transport/comm.h"

typedef enum gt__comm_op {
    GT__OP_ALLREDUCE = 1,
    GT__OP_ALLGATHER,
    GT__OP_REDUCE_SCATTER,
    GT__OP_ALLTOALL,
    GT__OP_ALLTOALLV,
    GT__OP_BROADCAST,
    GT__OP_BARRIER,
    GT__OP_SEND,
    GT__OP_RECV,
    GT__OP_COUNT
} gt__comm_op;

const char *gt__comm_op_name(gt__comm_op op); /* "allreduce" */

typedef struct gt__comm_ops {
    gt_status (*allreduce)(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                           const char *what);
    gt_status (*allgather)(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                           const char *what);
    gt_status (*reduce_scatter)(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                                const char *what);
    gt_status (*alltoall)(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                          const char *what);
    gt_status (*alltoallv)(gt_comm *c, const void *send, gt_comm_vlayout sl, void *recv,
                           gt_comm_vlayout rl, gt_dtype dt, const char *what);
    gt_status (*broadcast)(gt_comm *c, void *buf, size_t count, gt_dtype dt, int root,
                           const char *what);
    gt_status (*barrier)(gt_comm *c, const char *what);
    gt_status (*send)(gt_comm *c, const void *buf, size_t count, gt_dtype dt, int peer, int tag,
                      const char *what);
    gt_status (*recv)(gt_comm *c, void *buf, size_t count, gt_dtype dt, int peer, int tag,
                      const char *what);
    gt_status (*mem_copy)(const gt_comm *c, void *dst, const void *src, size_t bytes, int to_dev);
    void (*release)(gt_comm *c); /* frees backend state; NULL when none */
    void (*abort)(gt_comm *c);   /* best-effort cancel before MPI_Abort; may be NULL */
} gt__comm_ops;

struct gt_comm {
    const gt__comm_ops *ops;
    gt_comm_backend backend;
    MPI_Comm comm; /* data (MPI backend) and bootstrap (NCCL) */
    MPI_Comm side; /* watchdog arrival notices only */
    int rank, size;
    int *world_ranks; /* [size] world rank of each member */
    char name[64];
    double timeout_s;
    bool is_world, owns_mpi;
    uint64_t seq;            /* collectives started on this group, this one included */
    uint64_t *seen;          /* [size] latest collective number each member announced */
    uint8_t *seen_op;        /* [size] the gt__comm_op of that collective */
    uint64_t *notice;        /* [size][2] send buffers of our own notices */
    MPI_Request *notice_req; /* [size] */
    gt_comm_allocator alloc; /* the group's memory; never zero (defaults filled in) */
    void *scratch;           /* f32 temporaries for f16/bf16 reductions, from alloc */
    size_t scratch_bytes;
    void *backend_state; /* NCCL: see comm_nccl.c */
};

/* What a pending operation is, for the watchdog's sentence. */
typedef struct gt__wait_desc {
    gt__comm_op op;
    const char *what;
    size_t count;
    gt_dtype dt;
    int peer; /* point to point: the other rank; collectives: -1 */
    int tag;
} gt__wait_desc;

/* Polls a pending operation: sets *done when it has completed. Returns a
 * status other than GT_OK (with its sentence) when it failed. */
typedef gt_status (*gt__poll_fn)(gt_comm *c, void *ctx, bool *done);

/* Starts a collective's number (call once per collective, before starting
 * it) and returns it. */
uint64_t gt__comm_next_seq(gt_comm *c);

/* Waits until poll reports completion or the deadline (c->timeout_s from
 * now) passes; for collectives (d->peer < 0) it runs the arrival-notice
 * protocol described in comm.h. Returns GT_OK, poll's failure, or GT_ERR_COMM
 * with the watchdog sentence. */
gt_status gt__comm_wait(gt_comm *c, const gt__wait_desc *d, gt__poll_fn poll, void *ctx);

/* liveness.c: publishes every rank's (host, pid) at start (collective over
 * world); gt__liveness_dead(w) is the pid of world rank w when it shares
 * this host and its process has exited, else 0. */
gt_status gt__liveness_init(MPI_Comm world);
void gt__liveness_free(void);
int gt__liveness_dead(int world_rank);

/* Records "<op> '<what>' on group '<name>' failed: <MPI error string>". */
gt_status gt__comm_mpi_fail(gt_comm *c, const gt__wait_desc *d, int mpi_err);

/* comm_core.c ------------------------------------------------------------- */

/* Grows c->scratch (from c->alloc) to at least bytes; NULL (with
 * GT_ERR_NOMEM recorded) on failure. */
void *gt__comm_scratch(gt_comm *c, size_t bytes);
/* Returns c->scratch to c->alloc. */
void gt__comm_scratch_release(gt_comm *c);
/* The default allocator of host memory (gt_alloc / gt_free). */
gt_comm_allocator gt__comm_host_allocator(void);

size_t gt__dtype_bytes(gt_dtype dt); /* 4 or 2; 0 for types transport does not move */

/* backends.c ---------------------------------------------------------------- */

typedef struct gt__comm_backend_entry {
    const char *name;        /* "mpi" */
    const gt__comm_ops *ops; /* the table a new group of this backend starts with */
    /* Turns a new MPI group into one of this backend (collective over c,
     * which still runs the MPI table for the bootstrap); NULL when nothing is
     * needed. On success it sets c->ops, c->backend and, when o->alloc is
     * zero, the backend's default allocator. */
    gt_status (*attach)(gt_comm *c, const gt_comm_opts *o);
} gt__comm_backend_entry;

/* The entry of backend b; NULL for an unknown value. */
const gt__comm_backend_entry *gt__comm_backend(gt_comm_backend b);

/* The backends (only backends.c names these). */
extern const gt__comm_ops gt__comm_mpi_ops;
gt_status gt__comm_nccl_attach(gt_comm *c, const gt_comm_opts *o);

#endif
