/* Prometheus text format (0.0.4) for a gt_metrics_snapshot; see metrics.h. */
#include "coordinator/metrics.h"

#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mw {
    gt_rpc_buf *b;
    bool oom;
} mw;

static void put(mw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(mw *w, const char *fmt, ...) {
    if (w->oom) return;
    gt_rpc_buf *b = w->b;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            w->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len <= (size_t)n) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) {
            w->oom = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
}

/* The shortest of %.15g and %.17g that reads back as v; +Inf, -Inf, NaN as
 * Prometheus spells them. */
static const char *num(char buf[32], double v) {
    if (isnan(v)) return "NaN";
    if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    snprintf(buf, 32, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, 32, "%.17g", v);
    return buf;
}

static void head(mw *w, const char *name, const char *type, const char *help) {
    put(w, "# HELP gantry_%s %s\n# TYPE gantry_%s %s\n", name, help, name, type);
}

static void counter(mw *w, const char *name, const char *help, uint64_t v) {
    head(w, name, "counter", help);
    put(w, "gantry_%s %llu\n", name, (unsigned long long)v);
}

static void gauge(mw *w, const char *name, const char *help, double v) {
    char b[32];
    head(w, name, "gauge", help);
    put(w, "gantry_%s %s\n", name, num(b, v));
}

static gt_status histo_check(const char *name, const gt_metrics_histogram *h) {
    if (h->n_bounds < 0 || (h->n_bounds && (!h->bounds || !h->counts)))
        return gt_fail(GT_ERR_INVALID_ARG, "metrics histogram %s has %d bounds and no arrays", name, h->n_bounds);
    uint64_t total = 0;
    for (int i = 0; i <= h->n_bounds && h->counts; i++) total += h->counts[i];
    for (int i = 1; i < h->n_bounds; i++)
        if (!(h->bounds[i] > h->bounds[i - 1]))
            return gt_fail(GT_ERR_INVALID_ARG, "metrics histogram %s: bound %d (%g) does not exceed bound %d (%g)",
                           name, i, h->bounds[i], i - 1, h->bounds[i - 1]);
    if (h->counts && total != h->count)
        return gt_fail(GT_ERR_INVALID_ARG, "metrics histogram %s: its buckets hold %llu observations, its count "
                       "says %llu", name, (unsigned long long)total, (unsigned long long)h->count);
    return GT_OK;
}

static void histo(mw *w, const char *name, const char *help, const gt_metrics_histogram *h) {
    char b[32];
    head(w, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        put(w, "gantry_%s_bucket{le=\"%s\"} %llu\n", name, num(b, h->bounds[i]), (unsigned long long)cum);
    }
    put(w, "gantry_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    put(w, "gantry_%s_sum %s\n", name, num(b, h->sum));
    put(w, "gantry_%s_count %llu\n", name, (unsigned long long)h->count);
}

gt_status gt_metrics_render(const gt_metrics_snapshot *s, gt_rpc_buf *out) {
    const gt_metrics_histogram *hs[] = {&s->queue, &s->ttft, &s->itl, &s->e2e};
    static const char *hn[] = {"queue_time_seconds", "time_to_first_token_seconds", "inter_token_latency_seconds",
                               "e2e_request_latency_seconds"};
    for (int i = 0; i < 4; i++) GT_TRY(histo_check(hn[i], hs[i]));
    if (s->n_ranks < 0 || (s->n_ranks && !s->ranks))
        return gt_fail(GT_ERR_INVALID_ARG, "metrics snapshot has %d ranks and no rank array", s->n_ranks);
    size_t start = out->len;
    mw w = {out, false};
    char b[32];

    counter(&w, "requests_submitted_total", "Generate requests admitted to the scheduler's queue.", s->submitted);
    static const char *why[GT_METRICS_N_FINISH] = {"stop", "length", "cancelled", "shutdown"};
    head(&w, "requests_finished_total", "counter", "Requests finished, by finish reason.");
    for (int i = 0; i < GT_METRICS_N_FINISH; i++)
        put(&w, "gantry_requests_finished_total{reason=\"%s\"} %llu\n", why[i], (unsigned long long)s->finished[i]);
    counter(&w, "requests_refused_total", "Calls answered with an error (bad field, queue full, draining, ...).",
            s->refused);
    counter(&w, "requests_preempted_total", "Running requests preempted to free KV blocks.", s->preempted);
    counter(&w, "prompt_tokens_total", "Prompt tokens of admitted requests.", s->prompt_tokens);
    counter(&w, "generation_tokens_total", "Tokens generated.", s->generated_tokens);
    counter(&w, "prompt_cached_tokens_total", "Prompt tokens served from the prefix cache.", s->cached_tokens);
    counter(&w, "spec_verify_steps_total", "Speculative verification steps (a request's step with guesses).",
            s->spec_steps);
    counter(&w, "spec_draft_tokens_total", "Speculative guesses verified.", s->spec_drafted);
    counter(&w, "spec_accepted_tokens_total", "Speculative guesses accepted.", s->spec_accepted);
    static const char *method[2] = {"lookup", "draft"};
    static const char *mname[3] = {"spec_method_verify_steps_total", "spec_method_draft_tokens_total",
                                   "spec_method_accepted_tokens_total"};
    static const char *mhelp[3] = {"Speculative verification steps, by proposer.",
                                   "Speculative guesses verified, by proposer.",
                                   "Speculative guesses accepted, by proposer."};
    const uint64_t *mv[3] = {s->spec_method_steps, s->spec_method_drafted, s->spec_method_accepted};
    for (int k = 0; k < 3; k++) {
        head(&w, mname[k], "counter", mhelp[k]);
        for (int i = 0; i < 2; i++)
            put(&w, "gantry_%s{method=\"%s\"} %llu\n", mname[k], method[i], (unsigned long long)mv[k][i]);
    }
    if (s->has_draft) {
        counter(&w, "spec_draft_forwards_total", "Forward calls of the draft model (batched over requests).",
                s->spec_draft_forwards);
        head(&w, "spec_draft_seconds_total", "counter", "Time in the draft model's forwards and draws.");
        put(&w, "gantry_spec_draft_seconds_total %s\n", num(b, s->spec_draft_seconds));
    }

    histo(&w, hn[0], "Time from submission to admission into the running batch.", &s->queue);
    histo(&w, hn[1], "Time from submission to the first generated token.", &s->ttft);
    histo(&w, hn[2], "Time between consecutive generated tokens of a request.", &s->itl);
    histo(&w, hn[3], "Time from submission to the request's end.", &s->e2e);

    gauge(&w, "requests_waiting", "Requests queued, not yet running.", (double)s->waiting);
    gauge(&w, "requests_running", "Requests in the running batch.", (double)s->running);

    head(&w, "kv_blocks", "gauge", "KV cache blocks of rank 0's pool by state (cached: a finished prefix kept "
                                   "for reuse; host: held in host memory, outside the pool).");
    put(&w, "gantry_kv_blocks{state=\"used\"} %llu\n", (unsigned long long)s->kv_used_blocks);
    put(&w, "gantry_kv_blocks{state=\"free\"} %llu\n", (unsigned long long)s->kv_free_blocks);
    put(&w, "gantry_kv_blocks{state=\"cached\"} %llu\n", (unsigned long long)s->kv_cached_blocks);
    put(&w, "gantry_kv_blocks{state=\"host\"} %llu\n", (unsigned long long)s->kv_host_blocks);
    gauge(&w, "kv_pool_blocks", "KV cache blocks in the pool.", (double)s->kv_total_blocks);
    gauge(&w, "kv_block_size_tokens", "Tokens per KV cache block.", (double)s->kv_block_size);
    head(&w, "kv_host_transfer_bytes_total", "counter", "KV cache bytes moved between the pool and host memory.");
    put(&w, "gantry_kv_host_transfer_bytes_total{direction=\"to_host\"} %llu\n",
        (unsigned long long)s->kv_to_host_bytes);
    put(&w, "gantry_kv_host_transfer_bytes_total{direction=\"from_host\"} %llu\n",
        (unsigned long long)s->kv_from_host_bytes);
    gauge(&w, "prefix_cache_hit_ratio", "Prompt tokens served from the prefix cache over all prompt tokens.",
          s->prompt_tokens ? (double)s->cached_tokens / (double)s->prompt_tokens : 0.0);

    if (s->has_experts) {
        gauge(&w, "expert_cache_slots", "Device slots per layer for offloaded experts (rank 0).",
              (double)s->expert_slots);
        counter(&w, "expert_cache_hits_total", "Routed experts found on the device (rank 0).", s->expert_hits);
        counter(&w, "expert_cache_misses_total", "Routed experts copied from host memory (rank 0).",
                s->expert_misses);
        counter(&w, "expert_cache_evictions_total", "Experts evicted from device slots (rank 0).",
                s->expert_evictions);
        counter(&w, "expert_cache_copied_bytes_total", "Expert weight bytes copied to the device (rank 0).",
                s->expert_bytes_copied);
        counter(&w, "expert_cache_prefetched_total", "Predicted expert copies started (rank 0).",
                s->expert_prefetched);
        counter(&w, "expert_cache_prefetch_useful_total", "Predicted copies that were then routed to (rank 0).",
                s->expert_prefetch_useful);
        head(&w, "expert_cache_wait_seconds_total", "counter", "Time spent waiting for expert copies (rank 0).");
        put(&w, "gantry_expert_cache_wait_seconds_total %s\n", num(b, s->expert_wait_s));
    }

    if (s->n_ranks) {
        struct {
            const char *name, *help;
            size_t off;
        } rf[] = {
            {"rank_busy_seconds_total", "Wall time of each rank since its counters were reset.",
             offsetof(gt_metrics_rank, busy_s)},
            {"rank_collective_seconds_total", "Time of each rank inside collectives and transfers.",
             offsetof(gt_metrics_rank, comm_s)},
            {"rank_sent_bytes_total", "Payload bytes each rank sent.", offsetof(gt_metrics_rank, bytes_sent)},
            {"rank_a2a_bytes_total", "Of the bytes sent, expert-parallel all-to-all rows.",
             offsetof(gt_metrics_rank, a2a_bytes)},
        };
        for (size_t f = 0; f < sizeof rf / sizeof rf[0]; f++) {
            head(&w, rf[f].name, "counter", rf[f].help);
            for (int r = 0; r < s->n_ranks; r++) {
                double v = *(const double *)((const char *)&s->ranks[r] + rf[f].off);
                put(&w, "gantry_%s{rank=\"%d\"} %s\n", rf[f].name, r, num(b, v));
            }
        }
    }
    if (w.oom) {
        out->len = start;
        return gt_fail(GT_ERR_NOMEM, "cannot hold the metrics text (%zu bytes so far)", out->cap);
    }
    return GT_OK;
}
