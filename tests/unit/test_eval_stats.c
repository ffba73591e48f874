/* The numbers and the base logits file of `gantry eval` (tools/eval_stats.c,
 * tools/eval_logits.c), against values worked out by hand:
 * - two-token distributions whose KL, argmax and probability change have a
 *   closed form; identical rows give exactly 0 and agreement 1;
 * - nearest-rank percentiles (median of 1..4 is 2, p99 of 1..100 is 99, of
 *   1..10 is 10);
 * - the header round-trips; a wrong magic, version, size, an impossible
 *   count, and a file one byte short are refused with a sentence;
 * - a written file reads back bit for bit, and its token hash guards the
 *   tokens. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tools/eval_logits.h"
#include "tools/eval_stats.h"

static void test_kl_closed_form(void **state) {
    (void)state;
    gt_evstats s;
    assert_int_equal(gt_evstats_init(&s, 3), GT_OK);
    /* base: p = (e^1, e^0) / Z = (a, 1 - a); file: q = (1/2, 1/2). */
    float b[2] = {1.0f, 0.0f}, f[2] = {3.0f, 3.0f};
    assert_int_equal(gt_evstats_add(&s, b, f, 2, 1), GT_OK);
    double a = exp(1.0) / (exp(1.0) + 1.0);
    double kl = a * log(a / 0.5) + (1 - a) * log((1 - a) / 0.5);
    assert_true(fabs(s.kl[0] - kl) < 1e-15);
    assert_true(fabs(s.dlogit[0] - 3.0) < 1e-15);
    assert_int_equal(s.top1_same, 1); /* ties go to the lowest index: both argmax 0 */
    assert_true(fabs(s.dp_sum - (0.5 - (1 - a))) < 1e-15);
    /* Identical rows: exactly zero. */
    float x[4] = {0.3f, -2.0f, 7.5f, 1.25f};
    assert_int_equal(gt_evstats_add(&s, x, x, 4, 2), GT_OK);
    assert_true(s.kl[1] == 0.0 && s.dlogit[1] == 0.0);
    assert_int_equal(s.top1_same, 2);
    /* Disagreeing argmax. */
    float y[2] = {0.0f, 1.0f};
    assert_int_equal(gt_evstats_add(&s, b, y, 2, 0), GT_OK);
    assert_int_equal(s.top1_same, 2);
    assert_int_equal(gt_evstats_add(&s, b, y, 2, 0), GT_ERR_INTERNAL); /* full */
    gt_evsummary sum;
    gt_evstats_summary(&s, &sum);
    assert_int_equal(sum.n, 3);
    assert_true(fabs(sum.top1 - 2.0 / 3.0) < 1e-15);
    assert_true(sum.kl_max >= sum.kl_p99 && sum.kl_p99 >= sum.kl_median && sum.kl_median >= 0);
    gt_evstats_free(&s);
    assert_int_equal(gt_evstats_init(&s, 1), GT_OK);
    assert_int_equal(gt_evstats_add(&s, b, f, 2, 2), GT_ERR_RANGE);
    gt_evstats_free(&s);
}

static void test_percentiles(void **state) {
    (void)state;
    double v[100];
    for (int i = 0; i < 100; i++) v[i] = i + 1;
    assert_true(gt_evstats_percentile(v, 4, 0.5) == 2);
    assert_true(gt_evstats_percentile(v, 100, 0.99) == 99);
    assert_true(gt_evstats_percentile(v, 10, 0.99) == 10);
    assert_true(gt_evstats_percentile(v, 1, 0.5) == 1);
    assert_true(gt_evstats_percentile(v, 100, 0.5) == 50);
}

static gt_evlog_header sample_header(void) {
    gt_evlog_header h = {.n_vocab = 5,
                         .ctx = 8,
                         .chunk_tokens = 8,
                         .first_scored = 4,
                         .n_scored = 3,
                         .n_chunks = 2,
                         .text_bytes = 123,
                         .text_hash = 77};
    h.n_positions = h.n_chunks * h.n_scored;
    return h;
}

static void test_header(void **state) {
    (void)state;
    gt_evlog_header h = sample_header(), d;
    uint64_t bytes = gt_evlog_file_bytes(&h);
    assert_int_equal(bytes, 80 + 2 * 8 * 4 + 6 * 5 * 4);
    uint8_t buf[GT_EVLOG_HEADER_BYTES];
    gt_evlog_encode_header(&h, buf);
    assert_int_equal(gt_evlog_decode_header(buf, sizeof buf, bytes, "x", &d), GT_OK);
    assert_true(d.n_vocab == h.n_vocab && d.ctx == h.ctx && d.chunk_tokens == h.chunk_tokens &&
                d.first_scored == h.first_scored && d.n_scored == h.n_scored &&
                d.n_chunks == h.n_chunks && d.text_bytes == h.text_bytes &&
                d.text_hash == h.text_hash && d.n_positions == h.n_positions &&
                d.token_hash == h.token_hash);
    assert_int_equal(gt_evlog_decode_header(buf, sizeof buf, bytes - 1, "x", &d), GT_ERR_FORMAT);
    assert_non_null(strstr(gt_last_error(), "truncated"));
    assert_int_equal(gt_evlog_decode_header(buf, sizeof buf - 1, bytes, "x", &d), GT_ERR_FORMAT);
    uint8_t bad[GT_EVLOG_HEADER_BYTES];
    memcpy(bad, buf, sizeof bad);
    bad[0] = 'X';
    assert_int_equal(gt_evlog_decode_header(bad, sizeof bad, bytes, "x", &d), GT_ERR_FORMAT);
    memcpy(bad, buf, sizeof bad);
    bad[8] = 2; /* version */
    assert_int_equal(gt_evlog_decode_header(bad, sizeof bad, bytes, "x", &d), GT_ERR_FORMAT);
    assert_non_null(strstr(gt_last_error(), "version 2"));
    memcpy(bad, buf, sizeof bad);
    bad[28] = 4; /* n_scored that does not fit the chunk */
    assert_int_equal(gt_evlog_decode_header(bad, sizeof bad, bytes, "x", &d), GT_ERR_FORMAT);
    memcpy(bad, buf, sizeof bad);
    memset(bad + 56, 0xff, 8); /* n_positions */
    assert_int_equal(gt_evlog_decode_header(bad, sizeof bad, bytes, "x", &d), GT_ERR_FORMAT);
}

static void test_file_roundtrip(void **state) {
    (void)state;
    const char *dir = getenv("GANTRY_TEST_TMP");
    char path[512];
    snprintf(path, sizeof path, "%s/unit_eval.logits", dir && *dir ? dir : "/tmp");
    gt_evlog_header h = sample_header();
    int32_t tok[16];
    float rows[30];
    for (int i = 0; i < 16; i++) tok[i] = i * 7;
    for (int i = 0; i < 30; i++) rows[i] = (float)i * 0.25f - 3.0f;
    h.token_hash = gt_evlog_fnv1a(GT_FNV_OFFSET, tok, sizeof tok);
    gt_evlog_writer w;
    assert_int_equal(gt_evlog_writer_open(&w, path, &h, tok, 100), GT_ERR_RANGE); /* --max-bytes */
    assert_int_equal(gt_evlog_writer_open(&w, path, &h, tok, 0), GT_OK);
    assert_int_equal(gt_evlog_write_rows(&w, rows, 3), GT_OK);
    assert_int_equal(gt_evlog_write_rows(&w, rows + 15, 4), GT_ERR_INTERNAL);
    assert_int_equal(gt_evlog_write_rows(&w, rows + 15, 3), GT_OK);
    assert_int_equal(gt_evlog_writer_close(&w), GT_OK);
    gt_evlog_reader r;
    int32_t *back = NULL;
    float got[30];
    assert_int_equal(gt_evlog_reader_open(&r, path, &back), GT_OK);
    assert_memory_equal(back, tok, sizeof tok);
    assert_int_equal(gt_evlog_read_rows(&r, got, 6), GT_OK);
    assert_memory_equal(got, rows, sizeof rows);
    assert_int_equal(gt_evlog_read_rows(&r, got, 1), GT_ERR_INTERNAL);
    gt_evlog_reader_close(&r);
    free(back);
    /* A changed token id fails the hash. */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, GT_EVLOG_HEADER_BYTES + 4, SEEK_SET);
    fputc(99, f);
    fclose(f);
    assert_int_equal(gt_evlog_reader_open(&r, path, &back), GT_ERR_FORMAT);
    assert_non_null(strstr(gt_last_error(), "damaged"));
    gt_evlog_reader_close(&r);
    assert_null(back);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kl_closed_form),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_file_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
