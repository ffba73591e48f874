/* The rank grid; see grid.h. Every check names the numbers involved, since a
 * bad layout usually comes from a launch line (mpirun -np, --tp, --pp). */
#include "parallel/grid.h"

#include <string.h>

gt_status gt_grid_init(int world, int tp, int pp, int rank, gt_grid *out) {
    memset(out, 0, sizeof *out);
    if (tp < 1 || pp < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "tp %d and pp %d must both be at least 1", tp, pp);
    if (tp > 65536 || pp > 65536 || (long long)tp * pp != world)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%d ranks cannot form a grid of tp %d × pp %d (which needs %lld ranks)",
                       world, tp, pp, (long long)tp * pp);
    if (rank < 0 || rank >= world)
        return gt_fail(GT_ERR_INVALID_ARG, "rank %d is outside 0..%d of a %d-rank grid", rank,
                       world - 1, world);
    out->world = world;
    out->tp = tp;
    out->pp = pp;
    out->rank = rank;
    out->stage = rank / tp;
    out->tp_rank = rank % tp;
    out->ep = 1;
    out->ep_cols = tp;
    out->ep_rank = 0;
    out->ep_col = out->tp_rank;
    return GT_OK;
}

gt_status gt_grid_set_ep(gt_grid *g, int ep) {
    if (ep <= 1) {
        g->ep = 1;
        g->ep_cols = g->tp;
        g->ep_rank = 0;
        g->ep_col = g->tp_rank;
        return GT_OK;
    }
    if (g->tp % ep)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "--ep %d does not divide the stage group of tp %d ranks (ep must be a "
                       "divisor of tp)",
                       ep, g->tp);
    g->ep = ep;
    g->ep_cols = g->tp / ep;
    g->ep_rank = g->tp_rank / g->ep_cols;
    g->ep_col = g->tp_rank % g->ep_cols;
    return GT_OK;
}

int gt_grid_rank_at(const gt_grid *g, int stage, int tp_rank) {
    if (stage < 0 || stage >= g->pp || tp_rank < 0 || tp_rank >= g->tp) return -1;
    return stage * g->tp + tp_rank;
}

int gt_grid_prev_rank(const gt_grid *g) { return gt_grid_rank_at(g, g->stage - 1, g->tp_rank); }

int gt_grid_next_rank(const gt_grid *g) { return gt_grid_rank_at(g, g->stage + 1, g->tp_rank); }
