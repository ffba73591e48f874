/* The watchdog: every blocking call of every backend waits here.
 *
 * gt__comm_wait polls the backend's pending operation until it completes or
 * the group's deadline passes. Waiting spins for a few microseconds (the
 * latency of a small allreduce), then yields the core (ranks are often
 * oversubscribed), then sleeps 50 µs between polls once the wait is clearly
 * long.
 *
 * Naming who is missing (design, see also comm.h): collectives are numbered
 * per group (c->seq, equal on every member because members call collectives
 * in the same order). After waiting SLOW seconds = min(0.5, timeout/4) in
 * collective s, a rank sends the notice {s, op} once to every other member on
 * the group's side channel and from then on drains the notices others sent,
 * keeping the latest per member (numbers only grow, so "reached s" also
 * covers every earlier collective). At the deadline it waits one more SLOW
 * period, so that a member that arrived just before the deadline has had time
 * to announce itself, then names the members whose latest notice is below s.
 * Nothing is sent on the fast path. Point-to-point calls name their peer. */
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/timer.h"
#include "transport/internal.h"

enum { TAG_NOTICE = 1 };

const char *gt__comm_op_name(gt__comm_op op) {
    static const char *const names[GT__OP_COUNT] = {
        [GT__OP_ALLREDUCE] = "allreduce",
        [GT__OP_ALLGATHER] = "allgather",
        [GT__OP_REDUCE_SCATTER] = "reduce_scatter",
        [GT__OP_ALLTOALL] = "alltoall",
        [GT__OP_ALLTOALLV] = "alltoallv",
        [GT__OP_BROADCAST] = "broadcast",
        [GT__OP_BARRIER] = "barrier",
        [GT__OP_SEND] = "send",
        [GT__OP_RECV] = "recv",
    };
    return (unsigned)op < GT__OP_COUNT && names[op] ? names[op] : "operation";
}

uint64_t gt__comm_next_seq(gt_comm *c) { return ++c->seq; }

gt_status gt__comm_mpi_fail(gt_comm *c, const gt__wait_desc *d, int mpi_err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mpi_err, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error %d", mpi_err);
    return gt_fail(GT_ERR_COMM, "%s '%s' on group '%s' failed: %s", gt__comm_op_name(d->op),
                   d->what ? d->what : "", c->name, msg);
}

/* Sends our notice for the current collective to every other member. A
 * member whose previous notice is still in flight is skipped: it will learn
 * our progress from that one or not at all, which at worst names us wrongly
 * in its message but never blocks. */
static void send_notices(gt_comm *c, gt__comm_op op) {
    for (int p = 0; p < c->size; p++) {
        if (p == c->rank) continue;
        if (c->notice_req[p] != MPI_REQUEST_NULL) {
            int done = 0;
            MPI_Test(&c->notice_req[p], &done, MPI_STATUS_IGNORE);
            if (!done) continue;
        }
        c->notice[2 * p] = c->seq;
        c->notice[2 * p + 1] = (uint64_t)op;
        if (MPI_Isend(&c->notice[2 * p], 2, MPI_UINT64_T, p, TAG_NOTICE, c->side,
                      &c->notice_req[p]) != MPI_SUCCESS)
            c->notice_req[p] = MPI_REQUEST_NULL;
    }
}

static void drain_notices(gt_comm *c) {
    for (;;) {
        int flag = 0;
        MPI_Status stt;
        if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_NOTICE, c->side, &flag, &stt) != MPI_SUCCESS || !flag)
            return;
        uint64_t msg[2];
        if (MPI_Recv(msg, 2, MPI_UINT64_T, stt.MPI_SOURCE, TAG_NOTICE, c->side,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return;
        int src = stt.MPI_SOURCE;
        if (src >= 0 && src < c->size && msg[0] >= c->seen[src]) {
            c->seen[src] = msg[0];
            c->seen_op[src] = (uint8_t)msg[1];
        }
    }
}

/* MPI's non-blocking collectives progress only inside MPI_Test, so a
 * transfer in flight must be polled without pauses: spin, then yield (which
 * costs nothing when the core is ours and hands it over when ranks are
 * oversubscribed). Only a wait past one second, a stall rather than a
 * transfer, sleeps between polls. */
static void backoff(double waited_s) {
    if (waited_s < 20e-6) return;
    if (waited_s < 1.0) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
}

/* Appends "ranks 1, 3 (world ranks 5, 7)" for the members flagged in miss. */
static void list_ranks(const gt_comm *c, const unsigned char *miss, int n_miss, char *buf,
                       size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, n_miss == 1 ? "rank " : "ranks ");
    int k = 0;
    for (int p = 0; p < c->size && n < cap; p++)
        if (miss[p]) n += (size_t)snprintf(buf + n, cap - n, "%s%d", k++ ? ", " : "", p);
    if (n < cap)
        n += (size_t)snprintf(buf + n, cap - n, n_miss == 1 ? " (world rank " : " (world ranks ");
    k = 0;
    for (int p = 0; p < c->size && n < cap; p++)
        if (miss[p])
            n += (size_t)snprintf(buf + n, cap - n, "%s%d", k++ ? ", " : "", c->world_ranks[p]);
    if (n < cap) snprintf(buf + n, cap - n, ")");
}

static gt_status collective_timeout(gt_comm *c, const gt__wait_desc *d, double waited) {
    unsigned char miss[1024] = {0}, other[1024] = {0};
    int n_miss = 0, n_other = 0, first_other = -1;
    for (int p = 0; p < c->size && p < 1024; p++) {
        if (p == c->rank) continue;
        if (c->seen[p] < c->seq) {
            miss[p] = 1;
            n_miss++;
        } else if (c->seen[p] == c->seq && c->seen_op[p] != (uint8_t)d->op) {
            other[p] = 1;
            n_other++;
            if (first_other < 0) first_other = p;
        }
    }
    char who[400] = "", mism[300] = "";
    if (n_miss) {
        list_ranks(c, miss, n_miss, who, sizeof who);
        snprintf(who + strlen(who), sizeof who - strlen(who), " did not arrive (or already left)");
    } else {
        snprintf(who, sizeof who, "every rank arrived, so the transfer itself stalled");
    }
    if (n_other) {
        list_ranks(c, other, n_other, mism, sizeof mism);
        snprintf(mism + strlen(mism), sizeof mism - strlen(mism),
                 " %s in %s instead (mismatched collectives)", n_other == 1 ? "is" : "are",
                 gt__comm_op_name((gt__comm_op)c->seen_op[first_other]));
    }
    return gt_fail(GT_ERR_COMM,
                   "%s '%s' (collective #%llu, %zu %s) on group '%s' (%d ranks, this is rank %d) "
                   "did not complete within its %.1f s timeout (waited %.1f s): %s%s%s",
                   gt__comm_op_name(d->op), d->what ? d->what : "", (unsigned long long)c->seq,
                   d->count, gt_dtype_name((uint32_t)d->dt), c->name, c->size, c->rank,
                   c->timeout_s, waited, who, n_other ? "; " : "", mism);
}

static gt_status p2p_timeout(gt_comm *c, const gt__wait_desc *d, double waited) {
    return gt_fail(GT_ERR_COMM,
                   "%s '%s' (%zu %s, tag %d) %s rank %d (world rank %d) on group '%s' did not "
                   "complete within %.1f s: rank %d did not %s",
                   gt__comm_op_name(d->op), d->what ? d->what : "", d->count,
                   gt_dtype_name((uint32_t)d->dt), d->tag, d->op == GT__OP_SEND ? "to" : "from",
                   d->peer, c->world_ranks[d->peer], c->name, waited, d->peer,
                   d->op == GT__OP_SEND ? "receive it" : "send it");
}

/* A member of the wait that has exited on this host (liveness.c): the
 * failure sentence naming it, else GT_OK. */
static gt_status check_members(gt_comm *c, const gt__wait_desc *d) {
    for (int p = 0; p < c->size; p++) {
        if (p == c->rank || (d->peer >= 0 && p != d->peer)) continue;
        int pid = gt__liveness_dead(c->world_ranks[p]);
        if (pid)
            return gt_fail(GT_ERR_COMM,
                           "%s '%s' on group '%s' cannot complete: rank %d (world rank %d, pid %d "
                           "on this host) has exited",
                           gt__comm_op_name(d->op), d->what ? d->what : "", c->name, p,
                           c->world_ranks[p], pid);
    }
    return GT_OK;
}

gt_status gt__comm_wait(gt_comm *c, const gt__wait_desc *d, gt__poll_fn poll, void *ctx) {
    const bool coll = d->peer < 0;
    double next_check = 0.1; /* a dead peer is found within a tenth of a second of waiting */
    const double slow = c->timeout_s / 4 < 0.5 ? c->timeout_s / 4 : 0.5;
    const uint64_t t0 = gt_now_ns();
    bool announced = false;
    for (;;) {
        bool done = false;
        gt_status st = poll(c, ctx, &done);
        if (st != GT_OK) return st;
        if (done) return GT_OK;
        double waited = (double)(gt_now_ns() - t0) * 1e-9;
        if (waited >= next_check) {
            GT_TRY(check_members(c, d));
            next_check = waited + 0.1;
        }
        if (coll && waited >= slow) {
            if (!announced) {
                send_notices(c, d->op);
                announced = true;
                GT_LOG_DEBUG(GT_SUB_NET, "%s '%s' on group '%s' waiting %.2f s",
                             gt__comm_op_name(d->op), d->what ? d->what : "", c->name, waited);
            }
            drain_notices(c);
        }
        /* Collectives wait one extra SLOW period for late notices. */
        if (waited >= c->timeout_s + (coll ? slow : 0.0))
            return coll ? collective_timeout(c, d, waited) : p2p_timeout(c, d, waited);
        backoff(waited);
    }
}
