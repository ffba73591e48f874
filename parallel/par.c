/* Run-time collectives of the grid; see par.h. The stage group is split
 * once; pipeline transfers use the world communicator with ranks from the
 * grid, so no extra groups are needed for them. */
#include "parallel/par.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/timer.h"
#include "common/trace.h"

struct gt_par {
    gt_grid grid;
    double stall_s;  /* test hook: sleep before allreduce number stall_at */
    long stall_at;
    int kill_self;   /* test hook: die before the first allreduce */
    long n_allreduce;
    gt_comm *world; /* borrowed */
    gt_comm *stage; /* owned; NULL when tp == 1 */
    gt_par_stats stats;
    float *cand_vals;   /* scratch for top candidates */
    int32_t *cand_ids;
    size_t cand_cap;
};

gt_status gt_par_create(gt_comm *world, const gt_grid *grid, gt_par **out) {
    *out = NULL;
    if (gt_comm_size(world) != grid->world || gt_comm_rank(world) != grid->rank)
        return gt_fail(GT_ERR_INVALID_ARG, "the grid is for rank %d of %d ranks, but this is rank %d "
                       "of %d", grid->rank, grid->world, gt_comm_rank(world), gt_comm_size(world));
    gt_par *p = calloc(1, sizeof *p);
    if (!p) return gt_fail(GT_ERR_NOMEM, "cannot allocate the parallel context");
    p->grid = *grid;
    p->world = world;
    /* GANTRY_TEST_STALL=RANK:SECONDS[:CALL] makes that rank arrive late at
     * its allreduce number CALL (0: the first), so that tests can see the
     * watchdog name the operation and the rank. */
    const char *stall = getenv("GANTRY_TEST_STALL");
    int stall_rank = -1;
    double stall_s = 0;
    long stall_at = 0;
    if (stall && sscanf(stall, "%d:%lf:%ld", &stall_rank, &stall_s, &stall_at) >= 2 &&
        stall_rank == grid->rank) {
        p->stall_s = stall_s;
        p->stall_at = stall_at;
    }
    /* GANTRY_TEST_KILL=RANK kills that rank there instead (SIGKILL). */
    const char *kill_env = getenv("GANTRY_TEST_KILL");
    p->kill_self = kill_env && atoi(kill_env) == grid->rank;
    gt_status st = GT_OK;
    if (grid->tp > 1 || grid->pp > 1) {
        /* Collective over world even when tp == 1, so every rank calls it. */
        gt_comm_opts o = GT_COMM_OPTS_INIT;
        char name[32];
        snprintf(name, sizeof name, "stage %d", grid->stage);
        o.name = name;
        st = gt_comm_split_ex(world, grid->stage, grid->tp_rank, &o, &p->stage);
    }
    if (st != GT_OK) {
        free(p);
        return st;
    }
    *out = p;
    return GT_OK;
}

void gt_par_destroy(gt_par *p) {
    if (!p) return;
    gt_comm_destroy(p->stage);
    free(p->cand_vals);
    free(p->cand_ids);
    free(p);
}

const gt_grid *gt_par_grid(const gt_par *p) { return &p->grid; }
gt_comm *gt_par_world(gt_par *p) { return p->world; }
gt_comm *gt_par_stage(gt_par *p) { return p->stage; }
const gt_par_stats *gt_par_get_stats(const gt_par *p) { return &p->stats; }
void gt_par_reset_stats(gt_par *p) { memset(&p->stats, 0, sizeof p->stats); }

static void account(gt_par *p, uint64_t t0, size_t bytes, const char *what) {
    gt_trace_span("comm", what ? what : "transfer", t0);
    p->stats.comm_s += (double)(gt_now_ns() - t0) * 1e-9;
    p->stats.bytes_sent += bytes;
    p->stats.n_calls++;
}

gt_status gt_par_allreduce(gt_par *p, float *x, size_t n, const char *what) {
    if (p->grid.tp == 1) return GT_OK;
    if (p->kill_self) raise(SIGKILL);
    if (p->stall_s > 0 && p->n_allreduce++ == p->stall_at) {
        struct timespec ts = {(time_t)p->stall_s, (long)((p->stall_s - (double)(time_t)p->stall_s) * 1e9)};
        p->stall_s = 0;
        nanosleep(&ts, NULL);
    }
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_allreduce(p->stage, x, x, n, GT_F32, what);
    account(p, t0, n * sizeof(float), what);
    return st;
}

gt_status gt_par_allgather(gt_par *p, float *x, size_t count, const char *what) {
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_allgather(p->stage, x + (size_t)p->grid.tp_rank * count, x, count, GT_F32, what);
    account(p, t0, count * sizeof(float), what);
    return st;
}

gt_status gt_par_reduce_scatter(gt_par *p, const float *send, float *recv, size_t count,
                                const char *what) {
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_reduce_scatter(p->stage, send, recv, count, GT_F32, what);
    account(p, t0, count * (size_t)(p->grid.tp - 1) * sizeof(float), what);
    return st;
}

gt_status gt_par_send_next(gt_par *p, const float *x, size_t n, const char *what) {
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_send(p->world, x, n, GT_F32, gt_grid_next_rank(&p->grid), 1, what);
    account(p, t0, n * sizeof(float), what);
    return st;
}

gt_status gt_par_recv_prev(gt_par *p, float *x, size_t n, const char *what) {
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_recv(p->world, x, n, GT_F32, gt_grid_prev_rank(&p->grid), 1, what);
    account(p, t0, 0, what);
    return st;
}

gt_status gt_par_bcast_from_last(gt_par *p, int32_t *buf, size_t n, const char *what) {
    if (p->grid.world == 1) return GT_OK;
    uint64_t t0 = gt_now_ns();
    int root = gt_grid_rank_at(&p->grid, p->grid.pp - 1, 0);
    gt_status st = gt_comm_broadcast(p->world, buf, n, GT_I32, root, what);
    account(p, t0, p->grid.rank == root ? n * sizeof(int32_t) : 0, what);
    return st;
}

typedef struct {
    float v;
    int32_t id;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The k best of n local logits, sorted; a partial selection keeps this
 * O(n log k) rather than sorting the whole slice. */
static void local_top(const float *logits, int64_t n, int64_t v0, int k, cand *out) {
    int m = 0;
    for (int64_t i = 0; i < n; i++) {
        cand c = {logits[i], (int32_t)(v0 + i)};
        if (m < k) {
            out[m++] = c;
            for (int j = m - 1; j > 0 && cand_cmp(&out[j], &out[j - 1]) < 0; j--) {
                cand t = out[j];
                out[j] = out[j - 1];
                out[j - 1] = t;
            }
        } else if (cand_cmp(&c, &out[k - 1]) < 0) {
            out[k - 1] = c;
            for (int j = k - 1; j > 0 && cand_cmp(&out[j], &out[j - 1]) < 0; j--) {
                cand t = out[j];
                out[j] = out[j - 1];
                out[j - 1] = t;
            }
        }
    }
}

gt_status gt_par_top_candidates(gt_par *p, const float *logits, int64_t n_local, int64_t v0,
                                int k, float *vals, int32_t *ids, int *n_out, const char *what) {
    if (k > n_local) k = (int)n_local;
    if (k < 1) return gt_fail(GT_ERR_INVALID_ARG, "%s: no candidates to select", what);
    int tp = p->grid.tp;
    cand *all = malloc((size_t)k * (size_t)tp * sizeof *all);
    if (!all) return gt_fail(GT_ERR_NOMEM, "cannot allocate %d sampling candidates", k * tp);
    local_top(logits, n_local, v0, k, all + (size_t)p->grid.tp_rank * (size_t)k);
    gt_status st = GT_OK;
    if (tp > 1) {
        /* Values and ids travel as two gathers of typed buffers. */
        float *gv = malloc((size_t)k * (size_t)tp * sizeof *gv);
        int32_t *gi = malloc((size_t)k * (size_t)tp * sizeof *gi);
        if (!gv || !gi) {
            st = gt_fail(GT_ERR_NOMEM, "cannot allocate %d sampling candidates", k * tp);
        } else {
            cand *mine = all + (size_t)p->grid.tp_rank * (size_t)k;
            for (int j = 0; j < k; j++) {
                gv[(size_t)p->grid.tp_rank * k + j] = mine[j].v;
                gi[(size_t)p->grid.tp_rank * k + j] = mine[j].id;
            }
            uint64_t t0 = gt_now_ns();
            st = gt_comm_allgather(p->stage, gv + (size_t)p->grid.tp_rank * k, gv, (size_t)k, GT_F32, what);
            if (st == GT_OK)
                st = gt_comm_allgather(p->stage, gi + (size_t)p->grid.tp_rank * k, gi, (size_t)k, GT_I32, what);
            account(p, t0, (size_t)k * 8, what);
            for (int j = 0; st == GT_OK && j < k * tp; j++) all[j] = (cand){gv[j], gi[j]};
        }
        free(gv);
        free(gi);
        if (st == GT_OK) qsort(all, (size_t)k * (size_t)tp, sizeof *all, cand_cmp);
    }
    if (st == GT_OK) {
        for (int j = 0; j < k; j++) {
            vals[j] = all[j].v;
            ids[j] = all[j].id;
        }
        *n_out = k;
    }
    free(all);
    return st;
}

/* The coordinator's traffic ------------------------------------------------ */

gt_status gt_par_bcast_plan(gt_par *p, void *buf, size_t bytes, const char *what) {
    if (p->grid.world == 1) return GT_OK;
    if (bytes % 4) return gt_fail(GT_ERR_INTERNAL, "%s: %zu bytes is not whole words", what, bytes);
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_broadcast(p->world, buf, bytes / 4, GT_I32, 0, what);
    account(p, t0, p->grid.rank == 0 ? bytes : 0, what);
    return st;
}

gt_status gt_par_gather_logits(gt_par *p, const float *local, int n_rows, int64_t n_local,
                               int64_t v0, int64_t n_vocab, float *full, const char *what) {
    const gt_grid *g = &p->grid;
    bool last = gt_grid_last_stage(g);
    size_t slice = (size_t)n_rows * (size_t)n_local;
    if (g->world == 1) {
        if (full != local) memcpy(full, local, slice * sizeof *full);
        return GT_OK;
    }
    uint64_t t0 = gt_now_ns();
    gt_status st = GT_OK;
    /* Each last-stage rank sends its slice, led by its (v0, n_local), to
     * world rank 0, which places the columns. */
    if (last && g->rank != 0) {
        int32_t hdr[4] = {(int32_t)v0, (int32_t)n_local, n_rows, 0};
        st = gt_comm_send(p->world, hdr, 4, GT_I32, 0, 4, what);
        if (st == GT_OK) st = gt_comm_send(p->world, local, slice, GT_F32, 0, 4, what);
        account(p, t0, slice * sizeof(float), what);
        return st;
    }
    if (g->rank != 0) return GT_OK;
    float *buf = NULL;
    for (int tr = 0; st == GT_OK && tr < g->tp; tr++) {
        int src = gt_grid_rank_at(g, g->pp - 1, tr);
        int64_t s0 = v0, sn = n_local;
        const float *rows = local;
        if (src != 0) {
            int32_t hdr[4];
            st = gt_comm_recv(p->world, hdr, 4, GT_I32, src, 4, what);
            if (st != GT_OK) break;
            s0 = hdr[0];
            sn = hdr[1];
            if (hdr[2] != n_rows || s0 < 0 || sn < 0 || s0 + sn > n_vocab) {
                st = gt_fail(GT_ERR_INTERNAL, "%s: rank %d sent rows %d of vocabulary %d..%d, expected "
                             "%d rows within %lld", what, src, hdr[2], hdr[0], hdr[0] + hdr[1], n_rows,
                             (long long)n_vocab);
                break;
            }
            free(buf);
            buf = malloc((size_t)n_rows * (size_t)sn * sizeof *buf);
            if (!buf) {
                st = gt_fail(GT_ERR_NOMEM, "%s: cannot hold a logits slice", what);
                break;
            }
            st = gt_comm_recv(p->world, buf, (size_t)n_rows * (size_t)sn, GT_F32, src, 4, what);
            rows = buf;
        }
        for (int r = 0; st == GT_OK && r < n_rows; r++)
            memcpy(full + (size_t)r * (size_t)n_vocab + s0, rows + (size_t)r * (size_t)sn,
                   (size_t)sn * sizeof *full);
    }
    free(buf);
    account(p, t0, 0, what);
    return st;
}

gt_status gt_par_last_to_coord(gt_par *p, void *buf, size_t words, const char *what) {
    const gt_grid *g = &p->grid;
    int src = gt_grid_rank_at(g, g->pp - 1, 0);
    if (src == 0 || (g->rank != 0 && g->rank != src) || words == 0) return GT_OK;
    uint64_t t0 = gt_now_ns();
    gt_status st = g->rank == src ? gt_comm_send(p->world, buf, words, GT_I32, 0, 5, what)
                                  : gt_comm_recv(p->world, buf, words, GT_I32, src, 5, what);
    account(p, t0, g->rank == src ? words * 4 : 0, what);
    return st;
}

gt_status gt_par_gather_world(gt_par *p, const float *mine, size_t n, float *all, const char *what) {
    if (p->grid.world == 1) {
        memcpy(all, mine, n * sizeof *all);
        return GT_OK;
    }
    return gt_comm_allgather(p->world, mine, all, n, GT_F32, what);
}

gt_status gt_par_agree(gt_par *p, int failed, int *first_failed, const char *what) {
    /* The lowest failed rank, or world when none: a min-reduction written
     * as a sum of one-hot votes so that only sums are needed. */
    int n = p->grid.world;
    int32_t *votes = calloc((size_t)n, sizeof *votes);
    if (!votes) return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %d votes", what, n);
    votes[p->grid.rank] = failed != 0;
    gt_status st = n > 1 ? gt_comm_allreduce(p->world, votes, votes, (size_t)n, GT_I32, what) : GT_OK;
    *first_failed = n;
    for (int i = 0; st == GT_OK && i < n; i++)
        if (votes[i]) {
            *first_failed = i;
            break;
        }
    free(votes);
    return st;
}
