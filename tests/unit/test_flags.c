/* The declarative flag tables of tools/flags.h: every kind stores into its
 * field, ranges and bad values are refused with the verbs' sentences
 * ("--top-k 99 is outside 0..16", "--n needs a value", "unknown argument
 * '--x'"), required flags and positionals are checked, validate runs last,
 * -h/--help stops parsing, and the generated usage lists every flag with its
 * help lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/flags.h"

typedef struct opts {
    const char *model;
    bool verbose, tensors;
    int top_k;
    long n;
    uint32_t ctx;
    uint64_t seed;
    float temp;
    double timeout;
    uint64_t budget;
    int kv;
    int32_t *ids;
    int n_ids;
    const char *pos;
    int calls;
    bool validated;
} opts;

static gt_status odd(const char *flag, const char *value, void *o) {
    ((opts *)o)->calls++;
    if (strcmp(value, "bad") == 0) return gt_fail(GT_ERR_INVALID_ARG, "%s refuses '%s'", flag, value);
    return GT_OK;
}

static gt_status positional(const char *arg, void *o) {
    opts *p = o;
    if (p->pos) return gt_fail(GT_ERR_INVALID_ARG, "takes one file, got '%s' and '%s'", p->pos, arg);
    p->pos = arg;
    return GT_OK;
}

static gt_status validate(void *o) {
    opts *p = o;
    p->validated = true;
    if (p->n == 13) return gt_fail(GT_ERR_INVALID_ARG, "-n 13 is unlucky");
    return GT_OK;
}

static const int k_kv[] = {1, 0};

#define O(f) offsetof(opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(model), .metavar = "FILE", .help = "GGUF model",
     .required = "no model given (-m FILE)"},
    {"-v", "--verbose", GT_FLAG_BOOL, O(verbose), .help = "say more"},
    {NULL, "--no-tensors", GT_FLAG_UNSET, O(tensors), .help = "no tensor table"},
    {NULL, "--top-k", GT_FLAG_INT, O(top_k), .lo = 0, .hi = 16, .metavar = "K", .help = "top k (default 4)"},
    {"-n", NULL, GT_FLAG_LONG, O(n), .lo = -5, .hi = 1 << 20, .metavar = "N", .help = "count"},
    {NULL, "--ctx", GT_FLAG_U32, O(ctx), .lo = 1, .hi = 1 << 24, .metavar = "C", .help = "context"},
    {NULL, "--seed", GT_FLAG_U64, O(seed), .lo = 0, .hi = 0x7fffffffffffffffL, .metavar = "S", .help = "seed"},
    {NULL, "--temp", GT_FLAG_FLOAT, O(temp), .flo = 0, .fhi = 2, .metavar = "T", .help = "temperature"},
    {NULL, "--timeout", GT_FLAG_DOUBLE, O(timeout), .flo = 0.1, .fhi = 1e6, .metavar = "S",
     .help = "first line\nsecond line"},
    {NULL, "--mem-budget", GT_FLAG_BYTES, O(budget), .lo = 1, .metavar = "B", .help = "bytes"},
    {NULL, "--kv-type", GT_FLAG_CHOICE, O(kv), .choices = "f16|f32", .choice_values = k_kv, .metavar = "T",
     .help = "kv type"},
    {NULL, "--tokens", GT_FLAG_INT_LIST, O(ids), .off2 = O(n_ids), .metavar = "IDS", .help = "ids"},
    {NULL, "--odd", GT_FLAG_CALL, 0, .call = odd, .metavar = "X", .help = "a callback"},
};
#undef O

static const gt_flag_spec k_spec = {
    .verb = "test",
    .synopsis = "-m FILE [options] [FILE]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .positional = positional,
    .validate = validate,
};

/* Parses a NULL-terminated list of arguments after the verb. */
static int parse(opts *o, ...) {
    char *argv[64] = {"test"};
    int argc = 1;
    va_list ap;
    va_start(ap, o);
    for (char *a; (a = va_arg(ap, char *)) != NULL;) argv[argc++] = a;
    va_end(ap);
    *o = (opts){.top_k = 4, .tensors = true, .kv = 1};
    return gt_flags_parse(&k_spec, argc, argv, o);
}

static void refused(const char *sentence, int rc) {
    assert_int_equal(rc, 2);
    if (strcmp(gt_last_error(), sentence) != 0) fail_msg("got '%s', want '%s'", gt_last_error(), sentence);
}

static void test_store(void **state) {
    (void)state;
    opts o;
    assert_int_equal(parse(&o, "-m", "x.gguf", "-v", "--no-tensors", "--top-k", "16", "-n", "-5", "--ctx",
                           "4096", "--seed", "9223372036854775807", "--temp", "0.5", "--timeout", "2.5",
                           "--mem-budget", "2G", "--kv-type", "F32", "--tokens", "1,2", "--tokens", "3,4,5",
                           "--odd", "x", "--odd", "y", "file.gguf", NULL),
                     -1);
    assert_string_equal(o.model, "x.gguf");
    assert_true(o.verbose);
    assert_false(o.tensors);
    assert_int_equal(o.top_k, 16);
    assert_int_equal(o.n, -5);
    assert_int_equal(o.ctx, 4096);
    assert_true(o.seed == 0x7fffffffffffffffull);
    assert_true(o.temp == 0.5f);
    assert_true(o.timeout == 2.5);
    assert_true(o.budget == 2ull << 30);
    assert_int_equal(o.kv, 0);
    assert_int_equal(o.n_ids, 3); /* the last --tokens wins; the first array is freed */
    assert_int_equal(o.ids[0], 3);
    assert_int_equal(o.ids[2], 5);
    assert_int_equal(o.calls, 2);
    assert_string_equal(o.pos, "file.gguf");
    assert_true(o.validated);
    gt_flags_free(&k_spec, &o);
    assert_null(o.ids);
    assert_int_equal(o.n_ids, 0);

    /* Defaults stay when a flag is not given; "-" is a positional. */
    assert_int_equal(parse(&o, "--model", "y", "-", NULL), -1);
    assert_int_equal(o.top_k, 4);
    assert_true(o.tensors);
    assert_string_equal(o.pos, "-");
}

static void test_refuse(void **state) {
    (void)state;
    opts o;
    refused("--top-k 17 is outside 0..16", parse(&o, "-m", "x", "--top-k", "17", NULL));
    refused("--top-k -1 is outside 0..16", parse(&o, "-m", "x", "--top-k", "-1", NULL));
    refused("--top-k takes a whole number, not '3x'", parse(&o, "-m", "x", "--top-k", "3x", NULL));
    refused("--top-k takes a whole number, not ''", parse(&o, "-m", "x", "--top-k", "", NULL));
    refused("--seed takes a whole number, not '99999999999999999999'",
            parse(&o, "-m", "x", "--seed", "99999999999999999999", NULL));
    refused("--temp 3 is outside 0..2", parse(&o, "-m", "x", "--temp", "3", NULL));
    refused("--temp nan is outside 0..2", parse(&o, "-m", "x", "--temp", "nan", NULL));
    refused("--temp takes a number, not 'hot'", parse(&o, "-m", "x", "--temp", "hot", NULL));
    refused("--timeout 0.05 is outside 0.1..1e+06", parse(&o, "-m", "x", "--timeout", "0.05", NULL));
    refused("-n needs a value", parse(&o, "-m", "x", "-n", NULL));
    refused("-m needs a value", parse(&o, "-m", NULL));
    refused("unknown argument '--bogus'", parse(&o, "-m", "x", "--bogus", NULL));
    refused("unknown argument '-q'", parse(&o, "-m", "x", "-q", NULL));
    refused("no model given (-m FILE)", parse(&o, "-v", NULL));
    assert_false(o.validated); /* required flags come before validate */
    refused("-n 13 is unlucky", parse(&o, "-m", "x", "-n", "13", NULL));
    refused("takes one file, got 'a' and 'b'", parse(&o, "-m", "x", "a", "b", NULL));
    refused("--kv-type takes f16 or f32, not 'q8'", parse(&o, "-m", "x", "--kv-type", "q8", NULL));
    refused("--mem-budget 0 leaves no memory", parse(&o, "-m", "x", "--mem-budget", "0", NULL));
    refused("'12Q' has an unknown unit 'Q' (K, M, G or T)", parse(&o, "-m", "x", "--mem-budget", "12Q", NULL));
    refused("--tokens takes comma-separated token ids, not '1,,2'", parse(&o, "-m", "x", "--tokens", "1,,2", NULL));
    refused("--tokens takes comma-separated token ids, not '-1'", parse(&o, "-m", "x", "--tokens", "-1", NULL));
    refused("--tokens needs at least one token id", parse(&o, "-m", "x", "--tokens", "", NULL));
    refused("--odd refuses 'bad'", parse(&o, "-m", "x", "--odd", "bad", NULL));
    /* A flag's value may look like a flag. */
    assert_int_equal(parse(&o, "-m", "--help", NULL), -1);
    assert_string_equal(o.model, "--help");
}

static void test_help(void **state) {
    (void)state;
    opts o;
    /* --help wins over what is missing or wrong after it. */
    assert_int_equal(parse(&o, "--help", "--bogus", NULL), 0);
    assert_int_equal(parse(&o, "-v", "-h", NULL), 0);
    /* ... but not over an error before it. */
    refused("unknown argument '--bogus'", parse(&o, "--bogus", "--help", NULL));

    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    gt_flags_usage(&k_spec, f);
    fclose(f);
    assert_non_null(strstr(buf, "usage: gantry test -m FILE [options] [FILE]\n"));
    assert_non_null(strstr(buf, "\n  -m, --model FILE     GGUF model\n"));
    assert_non_null(strstr(buf, "\n  -v, --verbose        say more\n"));
    assert_non_null(strstr(buf, "\n  --top-k K            top k (default 4)\n"));
    assert_non_null(strstr(buf, "\n  -n N                 count\n"));
    assert_non_null(strstr(buf, "\n  --timeout S          first line\n                       second line\n"));
    for (size_t k = 0; k < GT_FLAGS_COUNT(k_flags); k++)
        if (!strstr(buf, k_flags[k].help)) {
            /* multi-line help: its first line */
            char first[64];
            snprintf(first, sizeof first, "%.*s", (int)strcspn(k_flags[k].help, "\n"), k_flags[k].help);
            assert_non_null(strstr(buf, first));
        }
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_refuse),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
