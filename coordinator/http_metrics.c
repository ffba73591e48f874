/* GET /metrics: `stats` in the Prometheus text format (version 0.0.4).
 * Minimal on purpose, in its own file so that the full renderer
 * (coordinator/metrics.c, gt_server_metrics_text) can replace it. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "coordinator/http.h"

static gt_status put(gt_rpc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static gt_status put(gt_rpc_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return gt_fail(GT_ERR_INTERNAL, "cannot format a metrics line");
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = (b->len + (size_t)n + 1) * 2;
        char *d = realloc(b->data, cap);
        if (!d) return gt_fail(GT_ERR_NOMEM, "cannot hold %zu bytes of metrics", cap);
        b->data = d;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return GT_OK;
}

/* Counts of what is now (not monotonic) are gauges. */
static bool is_gauge(const char *name) {
    static const char *const g[] = {"running", "waiting", "kv_free_blocks", "kv_cached_blocks", "kv_host_blocks", NULL};
    for (int i = 0; g[i]; i++)
        if (!strcmp(g[i], name)) return true;
    return false;
}

gt_status gt_http_metrics_text(gt_rpc_buf *b, const gt_rpc_stats *st) {
    for (uint32_t i = 0; i < st->n_counters; i++) {
        const gt_rpc_counter *c = &st->counters[i];
        bool g = is_gauge(c->name);
        GT_TRY(put(b, "# TYPE gantry_%s%s %s\ngantry_%s%s %llu\n", c->name, g ? "" : "_total",
                   g ? "gauge" : "counter", c->name, g ? "" : "_total", (unsigned long long)c->value));
    }
    for (uint32_t i = 0; i < st->n_histograms; i++) {
        const gt_rpc_histogram *h = &st->histograms[i];
        char name[64];
        size_t n = strlen(h->name);
        /* "ttft_ms" -> "gantry_ttft_seconds" */
        snprintf(name, sizeof name, "gantry_%.*s_seconds", (int)(n > 3 && !strcmp(h->name + n - 3, "_ms") ? n - 3 : n), h->name);
        GT_TRY(put(b, "# TYPE %s histogram\n", name));
        uint64_t cum = 0;
        for (uint32_t k = 0; k < h->n_bounds; k++) {
            cum += h->counts[k];
            GT_TRY(put(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds_ms[k] / 1000.0, (unsigned long long)cum));
        }
        GT_TRY(put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)h->count,
                   name, h->sum_ms / 1000.0, name, (unsigned long long)h->count));
    }
    return GT_OK;
}
