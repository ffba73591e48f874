/* GBNF text -> the flat element array of grammar_internal.h, then the
 * checks that refuse a grammar which can match nothing.
 *
 * A recursive-descent parser over the text, bounded (1 MiB of text, 65536
 * elements, nesting 256), that builds one element vector per rule; groups
 * and repetitions become generated rules named after the rule they appear
 * in (`value_3`), as llama.cpp names them. After parsing: every referenced
 * rule must be defined, `root` must exist, every rule reachable from root
 * must be able to finish (a fixpoint over "productive" rules), and no rule
 * may reach itself through nullable prefixes (left recursion). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/grammar_internal.h"

typedef struct prule {
    gt_gelem *e;
    int n, cap;
    bool defined, used;
} prule;

typedef struct parser {
    const char *s;
    size_t n, i;
    prule *rules;
    char **names;
    int n_rules, cap_rules;
    int total; /* elements in all rules */
    int depth;
    int cur; /* the user rule being defined, for generated names */
    int n_gen;
    gt_status st;
} parser;

enum { MAX_DEPTH = 256, MAX_REPEAT = 1000 };

static gt_status perr(parser *p, const char *what) {
    if (p->st) return p->st;
    int line = 1, col = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) {
        if (p->s[k] == '\n')
            line++, col = 1;
        else
            col++;
    }
    return p->st = gt_fail(GT_ERR_FORMAT, "grammar line %d, column %d: %s", line, col, what);
}

static int add_rule(parser *p, const char *name, size_t len) {
    if (p->n_rules == p->cap_rules) {
        int cap = p->cap_rules ? 2 * p->cap_rules : 16;
        prule *r = realloc(p->rules, (size_t)cap * sizeof *r);
        if (r) p->rules = r;
        char **nm = realloc(p->names, (size_t)cap * sizeof *nm);
        if (nm) p->names = nm;
        if (!r || !nm) {
            p->st = gt_fail(GT_ERR_NOMEM, "cannot allocate %d grammar rules", cap);
            return -1;
        }
        p->cap_rules = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) {
        p->st = gt_fail(GT_ERR_NOMEM, "cannot allocate a rule name");
        return -1;
    }
    memcpy(copy, name, len);
    copy[len] = 0;
    p->names[p->n_rules] = copy;
    p->rules[p->n_rules] = (prule){0};
    return p->n_rules++;
}

static int find_rule(parser *p, const char *name, size_t len) {
    for (int r = 0; r < p->n_rules; r++)
        if (strlen(p->names[r]) == len && memcmp(p->names[r], name, len) == 0) return r;
    return add_rule(p, name, len);
}

static int gen_rule(parser *p) {
    char buf[160];
    const char *base = p->cur >= 0 ? p->names[p->cur] : "rule";
    int n = snprintf(buf, sizeof buf, "%.100s_%d", base, ++p->n_gen);
    int r = add_rule(p, buf, (size_t)n);
    if (r >= 0) p->rules[r].defined = p->rules[r].used = true;
    return r;
}

static bool emit(parser *p, int rule, uint32_t type, uint32_t value) {
    if (p->st) return false;
    if (p->total >= GT_GRAMMAR_MAX_ELEMS) {
        p->st =
            gt_fail(GT_ERR_RANGE, "the grammar needs more than %d elements", GT_GRAMMAR_MAX_ELEMS);
        return false;
    }
    prule *r = &p->rules[rule];
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        gt_gelem *e = realloc(r->e, (size_t)cap * sizeof *e);
        if (!e) {
            p->st = gt_fail(GT_ERR_NOMEM, "cannot allocate grammar elements");
            return false;
        }
        r->e = e;
        r->cap = cap;
    }
    r->e[r->n++] = (gt_gelem){type, value};
    p->total++;
    return true;
}

static bool at_end(const parser *p) { return p->i >= p->n; }
static char peek(const parser *p) { return at_end(p) ? 0 : p->s[p->i]; }

static void skip_space(parser *p, bool newline_ok) {
    while (!at_end(p)) {
        char c = p->s[p->i];
        if (c == '#') {
            while (!at_end(p) && p->s[p->i] != '\n') p->i++;
        } else if (c == ' ' || c == '\t' || c == '\r' || (newline_ok && c == '\n')) {
            p->i++;
        } else {
            break;
        }
    }
}

static bool is_name_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_'; }

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One UTF-8 character (or escape) of a literal or class into *cp. */
static bool parse_char(parser *p, uint32_t *cp) {
    if (at_end(p)) return perr(p, "the text ends inside a literal or character class"), false;
    unsigned char c = (unsigned char)p->s[p->i];
    if (c == '\\') {
        p->i++;
        if (at_end(p)) return perr(p, "the text ends after a backslash"), false;
        char e = p->s[p->i++];
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = at_end(p) ? -1 : hexval(p->s[p->i]);
                if (h < 0)
                    return perr(p, "a \\x, \\u or \\U escape needs hexadecimal digits"), false;
                v = v * 16 + (uint32_t)h;
                p->i++;
            }
            if (v > 0x10FFFF) return perr(p, "an escape names a code point past U+10FFFF"), false;
            *cp = v;
            return true;
        }
        switch (e) {
        case 'n':
            *cp = '\n';
            return true;
        case 'r':
            *cp = '\r';
            return true;
        case 't':
            *cp = '\t';
            return true;
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '^':
        case '\'':
            *cp = (uint32_t)e;
            return true;
        default:
            return perr(p, "unknown escape (use \\n \\r \\t \\\\ \\\" \\[ \\] \\xHH \\uHHHH)"),
                   false;
        }
    }
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || p->i + (size_t)len > p->n)
        return perr(p, "invalid UTF-8 in the grammar"), false;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (int k = 1; k < len; k++) {
        unsigned char d = (unsigned char)p->s[p->i + (size_t)k];
        if ((d & 0xC0) != 0x80) return perr(p, "invalid UTF-8 in the grammar"), false;
        v = (v << 6) | (d & 0x3Fu);
    }
    p->i += (size_t)len;
    *cp = v;
    return true;
}

static bool parse_alternates(parser *p, int rule, bool nested);

/* Moves elements [from, n) of rule into a new rule and leaves a reference
 * to it; returns the new rule's id (the existing one when the symbol is
 * already a single reference). */
static int symbol_rule(parser *p, int rule, int from) {
    prule *r = &p->rules[rule];
    if (r->n - from == 1 && r->e[from].type == GT_GE_REF) return (int)r->e[from].value;
    int s = gen_rule(p);
    if (s < 0) return -1;
    r = &p->rules[rule];
    for (int k = from; k < r->n; k++) emit(p, s, r->e[k].type, r->e[k].value);
    emit(p, s, GT_GE_END, 0);
    p->total -= p->rules[rule].n - from;
    p->rules[rule].n = from;
    return p->st ? -1 : s;
}

/* The previous symbol (elements [from, n) of rule) repeated min..max times
 * (max < 0: no bound). */
static bool repeat(parser *p, int rule, int from, int min, int max) {
    int s = symbol_rule(p, rule, from);
    if (s < 0) return false;
    p->total -= p->rules[rule].n - from; /* a single reference left in place is re-emitted below */
    p->rules[rule].n = from;
    for (int k = 0; k < min; k++) emit(p, rule, GT_GE_REF, (uint32_t)s);
    if (max < 0) { /* star ::= s star | */
        int star = gen_rule(p);
        if (star < 0) return false;
        emit(p, star, GT_GE_REF, (uint32_t)s);
        emit(p, star, GT_GE_REF, (uint32_t)star);
        emit(p, star, GT_GE_ALT, 0);
        emit(p, star, GT_GE_END, 0);
        emit(p, rule, GT_GE_REF, (uint32_t)star);
    } else if (max > min) { /* opt_1 ::= s | ; opt_k ::= s opt_(k-1) | */
        int prev = -1;
        for (int k = 0; k < max - min && !p->st; k++) {
            int o = gen_rule(p);
            if (o < 0) return false;
            emit(p, o, GT_GE_REF, (uint32_t)s);
            if (prev >= 0) emit(p, o, GT_GE_REF, (uint32_t)prev);
            emit(p, o, GT_GE_ALT, 0);
            emit(p, o, GT_GE_END, 0);
            prev = o;
        }
        emit(p, rule, GT_GE_REF, (uint32_t)prev);
    }
    return !p->st;
}

static bool parse_int(parser *p, int *v) {
    if (!isdigit((unsigned char)peek(p))) return perr(p, "expected a number in {m,n}"), false;
    long x = 0;
    while (isdigit((unsigned char)peek(p))) {
        x = x * 10 + (p->s[p->i++] - '0');
        if (x > MAX_REPEAT) return perr(p, "a repetition count is above 1000"), false;
    }
    *v = (int)x;
    return true;
}

static bool parse_sequence(parser *p, int rule, bool nested) {
    for (;;) {
        int from = p->rules[rule].n;
        char c = peek(p);
        if (c == '"') {
            p->i++;
            while (!at_end(p) && p->s[p->i] != '"') {
                uint32_t cp;
                if (!parse_char(p, &cp)) return false;
                emit(p, rule, GT_GE_CHAR, cp);
            }
            if (at_end(p)) return perr(p, "a string literal is not closed"), false;
            p->i++;
        } else if (c == '[') {
            p->i++;
            uint32_t start = GT_GE_CHAR;
            if (peek(p) == '^') {
                p->i++;
                start = GT_GE_CHAR_NOT;
            }
            bool first = true;
            while (!at_end(p) && p->s[p->i] != ']') {
                uint32_t lo, hi;
                if (!parse_char(p, &lo)) return false;
                emit(p, rule, first ? start : GT_GE_CHAR_ALT, lo);
                first = false;
                if (peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
                    p->i++;
                    if (!parse_char(p, &hi)) return false;
                    if (hi < lo) return perr(p, "a character range ends below its start"), false;
                    emit(p, rule, GT_GE_RNG_UPPER, hi);
                }
            }
            if (at_end(p)) return perr(p, "a character class is not closed"), false;
            if (first) return perr(p, "a character class is empty"), false;
            p->i++;
        } else if (c == '.') {
            p->i++;
            emit(p, rule, GT_GE_ANY, 0);
        } else if (is_name_char(c)) {
            size_t b = p->i;
            while (!at_end(p) && is_name_char(p->s[p->i])) p->i++;
            int r = find_rule(p, p->s + b, p->i - b);
            if (r < 0) return false;
            p->rules[r].used = true;
            emit(p, rule, GT_GE_REF, (uint32_t)r);
        } else if (c == '(') {
            p->i++;
            if (++p->depth > MAX_DEPTH) return perr(p, "groups nest deeper than 256"), false;
            int s = gen_rule(p);
            if (s < 0) return false;
            skip_space(p, true);
            if (!parse_alternates(p, s, true)) return false;
            emit(p, s, GT_GE_END, 0);
            if (peek(p) != ')') return perr(p, "expected ')' to close a group"), false;
            p->i++;
            p->depth--;
            emit(p, rule, GT_GE_REF, (uint32_t)s);
        } else {
            return !p->st;
        }
        if (p->st) return false;
        skip_space(p, nested);
        /* Repetition operators bind to the symbol just parsed. */
        for (;;) {
            char o = peek(p);
            int min, max;
            if (o == '*')
                min = 0, max = -1;
            else if (o == '+')
                min = 1, max = -1;
            else if (o == '?')
                min = 0, max = 1;
            else if (o == '{') {
                p->i++;
                skip_space(p, false);
                if (!parse_int(p, &min)) return false;
                max = min;
                skip_space(p, false);
                if (peek(p) == ',') {
                    p->i++;
                    skip_space(p, false);
                    max = -1;
                    if (isdigit((unsigned char)peek(p)) && !parse_int(p, &max)) return false;
                    skip_space(p, false);
                }
                if (peek(p) != '}') return perr(p, "expected '}' to close {m,n}"), false;
                if (max >= 0 && max < min)
                    return perr(p, "a repetition {m,n} has n below m"), false;
            } else
                break;
            p->i++;
            if (!repeat(p, rule, from, min, max)) return false;
            skip_space(p, nested);
        }
    }
}

static bool parse_alternates(parser *p, int rule, bool nested) {
    if (!parse_sequence(p, rule, nested)) return false;
    while (peek(p) == '|') {
        p->i++;
        emit(p, rule, GT_GE_ALT, 0);
        skip_space(p, true);
        if (!parse_sequence(p, rule, nested)) return false;
    }
    return !p->st;
}

static bool parse_rules(parser *p) {
    skip_space(p, true);
    while (!at_end(p)) {
        size_t b = p->i;
        while (!at_end(p) && is_name_char(p->s[p->i])) p->i++;
        if (p->i == b) return perr(p, "expected a rule name"), false;
        int r = find_rule(p, p->s + b, p->i - b);
        if (r < 0) return false;
        if (p->rules[r].defined) {
            char msg[200];
            snprintf(msg, sizeof msg, "rule '%.100s' is defined twice", p->names[r]);
            return perr(p, msg), false;
        }
        p->rules[r].defined = true;
        p->cur = r;
        skip_space(p, false);
        if (p->i + 3 > p->n || memcmp(p->s + p->i, "::=", 3) != 0) {
            char msg[200];
            snprintf(msg, sizeof msg, "expected '::=' after rule name '%.100s'", p->names[r]);
            return perr(p, msg), false;
        }
        p->i += 3;
        skip_space(p, true);
        if (!parse_alternates(p, r, false)) return false;
        emit(p, r, GT_GE_END, 0);
        if (p->st) return false;
        if (!at_end(p) && peek(p) != '\n')
            return perr(p, "unexpected character after a rule"), false;
        skip_space(p, true);
    }
    return true;
}

/* ---- checks ---- */

/* Whether rule r's alternative at e[k..] is made only of elements for
 * which ok(rule) holds (character sets always count). */
static bool alt_all(const prule *r, int k, const bool *ok, bool chars_ok) {
    for (; r->e[k].type != GT_GE_END && r->e[k].type != GT_GE_ALT; k++) {
        uint32_t t = r->e[k].type;
        if (t == GT_GE_REF
                ? !ok[r->e[k].value]
                : (t == GT_GE_CHAR || t == GT_GE_CHAR_NOT || t == GT_GE_ANY) && !chars_ok)
            return false;
    }
    return true;
}

static void fixpoint(const parser *p, bool *ok, bool chars_ok) {
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < p->n_rules; r++) {
            if (ok[r]) continue;
            const prule *pr = &p->rules[r];
            for (int k = 0; k < pr->n; k++) {
                if (k == 0 || pr->e[k - 1].type == GT_GE_ALT) {
                    if (alt_all(pr, k, ok, chars_ok)) {
                        ok[r] = changed = true;
                        break;
                    }
                }
            }
        }
    }
}

/* A rule's name for a message (generated rules carry their user rule's
 * name before the '_N'). */
static void describe(const parser *p, int r, char *buf, size_t cap) {
    snprintf(buf, cap, "'%.100s'", p->names[r]);
}

/* Depth-first search over "can start with" edges; state 1 = on the path. */
static int left_rec(const parser *p, int r, const bool *nullable, uint8_t *state) {
    if (state[r] == 2) return -1;
    if (state[r] == 1) return r;
    state[r] = 1;
    const prule *pr = &p->rules[r];
    bool lead = true; /* every element before k in this alternative is nullable */
    for (int k = 0; k < pr->n; k++) {
        uint32_t t = pr->e[k].type;
        if (t == GT_GE_ALT || t == GT_GE_END) {
            lead = true;
            continue;
        }
        if (!lead) continue;
        if (t == GT_GE_REF) {
            int hit = left_rec(p, (int)pr->e[k].value, nullable, state);
            if (hit >= 0) return hit;
            if (!nullable[pr->e[k].value]) lead = false;
        } else if (t == GT_GE_CHAR || t == GT_GE_CHAR_NOT || t == GT_GE_ANY) {
            lead = false;
        }
    }
    state[r] = 2;
    return -1;
}

static gt_status check(parser *p, int *root) {
    *root = -1;
    for (int r = 0; r < p->n_rules; r++)
        if (strcmp(p->names[r], "root") == 0 && p->rules[r].defined) *root = r;
    for (int r = 0; r < p->n_rules; r++)
        if (!p->rules[r].defined)
            return gt_fail(GT_ERR_INVALID_ARG, "grammar: rule '%.100s' is used but never defined",
                           p->names[r]);
    if (*root < 0)
        return gt_fail(GT_ERR_INVALID_ARG, "grammar: there is no rule 'root' to start from");
    int n = p->n_rules;
    bool *ok = calloc((size_t)n, sizeof *ok), *nullable = calloc((size_t)n, sizeof *nullable);
    uint8_t *state = calloc((size_t)n, 1);
    gt_status st = GT_OK;
    if (!ok || !nullable || !state) {
        st = gt_fail(GT_ERR_NOMEM, "cannot check a grammar of %d rules", n);
        goto done;
    }
    fixpoint(p, ok, true);        /* productive: can finish */
    fixpoint(p, nullable, false); /* nullable: can match the empty string */
    /* Every rule reachable from root must be able to finish, or a
     * generation could walk into a branch that never ends. */
    uint8_t *seen = state; /* reachability marks, cleared again below */
    int *queue = malloc((size_t)n * sizeof *queue);
    if (!queue) {
        st = gt_fail(GT_ERR_NOMEM, "cannot check a grammar of %d rules", n);
        goto done;
    }
    int qh = 0, qt = 0;
    queue[qt++] = *root;
    seen[*root] = 1;
    int bad = -1, bad_self = -1; /* an unreachable-end rule; one that needs itself */
    while (qh < qt) {
        int r = queue[qh++];
        const prule *pr = &p->rules[r];
        for (int k = 0; k < pr->n; k++) {
            if (pr->e[k].type != GT_GE_REF) continue;
            if (!ok[r] && (int)pr->e[k].value == r && bad_self < 0) bad_self = r;
            if (!seen[pr->e[k].value]) {
                seen[pr->e[k].value] = 1;
                queue[qt++] = (int)pr->e[k].value;
            }
        }
        if (!ok[r]) bad = r;
    }
    if (bad_self >= 0) bad = bad_self;
    if (bad >= 0) {
        char name[120];
        describe(p, bad, name, sizeof name);
        st = gt_fail(GT_ERR_INVALID_ARG,
                     "grammar: rule %s can never finish (each of its alternatives "
                     "needs a rule that cannot finish, or itself), so root matches nothing",
                     name);
    }
    free(queue);
    if (st != GT_OK) goto done;
    memset(state, 0, (size_t)n);
    for (int r = 0; r < n; r++) {
        int hit = left_rec(p, r, nullable, state);
        if (hit >= 0) {
            char name[120];
            describe(p, hit, name, sizeof name);
            st = gt_fail(GT_ERR_INVALID_ARG,
                         "grammar: rule %s is left-recursive (it can reach itself "
                         "before matching any character), which the matcher cannot run",
                         name);
            break;
        }
    }
done:
    free(ok);
    free(nullable);
    free(state);
    return st;
}

static void parser_free(parser *p) {
    for (int r = 0; r < p->n_rules; r++) {
        free(p->rules[r].e);
        free(p->names[r]);
    }
    free(p->rules);
    free(p->names);
}

gt_status gt_grammar_compile(const char *text, size_t len, gt_grammar **out) {
    *out = NULL;
    if (len > GT_GRAMMAR_MAX_TEXT)
        return gt_fail(GT_ERR_RANGE, "the grammar is %zu bytes, more than the %d allowed", len,
                       GT_GRAMMAR_MAX_TEXT);
    parser p = {.s = text, .n = len, .cur = -1};
    int root = -1;
    gt_status st = parse_rules(&p) ? GT_OK : p.st;
    if (st == GT_OK && p.n_rules == 0)
        st = gt_fail(GT_ERR_INVALID_ARG, "grammar: the grammar has no rules");
    if (st == GT_OK) st = check(&p, &root);
    gt_grammar *g = NULL;
    if (st == GT_OK) {
        g = calloc(1, sizeof *g);
        if (g) {
            g->elems = malloc((size_t)(p.total > 0 ? p.total : 1) * sizeof *g->elems);
            g->rule_start = malloc((size_t)p.n_rules * sizeof *g->rule_start);
        }
        if (!g || !g->elems || !g->rule_start) {
            st = gt_fail(GT_ERR_NOMEM, "cannot allocate a grammar of %d elements", p.total);
        } else {
            int k = 0;
            for (int r = 0; r < p.n_rules; r++) {
                g->rule_start[r] = k;
                memcpy(g->elems + k, p.rules[r].e, (size_t)p.rules[r].n * sizeof *g->elems);
                k += p.rules[r].n;
            }
            g->n_elems = k;
            g->n_rules = p.n_rules;
            g->root = root;
            g->names = p.names;
            p.names = NULL;
        }
    }
    if (p.names) {
        parser_free(&p);
    } else {
        for (int r = 0; r < p.n_rules; r++) free(p.rules[r].e);
        free(p.rules);
    }
    if (st != GT_OK) {
        gt_grammar_free(g);
        return st;
    }
    *out = g;
    return GT_OK;
}

void gt_grammar_free(gt_grammar *g) {
    if (!g) return;
    if (g->names)
        for (int r = 0; r < g->n_rules; r++) free(g->names[r]);
    free(g->names);
    free(g->elems);
    free(g->rule_start);
    free(g);
}

int gt_grammar_n_rules(const gt_grammar *g) { return g->n_rules; }
