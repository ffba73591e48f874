/* One declarative flag table per verb: the table parses argv into the verb's
 * options struct, checks every value's range, and generates `--help`. Every
 * problem is one sentence naming the flag and the value, printed as
 * "gantry VERB: sentence".
 *
 * A verb is: an options struct, a gt_flag table describing it, a validate
 * step (cross-flag rules) and the body. gt_flags_parse does all but the body:
 *
 *     static const gt_flag k_flags[] = {
 *         {"-m", "--model", GT_FLAG_STR, offsetof(opts, path), .metavar = "FILE",
 *          .help = "GGUF model", .required = "no model given (-m FILE)"},
 *         {NULL, "--top-k", GT_FLAG_INT, offsetof(opts, top_k), .lo = 0, .hi = 1 << 24,
 *          .metavar = "K", .help = "keep the K most likely tokens (default 40)"},
 *         ...
 *     };
 *     int rc = gt_flags_parse(&spec, argc, argv, &o);
 *     if (rc >= 0) return rc; // --help printed, or a bad flag reported
 */
#ifndef GT_FLAGS_H
#define GT_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"

typedef enum gt_flag_kind {
    GT_FLAG_BOOL,     /* switch: stores true into a bool */
    GT_FLAG_UNSET,    /* switch: stores false into a bool (--no-tensors) */
    GT_FLAG_STR,      /* const char *, borrowed from argv */
    GT_FLAG_INT,      /* int within [lo, hi] */
    GT_FLAG_LONG,     /* long within [lo, hi] */
    GT_FLAG_U32,      /* uint32_t within [lo, hi] */
    GT_FLAG_U64,      /* uint64_t within [lo, hi] */
    GT_FLAG_FLOAT,    /* float within [flo, fhi] */
    GT_FLAG_DOUBLE,   /* double within [flo, fhi] */
    GT_FLAG_BYTES,    /* uint64_t byte size ("2G", common/bytes.h), at least lo */
    GT_FLAG_CHOICE,   /* int: choice_values[i] for the i-th of choices "f16|f32" (any case) */
    GT_FLAG_INT_LIST, /* int32_t * (malloc'd, freed on repeat) + int count at off2 */
    GT_FLAG_CALL,     /* call(flag, value, opts) for the odd ones */
} gt_flag_kind;

typedef struct gt_flag {
    const char *short_name; /* "-m", or NULL */
    const char *long_name;  /* "--model" */
    gt_flag_kind kind;
    size_t off;             /* offsetof the field in the options struct */
    long lo, hi;            /* integer kinds and GT_FLAG_BYTES (lo only) */
    double flo, fhi;        /* GT_FLAG_FLOAT, GT_FLAG_DOUBLE */
    const char *metavar;    /* "FILE"; NULL for switches */
    const char *help;       /* one or more lines ('\n'), with the default */
    const char *required;   /* non-NULL: the flag must be given; the sentence when not */
    const char *choices;    /* GT_FLAG_CHOICE: "f16|f32" */
    const int *choice_values;
    size_t off2;            /* GT_FLAG_INT_LIST: offsetof the int count */
    gt_status (*call)(const char *flag, const char *value, void *opts); /* GT_FLAG_CALL */
} gt_flag;

/* Where the usage goes, on stderr, when parsing fails. */
typedef enum gt_flag_usage_on_error {
    GT_USAGE_NONE,   /* the sentence alone */
    GT_USAGE_AFTER,  /* the sentence, then the usage */
    GT_USAGE_BEFORE, /* the usage, then the sentence */
} gt_flag_usage_on_error;

typedef struct gt_flag_spec {
    const char *verb;     /* "run", for "gantry run: ..." and the usage line */
    const char *synopsis; /* after "usage: gantry VERB ": "-m FILE [options]" */
    const gt_flag *flags;
    size_t n_flags;
    /* Arguments that are not flags ("-" counts as one); NULL: each is an
     * unknown argument. */
    gt_status (*positional)(const char *arg, void *opts);
    /* Cross-flag rules and derived fields, after every flag is stored. */
    gt_status (*validate)(void *opts);
    gt_flag_usage_on_error usage_on_error; /* whether a bad usage also prints the usage */
    const char *footer;   /* extra help lines after the table, or NULL */
} gt_flag_spec;

#define GT_FLAGS_COUNT(t) (sizeof(t) / sizeof((t)[0]))

/* Parses argv (argv[0] is the verb) into opts, then checks required flags
 * and runs validate. Returns -1 to go on with the body; 0 after printing the
 * usage for -h/--help; otherwise the exit code after printing the sentence
 * (2 for a bad usage). */
int gt_flags_parse(const gt_flag_spec *spec, int argc, char **argv, void *opts);
/* The generated usage: the usage line and one line (or more) per flag. */
void gt_flags_usage(const gt_flag_spec *spec, FILE *f);
/* Frees what the table allocated into opts (GT_FLAG_INT_LIST arrays). */
void gt_flags_free(const gt_flag_spec *spec, void *opts);

/* Prints gt_last_error() as "gantry VERB: sentence" and returns 1 (2 for
 * GT_ERR_INVALID_ARG). */
int gt_flags_report(const char *verb, gt_status st);

#endif
