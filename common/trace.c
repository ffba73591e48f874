/* Trace spans; see trace.h. Fixed-size records in one growing array keep
 * recording allocation-free in the steady state. */
#include "common/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timer.h"

typedef struct span {
    uint64_t t0, t1;
    char cat[16];
    char name[64];
} span;

static struct {
    bool on;
    int pid;
    span *spans;
    size_t n, cap;
    uint64_t origin;
} g_trace;

void gt_trace_enable(int pid) {
    g_trace.on = true;
    g_trace.pid = pid;
    g_trace.n = 0;
    g_trace.origin = gt_now_ns();
}

bool gt_trace_enabled(void) { return g_trace.on; }

void gt_trace_span(const char *cat, const char *name, uint64_t t0_ns) {
    if (!g_trace.on) return;
    if (g_trace.n == g_trace.cap) {
        size_t cap = g_trace.cap ? 2 * g_trace.cap : 4096;
        span *s = realloc(g_trace.spans, cap * sizeof *s);
        if (!s) return; /* a trace with a gap beats a failed run */
        g_trace.spans = s;
        g_trace.cap = cap;
    }
    span *s = &g_trace.spans[g_trace.n++];
    s->t0 = t0_ns;
    s->t1 = gt_now_ns();
    snprintf(s->cat, sizeof s->cat, "%s", cat);
    snprintf(s->name, sizeof s->name, "%s", name);
}

gt_status gt_trace_write(const char *path) {
    g_trace.on = false;
    FILE *f = fopen(path, "w");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open the trace file for writing", path);
    fprintf(f, "{\"traceEvents\": [\n");
    fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": \"rank %d\"}}",
            g_trace.pid, g_trace.pid);
    for (size_t i = 0; i < g_trace.n; i++) {
        const span *s = &g_trace.spans[i];
        fprintf(f, ",\n{\"name\": \"%s\", \"cat\": \"%s\", \"ph\": \"X\", \"ts\": %.3f, \"dur\": %.3f, "
                "\"pid\": %d, \"tid\": 0}", s->name, s->cat, (double)(s->t0 - g_trace.origin) * 1e-3,
                (double)(s->t1 - s->t0) * 1e-3, g_trace.pid);
    }
    fprintf(f, "\n]}\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return gt_fail(GT_ERR_IO, "%s: writing the trace failed", path);
    free(g_trace.spans);
    g_trace.spans = NULL;
    g_trace.n = g_trace.cap = 0;
    return GT_OK;
}
