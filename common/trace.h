/* Trace spans in Chrome's trace-event format (Perfetto and chrome://tracing
 * open it). Off by default; when on, each span costs two clock reads and an
 * append to a per-process buffer. One process writes one file, named by the
 * caller per rank, so that a multi-rank job yields one timeline per rank
 * (pid = rank in the events, so several files can be loaded together).
 *
 * Not thread-safe: spans are recorded by the thread that drives the engine. */
#ifndef GT_TRACE_H
#define GT_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"

/* Starts recording (clearing earlier spans); pid labels this process. */
void gt_trace_enable(int pid);
bool gt_trace_enabled(void);
/* Records a finished span [t0_ns, now); name is copied (up to 63 bytes). */
void gt_trace_span(const char *cat, const char *name, uint64_t t0_ns);
/* Writes the spans as {"traceEvents": [...]} and stops recording. */
gt_status gt_trace_write(const char *path);

#endif
