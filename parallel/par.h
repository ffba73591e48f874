/* A rank's view of the grid at run time: its communicators and the
 * collectives the forward pass needs, with per-rank accounting.
 *
 * The engine (worker/) calls only these functions, never the transport
 * directly: allreduce over the stage group after every row-parallel matrix,
 * send/receive of activations between pipeline neighbours, and the
 * vocabulary-parallel helpers for the embedding and the sampler; the
 * coordinator broadcasts its step plan and gathers logits through it too. Every call
 * takes a label ("layer 3 attn") that the transport's watchdog prints when a
 * peer does not arrive. Time inside collectives and bytes sent are counted
 * here, so that `gantry bench` can report compute against communication. */
#ifndef GT_PAR_H
#define GT_PAR_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "parallel/grid.h"
#include "transport/comm.h"

typedef struct gt_par_stats {
    double comm_s;       /* wall time inside collectives and transfers */
    uint64_t bytes_sent; /* payload this rank contributed or sent */
    uint64_t n_calls;
    uint64_t a2a_bytes;  /* of bytes_sent: expert-parallel rows sent to other ranks */
} gt_par_stats;

typedef struct gt_par gt_par;

/* Splits the world into stage groups (same stage, ordered by tp position).
 * Collective over world. GT_ERR_INVALID_ARG when the grid does not match the
 * world's size, GT_ERR_COMM, GT_ERR_NOMEM. */
gt_status gt_par_create(gt_comm *world, const gt_grid *grid, gt_par **out);
void gt_par_destroy(gt_par *p); /* accepts NULL; collective-free */

const gt_grid *gt_par_grid(const gt_par *p);
gt_comm *gt_par_world(gt_par *p);
gt_comm *gt_par_stage(gt_par *p);
const gt_par_stats *gt_par_get_stats(const gt_par *p);
void gt_par_reset_stats(gt_par *p);

/* x[n] = sum over the stage group, in place; a no-op when tp == 1. */
gt_status gt_par_allreduce(gt_par *p, float *x, size_t n, const char *what);
/* Sequence parallelism over the stage group: x[tp][count] gathered from
 * every rank's block (this rank's block is x + tp_rank * count, in place),
 * and recv[count] = the sum over ranks of their block tp_rank of send. */
gt_status gt_par_allgather(gt_par *p, float *x, size_t count, const char *what);
gt_status gt_par_reduce_scatter(gt_par *p, const float *send, float *recv, size_t count,
                                const char *what);
/* Activations to the next stage / from the previous one (same tp position). */
gt_status gt_par_send_next(gt_par *p, const float *x, size_t n, const char *what);
gt_status gt_par_recv_prev(gt_par *p, float *x, size_t n, const char *what);
/* buf[n] from the first rank of the last stage to every rank (the token the
 * last stage sampled, which the first stage needs next). */
gt_status gt_par_bcast_from_last(gt_par *p, int32_t *buf, size_t n, const char *what);

/* Vocabulary-parallel candidates: each rank of the last stage holds logits
 * for the rows [v0, v0 + n_local) of the vocabulary. Returns on every rank of
 * the stage the min(k, n_vocab) best (logit, global id) pairs of the whole
 * vocabulary, sorted by logit descending then id ascending, without
 * gathering the full logits: each rank selects its own min(k, n_local) best
 * (a heap of k, O(n_local log k), or a linear-time sort of the slice when k
 * is near n_local) and the stage merges them. Slices may differ in length;
 * the first call exchanges them once (collective), later calls must pass the
 * same n_local. vals/ids must hold k * tp entries; *n_out receives the count
 * kept. GT_ERR_INVALID_ARG (k < 1), GT_ERR_NOMEM, GT_ERR_COMM. */
/* The same for n_rows rows at once (logits [n_rows, n_local]; vals and ids
 * [n_rows, k], each row's *n_out first entries filled): one exchange for a
 * whole decode batch. */
gt_status gt_par_top_candidates_rows(gt_par *p, const float *logits, int n_rows, int64_t n_local, int64_t v0,
                                     int k, float *vals, int32_t *ids, int *n_out, const char *what);
gt_status gt_par_top_candidates(gt_par *p, const float *logits, int64_t n_local, int64_t v0, int k,
                                float *vals, int32_t *ids, int *n_out, const char *what);

/* Expert parallelism over this rank's expert group: the grid's ep ranks of
 * the stage group that share out the experts (the stage group itself when
 * ep == tp), ordered by ep_rank. Both are collective over the group and
 * GT_ERR_INVALID_ARG without expert parallelism (ep 1).
 * gt_par_ep_counts: send[ep][per_peer] to recv[ep][per_peer] (all-to-all:
 * the counts that size the rows exchange, sent first).
 * gt_par_ep_alltoallv: block q of send (send_counts[q] floats, blocks
 * contiguous in peer order) goes to member q; recv gets member q's block
 * in the same way (recv_counts[q]). Counted in the stats (a2a_bytes: the
 * floats sent to other members, not to itself). GT_ERR_COMM. */
gt_status gt_par_ep_counts(gt_par *p, const int32_t *send, int32_t *recv, size_t per_peer,
                           const char *what);
gt_status gt_par_ep_alltoallv(gt_par *p, const float *send, const size_t *send_counts,
                              float *recv, const size_t *recv_counts, const char *what);

/* Broadcasts bytes from world rank 0 to every rank (the coordinator's step
 * plan), counted in the stats. Collective over the world; a no-op on one
 * rank. GT_ERR_NOMEM, GT_ERR_RANGE (too large), GT_ERR_COMM. */
gt_status gt_par_bcast_plan(gt_par *p, void *buf, size_t bytes, const char *what);

/* Logits gather for --logits-out and perplexity: each rank of the last stage
 * holds rows [n_rows, n_local] of its vocabulary slice [v0, v0 + n_local);
 * world rank 0 receives full [n_rows, n_vocab] rows in `full` (only written
 * there; other ranks pass NULL). Through the stage/world communicators with
 * the watchdog and the stats, no hard-coded raw tag on world send/recv
 * outside gt_par. Collective over the last stage and world rank 0; other
 * ranks return at once. On one rank it is a copy. GT_ERR_INVALID_ARG (a
 * slice outside the vocabulary, rows that disagree, full NULL on rank 0),
 * GT_ERR_NOMEM, GT_ERR_COMM. */
gt_status gt_par_gather_logits(gt_par *p, const float *local, int n_rows, int64_t n_local,
                               int64_t v0, int64_t n_vocab, float *full, const char *what);

/* words 32-bit words from the first rank of the last stage to world rank 0
 * (the sampling candidates); a no-op on the other ranks and when the two are
 * one rank. */
gt_status gt_par_last_to_coord(gt_par *p, void *buf, size_t words, const char *what);
/* all[world][n] on every rank from each rank's mine[n] (counters). */
gt_status gt_par_gather_world(gt_par *p, const float *mine, size_t n, float *all, const char *what);
/* Start-up agreement over the world: *first_failed is the lowest rank that
 * passed failed != 0, or the world size when none did. */
gt_status gt_par_agree(gt_par *p, int failed, int *first_failed, const char *what);

#endif
