/* Multi-rank plumbing shared by the verbs: starting MPI when the process was
 * launched by mpirun (or asked for a grid), building this rank's shard from
 * the plan, and the two things every verb does across the grid — choosing
 * the next token from vocabulary-sliced logits, and assembling full logits
 * for --logits-out. On one rank without mpirun nothing here touches MPI. */
#ifndef GT_DIST_H
#define GT_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/sampler.h"
#include "parallel/par.h"
#include "parallel/plan.h"
#include "transport/comm.h"
#include "worker/engine.h"

typedef struct gt_dist {
    bool active;       /* MPI is running (world may still be 1) */
    gt_comm *world;
    int rank, size;
    gt_plan plan;
    bool have_plan;
    gt_par *par;
    const gt_shard *shard; /* borrowed from plan; NULL on a single rank */
} gt_dist;

/* True when the environment says mpirun (or srun with PMIx) started us. */
bool gt_dist_launched(void);

/* Starts MPI when launched by mpirun or when tp * pp > 1. tp 0 means "the
 * world size" (pure tensor parallelism) and pp 0 means 1. Builds the plan
 * and the stage groups, and fills ec->shard and ec->par for the engine.
 * Every rank gets the same verdict on an impossible layout, so all of them
 * stop with the same sentence and none waits for another. */
gt_status gt_dist_init(gt_dist *d, int *argc, char ***argv, int tp, int pp, gt_engine_config *ec);
/* Sets the watchdog deadline of every collective and transfer (seconds > 0;
 * before gt_dist_init it applies to the groups init creates). */
void gt_dist_set_timeout(double seconds);
/* Tears down the groups and MPI. Accepts a zeroed gt_dist. */
void gt_dist_finalize(gt_dist *d);
/* Reports st (rank 0 only, or every rank when the failure may be this
 * rank's alone) and ends the process: with MPI_Abort once collectives may be
 * under way (after_start), else a plain exit so that a bad layout ends every
 * rank alike. Never returns. */
_Noreturn void gt_dist_fail(gt_dist *d, const char *verb, gt_status st, bool after_start);
/* True on the rank that prints (world rank 0, or the single rank). */
bool gt_dist_prints(const gt_dist *d);

/* The next token from this rank's logits slice (last stage) — the same
 * token on every rank afterwards. */
gt_status gt_dist_next_token(gt_dist *d, gt_engine *e, gt_sampler *s, const float *logits,
                             int32_t *tok);
/* Full logits [n_rows, n_vocab] on the printing rank from the last stage's
 * slices [n_rows, n_local]. `full` is only written on the printing rank. */
gt_status gt_dist_gather_logits(gt_dist *d, gt_engine *e, const float *local, int n_rows,
                                float *full);

#endif
