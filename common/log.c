/* Logging: one global level and subsystem mask, set from GANTRY_LOG. Lines are
 * formatted into one buffer and written with a single fwrite so that lines
 * from different threads do not interleave. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gt_log_level g_level = GT_LOG_LEVEL_WARN;
static unsigned g_subs = GT_SUB_ALL;
static int g_rank = -1, g_n_ranks = 0;

static const struct {
    const char *name;
    unsigned bit;
} k_subs[] = {
    {"core", GT_SUB_CORE}, {"model", GT_SUB_MODEL}, {"kernel", GT_SUB_KERNEL},
    {"net", GT_SUB_NET},   {"kv", GT_SUB_KV},       {"sched", GT_SUB_SCHED},
    {"worker", GT_SUB_WORKER}, {"tok", GT_SUB_TOK},
};

static const char *const k_levels[] = {"error", "warn", "info", "debug", "trace"};

void gt_log_init(void) {
    const char *env = getenv("GANTRY_LOG");
    if (!env || !*env) return;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", env);
    unsigned subs = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        for (int l = 0; l < 5; l++)
            if (strcmp(tok, k_levels[l]) == 0) g_level = (gt_log_level)l;
        for (size_t s = 0; s < sizeof k_subs / sizeof k_subs[0]; s++)
            if (strcmp(tok, k_subs[s].name) == 0) subs |= k_subs[s].bit;
    }
    g_subs = subs ? subs : GT_SUB_ALL;
}

void gt_log_set_rank(int rank, int n_ranks) {
    g_rank = rank;
    g_n_ranks = n_ranks;
}

void gt_log_set_level(gt_log_level level) { g_level = level; }

int gt_log_enabled(gt_log_level level, unsigned sub) {
    return level <= g_level && (level == GT_LOG_LEVEL_ERROR || (sub & g_subs));
}

void gt_log_write(gt_log_level level, unsigned sub, const char *fmt, ...) {
    (void)sub;
    char line[2048];
    int n = 0;
    if (g_rank >= 0) n = snprintf(line, sizeof line, "[rank %d/%d] ", g_rank, g_n_ranks);
    n += snprintf(line + n, sizeof line - (size_t)n, "%s: ", k_levels[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}
