/* Byte counts in common/bytes.h: parsing what people write ("2G", "1.5GiB",
 * "512m", "123") and refusing what they should not ("", "-1", "12Q", a count
 * beyond 2^63), each refusal a sentence naming the text; and formatting
 * back into "B", "KiB", ... with two decimals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/bytes.h"

static void parses(const char *text, uint64_t want) {
    uint64_t b = 12345;
    gt_status st = gt_parse_bytes(text, &b);
    if (st != GT_OK) fail_msg("'%s': %s", text, gt_last_error());
    if (b != want) fail_msg("'%s': got %llu, want %llu", text, (unsigned long long)b, (unsigned long long)want);
}

static void refuses(const char *text, const char *words) {
    uint64_t b = 12345;
    assert_int_equal(gt_parse_bytes(text, &b), GT_ERR_INVALID_ARG);
    assert_int_equal(b, 0);
    if (!strstr(gt_last_error(), words)) fail_msg("'%s': sentence '%s' lacks '%s'", text, gt_last_error(), words);
}

static void test_parse(void **state) {
    (void)state;
    parses("0", 0);
    parses("123", 123);
    parses("123B", 123);
    parses("1K", 1024);
    parses("1kb", 1024);
    parses("1KiB", 1024);
    parses("512m", 512ull << 20);
    parses("512MB", 512ull << 20);
    parses("2G", 2ull << 30);
    parses("1.5GiB", 3ull << 29);
    parses("1T", 1ull << 40);
    parses("4TiB", 4ull << 40);
    parses("0.5K", 512);
    parses("8388607T", 8388607ull << 40); /* just under 2^63 */
}

static void test_refuse(void **state) {
    (void)state;
    refuses("", "empty");
    refuses("12Q", "12Q");
    refuses("12Q", "unknown unit 'Q'");
    refuses("12X", "12X");
    refuses("-1", "'-1' is not a byte count");
    refuses("-1G", "'-1G' is not a byte count");
    refuses("G", "'G' is not a byte count");
    refuses("abc", "'abc' is not a byte count");
    refuses("1.5.2G", "1.5.2G");
    refuses("99999999999T", "'99999999999T' is beyond 2^63");
    refuses("8388608T", "beyond 2^63"); /* exactly 2^63 */
    refuses("inf", "not a byte count");
    refuses("nan", "not a byte count");
    uint64_t b = 1;
    assert_int_equal(gt_parse_bytes(NULL, &b), GT_ERR_INVALID_ARG);
    assert_int_equal(b, 0);
}

static void test_format(void **state) {
    (void)state;
    char buf[24];
    assert_string_equal(gt_format_bytes(0, buf, sizeof buf), "0 B");
    assert_string_equal(gt_format_bytes(1023, buf, sizeof buf), "1023 B");
    assert_string_equal(gt_format_bytes(1024, buf, sizeof buf), "1.00 KiB");
    assert_string_equal(gt_format_bytes(1536, buf, sizeof buf), "1.50 KiB");
    assert_string_equal(gt_format_bytes(512ull << 20, buf, sizeof buf), "512.00 MiB");
    assert_string_equal(gt_format_bytes(3ull << 29, buf, sizeof buf), "1.50 GiB");
    assert_string_equal(gt_format_bytes(5ull << 40, buf, sizeof buf), "5.00 TiB");
    assert_string_equal(gt_format_bytes(3ull << 50, buf, sizeof buf), "3.00 PiB");
    assert_string_equal(gt_format_bytes(UINT64_MAX, buf, sizeof buf), "16384.00 PiB");
    /* A short buffer is cut, never overrun. */
    char small[5];
    assert_string_equal(gt_format_bytes(3ull << 29, small, sizeof small), "1.50");
    /* What is printed parses back to the same count. */
    uint64_t b;
    assert_int_equal(gt_parse_bytes("1.50 GiB", &b), GT_ERR_INVALID_ARG); /* the space is not a unit */
    assert_int_equal(gt_parse_bytes("1.50GiB", &b), GT_OK);
    assert_int_equal(b, 3ull << 29);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_refuse),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
