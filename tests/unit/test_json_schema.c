/* JSON schema -> grammar: documents each schema must accept and reject
 * (written by hand against the JSON schema rules of the supported subset),
 * and the sentences for schemas outside it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coordinator/grammar.h"
#include "coordinator/json_schema.h"

static bool matches(const gt_grammar *g, const char *s) {
    gt_gmatch *m = NULL;
    assert_int_equal(gt_gmatch_create(g, &m), GT_OK);
    bool ok = gt_gmatch_accept(m, (const uint8_t *)s, strlen(s)) == GT_OK && gt_gmatch_can_end(m);
    gt_gmatch_free(m);
    return ok;
}

typedef struct scase {
    const char *schema;
    const char *yes[6];
    const char *no[6];
} scase;

static const scase k_cases[] = {
    {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
     "\"integer\"}},"
     "\"required\":[\"name\"]}",
     {"{\"name\":\"Bo\"}", "{ \"name\" : \"a\\\"b\" , \"age\": -12 }", "{\"name\":\"\",\"age\":0}"},
     {"{}", "{\"age\":1}", "{\"name\":\"x\",\"zip\":1}", "{\"name\":1}",
      "{\"name\":\"x\",\"age\":1.5}", "{\"name\":\"x\",\"age\":01}"}},
    {"{\"enum\":[\"red\",\"green\",3,null]}",
     {"\"red\"", "\"green\"", "3", "null"},
     {"\"blue\"", "red", "4"}},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}",
     {"[]", "[1]", "[1, 2 ,-3]"},
     {"[1,]", "[1.0]", "[\"a\"]"}},
    {"{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"minItems\":2,\"maxItems\":3}",
     {"[true,false]", "[true,true,true]"},
     {"[]", "[true]", "[true,true,true,true]"}},
    {"{\"type\":\"object\",\"properties\":{\"p\":{\"type\":\"object\",\"properties\":{\"x\":{"
     "\"type\":\"number\"},"
     "\"y\":{\"const\":\"k\"}},\"required\":[\"x\",\"y\"]},\"q\":{\"type\":[\"null\",\"boolean\"]}}"
     "}",
     {"{}", "{\"p\":{\"x\":1e5,\"y\":\"k\"}}", "{\"q\":null}",
      "{\"p\":{\"x\":-0.5,\"y\":\"k\"},\"q\":true}"},
     {"{\"p\":{\"x\":1}}", "{\"q\":1}", "{\"q\":null,\"p\":{\"x\":1,\"y\":\"k\"}}",
      "{,\"q\":null}"}},
    {"{\"type\":\"object\"}", {"{}", "{\"a\":[1,{\"b\":null}]}"}, {"[]", "{\"a\"}"}},
    {"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"number\"}]}", {"\"s\"", "2.5"}, {"true"}},
};

static void test_schemas(void **state) {
    (void)state;
    for (size_t c = 0; c < sizeof k_cases / sizeof *k_cases; c++) {
        char *gbnf = NULL;
        if (gt_json_schema_to_gbnf(k_cases[c].schema, strlen(k_cases[c].schema), &gbnf) != GT_OK)
            fail_msg("schema %zu refused: %s", c, gt_last_error());
        gt_grammar *g = NULL;
        if (gt_grammar_compile(gbnf, strlen(gbnf), &g) != GT_OK)
            fail_msg("schema %zu: grammar refused: %s\n%s", c, gt_last_error(), gbnf);
        for (int i = 0; i < 6 && k_cases[c].yes[i]; i++)
            if (!matches(g, k_cases[c].yes[i]))
                fail_msg("schema %zu should accept %s\n%s", c, k_cases[c].yes[i], gbnf);
        for (int i = 0; i < 6 && k_cases[c].no[i]; i++)
            if (matches(g, k_cases[c].no[i]))
                fail_msg("schema %zu should reject %s\n%s", c, k_cases[c].no[i], gbnf);
        gt_grammar_free(g);
        free(gbnf);
    }
    gt_grammar *g = NULL;
    const char *obj = gt_json_object_gbnf();
    assert_int_equal(gt_grammar_compile(obj, strlen(obj), &g), GT_OK);
    assert_true(matches(g, "{\"k\": [1, \"x\"]}"));
    assert_false(matches(g, "[1]"));
    gt_grammar_free(g);
}

static void expect_refused(const char *schema, gt_status want, const char *needle) {
    char *gbnf = NULL;
    gt_status st = gt_json_schema_to_gbnf(schema, strlen(schema), &gbnf);
    if (st != want) fail_msg("%s: status %d, want %d (%s)", schema, st, want, gt_last_error());
    assert_null(gbnf);
    if (!strstr(gt_last_error(), needle))
        fail_msg("%s: \"%s\" lacks \"%s\"", schema, gt_last_error(), needle);
}

static void test_refused(void **state) {
    (void)state;
    expect_refused("{\"type\":", GT_ERR_FORMAT, "JSON schema line 1");
    expect_refused("{\"$ref\":\"#/x\"}", GT_ERR_UNSUPPORTED, "\"$ref\" is not supported");
    expect_refused("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"date\"}}}",
                   GT_ERR_UNSUPPORTED, "$.a: type \"date\"");
    expect_refused("{\"type\":\"object\",\"properties\":{},\"required\":[\"z\"]}",
                   GT_ERR_INVALID_ARG, "required property \"z\"");
    expect_refused("{\"enum\":[]}", GT_ERR_INVALID_ARG, "\"enum\" is not a non-empty list");
    expect_refused("3", GT_ERR_INVALID_ARG, "must be an object");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schemas),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
