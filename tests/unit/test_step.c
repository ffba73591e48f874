/* The step plan's wire form: a round trip keeps every field, and each kind
 * of broken frame is refused with a sentence naming the field and numbers.
 * The expected bytes of the header are written out here from the layout in
 * worker/step.h, not produced by the encoder. Also writes the seed corpus
 * for the step fuzzer when GANTRY_WRITE_CORPUS names a folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/step.h"

static const gt_step_limits k_lim = {64, 8, 16, 40};

static void le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_round_trip(void **state) {
    (void)state;
    int32_t tok[3] = {5, 6, 7}, pos[3] = {0, 1, 9}, seq[3] = {0, 0, 2}, fr[2] = {3, 1};
    int32_t aseq[2] = {4, 5}, alen[2] = {2, 3}, atok[5] = {10, 11, 20, 21, 22};
    int32_t tseq[2] = {6, 7}, tlen[2] = {12, 0};
    int8_t want[3] = {0, 1, 1};
    gt_step s = {GT_STEP_FORWARD, 17, 3, 2, 4, GT_STEP_LOGITS | GT_STEP_RESET_STATS, tok, pos, seq, want, fr,
                 2, 5, aseq, alen, atok, 2, tseq, tlen};
    uint8_t hdr[GT_STEP_HEADER_BYTES], pl[256];
    assert_int_equal(gt_step_encode(&s, hdr, pl, sizeof pl), GT_OK);
    uint8_t expect[GT_STEP_HEADER_BYTES];
    /* 3 tokens x 3 words, 2 freed, 2 + 2 attach words, 5 prefix tokens, 2 + 2 truncation words,
     * 3 want bytes + 1 pad */
    uint32_t h[12] = {0x50535447u, 3, 1, 17, 3, 2, 4, 3, (9 + 2 + 4 + 5 + 4) * 4 + 4, 2, 2, 5};
    for (int i = 0; i < 12; i++) le32(expect + 4 * i, h[i]);
    assert_memory_equal(hdr, expect, sizeof expect);
    gt_step d;
    size_t bytes;
    assert_int_equal(gt_step_decode_header(hdr, &k_lim, &d, &bytes), GT_OK);
    assert_int_equal(bytes, 100);
    assert_int_equal(gt_step_decode_payload(pl, bytes, &d), GT_OK);
    assert_int_equal(d.op, GT_STEP_FORWARD);
    assert_int_equal(d.id, 17);
    assert_int_equal(d.n_cand, 4);
    assert_int_equal(d.flags, GT_STEP_LOGITS | GT_STEP_RESET_STATS);
    assert_memory_equal(d.tokens, tok, sizeof tok);
    assert_memory_equal(d.pos, pos, sizeof pos);
    assert_memory_equal(d.seq, seq, sizeof seq);
    assert_memory_equal(d.want, want, sizeof want);
    assert_memory_equal(d.free_seqs, fr, sizeof fr);
    assert_int_equal(d.n_attach, 2);
    assert_memory_equal(d.attach_seq, aseq, sizeof aseq);
    assert_memory_equal(d.attach_len, alen, sizeof alen);
    assert_memory_equal(d.attach_tokens, atok, sizeof atok);
    assert_int_equal(d.n_trunc, 2);
    assert_memory_equal(d.trunc_seq, tseq, sizeof tseq);
    assert_memory_equal(d.trunc_len, tlen, sizeof tlen);
    /* A negative truncation length is refused. */
    uint8_t neg[256];
    memcpy(neg, pl, bytes);
    le32(neg + (9 + 2 + 4 + 5 + 2) * 4, 0xffffffffu); /* trunc_len[0] = -1 */
    assert_int_equal(gt_step_decode_payload(neg, bytes, &d), GT_ERR_FORMAT);
    assert_non_null(strstr(gt_last_error(), "truncation 0 to a negative length -1"));
    assert_int_equal(gt_step_decode_payload(pl, bytes, &d), GT_OK);
    /* Attach lengths that do not add up to the prefix tokens are refused. */
    uint8_t bad[256];
    memcpy(bad, pl, bytes);
    le32(bad + (9 + 2 + 2) * 4, 4); /* attach_len[0] = 4 */
    assert_int_equal(gt_step_decode_payload(bad, bytes, &d), GT_ERR_FORMAT);
    assert_non_null(strstr(gt_last_error(), "add up to 7, but 5 prefix tokens follow"));
    if (getenv("GANTRY_WRITE_CORPUS")) { /* seeds for fuzz_step */
        char path[1024];
        snprintf(path, sizeof path, "%s/forward.bin", getenv("GANTRY_WRITE_CORPUS"));
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(hdr, 1, sizeof hdr, f);
            fwrite(pl, 1, bytes, f);
            fclose(f);
        }
    }
}

/* Encodes a small valid step, lets `edit` break word w of the header, and
 * expects a refusal whose sentence contains `words`. */
static void refused(int w, uint32_t value, const char *words) {
    int32_t tok[2] = {1, 2}, pos[2] = {0, 1}, seq[2] = {0, 0};
    int8_t want[2] = {0, 1};
    gt_step s = {GT_STEP_FORWARD, 0, 2, 0, 1, 0, tok, pos, seq, want, NULL, 0, 0, NULL, NULL, NULL, 0, NULL, NULL};
    uint8_t hdr[GT_STEP_HEADER_BYTES], pl[64];
    assert_int_equal(gt_step_encode(&s, hdr, pl, sizeof pl), GT_OK);
    le32(hdr + 4 * w, value);
    gt_step d;
    size_t bytes;
    assert_int_equal(gt_step_decode_header(hdr, &k_lim, &d, &bytes), GT_ERR_FORMAT);
    if (!strstr(gt_last_error(), words)) fail_msg("'%s' lacks '%s'", gt_last_error(), words);
}

static void test_broken_headers(void **state) {
    (void)state;
    refused(0, 0x12345678, "magic 0x12345678");
    refused(1, 2, "version 2, but this rank speaks version 3");
    refused(2, 9, "unknown operation 9");
    refused(4, 65, "65 tokens, outside 0..64");
    refused(4, 0xffffffffu, "-1 tokens");
    refused(5, 9, "9 sequences to free, outside 0..8");
    refused(6, 17, "17 candidates per row, outside 0..16");
    refused(7, 0x100, "unknown flags 0x100");
    refused(8, 99, "payload of 99 bytes");
    refused(10, 9, "9 sequences to attach, outside 0..8");
    refused(11, 41, "41 prefix tokens to attach, outside 0..40");
    refused(9, 9, "9 sequences to truncate, outside 0..8");
}

static void test_broken_payload(void **state) {
    (void)state;
    int32_t tok[1] = {1}, pos[1] = {0}, seq[1] = {0};
    int8_t want[1] = {1};
    gt_step s = {GT_STEP_FORWARD, 0, 1, 0, 0, 0, tok, pos, seq, want, NULL, 0, 0, NULL, NULL, NULL, 0, NULL, NULL};
    uint8_t hdr[GT_STEP_HEADER_BYTES], pl[64];
    assert_int_equal(gt_step_encode(&s, hdr, pl, sizeof pl), GT_OK);
    gt_step d;
    size_t bytes;
    assert_int_equal(gt_step_decode_header(hdr, &k_lim, &d, &bytes), GT_OK);
    pl[12] = 7; /* the want byte */
    assert_int_equal(gt_step_decode_payload(pl, bytes, &d), GT_ERR_FORMAT);
    assert_non_null(strstr(gt_last_error(), "want flag 7"));
    assert_int_equal(gt_step_decode_payload(pl, bytes - 4, &d), GT_ERR_FORMAT);
    /* A payload larger than the receiver's buffer is refused by the encoder. */
    assert_int_equal(gt_step_encode(&s, hdr, pl, 8), GT_ERR_RANGE);
    assert_non_null(strstr(gt_last_error(), "needs 16 bytes"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_broken_headers),
        cmocka_unit_test(test_broken_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
