/* libFuzzer target for the header of `gantry eval`'s base logits file
 * (tools/eval_logits.c).
 *
 * The input is a file's first bytes; the file's size is taken from the
 * input's last 8 bytes when there are more than a header's worth, else the
 * input's length. A refused header must come with a sentence; an accepted
 * one must describe exactly that many bytes, with every count within its
 * limits, and must encode back to the same 80 bytes (bar the reserved
 * field). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "tools/eval_logits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t file_bytes = size;
    if (size >= GT_EVLOG_HEADER_BYTES + 8) memcpy(&file_bytes, data + size - 8, 8);
    gt_evlog_header h;
    gt_clear_error();
    if (gt_evlog_decode_header(data, size, file_bytes, "fuzz", &h) != GT_OK) {
        if (!*gt_last_error()) abort();
        return 0;
    }
    if (gt_evlog_file_bytes(&h) != file_bytes) abort();
    if (h.n_vocab < 1 || h.n_vocab > GT_EVLOG_MAX_VOCAB || h.chunk_tokens > h.ctx ||
        h.first_scored >= h.chunk_tokens || h.n_positions != h.n_chunks * h.n_scored)
        abort();
    uint8_t again[GT_EVLOG_HEADER_BYTES];
    gt_evlog_encode_header(&h, again);
    if (memcmp(again, data, 72) != 0) abort();
    return 0;
}
