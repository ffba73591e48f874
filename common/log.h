/* Levelled, subsystem-filtered logging to stderr.
 *
 * Every line is prefixed with the rank ("[rank 3/8]") once the process knows
 * it. GANTRY_LOG selects the level and subsystems: "info", "debug,net,kv",
 * "warn". Library code logs only through these macros; the format strings
 * are printf-checked. */
#ifndef GT_LOG_H
#define GT_LOG_H

typedef enum gt_log_level {
    GT_LOG_LEVEL_ERROR = 0,
    GT_LOG_LEVEL_WARN,
    GT_LOG_LEVEL_INFO,
    GT_LOG_LEVEL_DEBUG,
    GT_LOG_LEVEL_TRACE,
} gt_log_level;

enum {
    GT_SUB_CORE = 1u << 0,
    GT_SUB_MODEL = 1u << 1,
    GT_SUB_KERNEL = 1u << 2,
    GT_SUB_NET = 1u << 3,
    GT_SUB_KV = 1u << 4,
    GT_SUB_SCHED = 1u << 5,
    GT_SUB_WORKER = 1u << 6,
    GT_SUB_TOK = 1u << 7,
    GT_SUB_ALL = 0xffffffffu,
};

/* Reads GANTRY_LOG. Safe to call more than once; not thread-safe. */
void gt_log_init(void);
void gt_log_set_rank(int rank, int n_ranks);
void gt_log_set_level(gt_log_level level);
int gt_log_enabled(gt_log_level level, unsigned sub);
void gt_log_write(gt_log_level level, unsigned sub, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define GT_LOG_AT(lvl, sub, ...)                                                                   \
    do {                                                                                           \
        if (gt_log_enabled((lvl), (sub))) gt_log_write((lvl), (sub), __VA_ARGS__);                 \
    } while (0)
#define GT_LOG_ERROR(sub, ...) GT_LOG_AT(GT_LOG_LEVEL_ERROR, sub, __VA_ARGS__)
#define GT_LOG_WARN(sub, ...) GT_LOG_AT(GT_LOG_LEVEL_WARN, sub, __VA_ARGS__)
#define GT_LOG_INFO(sub, ...) GT_LOG_AT(GT_LOG_LEVEL_INFO, sub, __VA_ARGS__)
#define GT_LOG_DEBUG(sub, ...) GT_LOG_AT(GT_LOG_LEVEL_DEBUG, sub, __VA_ARGS__)
#define GT_LOG_TRACE(sub, ...) GT_LOG_AT(GT_LOG_LEVEL_TRACE, sub, __VA_ARGS__)

#endif
