/* The GBNF compiler and matcher: strings each grammar must accept and
 * reject (worked out by hand), the sentences of refused grammars (the rule
 * named), and the token mask against a brute-force check of every token
 * with gt_gmatch_try. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/grammar.h"

static gt_grammar *compile(const char *text) {
    gt_grammar *g = NULL;
    gt_status st = gt_grammar_compile(text, strlen(text), &g);
    if (st != GT_OK) fail_msg("grammar refused: %s", gt_last_error());
    return g;
}

/* Whether the whole string is a sentence of the grammar. */
static bool full_match(const gt_grammar *g, const char *s) {
    gt_gmatch *m = NULL;
    assert_int_equal(gt_gmatch_create(g, &m), GT_OK);
    bool ok = gt_gmatch_accept(m, (const uint8_t *)s, strlen(s)) == GT_OK && gt_gmatch_can_end(m);
    gt_gmatch_free(m);
    return ok;
}

/* Whether the string is a prefix of some sentence. */
static bool prefix_ok(const gt_grammar *g, const char *s) {
    gt_gmatch *m = NULL;
    assert_int_equal(gt_gmatch_create(g, &m), GT_OK);
    bool ok = gt_gmatch_try(m, (const uint8_t *)s, strlen(s));
    gt_gmatch_free(m);
    return ok;
}

typedef struct gcase {
    const char *grammar;
    const char *yes[8];
    const char *no[8];
} gcase;

static const gcase k_cases[] = {
    {"root ::= \"ab\" | \"c\"", {"ab", "c"}, {"", "a", "abc", "b", "cc"}},
    {"root ::= [a-c]+ \"!\"", {"a!", "abcabc!"}, {"!", "ad!", "a"}},
    {"root ::= [^x]* \"x\"", {"x", "abcx", "\xc3\xa9x"}, {"xx", "ab"}},
    {"root ::= item (\",\" item)*\nitem ::= [0-9]{1,3}",
     {"1", "12,345,6"},
     {"", "1234", "1,", ",1"}},
    {"# comment\nroot ::= a? b # trailing\na ::= \"a\"\nb ::= \"b\" |\n  \"bb\"",
     {"b", "ab", "abb", "bb"},
     {"a", "abbb"}},
    {"root ::= \"(\" root \")\" | \"\"", {"", "()", "(())"}, {"(", "())", ")("}},
    {"root ::= . . \"\\n\"",
     {"ab\n", "\xe2\x82\xac"
              "z\n"},
     {"a\n", "abc\n"}},
    {"root ::= \"\\u00e9\" [\\x41-\\x43]",
     {"\xc3\xa9"
      "B"},
     {"eB", "\xc3\xa9"
            "D"}},
    {"root ::= x{2,}\nx ::= \"x\"", {"xx", "xxxxx"}, {"", "x"}},
    {"root ::= (\"a\" | \"b\")?", {"", "a", "b"}, {"ab"}},
};

static void test_accept_reject(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof k_cases / sizeof *k_cases; c++) {
        gt_grammar *g = compile(k_cases[c].grammar);
        for (int i = 0; i < 8 && k_cases[c].yes[i]; i++)
            if (!full_match(g, k_cases[c].yes[i]))
                fail_msg("grammar %zu should accept \"%s\"", c, k_cases[c].yes[i]);
        for (int i = 0; i < 8 && k_cases[c].no[i]; i++)
            if (full_match(g, k_cases[c].no[i]))
                fail_msg("grammar %zu should reject \"%s\"", c, k_cases[c].no[i]);
        gt_grammar_free(g);
    }
}

static void test_prefixes(void **state) {
    (void)state;
    gt_grammar *g = compile("root ::= \"{\" [a-z]+ \"}\"");
    assert_true(prefix_ok(g, "{"));
    assert_true(prefix_ok(g, "{ab"));
    assert_false(prefix_ok(g, "{}"));
    assert_false(prefix_ok(g, "a"));
    gt_grammar_free(g);
    /* A token ending inside a UTF-8 character: allowed only when some
     * continuation matches. "é" is C3 A9; "€" is E2 82 AC. */
    g = compile("root ::= [\\u00e0-\\u00ff]");
    assert_true(prefix_ok(g, "\xc3"));
    assert_false(prefix_ok(g, "\xe2\x82"));
    assert_false(prefix_ok(g, "\xff"));
    gt_grammar_free(g);
    /* Overlong encodings of an ASCII character are not that character. */
    g = compile("root ::= \"s\" | [\\u0800-\\uffff]");
    assert_true(full_match(g, "s"));
    assert_false(prefix_ok(g, "\xe0\x81"));
    assert_false(full_match(g, "\xe0\x81\xb3"));
    assert_false(full_match(g, "\xc1\xb3"));
    assert_true(full_match(g, "\xe0\xa0\x80"));
    gt_grammar_free(g);
    /* Incremental accept, then the end. */
    g = compile("root ::= \"ab\" \"c\"?");
    gt_gmatch *m = NULL;
    assert_int_equal(gt_gmatch_create(g, &m), GT_OK);
    assert_false(gt_gmatch_can_end(m));
    assert_int_equal(gt_gmatch_accept(m, (const uint8_t *)"a", 1), GT_OK);
    assert_int_equal(gt_gmatch_accept(m, (const uint8_t *)"x", 1), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gmatch_accept(m, (const uint8_t *)"b", 1),
                     GT_OK); /* unchanged by the rejection */
    assert_true(gt_gmatch_can_end(m));
    assert_false(gt_gmatch_done(m));
    assert_int_equal(gt_gmatch_accept(m, (const uint8_t *)"c", 1), GT_OK);
    assert_true(gt_gmatch_done(m));
    gt_gmatch_free(m);
    gt_grammar_free(g);
}

static void expect_refused(const char *text, gt_status want, const char *needle) {
    gt_grammar *g = NULL;
    gt_status st = gt_grammar_compile(text, strlen(text), &g);
    if (st != want) fail_msg("\"%s\": status %d, want %d (%s)", text, st, want, gt_last_error());
    assert_null(g);
    if (!strstr(gt_last_error(), needle))
        fail_msg("\"%s\": \"%s\" lacks \"%s\"", text, gt_last_error(), needle);
}

static void test_refused(void **state) {
    (void)state;
    expect_refused("root ::= value\n", GT_ERR_INVALID_ARG,
                   "rule 'value' is used but never defined");
    expect_refused("start ::= \"a\"\n", GT_ERR_INVALID_ARG, "no rule 'root'");
    expect_refused("root ::= loop\nloop ::= \"x\" loop\n", GT_ERR_INVALID_ARG,
                   "rule 'loop' can never finish");
    expect_refused("root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\"\n", GT_ERR_INVALID_ARG,
                   "rule 'expr' is left-recursive");
    expect_refused("root ::= \"a\"\nroot ::= \"b\"\n", GT_ERR_FORMAT,
                   "rule 'root' is defined twice");
    expect_refused("root = \"a\"\n", GT_ERR_FORMAT, "line 1, column 6: expected '::='");
    expect_refused("root ::= \"abc\n", GT_ERR_FORMAT, "not closed");
    expect_refused("root ::= []\n", GT_ERR_FORMAT, "empty");
    expect_refused("root ::= ( \"a\"\n", GT_ERR_FORMAT, "expected ')'");
    expect_refused("root ::= \"a\"{3,2}\n", GT_ERR_FORMAT, "n below m");
    expect_refused("root ::= \"\\q\"\n", GT_ERR_FORMAT, "unknown escape");
    expect_refused("", GT_ERR_INVALID_ARG, "no rules");
}

/* The mask from the trie walk equals trying every token on its own. */
static void test_mask(void **state) {
    (void)state;
    const char *pieces[] = {"{",   "}", "\"", "a",    "ab",   "abc",      "\"a",
                            "\"}", " ", "",   "\xc3", "\xa9", "\xc3\xa9", "1",
                            "12",  ",", ":",  "{\"",  "b\"",  "zz"};
    enum { V = sizeof pieces / sizeof *pieces };
    size_t lens[V];
    for (int i = 0; i < V; i++) lens[i] = strlen(pieces[i]);
    gt_vocab_trie *t = NULL;
    assert_int_equal(gt_vocab_trie_create(pieces, lens, V, &t), GT_OK);
    gt_grammar *g = compile("root ::= \"{\" pair (\",\" pair)* \"}\"\n"
                            "pair ::= \"\\\"\" [a-z\\u00e9]* \"\\\":\" [0-9]+\n");
    gt_gmatch *m = NULL;
    assert_int_equal(gt_gmatch_create(g, &m), GT_OK);
    const char *path[] = {"{", "\"", "ab", "\xc3", "\xa9", "b\"", ":", "12", "}"};
    uint8_t allowed[V];
    for (size_t step = 0; step <= sizeof path / sizeof *path; step++) {
        int n = gt_gmatch_mask(m, t, allowed);
        int want_n = 0;
        for (int i = 0; i < V; i++) {
            bool want = lens[i] > 0 && gt_gmatch_try(m, (const uint8_t *)pieces[i], lens[i]);
            want_n += want;
            if (want != (allowed[i] != 0))
                fail_msg("step %zu token %d \"%s\": mask %d, try %d", step, i, pieces[i],
                         allowed[i], want);
        }
        assert_int_equal(n, want_n);
        if (step == sizeof path / sizeof *path) break;
        assert_true(allowed[0] || step > 0);
        assert_int_equal(gt_gmatch_accept(m, (const uint8_t *)path[step], strlen(path[step])),
                         GT_OK);
    }
    assert_true(gt_gmatch_done(m));
    assert_int_equal(gt_gmatch_mask(m, t, allowed), 0);
    gt_gmatch_free(m);
    gt_grammar_free(g);
    gt_vocab_trie_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_reject),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
