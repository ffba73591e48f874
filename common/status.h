/* Status codes and the per-thread error sentence.
 *
 * Every fallible function returns a gt_status (0 is success). The function
 * that first detects a problem writes one sentence for the user with
 * gt_fail(), naming the file, the value and the limit involved; callers pass
 * the status upward with GT_TRY and never overwrite the sentence. */
#ifndef GT_STATUS_H
#define GT_STATUS_H

#include <stdarg.h>

typedef enum gt_status {
    GT_OK = 0,
    GT_ERR_INVALID_ARG, /* a flag, parameter or layout the caller gave is wrong */
    GT_ERR_IO,          /* open, read, write or mmap failed */
    GT_ERR_FORMAT,      /* a file or frame is malformed */
    GT_ERR_UNSUPPORTED, /* well-formed, but not something Gantry computes */
    GT_ERR_NOMEM,       /* an allocation failed or a size overflowed */
    GT_ERR_RANGE,       /* a value is outside its limit (e.g. prompt > context) */
    GT_ERR_NOT_FOUND,   /* a key, tensor or name is missing */
    GT_ERR_INTERNAL,    /* an invariant of ours broke */
    GT_ERR_COMM,        /* a collective or transfer failed or timed out */
    GT_STATUS_COUNT
} gt_status;

/* Short name of a status ("format error"). Never NULL. */
const char *gt_status_str(gt_status st);

/* Records the user-facing sentence for this thread and returns st, so that
 * `return gt_fail(GT_ERR_FORMAT, "%s: ...", path);` reads naturally. */
gt_status gt_fail(gt_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
gt_status gt_failv(gt_status st, const char *fmt, va_list ap);

/* The last sentence recorded on this thread ("" when none). Borrowed. */
const char *gt_last_error(void);
void gt_clear_error(void);

/* Propagates a failure upward; the sentence stays the one first recorded. */
#define GT_TRY(expr)                                                                               \
    do {                                                                                           \
        gt_status gt__st = (expr);                                                                 \
        if (gt__st != GT_OK) {                                                                     \
            gt__trace_fail(__FILE__, __LINE__, #expr, gt__st);                                     \
            return gt__st;                                                                         \
        }                                                                                          \
    } while (0)

/* Same, for functions with one cleanup label: sets st and jumps. */
#define GT_TRY_GOTO(expr, st, label)                                                               \
    do {                                                                                           \
        (st) = (expr);                                                                             \
        if ((st) != GT_OK) {                                                                       \
            gt__trace_fail(__FILE__, __LINE__, #expr, (st));                                       \
            goto label;                                                                            \
        }                                                                                          \
    } while (0)

/* Logs where a failure passed (debug level); used by the macros above. */
void gt__trace_fail(const char *file, int line, const char *expr, gt_status st);

#endif
