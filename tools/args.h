/* A small, strict flag parser shared by the verbs: every value is range
 * checked and every problem is one sentence naming the flag and the value. */
#ifndef GT_ARGS_H
#define GT_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"

typedef struct gt_args {
    int argc;
    char **argv;
    int i;            /* index of the current argument */
    const char *flag; /* the current flag, for messages */
} gt_args;

/* argv[0] is the verb. */
void gt_args_init(gt_args *a, int argc, char **argv);
/* Advances; returns false at the end. *arg is the argument (a flag or a
 * positional). */
bool gt_args_next(gt_args *a, const char **arg);
/* True when the current argument equals one of the two spellings. */
bool gt_args_is(const gt_args *a, const char *short_name, const char *long_name);
/* The value following the current flag. GT_ERR_INVALID_ARG when missing. */
gt_status gt_args_str(gt_args *a, const char **out);
gt_status gt_args_long(gt_args *a, long lo, long hi, long *out);
gt_status gt_args_double(gt_args *a, double lo, double hi, double *out);
/* Parses "1,2,3" into a new array (free with free()). */
gt_status gt_args_int_list(gt_args *a, int32_t **out, int *n_out);
/* The sentence for an unknown flag. */
gt_status gt_args_unknown(const gt_args *a);

/* Prints gt_last_error() as "gantry VERB: sentence" and returns 1 (2 for
 * GT_ERR_INVALID_ARG). */
int gt_args_report(const char *verb, gt_status st);

/* The end of a verb's flag parsing: with --help prints the usage and returns
 * 0; on a parse error prints the sentence and the usage and returns the exit
 * code; otherwise returns -1 (go on). */
int gt_args_parsed(const char *verb, gt_status st, bool help, void (*usage)(FILE *));

#endif
