/* The rank grid: world = pp × tp. Rank r is pipeline stage r / tp and
 * position r % tp inside its stage; the tp ranks of one stage form the stage
 * group that carries tensor (and later sequence/expert) parallelism.
 *
 * Consecutive ranks share a stage so that a stage group lands on one node
 * when ranks are placed node by node: the allreduces of TP, which run twice
 * per layer, stay on the fast links, and only the one activation send per
 * stage boundary crosses nodes. */
#ifndef GT_GRID_H
#define GT_GRID_H

#include <stdbool.h>

#include "common/status.h"

typedef struct gt_grid {
    int world;   /* ranks in the job: tp * pp */
    int tp;      /* ranks per stage */
    int pp;      /* pipeline stages */
    int rank;    /* this rank, 0..world-1 */
    int stage;   /* rank / tp */
    int tp_rank; /* rank % tp: position in the stage group */
    /* Expert parallelism inside the stage group (gt_grid_set_ep): the tp
     * ranks form tp / ep expert groups of ep ranks; rank p is member
     * p / (tp / ep) of group p % (tp / ep). ep 1: experts split by columns. */
    int ep;      /* ranks that share out each MoE layer's experts */
    int ep_rank; /* tp_rank / (tp / ep): which expert range this rank owns */
    int ep_cols; /* tp / ep: ranks that split each owned expert by columns (tp without EP) */
    int ep_col;  /* tp_rank % (tp / ep): this rank's column part */
} gt_grid;

/* Fills *out for `rank`. GT_ERR_INVALID_ARG with one sentence naming the
 * numbers when tp or pp is below 1, world != tp * pp, or rank is outside
 * 0..world-1. Pure; thread-safe. */
gt_status gt_grid_init(int world, int tp, int pp, int rank, gt_grid *out);

/* Sets expert parallelism ep on g (ep 0 or 1: none). GT_ERR_INVALID_ARG
 * with one sentence when ep does not divide the stage group's tp ranks. */
gt_status gt_grid_set_ep(gt_grid *g, int ep);

/* Rank at (stage, tp position); -1 when outside the grid. */
int gt_grid_rank_at(const gt_grid *g, int stage, int tp_rank);
static inline bool gt_grid_first_stage(const gt_grid *g) { return g->stage == 0; }
static inline bool gt_grid_last_stage(const gt_grid *g) { return g->stage == g->pp - 1; }
/* The rank at the same position of the previous / next stage, -1 at the ends:
 * where activations come from and go to. */
int gt_grid_prev_rank(const gt_grid *g);
int gt_grid_next_rank(const gt_grid *g);

#endif
