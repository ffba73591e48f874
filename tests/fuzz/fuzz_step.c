/* libFuzzer target for the step plan's decoder (worker/step.c).
 *
 * The input is a header followed by a payload, as a rank receives them.
 * A refused frame must come with a sentence; an accepted one must have
 * every array inside the payload and within the limits, and must encode
 * back to the same bytes. The buffers are the exact size of the data, so
 * ASan reports any read past them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "worker/step.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < GT_STEP_HEADER_BYTES) return 0;
    gt_step_limits lim = {64, 8, 16, 128};
    gt_step s;
    size_t bytes = 0;
    gt_clear_error();
    if (gt_step_decode_header(data, &lim, &s, &bytes) != GT_OK) {
        if (!*gt_last_error()) abort();
        return 0;
    }
    if (bytes > size - GT_STEP_HEADER_BYTES) return 0; /* a receiver waits for the rest */
    uint8_t *payload = malloc(bytes ? bytes : 1);
    if (!payload) return 0;
    memcpy(payload, data + GT_STEP_HEADER_BYTES, bytes);
    if (gt_step_decode_payload(payload, bytes, &s) != GT_OK) {
        if (!*gt_last_error()) abort();
        free(payload);
        return 0;
    }
    if (s.n_tokens > lim.max_tokens || s.n_free > lim.max_seqs || s.n_cand > lim.max_cand ||
        s.n_trunc > lim.max_seqs)
        abort();
    volatile uint32_t sink = 0;
    for (int i = 0; i < s.n_tokens; i++)
        sink += (uint32_t)s.tokens[i] + (uint32_t)s.pos[i] + (uint32_t)s.seq[i] + (uint32_t)s.want[i];
    for (int i = 0; i < s.n_free; i++) sink += (uint32_t)s.free_seqs[i];
    for (int i = 0; i < s.n_attach; i++) sink += (uint32_t)s.attach_seq[i] + (uint32_t)s.attach_len[i];
    for (int i = 0; i < s.n_attach_tokens; i++) sink += (uint32_t)s.attach_tokens[i];
    for (int i = 0; i < s.n_trunc; i++) sink += (uint32_t)s.trunc_seq[i] + (uint32_t)s.trunc_len[i];
    uint8_t hdr[GT_STEP_HEADER_BYTES];
    uint8_t *again = malloc(bytes ? bytes : 1);
    if (!again || gt_step_encode(&s, hdr, again, bytes) != GT_OK) abort();
    if (memcmp(hdr, data, GT_STEP_HEADER_BYTES) != 0 || memcmp(again, payload, bytes) != 0) abort();
    free(again);
    free(payload);
    return 0;
}
