/* Whole files (common/file.h) and JSON string literals (common/json.h):
 * gt_read_file returns every byte, NUL-terminated, and refuses a missing
 * file or one over its limit with a sentence naming the path;
 * gt_json_write_str escapes quotes, backslashes and control characters so
 * that any path round-trips through a JSON parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/file.h"
#include "common/json.h"
#include "util/test_util.h"

static void write_bytes(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_read_file(void **state) {
    (void)state;
    const char *path = gt_test_tmp_path(0, "read_file.bin");
    /* Larger than the first buffer, with NULs inside. */
    size_t n = 200000;
    char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++) data[i] = (char)(i * 7 % 251);
    write_bytes(path, data, n);
    char *got = NULL;
    size_t len = 0;
    assert_int_equal(gt_read_file(path, 0, &got, &len), GT_OK);
    assert_int_equal(len, n);
    assert_memory_equal(got, data, n);
    assert_int_equal(got[n], '\0');
    free(got);
    /* Exactly at the limit is fine; one byte over is refused. */
    assert_int_equal(gt_read_file(path, n, &got, &len), GT_OK);
    assert_int_equal(len, n);
    free(got);
    assert_int_equal(gt_read_file(path, n - 1, &got, &len), GT_ERR_RANGE);
    assert_null(got);
    assert_non_null(strstr(gt_last_error(), "larger than 199999 bytes"));
    assert_int_equal(gt_read_file(path, 100, &got, &len), GT_ERR_RANGE);
    free(data);

    /* An empty file is an empty string. */
    write_bytes(path, "", 0);
    assert_int_equal(gt_read_file(path, 0, &got, &len), GT_OK);
    assert_int_equal(len, 0);
    assert_string_equal(got, "");
    free(got);

    const char *missing = gt_test_tmp_path(1, "no_such_file.txt");
    remove(missing);
    assert_int_equal(gt_read_file(missing, 0, &got, &len), GT_ERR_IO);
    assert_null(got);
    char want[4200];
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", missing);
    assert_string_equal(gt_last_error(), want);
}

/* gt_json_write_str into a string. */
static char *json(const char *s) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    gt_json_write_str(f, s);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void check_json(const char *s, const char *want) {
    char *got = json(s);
    if (strcmp(got, want) != 0) fail_msg("got %s, want %s", got, want);
    free(got);
}

static void test_json(void **state) {
    (void)state;
    check_json("model.gguf", "\"model.gguf\"");
    check_json("a\"b\\c", "\"a\\\"b\\\\c\"");
    check_json("/tmp/we\"ird\\dir/m.gguf", "\"/tmp/we\\\"ird\\\\dir/m.gguf\"");
    check_json("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
    check_json("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
    check_json("caf\xc3\xa9 \xe2\x82\xac", "\"caf\xc3\xa9 \xe2\x82\xac\""); /* UTF-8 as is */
    check_json("", "\"\"");
    check_json("/", "\"/\"");
    check_json(NULL, "null");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
