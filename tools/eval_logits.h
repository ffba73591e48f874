/* The base logits file of `gantry eval` (--save-base / --base-logits): the
 * base model's full logits rows at every scored position of a text, so that
 * a model can be compared with its base without running the base again.
 *
 * Layout, little-endian, no padding:
 *   header (GT_EVLOG_HEADER_BYTES = 80):
 *     [0]  "GTEVLOGT"        magic, 8 bytes
 *     [8]  u32 version       1
 *     [12] u32 n_vocab       logits per row
 *     [16] u32 ctx           --ctx of the run
 *     [20] u32 chunk_tokens  tokens evaluated per chunk (BOS included)
 *     [24] u32 first_scored  the first scored row of a chunk (ctx / 2)
 *     [28] u32 n_scored      scored rows per chunk (chunk_tokens - 1 - first_scored)
 *     [32] u64 n_chunks
 *     [40] u64 text_bytes    length of the text file
 *     [48] u64 text_hash     FNV-1a 64 of the text file's bytes
 *     [56] u64 n_positions   n_chunks * n_scored
 *     [64] u64 token_hash    FNV-1a 64 of the token ids' bytes below
 *     [72] u64 reserved      0
 *   tokens: i32 [n_chunks, chunk_tokens], each chunk as evaluated
 *   rows:   f32 [n_positions, n_vocab], chunk by chunk, scored rows in order
 *
 * A reader checks every field against its limits and the file's size before
 * it allocates anything, so a truncated or foreign file is one sentence.
 * Design choice: float32 logits as computed, nothing derived, so that a
 * comparison from the file is bit-identical to one that ran the base. */
#ifndef GT_EVAL_LOGITS_H
#define GT_EVAL_LOGITS_H

#include <stdint.h>
#include <stdio.h>

#include "common/status.h"

#define GT_EVLOG_HEADER_BYTES 80
#define GT_EVLOG_VERSION      1
#define GT_EVLOG_MAX_VOCAB    (1u << 24)
#define GT_EVLOG_MAX_CTX      (1u << 20)

typedef struct gt_evlog_header {
    uint32_t n_vocab, ctx, chunk_tokens, first_scored, n_scored;
    uint64_t n_chunks, text_bytes, text_hash, n_positions, token_hash;
} gt_evlog_header;

/* FNV-1a 64 of n bytes, continuing from h (start with GT_FNV_OFFSET). */
#define GT_FNV_OFFSET 0xcbf29ce484222325ull
uint64_t gt_evlog_fnv1a(uint64_t h, const void *data, size_t n);

/* Bytes of the whole file the header describes; 0 when it overflows. */
uint64_t gt_evlog_file_bytes(const gt_evlog_header *h);

void gt_evlog_encode_header(const gt_evlog_header *h, uint8_t out[GT_EVLOG_HEADER_BYTES]);
/* Decodes and checks a header read from path (for the sentences) whose file
 * has file_bytes bytes: magic, version, every count within its limits and
 * consistent with the others, and the file exactly as long as the header
 * says. GT_ERR_FORMAT with a sentence otherwise. */
gt_status gt_evlog_decode_header(const uint8_t *buf, size_t n, uint64_t file_bytes,
                                 const char *path, gt_evlog_header *h);

/* Writing: the header and the tokens [n_chunks * chunk_tokens] at once,
 * then the rows as they come. Refuses (GT_ERR_RANGE) a file larger than
 * max_bytes (0: no limit) before anything is written. */
typedef struct gt_evlog_writer {
    FILE *f;
    const char *path; /* borrowed */
    uint64_t rows_left;
    uint32_t n_vocab;
} gt_evlog_writer;
gt_status gt_evlog_writer_open(gt_evlog_writer *w, const char *path, const gt_evlog_header *h,
                               const int32_t *tokens, uint64_t max_bytes);
gt_status gt_evlog_write_rows(gt_evlog_writer *w, const float *rows, uint64_t n_rows);
/* Closes; GT_ERR_INTERNAL when rows are missing, GT_ERR_IO when the data
 * did not reach the file. Accepts a writer that was never opened. */
gt_status gt_evlog_writer_close(gt_evlog_writer *w);

/* Reading: the checked header and the tokens (*tokens malloc'd, checked
 * against the header's token hash); then the rows in order. */
typedef struct gt_evlog_reader {
    FILE *f;
    const char *path; /* borrowed */
    gt_evlog_header h;
    uint64_t rows_left;
} gt_evlog_reader;
gt_status gt_evlog_reader_open(gt_evlog_reader *r, const char *path, int32_t **tokens);
gt_status gt_evlog_read_rows(gt_evlog_reader *r, float *rows, uint64_t n_rows);
void gt_evlog_reader_close(gt_evlog_reader *r); /* accepts a reader never opened */

#endif
