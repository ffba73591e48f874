/* Byte counts as people write them: parsing "2G" for flags such as
 * --mem-budget and printing "1.50 GiB" in plan tables. Suffixes are powers of 1024 whether
 * written K, KB or KiB, since memory budgets are compared with device sizes
 * that are reported in binary units. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "common/bytes.h"

gt_status gt_parse_bytes(const char *text, uint64_t *out) {
    *out = 0;
    if (!text || !*text) return gt_fail(GT_ERR_INVALID_ARG, "an empty byte count");
    char *end;
    double v = strtod(text, &end);
    if (end == text || !(v >= 0) || isinf(v))
        return gt_fail(GT_ERR_INVALID_ARG, "'%s' is not a byte count (like 2G, 512M or 1000000)",
                       text);
    static const struct {
        const char *s;
        double mul;
    } units[] = {{"", 1.0},       {"B", 1.0},     {"K", 0x1p10},   {"KB", 0x1p10}, {"KiB", 0x1p10},
                 {"M", 0x1p20},   {"MB", 0x1p20}, {"MiB", 0x1p20}, {"G", 0x1p30},  {"GB", 0x1p30},
                 {"GiB", 0x1p30}, {"T", 0x1p40},  {"TB", 0x1p40},  {"TiB", 0x1p40}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].s) != 0) continue;
        double b = v * units[i].mul;
        if (b >= 0x1p63) return gt_fail(GT_ERR_INVALID_ARG, "byte count '%s' is beyond 2^63", text);
        *out = (uint64_t)b;
        return GT_OK;
    }
    return gt_fail(GT_ERR_INVALID_ARG, "'%s' has an unknown unit '%s' (K, M, G or T)", text, end);
}

const char *gt_format_bytes(uint64_t bytes, char *buf, size_t cap) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, cap, "%.2f %s", v, units[u]);
    return buf;
}
