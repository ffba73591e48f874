/* Status names and the thread-local error sentence. A fixed buffer per thread
 * keeps gt_fail() allocation-free, so it is safe on out-of-memory paths. */
#include "common/status.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

static _Thread_local char g_detail[1024];

const char *gt_status_str(gt_status st) {
    static const char *const names[GT_STATUS_COUNT] = {
        [GT_OK] = "ok",
        [GT_ERR_INVALID_ARG] = "invalid argument",
        [GT_ERR_IO] = "i/o error",
        [GT_ERR_FORMAT] = "format error",
        [GT_ERR_UNSUPPORTED] = "unsupported",
        [GT_ERR_NOMEM] = "out of memory",
        [GT_ERR_RANGE] = "out of range",
        [GT_ERR_NOT_FOUND] = "not found",
        [GT_ERR_INTERNAL] = "internal error",
        [GT_ERR_COMM] = "communication error",
    };
    if ((unsigned)st >= GT_STATUS_COUNT) return "unknown status";
    return names[st];
}

gt_status gt_failv(gt_status st, const char *fmt, va_list ap) {
    vsnprintf(g_detail, sizeof g_detail, fmt, ap);
    return st;
}

gt_status gt_fail(gt_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    gt_failv(st, fmt, ap);
    va_end(ap);
    return st;
}

const char *gt_last_error(void) { return g_detail; }

void gt_clear_error(void) { g_detail[0] = '\0'; }

void gt__trace_fail(const char *file, int line, const char *expr, gt_status st) {
    GT_LOG_DEBUG(GT_SUB_CORE, "%s:%d: %s -> %s", file, line, expr, gt_status_str(st));
}
