/* Run-time collectives of the grid; see par.h. The stage group is split
 * once; pipeline transfers and the logits gather use the world
 * communicator with ranks from the grid and the tags below, so no extra
 * groups are needed for them. */
#include "parallel/par.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cand.h"
#include "common/timer.h"
#include "common/trace.h"
#include "parallel/fault.h"

/* Point-to-point tags on the world communicator, one per kind of message,
 * so that an activation can never match a logits slice. */
enum { TAG_ACTIVATIONS = 1, TAG_LOGITS = 3, TAG_CANDIDATES = 5 };

/* Rows of a logits slice moved per message: bounds the receiver's staging
 * buffer (64 MiB) and keeps every count far below INT_MAX. */
#define GATHER_CHUNK_FLOATS ((int64_t)1 << 24)

struct gt_par {
    gt_grid grid;
    gt_comm *world; /* borrowed */
    gt_comm *stage; /* owned; NULL when the grid is 1 x 1 */
    gt_comm *ep;    /* the expert group: = stage when ep == tp, owned when ep < tp, NULL without EP */
    size_t *ep_displs; /* [2 * ep] all-to-all-v offsets */
    gt_par_stats stats;
    gt__par_fault *fault; /* test hooks; NULL unless a test asks (parallel/fault.h) */
    /* Vocabulary slices of the stage, learned at the first top-candidates call. */
    bool slices_known;
    int64_t slice_mine, slice_max, slice_total;
    void *scratch; /* candidates and staging; grown on demand */
    size_t scratch_bytes;
};

gt_status gt_par_create(gt_comm *world, const gt_grid *grid, gt_par **out) {
    *out = NULL;
    if (gt_comm_size(world) != grid->world || gt_comm_rank(world) != grid->rank)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "the grid is for rank %d of %d ranks, but this is rank %d "
                       "of %d",
                       grid->rank, grid->world, gt_comm_rank(world), gt_comm_size(world));
    gt_par *p = calloc(1, sizeof *p);
    if (!p) return gt_fail(GT_ERR_NOMEM, "cannot allocate the parallel context");
    p->grid = *grid;
    p->world = world;
    p->fault = gt__par_fault_create(grid->rank);
    gt_status st = GT_OK;
    if (grid->tp > 1 || grid->pp > 1) {
        /* Collective over world even when tp == 1, so every rank calls it. */
        gt_comm_opts o = GT_COMM_OPTS_INIT;
        char name[32];
        snprintf(name, sizeof name, "stage %d", grid->stage);
        o.name = name;
        st = gt_comm_split_ex(world, grid->stage, grid->tp_rank, &o, &p->stage);
    }
    if (st == GT_OK && grid->ep > 1) {
        p->ep_displs = calloc(2 * (size_t)grid->ep, sizeof *p->ep_displs);
        if (!p->ep_displs) st = gt_fail(GT_ERR_NOMEM, "cannot allocate the expert-parallel offsets");
    }
    if (st == GT_OK && grid->ep > 1 && grid->ep < grid->tp) {
        /* Collective over the stage group: ranks with the same column part of
         * the experts form one expert group. */
        gt_comm_opts o = GT_COMM_OPTS_INIT;
        char name[48];
        snprintf(name, sizeof name, "stage %d experts %d", grid->stage, grid->ep_col);
        o.name = name;
        st = gt_comm_split_ex(p->stage, grid->ep_col, grid->ep_rank, &o, &p->ep);
    } else if (grid->ep > 1) {
        p->ep = p->stage;
    }
    if (st != GT_OK) {
        gt_par_destroy(p);
        return st;
    }
    *out = p;
    return GT_OK;
}

void gt_par_destroy(gt_par *p) {
    if (!p) return;
    if (p->ep != p->stage) gt_comm_destroy(p->ep);
    free(p->ep_displs);
    gt_comm_destroy(p->stage);
    gt__par_fault_destroy(p->fault);
    free(p->scratch);
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

/* p->scratch grown to at least bytes; NULL with GT_ERR_NOMEM recorded. */
static void *scratch(gt_par *p, size_t bytes, const char *what) {
    if (bytes <= p->scratch_bytes) return p->scratch;
    void *n = realloc(p->scratch, bytes);
    if (!n) {
        gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %zu bytes of scratch", what ? what : "par",
                bytes);
        return NULL;
    }
    p->scratch = n;
    p->scratch_bytes = bytes;
    return n;
}

gt_status gt_par_allreduce(gt_par *p, float *x, size_t n, const char *what) {
    if (p->grid.tp == 1) return GT_OK;
    gt__par_fault_allreduce(p->fault);
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_allreduce(p->stage, x, x, n, GT_F32, what);
    account(p, t0, n * sizeof(float), what);
    return st;
}

gt_status gt_par_allgather(gt_par *p, float *x, size_t count, const char *what) {
    uint64_t t0 = gt_now_ns();
    gt_status st =
        gt_comm_allgather(p->stage, x + (size_t)p->grid.tp_rank * count, x, count, GT_F32, what);
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

gt_status gt_par_ep_counts(gt_par *p, const int32_t *send, int32_t *recv, size_t per_peer,
                           const char *what) {
    if (!p->ep)
        return gt_fail(GT_ERR_INVALID_ARG, "%s: this grid has no expert parallelism (ep 1)", what);
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_alltoall(p->ep, send, recv, per_peer, GT_I32, what);
    account(p, t0, per_peer * (size_t)(p->grid.ep - 1) * sizeof(int32_t), what);
    return st;
}

gt_status gt_par_ep_alltoallv(gt_par *p, const float *send, const size_t *send_counts,
                              float *recv, const size_t *recv_counts, const char *what) {
    if (!p->ep)
        return gt_fail(GT_ERR_INVALID_ARG, "%s: this grid has no expert parallelism (ep 1)", what);
    int n = p->grid.ep;
    size_t *sd = p->ep_displs, *rd = p->ep_displs + n, so = 0, ro = 0, away = 0;
    for (int q = 0; q < n; q++) {
        sd[q] = so;
        rd[q] = ro;
        so += send_counts[q];
        ro += recv_counts[q];
        if (q != p->grid.ep_rank) away += send_counts[q];
    }
    uint64_t t0 = gt_now_ns();
    gt_comm_vlayout sl = {send_counts, sd}, rl = {recv_counts, rd};
    gt_status st = gt_comm_alltoallv(p->ep, send, sl, recv, rl, GT_F32, what);
    account(p, t0, away * sizeof(float), what);
    p->stats.a2a_bytes += away * sizeof(float);
    return st;
}

gt_status gt_par_send_next(gt_par *p, const float *x, size_t n, const char *what) {
    uint64_t t0 = gt_now_ns();
    gt_status st =
        gt_comm_send(p->world, x, n, GT_F32, gt_grid_next_rank(&p->grid), TAG_ACTIVATIONS, what);
    account(p, t0, n * sizeof(float), what);
    return st;
}

gt_status gt_par_recv_prev(gt_par *p, float *x, size_t n, const char *what) {
    uint64_t t0 = gt_now_ns();
    gt_status st =
        gt_comm_recv(p->world, x, n, GT_F32, gt_grid_prev_rank(&p->grid), TAG_ACTIVATIONS, what);
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

/* Candidates ---------------------------------------------------------------- */

/* Learns the stage's slice lengths once (an allgather of one integer), so
 * that every rank sends the same number of candidates. */
static gt_status stage_slices(gt_par *p, int64_t n_local, const char *what) {
    if (p->slices_known) {
        if (n_local != p->slice_mine)
            return gt_fail(
                GT_ERR_INVALID_ARG, "%s: the vocabulary slice changed from %lld to %lld rows",
                what ? what : "candidates", (long long)p->slice_mine, (long long)n_local);
        return GT_OK;
    }
    int tp = p->grid.tp;
    int32_t *len = calloc((size_t)tp, sizeof *len); /* [tp] */
    if (!len) return gt_fail(GT_ERR_NOMEM, "cannot allocate %d slice lengths", tp);
    len[p->grid.tp_rank] = (int32_t)n_local;
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_allgather(p->stage, len + p->grid.tp_rank, len, 1, GT_I32, what);
    account(p, t0, sizeof(int32_t), what);
    if (st == GT_OK) {
        p->slice_max = p->slice_total = 0;
        for (int r = 0; r < tp; r++) {
            if (len[r] > p->slice_max) p->slice_max = len[r];
            p->slice_total += len[r];
        }
        p->slice_mine = n_local;
        p->slices_known = true;
    }
    free(len);
    return st;
}

gt_status gt_par_top_candidates_rows(gt_par *p, const float *logits, int n_rows, int64_t n_local, int64_t v0,
                                     int k, float *vals, int32_t *ids, int *n_out, const char *what) {
    if (k < 1 || n_local < 1 || n_rows < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "%s: no candidates to select", what);
    if (n_local > INT32_MAX || v0 < 0 || v0 + n_local > (int64_t)INT32_MAX + 1)
        return gt_fail(GT_ERR_RANGE, "%s: vocabulary slice [%lld, %lld) does not fit token ids",
                       what, (long long)v0, (long long)(v0 + n_local));
    int tp = p->grid.tp;
    int64_t ks = k < n_local ? k : n_local; /* candidates each rank sends per row */
    if (tp > 1) {
        GT_TRY(stage_slices(p, n_local, what));
        ks = k < p->slice_max ? k : p->slice_max;
    }
    int64_t mine = ks < n_local ? ks : n_local; /* real ones among them */
    size_t R = (size_t)n_rows, blk = R * (size_t)ks; /* one rank's block: every row's ks */
    /* Scratch: one row's slice [n_local] and radix scratch [n_local], one
     * row's gathered candidates [tp][ks] and merged ones [tp * ks], and the
     * values and ids of every row [tp][rows][ks]. */
    size_t n_cand = (size_t)(2 * n_local + 2 * (int64_t)tp * ks);
    size_t bytes = n_cand * sizeof(gt_cand) + (size_t)tp * blk * (sizeof(float) + sizeof(int32_t));
    gt_cand *sel = scratch(p, bytes, what);
    if (!sel) return GT_ERR_NOMEM;
    gt_cand *tmp = sel + n_local, *all = tmp + n_local, *best = all + (size_t)tp * (size_t)ks;
    float *gv = (float *)(best + (size_t)tp * (size_t)ks);
    int32_t *gi = (int32_t *)(gv + (size_t)tp * blk);
    size_t off = (size_t)p->grid.tp_rank * blk;
    for (size_t r = 0; r < R; r++) {
        const float *row = logits + r * (size_t)n_local;
        for (int64_t i = 0; i < n_local; i++) sel[i] = (gt_cand){row[i], (int32_t)(v0 + i)};
        gt_cand_select(sel, n_local, mine, tmp);
        if (tp == 1) {
            for (int64_t j = 0; j < mine; j++) {
                vals[r * (size_t)k + (size_t)j] = sel[j].logit;
                ids[r * (size_t)k + (size_t)j] = sel[j].id;
            }
            continue;
        }
        /* This rank's row: its best, then sentinels that sort after every
         * real candidate when this slice is shorter than the longest. */
        for (int64_t j = 0; j < ks; j++) {
            gv[off + r * (size_t)ks + (size_t)j] = j < mine ? sel[j].logit : -INFINITY;
            gi[off + r * (size_t)ks + (size_t)j] = j < mine ? sel[j].id : INT32_MAX;
        }
    }
    if (tp == 1) {
        *n_out = (int)mine;
        return GT_OK;
    }
    /* Values and ids of every row travel as two gathers of typed buffers. */
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_allgather(p->stage, gv + off, gv, blk, GT_F32, what);
    if (st == GT_OK) st = gt_comm_allgather(p->stage, gi + off, gi, blk, GT_I32, what);
    account(p, t0, blk * 8, what);
    GT_TRY(st);
    int64_t n = k < p->slice_total ? k : p->slice_total;
    for (size_t r = 0; r < R; r++) {
        for (int t = 0; t < tp; t++)
            for (int64_t j = 0; j < ks; j++) {
                size_t src = (size_t)t * blk + r * (size_t)ks + (size_t)j;
                all[(size_t)t * (size_t)ks + (size_t)j] = (gt_cand){gv[src], gi[src]};
            }
        gt_cand_merge(all, tp, ks, best, n);
        for (int64_t j = 0; j < n; j++) {
            vals[r * (size_t)k + (size_t)j] = best[j].logit;
            ids[r * (size_t)k + (size_t)j] = best[j].id;
        }
    }
    *n_out = (int)n;
    return GT_OK;
}

gt_status gt_par_top_candidates(gt_par *p, const float *logits, int64_t n_local, int64_t v0, int k,
                                float *vals, int32_t *ids, int *n_out, const char *what) {
    return gt_par_top_candidates_rows(p, logits, 1, n_local, v0, k, vals, ids, n_out, what);
}

/* Coordinator traffic ------------------------------------------------------- */

gt_status gt_par_bcast_plan(gt_par *p, void *buf, size_t bytes, const char *what) {
    if (p->grid.world == 1 || bytes == 0) return GT_OK;
    /* Transport moves typed words: whole 32-bit words in place, or through
     * scratch rounded up to one when the length is not a multiple of 4. */
    size_t words = (bytes + 3) / 4;
    void *wbuf = buf;
    if (bytes % 4) {
        wbuf = scratch(p, words * 4, what);
        if (!wbuf) return GT_ERR_NOMEM;
        if (p->grid.rank == 0) {
            memset((char *)wbuf + bytes, 0, words * 4 - bytes);
            memcpy(wbuf, buf, bytes);
        }
    }
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_broadcast(p->world, wbuf, words, GT_I32, 0, what);
    account(p, t0, p->grid.rank == 0 ? bytes : 0, what);
    if (st == GT_OK && wbuf != buf && p->grid.rank != 0) memcpy(buf, wbuf, bytes);
    return st;
}

/* Copies rows [n_rows, n] into columns [v0, v0 + n) of full [n_rows, n_vocab]. */
static void place_rows(float *full, int64_t n_vocab, const float *rows, int64_t n_rows, int64_t n,
                       int64_t v0) {
    for (int64_t r = 0; r < n_rows; r++)
        memcpy(full + r * n_vocab + v0, rows + r * n, (size_t)n * sizeof *full);
}

static int64_t gather_chunk_rows(int64_t n) {
    int64_t rows = GATHER_CHUNK_FLOATS / (n > 0 ? n : 1);
    return rows > 0 ? rows : 1;
}

/* A last-stage rank other than world rank 0: a header {n_rows, v0, n_local}
 * then the rows in chunks, all on TAG_LOGITS. */
static gt_status gather_send(gt_par *p, const float *local, int n_rows, int64_t n_local, int64_t v0,
                             const char *what) {
    int32_t head[3] = {n_rows, (int32_t)v0, (int32_t)n_local};
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_send(p->world, head, 3, GT_I32, 0, TAG_LOGITS, what);
    int64_t step = gather_chunk_rows(n_local);
    for (int64_t r = 0; st == GT_OK && r < n_rows; r += step) {
        int64_t nr = n_rows - r < step ? n_rows - r : step;
        st = gt_comm_send(p->world, local + r * n_local, (size_t)(nr * n_local), GT_F32, 0,
                          TAG_LOGITS, what);
    }
    account(p, t0, sizeof head + (size_t)n_rows * (size_t)n_local * sizeof(float), what);
    return st;
}

/* World rank 0: one last-stage rank's slice into full. */
static gt_status gather_recv(gt_par *p, int src, int n_rows, int64_t n_vocab, float *full,
                             const char *what) {
    int32_t head[3];
    uint64_t t0 = gt_now_ns();
    gt_status st = gt_comm_recv(p->world, head, 3, GT_I32, src, TAG_LOGITS, what);
    int64_t v0 = head[1], n = head[2];
    if (st == GT_OK && (head[0] != n_rows || v0 < 0 || n < 0 || v0 + n > n_vocab))
        st = gt_fail(GT_ERR_INVALID_ARG,
                     "%s: rank %d sends %d rows of vocabulary [%lld, %lld), but rank 0 expects "
                     "%d rows of a %lld-token vocabulary",
                     what, src, head[0], (long long)v0, (long long)(v0 + n), n_rows,
                     (long long)n_vocab);
    int64_t step = gather_chunk_rows(n);
    float *buf = NULL;
    if (st == GT_OK && n > 0) {
        buf = scratch(p, (size_t)(step < n_rows ? step : n_rows) * (size_t)n * sizeof *buf, what);
        if (!buf) st = GT_ERR_NOMEM;
    }
    for (int64_t r = 0; st == GT_OK && n > 0 && r < n_rows; r += step) {
        int64_t nr = n_rows - r < step ? n_rows - r : step;
        st = gt_comm_recv(p->world, buf, (size_t)(nr * n), GT_F32, src, TAG_LOGITS, what);
        if (st == GT_OK) place_rows(full + r * n_vocab, n_vocab, buf, nr, n, v0);
    }
    account(p, t0, 0, what);
    return st;
}

gt_status gt_par_gather_logits(gt_par *p, const float *local, int n_rows, int64_t n_local,
                               int64_t v0, int64_t n_vocab, float *full, const char *what) {
    const gt_grid *g = &p->grid;
    bool last = gt_grid_last_stage(g), root = g->rank == 0;
    if (!last && !root) return GT_OK;
    if (n_rows < 0 || (last && (v0 < 0 || n_local < 0 || v0 + n_local > n_vocab ||
                                v0 + n_local > INT32_MAX || (n_rows && n_local && !local))))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s: %d rows of vocabulary slice [%lld, %lld) do not fit a %lld-token "
                       "vocabulary",
                       what, n_rows, (long long)v0, (long long)(v0 + n_local), (long long)n_vocab);
    if (root && !full && n_rows)
        return gt_fail(GT_ERR_INVALID_ARG, "%s: rank 0 has no buffer for the full logits", what);
    if (last && !root) return gather_send(p, local, n_rows, n_local, v0, what);
    for (int tr = 0; tr < g->tp; tr++) {
        int src = gt_grid_rank_at(g, g->pp - 1, tr);
        if (src == 0)
            place_rows(full, n_vocab, local, n_rows, n_local, v0);
        else
            GT_TRY(gather_recv(p, src, n_rows, n_vocab, full, what));
    }
    return GT_OK;
}

/* The coordinator's traffic beyond the plan and the logits ------------------ */

gt_status gt_par_last_to_coord(gt_par *p, void *buf, size_t words, const char *what) {
    const gt_grid *g = &p->grid;
    int src = gt_grid_rank_at(g, g->pp - 1, 0);
    if (src == 0 || (g->rank != 0 && g->rank != src) || words == 0) return GT_OK;
    uint64_t t0 = gt_now_ns();
    gt_status st = g->rank == src ? gt_comm_send(p->world, buf, words, GT_I32, 0, TAG_CANDIDATES, what)
                                  : gt_comm_recv(p->world, buf, words, GT_I32, src, TAG_CANDIDATES, what);
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
