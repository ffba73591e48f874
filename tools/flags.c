/* The declarative flag parser shared by the verbs; see flags.h. */
#include "tools/flags.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/bytes.h"

#define MAX_FLAGS 128

static void *field(void *opts, size_t off) { return (char *)opts + off; }

static bool matches(const gt_flag *f, const char *arg) {
    return (f->short_name && strcmp(arg, f->short_name) == 0) ||
           (f->long_name && strcmp(arg, f->long_name) == 0);
}

static bool takes_value(const gt_flag *f) { return f->kind != GT_FLAG_BOOL && f->kind != GT_FLAG_UNSET; }

static gt_status parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return gt_fail(GT_ERR_INVALID_ARG, "%s takes a whole number, not '%s'", flag, s);
    if (v < lo || v > hi)
        return gt_fail(GT_ERR_INVALID_ARG, "%s %ld is outside %ld..%ld", flag, v, lo, hi);
    *out = v;
    return GT_OK;
}

static gt_status parse_double(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end)
        return gt_fail(GT_ERR_INVALID_ARG, "%s takes a number, not '%s'", flag, s);
    if (!(v >= lo && v <= hi))
        return gt_fail(GT_ERR_INVALID_ARG, "%s %g is outside %g..%g", flag, v, lo, hi);
    *out = v;
    return GT_OK;
}

/* "1,2,3" into a new array [n] of non-negative int32 ids. */
static gt_status parse_int_list(const char *flag, const char *s, int32_t **out, int *n_out) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu token ids", cap);
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            return gt_fail(GT_ERR_INVALID_ARG, "%s takes comma-separated token ids, not '%s'", flag, s);
        }
        v[n++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        free(v);
        return gt_fail(GT_ERR_INVALID_ARG, "%s needs at least one token id", flag);
    }
    *out = v;
    *n_out = n;
    return GT_OK;
}

/* "--kv-type takes f16 or f32, not 'x'" for choices "f16|f32". */
static gt_status bad_choice(const char *flag, const char *choices, const char *s) {
    char list[256] = "";
    size_t n = 0, k = 1, len = strlen(choices);
    for (const char *p = choices; *p; p++) k += *p == '|';
    size_t i = 0;
    for (const char *p = choices; i < k && n + 1 < sizeof list; i++) {
        const char *bar = strchr(p, '|');
        size_t w = bar ? (size_t)(bar - p) : strlen(p);
        const char *sep = i == 0 ? "" : i + 1 == k ? " or " : ", ";
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%.*s", sep, (int)w, p);
        if (n >= sizeof list) n = sizeof list - 1;
        p = bar ? bar + 1 : choices + len;
    }
    return gt_fail(GT_ERR_INVALID_ARG, "%s takes %s, not '%s'", flag, list, s);
}

static gt_status parse_choice(const gt_flag *f, const char *flag, const char *s, int *out) {
    const char *p = f->choices;
    for (int i = 0; p && *p; i++) {
        const char *bar = strchr(p, '|');
        size_t w = bar ? (size_t)(bar - p) : strlen(p);
        if (strlen(s) == w && strncasecmp(s, p, w) == 0) {
            *out = f->choice_values ? f->choice_values[i] : i;
            return GT_OK;
        }
        if (!bar) break;
        p = bar + 1;
    }
    return bad_choice(flag, f->choices, s);
}

static gt_status store(const gt_flag *f, const char *flag, const char *s, void *opts) {
    void *dst = field(opts, f->off);
    long v = 0;
    double d = 0;
    switch (f->kind) {
    case GT_FLAG_BOOL: *(bool *)dst = true; return GT_OK;
    case GT_FLAG_UNSET: *(bool *)dst = false; return GT_OK;
    case GT_FLAG_STR: *(const char **)dst = s; return GT_OK;
    case GT_FLAG_INT:
        GT_TRY(parse_long(flag, s, f->lo, f->hi, &v));
        *(int *)dst = (int)v;
        return GT_OK;
    case GT_FLAG_LONG: return parse_long(flag, s, f->lo, f->hi, (long *)dst);
    case GT_FLAG_U32:
        GT_TRY(parse_long(flag, s, f->lo, f->hi, &v));
        *(uint32_t *)dst = (uint32_t)v;
        return GT_OK;
    case GT_FLAG_U64:
        GT_TRY(parse_long(flag, s, f->lo, f->hi, &v));
        *(uint64_t *)dst = (uint64_t)v;
        return GT_OK;
    case GT_FLAG_FLOAT:
        GT_TRY(parse_double(flag, s, f->flo, f->fhi, &d));
        *(float *)dst = (float)d;
        return GT_OK;
    case GT_FLAG_DOUBLE: return parse_double(flag, s, f->flo, f->fhi, (double *)dst);
    case GT_FLAG_BYTES: {
        uint64_t b;
        GT_TRY(gt_parse_bytes(s, &b));
        if (b < (uint64_t)f->lo) {
            if (b == 0) return gt_fail(GT_ERR_INVALID_ARG, "%s %s leaves no memory", flag, s);
            return gt_fail(GT_ERR_INVALID_ARG, "%s %s is below %ld bytes", flag, s, f->lo);
        }
        *(uint64_t *)dst = b;
        return GT_OK;
    }
    case GT_FLAG_CHOICE: return parse_choice(f, flag, s, (int *)dst);
    case GT_FLAG_INT_LIST: {
        int32_t *ids = NULL;
        int n = 0;
        GT_TRY(parse_int_list(flag, s, &ids, &n));
        free(*(int32_t **)dst);
        *(int32_t **)dst = ids;
        *(int *)field(opts, f->off2) = n;
        return GT_OK;
    }
    case GT_FLAG_CALL: return f->call(flag, s, opts);
    }
    return gt_fail(GT_ERR_INTERNAL, "%s has an unknown flag kind %d", flag, (int)f->kind);
}

/* Parses and checks; *help set when -h/--help came (parsing stops there). */
static gt_status parse(const gt_flag_spec *spec, int argc, char **argv, void *opts, bool *help) {
    bool seen[MAX_FLAGS] = {0};
    if (spec->n_flags > MAX_FLAGS)
        return gt_fail(GT_ERR_INTERNAL, "gantry %s has %zu flags, over %d", spec->verb, spec->n_flags,
                       MAX_FLAGS);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *help = true;
            return GT_OK;
        }
        size_t k = 0;
        while (k < spec->n_flags && !matches(&spec->flags[k], arg)) k++;
        if (k == spec->n_flags) {
            if (spec->positional && !(arg[0] == '-' && arg[1])) {
                GT_TRY(spec->positional(arg, opts));
                continue;
            }
            return gt_fail(GT_ERR_INVALID_ARG, "unknown argument '%s'", arg);
        }
        const gt_flag *f = &spec->flags[k];
        const char *value = NULL;
        if (takes_value(f)) {
            if (i + 1 >= argc) return gt_fail(GT_ERR_INVALID_ARG, "%s needs a value", arg);
            value = argv[++i];
        }
        GT_TRY(store(f, arg, value, opts));
        seen[k] = true;
    }
    for (size_t k = 0; k < spec->n_flags; k++) {
        const gt_flag *f = &spec->flags[k];
        if (!f->required) continue;
        /* A string may also arrive as a positional argument. */
        bool given = f->kind == GT_FLAG_STR ? *(const char **)field(opts, f->off) != NULL : seen[k];
        if (!given) return gt_fail(GT_ERR_INVALID_ARG, "%s", f->required);
    }
    return spec->validate ? spec->validate(opts) : GT_OK;
}

int gt_flags_parse(const gt_flag_spec *spec, int argc, char **argv, void *opts) {
    bool help = false;
    gt_status st = parse(spec, argc, argv, opts, &help);
    if (help) {
        gt_flags_usage(spec, stdout);
        return 0;
    }
    if (st == GT_OK) return -1;
    if (spec->usage_on_error == GT_USAGE_BEFORE) gt_flags_usage(spec, stderr);
    int rc = gt_flags_report(spec->verb, st);
    if (spec->usage_on_error == GT_USAGE_AFTER) gt_flags_usage(spec, stderr);
    return rc;
}

void gt_flags_usage(const gt_flag_spec *spec, FILE *f) {
    fprintf(f, "usage: gantry %s %s\n", spec->verb, spec->synopsis);
    for (size_t k = 0; k < spec->n_flags; k++) {
        const gt_flag *g = &spec->flags[k];
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s%s", g->short_name ? g->short_name : "",
                 g->short_name && g->long_name ? ", " : "", g->long_name ? g->long_name : "",
                 g->metavar ? " " : "", g->metavar ? g->metavar : "");
        int w = fprintf(f, "  %-20s", left);
        const char *h = g->help ? g->help : "";
        /* Continuation lines of the help line up under its first line. */
        for (bool first = true; first || *h; first = false) {
            const char *nl = strchr(h, '\n');
            int len = nl ? (int)(nl - h) : (int)strlen(h);
            if (!first) fprintf(f, "%*s", 22, "");
            else if (w > 22) fprintf(f, "\n%*s", 22, "");
            fprintf(f, " %.*s\n", len, h);
            h += len + (nl != NULL);
        }
    }
    if (spec->footer) fputs(spec->footer, f);
}

void gt_flags_free(const gt_flag_spec *spec, void *opts) {
    for (size_t k = 0; k < spec->n_flags; k++) {
        const gt_flag *f = &spec->flags[k];
        if (f->kind != GT_FLAG_INT_LIST) continue;
        int32_t **p = field(opts, f->off);
        free(*p);
        *p = NULL;
        *(int *)field(opts, f->off2) = 0;
    }
}

int gt_flags_report(const char *verb, gt_status st) {
    const char *msg = gt_last_error();
    fprintf(stderr, "gantry %s: %s\n", verb, *msg ? msg : gt_status_str(st));
    return st == GT_ERR_INVALID_ARG ? 2 : 1;
}
