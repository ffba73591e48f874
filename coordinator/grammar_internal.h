/* The compiled grammar's layout, shared by grammar_parse.c (which builds
 * it) and grammar_match.c (which runs it). Not part of the public API. */
#ifndef GT_GRAMMAR_INTERNAL_H
#define GT_GRAMMAR_INTERNAL_H

#include <stdint.h>

#include "coordinator/grammar.h"

/* Elements, as llama.cpp's: a rule is its alternatives separated by ALT
 * and closed by END; a character set is CHAR or CHAR_NOT (or ANY) followed
 * by RNG_UPPER (the previous value is a range's lower end) and CHAR_ALT
 * (another member). */
typedef enum gt_gelem_type {
    GT_GE_END = 0,
    GT_GE_ALT,
    GT_GE_REF,       /* value: rule id */
    GT_GE_CHAR,      /* value: code point */
    GT_GE_CHAR_NOT,  /* value: code point of a negated set */
    GT_GE_RNG_UPPER, /* value: upper end of a range */
    GT_GE_CHAR_ALT,  /* value: code point */
    GT_GE_ANY,       /* any code point */
} gt_gelem_type;

typedef struct gt_gelem {
    uint32_t type;
    uint32_t value;
} gt_gelem;

struct gt_grammar {
    gt_gelem *elems;     /* [n_elems] every rule, flattened */
    int32_t *rule_start; /* [n_rules] first element of each rule */
    int n_rules, n_elems;
    int32_t root; /* rule id of `root` */
    char **names; /* [n_rules] */
};

enum { GT_GRAMMAR_MAX_TEXT = 1 << 20, GT_GRAMMAR_MAX_ELEMS = 1 << 16 };

#endif
