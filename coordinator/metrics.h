/* The serving counters in Prometheus's text exposition format (0.0.4), the
 * same numbers `stats` returns over msgpack-RPC (docs/protocol.md, "Metrics").
 *
 * A gt_metrics_snapshot is a plain copy of the numbers (the server fills it,
 * gt_server_metrics_text); gt_metrics_render writes it with `# HELP` and
 * `# TYPE` lines, `gantry_` names, `_total` counters and histograms as
 * cumulative `_bucket{le="..."}` lines up to `+Inf`, `_sum` and `_count`. */
#ifndef GT_METRICS_H
#define GT_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/rpc.h"

/* One histogram: counts[i] observations in (bounds[i-1], bounds[i]] (not
 * cumulative), counts[n_bounds] those above the last bound; bounds ascend.
 * Borrowed. */
typedef struct gt_metrics_histogram {
    const double *bounds; /* [n_bounds] seconds */
    const uint64_t *counts; /* [n_bounds + 1] */
    int n_bounds;
    uint64_t count;
    double sum; /* seconds */
} gt_metrics_histogram;

/* One rank's counters from the last heartbeat REPORT (gt_rank_counters). */
typedef struct gt_metrics_rank {
    double busy_s, comm_s;   /* wall time; of it inside collectives and transfers */
    double bytes_sent, a2a_bytes; /* payload sent; of it expert-parallel all-to-all rows */
} gt_metrics_rank;

enum { GT_METRICS_STOP, GT_METRICS_LENGTH, GT_METRICS_CANCELLED, GT_METRICS_SHUTDOWN, GT_METRICS_N_FINISH };

typedef struct gt_metrics_snapshot {
    /* requests */
    uint64_t submitted, refused, preempted;
    uint64_t finished[GT_METRICS_N_FINISH]; /* by finish reason */
    uint64_t prompt_tokens, generated_tokens, cached_tokens;
    gt_metrics_histogram queue, ttft, itl, e2e;
    /* gauges */
    uint64_t waiting, running;
    /* KV cache (rank 0's; every rank holds the same blocks) */
    uint64_t kv_total_blocks, kv_used_blocks, kv_free_blocks, kv_cached_blocks, kv_host_blocks;
    uint64_t kv_block_size; /* tokens */
    uint64_t kv_to_host_bytes, kv_from_host_bytes;
    /* expert offload cache (rank 0's); left out of the text when !has_experts */
    bool has_experts;
    uint64_t expert_slots, expert_hits, expert_misses, expert_evictions, expert_bytes_copied;
    uint64_t expert_prefetched, expert_prefetch_useful;
    double expert_wait_s;
    /* speculative decoding (all proposers) */
    uint64_t spec_steps, spec_drafted, spec_accepted;
    /* the same by proposer: [0] prompt lookup, [1] the draft model */
    uint64_t spec_method_steps[2], spec_method_drafted[2], spec_method_accepted[2];
    /* the draft model's forwards and the seconds they took (has_draft: a draft is loaded) */
    bool has_draft;
    uint64_t spec_draft_forwards;
    double spec_draft_seconds;
    /* per rank; none for a single rank or before the first heartbeat */
    int n_ranks;
    const gt_metrics_rank *ranks; /* [n_ranks], borrowed */
} gt_metrics_snapshot;

/* Appends the text to out (out->len grows; nothing is appended on failure).
 * GT_ERR_INVALID_ARG for a histogram whose bounds do not ascend or whose
 * counts do not add up to its count; GT_ERR_NOMEM. */
gt_status gt_metrics_render(const gt_metrics_snapshot *s, gt_rpc_buf *out);

/* The serving loop's numbers as that text (filled at the end of server.c). */
struct gt_server;
gt_status gt_server_metrics_text(const struct gt_server *s, gt_rpc_buf *out);

/* The content type a /metrics answer carries. */
#define GT_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
