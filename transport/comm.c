/* Communicator lifecycle (world, split, destroy), argument checks and
 * dispatch to the backend table.
 *
 * Every group owns two duplicates of an MPI communicator: one for its data
 * (or the NCCL bootstrap) and one side channel for the watchdog's arrival
 * notices, so that neither can match the other's messages nor a user's.
 * Arguments are checked here, identically on every rank and before anything
 * is sent, so that a bad call fails on all members alike instead of leaving
 * some of them waiting. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "transport/internal.h"

/* GANTRY_COMM_TIMEOUT_S: the watchdog deadline in seconds for every group. */
static double env_timeout(void) {
    const char *s = getenv("GANTRY_COMM_TIMEOUT_S");
    if (!s || !*s) return GT_COMM_DEFAULT_TIMEOUT_S;
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v > 0 && v <= 1e6)) {
        GT_LOG_WARN(GT_SUB_NET,
                    "GANTRY_COMM_TIMEOUT_S=%s is not a number of seconds in (0, 1e6]; "
                    "using %.0f s",
                    s, GT_COMM_DEFAULT_TIMEOUT_S);
        return GT_COMM_DEFAULT_TIMEOUT_S;
    }
    return v;
}

static void comm_free(gt_comm *c) {
    if (!c) return;
    gt__comm_scratch_release(c); /* before the backend state its allocator may use */
    if (c->ops && c->ops->release) c->ops->release(c);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) {
        for (int p = 0; c->notice_req && p < c->size; p++)
            if (c->notice_req[p] != MPI_REQUEST_NULL) MPI_Request_free(&c->notice_req[p]);
        if (c->side != MPI_COMM_NULL) MPI_Comm_free(&c->side);
        if (c->comm != MPI_COMM_NULL) MPI_Comm_free(&c->comm);
    }
    free(c->world_ranks);
    free(c->seen);
    free(c->seen_op);
    free(c->notice);
    free(c->notice_req);
    free(c);
}

/* Wraps an MPI communicator this group now owns (comm) into a gt_comm. */
static gt_status comm_wrap(MPI_Comm comm, const char *name, double timeout_s, gt_comm **out) {
    gt_comm *c = calloc(1, sizeof *c);
    if (!c) {
        MPI_Comm_free(&comm);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate communicator '%s'", name);
    }
    c->comm = comm;
    c->side = MPI_COMM_NULL;
    c->ops = gt__comm_backend(GT_COMM_MPI)->ops;
    c->backend = GT_COMM_MPI;
    c->alloc = gt__comm_host_allocator();
    c->timeout_s = timeout_s;
    snprintf(c->name, sizeof c->name, "%s", name);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    int err = MPI_Comm_dup(comm, &c->side);
    if (err != MPI_SUCCESS) {
        c->side = MPI_COMM_NULL;
        comm_free(c);
        return gt_fail(GT_ERR_COMM, "group '%s': MPI_Comm_dup of the watchdog channel failed",
                       name);
    }
    size_t n = (size_t)c->size;
    c->world_ranks = malloc(n * sizeof *c->world_ranks);
    c->seen = calloc(n, sizeof *c->seen);
    c->seen_op = calloc(n, sizeof *c->seen_op);
    c->notice = calloc(2 * n, sizeof *c->notice);
    c->notice_req = malloc(n * sizeof *c->notice_req);
    int *mine = malloc(n * sizeof *mine);
    if (!c->world_ranks || !c->seen || !c->seen_op || !c->notice || !c->notice_req || !mine) {
        free(mine);
        comm_free(c);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate communicator '%s' of %d ranks", name, (int)n);
    }
    for (size_t p = 0; p < n; p++) {
        c->notice_req[p] = MPI_REQUEST_NULL;
        mine[p] = (int)p;
    }
    MPI_Group g, wg;
    MPI_Comm_group(comm, &g);
    MPI_Comm_group(MPI_COMM_WORLD, &wg);
    MPI_Group_translate_ranks(g, c->size, mine, wg, c->world_ranks);
    MPI_Group_free(&g);
    MPI_Group_free(&wg);
    free(mine);
    *out = c;
    return GT_OK;
}

gt_status gt_comm_init_world(int *argc, char ***argv, gt_comm **out) {
    *out = NULL;
    int inited = 0, owns = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
            return gt_fail(GT_ERR_COMM, "MPI_Init_thread failed: is this process started by "
                                        "mpirun or srun --mpi=pmix?");
        owns = 1;
        if (provided < MPI_THREAD_SERIALIZED)
            GT_LOG_WARN(GT_SUB_NET,
                        "MPI provides thread level %d, below MPI_THREAD_SERIALIZED; "
                        "call transport from the main thread only",
                        provided);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm dup;
    if (MPI_Comm_dup(MPI_COMM_WORLD, &dup) != MPI_SUCCESS)
        return gt_fail(GT_ERR_COMM, "MPI_Comm_dup(MPI_COMM_WORLD) failed");
    GT_TRY(gt__liveness_init(dup));
    gt_comm *c;
    GT_TRY(comm_wrap(dup, "world", env_timeout(), &c));
    c->is_world = true;
    c->owns_mpi = owns;
    gt_log_set_rank(c->rank, c->size);
    *out = c;
    return GT_OK;
}

void gt_comm_finalize(gt_comm *world) {
    if (!world) return;
    int owns = world->owns_mpi;
    comm_free(world);
    gt__liveness_free();
    int fin = 0;
    MPI_Finalized(&fin);
    if (owns && !fin) MPI_Finalize();
}

gt_status gt_comm_split(gt_comm *parent, int color, int key, gt_comm **out) {
    return gt_comm_split_ex(parent, color, key, NULL, out);
}

gt_status gt_comm_split_ex(gt_comm *parent, int color, int key, const gt_comm_opts *opts,
                           gt_comm **out) {
    *out = NULL;
    gt_comm_opts o = GT_COMM_OPTS_INIT;
    if (opts) o = *opts;
    if (color < 0 && color != GT_COMM_UNDEFINED)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "split of group '%s': color %d is negative and not GT_COMM_UNDEFINED",
                       parent->name, color);
    const gt__comm_backend_entry *be = gt__comm_backend(o.backend);
    if (!be)
        return gt_fail(GT_ERR_INVALID_ARG, "split of group '%s': unknown backend %d", parent->name,
                       (int)o.backend);
    if (o.alloc.alloc && !o.alloc.free)
        return gt_fail(GT_ERR_INVALID_ARG, "split of group '%s': the allocator has no free",
                       parent->name);
    /* Checked before the collective split so that every rank stays in step:
     * all ranks of one build agree on whether NCCL exists. */
    if (o.backend == GT_COMM_NCCL && !gt_comm_have_nccl())
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "split of group '%s': this build has no NCCL backend "
                       "(configure with CUDA to get it)",
                       parent->name);
    MPI_Comm nc;
    int err =
        MPI_Comm_split(parent->comm, color == GT_COMM_UNDEFINED ? MPI_UNDEFINED : color, key, &nc);
    if (err != MPI_SUCCESS) {
        char msg[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(err, msg, &len);
        return gt_fail(GT_ERR_COMM, "split of group '%s' (color %d) failed: %s", parent->name,
                       color, msg);
    }
    if (nc == MPI_COMM_NULL) return GT_OK;
    char name[64];
    if (o.name)
        snprintf(name, sizeof name, "%s", o.name);
    else
        snprintf(name, sizeof name, "%.40s/%d", parent->name, color);
    gt_comm *c;
    GT_TRY(comm_wrap(nc, name, o.timeout_s > 0 ? o.timeout_s : parent->timeout_s, &c));
    c->ops = be->ops;
    if (o.alloc.alloc)
        c->alloc = o.alloc;
    else if (o.backend == parent->backend)
        c->alloc = parent->alloc;
    if (be->attach) {
        gt_status st = be->attach(c, &o);
        if (st != GT_OK) {
            comm_free(c);
            return st;
        }
    }
    *out = c;
    return GT_OK;
}

void gt_comm_destroy(gt_comm *c) {
    if (!c) return;
    if (c->is_world) {
        GT_LOG_WARN(GT_SUB_NET, "gt_comm_destroy called on the world group; use gt_comm_finalize");
        return;
    }
    comm_free(c);
}

int gt_comm_rank(const gt_comm *c) { return c->rank; }
int gt_comm_size(const gt_comm *c) { return c->size; }
int gt_comm_world_rank(const gt_comm *c, int r) {
    return r >= 0 && r < c->size ? c->world_ranks[r] : -1;
}
const char *gt_comm_name(const gt_comm *c) { return c->name; }
gt_comm_backend gt_comm_backend_of(const gt_comm *c) { return c->backend; }
double gt_comm_timeout(const gt_comm *c) { return c->timeout_s; }

gt_status gt_comm_set_timeout(gt_comm *c, double seconds) {
    if (!(seconds > 0 && seconds <= 1e6))
        return gt_fail(GT_ERR_INVALID_ARG, "group '%s': timeout %g s is not in (0, 1e6]", c->name,
                       seconds);
    c->timeout_s = seconds;
    return GT_OK;
}

gt_status gt_comm_set_allocator(gt_comm *c, const gt_comm_allocator *a) {
    bool given = a && a->alloc;
    if (given && !a->free)
        return gt_fail(GT_ERR_INVALID_ARG, "group '%s': the allocator has no free", c->name);
    /* The NCCL default lives in its attach; only MPI has one to return to. */
    if (!given && c->backend != GT_COMM_MPI)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "group '%s': an NCCL group needs an explicit allocator to replace its own",
                       c->name);
    gt__comm_scratch_release(c);
    c->alloc = given ? *a : gt__comm_host_allocator();
    return GT_OK;
}

/* Argument checks --------------------------------------------------------- */

static gt_status check_buf(gt_comm *c, gt__comm_op op, const char *what, const void *p,
                           size_t count, gt_dtype dt) {
    const char *w = what ? what : "";
    if (!c)
        return gt_fail(GT_ERR_INVALID_ARG, "%s '%s': communicator is NULL", gt__comm_op_name(op),
                       w);
    if (!gt__dtype_bytes(dt))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s '%s' on group '%s': dtype %s is not one transport moves "
                       "(f32, f16, bf16, i32)",
                       gt__comm_op_name(op), w, c->name, gt_dtype_name((uint32_t)dt));
    if (count > INT_MAX)
        return gt_fail(GT_ERR_RANGE, "%s '%s' on group '%s': count %zu exceeds the limit %d",
                       gt__comm_op_name(op), w, c->name, count, INT_MAX);
    if (count && !p)
        return gt_fail(GT_ERR_INVALID_ARG, "%s '%s' on group '%s': buffer is NULL for %zu elements",
                       gt__comm_op_name(op), w, c->name, count);
    return GT_OK;
}

static gt_status check_rank(gt_comm *c, gt__comm_op op, const char *what, const char *role, int r) {
    if (r < 0 || r >= c->size)
        return gt_fail(GT_ERR_INVALID_ARG, "%s '%s' on group '%s': %s %d is not in [0, %d)",
                       gt__comm_op_name(op), what ? what : "", c->name, role, r, c->size);
    return GT_OK;
}

/* Dispatch ----------------------------------------------------------------- */

gt_status gt_comm_allreduce(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                            const char *what) {
    GT_TRY(check_buf(c, GT__OP_ALLREDUCE, what, send, count, dt));
    GT_TRY(check_buf(c, GT__OP_ALLREDUCE, what, recv, count, dt));
    return c->ops->allreduce(c, send, recv, count, dt, what);
}

gt_status gt_comm_allgather(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                            const char *what) {
    GT_TRY(check_buf(c, GT__OP_ALLGATHER, what, send, count, dt));
    GT_TRY(check_buf(c, GT__OP_ALLGATHER, what, recv, count, dt));
    return c->ops->allgather(c, send, recv, count, dt, what);
}

gt_status gt_comm_reduce_scatter(gt_comm *c, const void *send, void *recv, size_t count,
                                 gt_dtype dt, const char *what) {
    GT_TRY(check_buf(c, GT__OP_REDUCE_SCATTER, what, send, count, dt));
    GT_TRY(check_buf(c, GT__OP_REDUCE_SCATTER, what, recv, count, dt));
    return c->ops->reduce_scatter(c, send, recv, count, dt, what);
}

gt_status gt_comm_alltoall(gt_comm *c, const void *send, void *recv, size_t count, gt_dtype dt,
                           const char *what) {
    GT_TRY(check_buf(c, GT__OP_ALLTOALL, what, send, count, dt));
    GT_TRY(check_buf(c, GT__OP_ALLTOALL, what, recv, count, dt));
    if (count && send == recv)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "alltoall '%s' on group '%s': send and recv are the "
                       "same buffer",
                       what ? what : "", c->name);
    return c->ops->alltoall(c, send, recv, count, dt, what);
}

static gt_status check_layout(gt_comm *c, const char *what, const char *side, const void *buf,
                              gt_comm_vlayout l, gt_dtype dt) {
    if (!l.counts || !l.displs)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "alltoallv '%s' on group '%s': %s counts or "
                       "displacements are NULL",
                       what ? what : "", c->name, side);
    for (int p = 0; p < c->size; p++) {
        if (l.counts[p] > INT_MAX || l.displs[p] > INT_MAX)
            return gt_fail(GT_ERR_RANGE,
                           "alltoallv '%s' on group '%s': %s block for rank %d "
                           "(count %zu at %zu) exceeds the limit %d",
                           what ? what : "", c->name, side, p, l.counts[p], l.displs[p], INT_MAX);
        GT_TRY(check_buf(c, GT__OP_ALLTOALLV, what, buf, l.counts[p], dt));
    }
    return GT_OK;
}

gt_status gt_comm_alltoallv(gt_comm *c, const void *send, gt_comm_vlayout sl, void *recv,
                            gt_comm_vlayout rl, gt_dtype dt, const char *what) {
    GT_TRY(check_buf(c, GT__OP_ALLTOALLV, what, send, 0, dt));
    GT_TRY(check_layout(c, what, "send", send, sl, dt));
    GT_TRY(check_layout(c, what, "recv", recv, rl, dt));
    return c->ops->alltoallv(c, send, sl, recv, rl, dt, what);
}

gt_status gt_comm_broadcast(gt_comm *c, void *buf, size_t count, gt_dtype dt, int root,
                            const char *what) {
    GT_TRY(check_buf(c, GT__OP_BROADCAST, what, buf, count, dt));
    GT_TRY(check_rank(c, GT__OP_BROADCAST, what, "root", root));
    return c->ops->broadcast(c, buf, count, dt, root, what);
}

gt_status gt_comm_barrier(gt_comm *c, const char *what) {
    if (!c)
        return gt_fail(GT_ERR_INVALID_ARG, "barrier '%s': communicator is NULL", what ? what : "");
    return c->ops->barrier(c, what);
}

static gt_status check_p2p(gt_comm *c, gt__comm_op op, const void *buf, size_t count, gt_dtype dt,
                           int peer, int tag, const char *what) {
    GT_TRY(check_buf(c, op, what, buf, count, dt));
    GT_TRY(check_rank(c, op, what, "peer", peer));
    if (peer == c->rank)
        return gt_fail(GT_ERR_INVALID_ARG, "%s '%s' on group '%s': rank %d cannot %s itself",
                       gt__comm_op_name(op), what ? what : "", c->name, peer,
                       op == GT__OP_SEND ? "send to" : "receive from");
    if (tag < 0 || tag > 32767)
        return gt_fail(GT_ERR_INVALID_ARG, "%s '%s' on group '%s': tag %d is not in [0, 32767]",
                       gt__comm_op_name(op), what ? what : "", c->name, tag);
    return GT_OK;
}

gt_status gt_comm_send(gt_comm *c, const void *buf, size_t count, gt_dtype dt, int peer, int tag,
                       const char *what) {
    GT_TRY(check_p2p(c, GT__OP_SEND, buf, count, dt, peer, tag, what));
    return c->ops->send(c, buf, count, dt, peer, tag, what);
}

gt_status gt_comm_recv(gt_comm *c, void *buf, size_t count, gt_dtype dt, int peer, int tag,
                       const char *what) {
    GT_TRY(check_p2p(c, GT__OP_RECV, buf, count, dt, peer, tag, what));
    return c->ops->recv(c, buf, count, dt, peer, tag, what);
}

_Noreturn void gt_comm_abort(gt_comm *c, int code) {
    if (code == 0) code = 1;
    const char *msg = gt_last_error();
    GT_LOG_ERROR(GT_SUB_NET, "ending the job: %s", *msg ? msg : "(no error recorded)");
    fflush(stderr);
    if (c && c->ops && c->ops->abort) c->ops->abort(c);
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (inited && !fin) MPI_Abort(MPI_COMM_WORLD, code);
    _Exit(code);
}

/* Memory for collectives --------------------------------------------------- */

void *gt_comm_mem_alloc(const gt_comm *c, size_t bytes) {
    if (!bytes) return NULL;
    void *p = c->alloc.alloc(c->alloc.ctx, bytes);
    if (!p)
        gt_fail(GT_ERR_NOMEM, "group '%s': cannot allocate %zu bytes of %s memory", c->name, bytes,
                c->backend == GT_COMM_NCCL ? "device" : "host");
    return p;
}

void gt_comm_mem_free(const gt_comm *c, void *p) {
    if (p) c->alloc.free(c->alloc.ctx, p);
}

gt_status gt_comm_mem_upload(const gt_comm *c, void *dst, const void *host_src, size_t bytes) {
    return bytes ? c->ops->mem_copy(c, dst, host_src, bytes, 1) : GT_OK;
}

gt_status gt_comm_mem_download(const gt_comm *c, void *host_dst, const void *src, size_t bytes) {
    return bytes ? c->ops->mem_copy(c, host_dst, src, bytes, 0) : GT_OK;
}
