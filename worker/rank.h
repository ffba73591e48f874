/* A rank of the job: its communicator, the sharding plan, the grid's
 * collectives and the engine over its shard, created once from one open of
 * the model file, and the loop that executes the coordinator's step plans.
 *
 * Rank 0 leads: gt_rank_lead broadcasts a step (worker/step.h) and executes
 * it locally; every other rank sits in gt_rank_follow, executing the steps it
 * receives until a STOP. Whatever the grid, the outputs of a step arrive on
 * rank 0: the k best (logit, id) candidates of each wanted row, or the full
 * logits rows gathered from the last stage's vocabulary slices. A rank never
 * sees text, sockets or requests.
 *
 * On one rank without mpirun no MPI is started and nothing is broadcast. */
#ifndef GT_RANK_H
#define GT_RANK_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "model/arch.h"
#include "model/gguf.h"
#include "parallel/plan.h"
#include "worker/engine.h"
#include "worker/step.h"

typedef struct gt_rank gt_rank;

typedef struct gt_rank_config {
    gt_engine_config eng;      /* model, threads, kernels, context, KV, batch (shard/par: set here) */
    int tp, pp;                /* grid; tp 0: world / pp; pp 0: 1 */
    double comm_timeout_s;     /* watchdog deadline; 0: the transport's default */
    int max_cand;              /* largest candidate count a step may ask for */
    int max_out_rows;          /* wanted rows per step; 0: max_seqs */
    bool gather_logits;        /* steps may gather full logits rows to rank 0 */
    const char *trace_prefix;  /* PREFIX.rankR.json written on a REPORT with TRACE_WRITE */
    uint64_t mem_budget_bytes; /* per rank; 0: none. Start fails when the plan does not fit */
    int ep;                    /* expert parallelism in each stage group; 0 or 1: none */
} gt_rank_config;
#define GT_RANK_CONFIG_INIT {GT_ENGINE_CONFIG_INIT, 0, 0, 0.0, 64, 0, false, NULL, 0, 0}

/* The outputs of a step, on rank 0; valid until the next step. Rows are the
 * wanted tokens in batch order. */
typedef struct gt_step_result {
    int n_rows;
    int n_cand;               /* candidates per row (0 when none were asked) */
    const float *cand_vals;   /* [n_rows, n_cand], logit descending, then id ascending */
    const int32_t *cand_ids;  /* [n_rows, n_cand] */
    const float *logits;      /* [n_rows, n_vocab] with GT_STEP_LOGITS, else NULL */
} gt_step_result;

/* One rank's counters since the last RESET_STATS, as gathered by a REPORT. */
typedef struct gt_rank_counters {
    double busy_s;      /* wall time since the reset */
    double comm_s;      /* of which inside collectives and transfers */
    double bytes_sent;  /* payload this rank sent */
    int stage, tp_rank; /* its place in the grid */
    bool stop_requested; /* the rank received SIGTERM or SIGINT (gt_rank_watch_signals) */
    double a2a_bytes;   /* of bytes_sent: expert-parallel all-to-all rows */
} gt_rank_counters;

/* After a REPORT (gt_rank_report, or any rank's REPORT step): every rank's
 * expert-parallel counters since the last RESET_STATS, [n_ranks][n_layer]
 * by model layer: rows (token, expert pairs) the rank's experts computed,
 * and bytes it sent in the layer's all-to-alls. Zeroed without expert
 * parallelism or before the first REPORT. Borrowed until the next REPORT. */
typedef struct gt_rank_ep_report {
    int n_ranks, n_layer;
    const float *rows, *a2a_bytes;
} gt_rank_ep_report;
gt_rank_ep_report gt_rank_ep(const gt_rank *r);

/* Starts MPI when launched by mpirun (or for a grid larger than one), opens
 * the model once, builds the plan, checks the memory budget and creates the
 * engine on this rank's shard. An impossible layout gives the same sentence
 * on every rank; a failure of one rank's engine ends creation on all of them
 * (the others report that rank). *out is NULL on failure, and MPI is
 * finalised. */
gt_status gt_rank_create(const gt_rank_config *cfg, gt_rank **out);
/* Collective-free; finalises MPI when this rank started it. Accepts NULL. */
void gt_rank_destroy(gt_rank *r);
/* Ends the whole job after an error from a step (MPI_Abort on a grid, exit
 * on one rank). Never returns. */
_Noreturn void gt_rank_abort(gt_rank *r, int code);

/* From now on SIGTERM and SIGINT do not end this process: they are noted,
 * and the next REPORT tells rank 0 (a server then drains and stops the
 * job). For ranks other than 0, which wait in the step loop. */
void gt_rank_watch_signals(void);

/* The launcher's rank of this process (0 when not launched by mpirun):
 * known before gt_rank_create, so that a failed start is reported once. */
int gt_rank_launch_rank(void);
/* True when this process was started by a launcher (mpirun, srun): a
 * verb that creates several ranks one after the other keeps MPI started
 * across them (transport's gt_comm_init_world) when this says so. */
bool gt_rank_launched(void);

/* The watchdog deadline of the job's collectives, in seconds. */
double gt_rank_comm_timeout(const gt_rank *r);
int gt_rank_world_rank(const gt_rank *r);
int gt_rank_world_size(const gt_rank *r);
const gt_plan *gt_rank_plan(const gt_rank *r);
const gt_shard *gt_rank_shard(const gt_rank *r);
const gt_hparams *gt_rank_hparams(const gt_rank *r);
const gt_gguf *gt_rank_gguf(const gt_rank *r);
gt_engine *gt_rank_engine(gt_rank *r);
/* The limits every rank enforces on a step. */
gt_step_limits gt_rank_step_limits(const gt_rank *r);

/* Rank 0: broadcasts the step, executes it and collects its outputs into
 * *res (may be NULL for STOP and REPORT). GT_ERR_COMM when a peer fails (the
 * caller then aborts the job); other errors leave the ranks in step. */
gt_status gt_rank_lead(gt_rank *r, const gt_step *s, gt_step_result *res);
/* Rank 0, after a REPORT step: every rank's counters [world size]. */
gt_status gt_rank_report(gt_rank *r, uint32_t flags, gt_rank_counters *all);
/* Ranks other than 0: executes received steps until STOP. */
gt_status gt_rank_follow(gt_rank *r);

#endif
