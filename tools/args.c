/* Flag parsing shared by the verbs; see args.h. */
#include "tools/args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gt_args_init(gt_args *a, int argc, char **argv) {
    a->argc = argc;
    a->argv = argv;
    a->i = 0;
    a->flag = NULL;
}

bool gt_args_next(gt_args *a, const char **arg) {
    if (a->i + 1 >= a->argc) return false;
    a->i++;
    a->flag = a->argv[a->i];
    *arg = a->flag;
    return true;
}

bool gt_args_is(const gt_args *a, const char *short_name, const char *long_name) {
    return (short_name && strcmp(a->flag, short_name) == 0) ||
           (long_name && strcmp(a->flag, long_name) == 0);
}

gt_status gt_args_str(gt_args *a, const char **out) {
    if (a->i + 1 >= a->argc) return gt_fail(GT_ERR_INVALID_ARG, "%s needs a value", a->flag);
    a->i++;
    *out = a->argv[a->i];
    return GT_OK;
}

gt_status gt_args_long(gt_args *a, long lo, long hi, long *out) {
    const char *s = NULL;
    GT_TRY(gt_args_str(a, &s));
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        return gt_fail(GT_ERR_INVALID_ARG, "%s takes a whole number, not '%s'", a->flag, s);
    if (v < lo || v > hi)
        return gt_fail(GT_ERR_INVALID_ARG, "%s %ld is outside %ld..%ld", a->flag, v, lo, hi);
    *out = v;
    return GT_OK;
}

gt_status gt_args_double(gt_args *a, double lo, double hi, double *out) {
    const char *s = NULL;
    GT_TRY(gt_args_str(a, &s));
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end)
        return gt_fail(GT_ERR_INVALID_ARG, "%s takes a number, not '%s'", a->flag, s);
    if (!(v >= lo && v <= hi))
        return gt_fail(GT_ERR_INVALID_ARG, "%s %g is outside %g..%g", a->flag, v, lo, hi);
    *out = v;
    return GT_OK;
}

gt_status gt_args_int_list(gt_args *a, int32_t **out, int *n_out) {
    const char *s = NULL;
    GT_TRY(gt_args_str(a, &s));
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
            return gt_fail(GT_ERR_INVALID_ARG, "%s takes comma-separated token ids, not '%s'",
                           a->flag, s);
        }
        v[n++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        free(v);
        return gt_fail(GT_ERR_INVALID_ARG, "%s needs at least one token id", a->flag);
    }
    *out = v;
    *n_out = n;
    return GT_OK;
}

gt_status gt_args_unknown(const gt_args *a) {
    return gt_fail(GT_ERR_INVALID_ARG, "unknown argument '%s'", a->flag);
}

int gt_args_report(const char *verb, gt_status st) {
    const char *msg = gt_last_error();
    fprintf(stderr, "gantry %s: %s\n", verb, *msg ? msg : gt_status_str(st));
    return st == GT_ERR_INVALID_ARG ? 2 : 1;
}

int gt_args_parsed(const char *verb, gt_status st, bool help, void (*usage)(FILE *)) {
    if (help) {
        usage(stdout);
        return 0;
    }
    if (st == GT_OK) return -1;
    int rc = gt_args_report(verb, st);
    usage(stderr);
    return rc;
}
