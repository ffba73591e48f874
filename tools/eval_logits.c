/* The base logits file of `gantry eval`; see eval_logits.h. The header is
 * encoded byte by byte (little-endian whatever the host); rows and tokens
 * are written as the host holds them, like `run --logits-out`, which is
 * little-endian on every machine Gantry builds for. */
#include "tools/eval_logits.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char k_magic[8] = {'G', 'T', 'E', 'V', 'L', 'O', 'G', 'T'};

uint64_t gt_evlog_fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

uint64_t gt_evlog_file_bytes(const gt_evlog_header *h) {
    uint64_t tok = (uint64_t)h->chunk_tokens * 4;
    if (h->n_chunks && tok > UINT64_MAX / h->n_chunks) return 0;
    tok *= h->n_chunks;
    uint64_t row = (uint64_t)h->n_vocab * 4;
    if (h->n_positions && row > UINT64_MAX / h->n_positions) return 0;
    uint64_t rows = row * h->n_positions;
    if (rows > UINT64_MAX - tok - GT_EVLOG_HEADER_BYTES) return 0;
    return GT_EVLOG_HEADER_BYTES + tok + rows;
}

void gt_evlog_encode_header(const gt_evlog_header *h, uint8_t out[GT_EVLOG_HEADER_BYTES]) {
    memset(out, 0, GT_EVLOG_HEADER_BYTES);
    memcpy(out, k_magic, 8);
    put32(out + 8, GT_EVLOG_VERSION);
    put32(out + 12, h->n_vocab);
    put32(out + 16, h->ctx);
    put32(out + 20, h->chunk_tokens);
    put32(out + 24, h->first_scored);
    put32(out + 28, h->n_scored);
    put64(out + 32, h->n_chunks);
    put64(out + 40, h->text_bytes);
    put64(out + 48, h->text_hash);
    put64(out + 56, h->n_positions);
    put64(out + 64, h->token_hash);
}

gt_status gt_evlog_decode_header(const uint8_t *buf, size_t n, uint64_t file_bytes,
                                 const char *path, gt_evlog_header *h) {
    if (n < GT_EVLOG_HEADER_BYTES || memcmp(buf, k_magic, 8) != 0)
        return gt_fail(GT_ERR_FORMAT, "%s: not a gantry eval logits file (no GTEVLOGT header)",
                       path);
    uint32_t version = get32(buf + 8);
    if (version != GT_EVLOG_VERSION)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: eval logits file version %u, this gantry reads version %d", path,
                       version, GT_EVLOG_VERSION);
    h->n_vocab = get32(buf + 12);
    h->ctx = get32(buf + 16);
    h->chunk_tokens = get32(buf + 20);
    h->first_scored = get32(buf + 24);
    h->n_scored = get32(buf + 28);
    h->n_chunks = get64(buf + 32);
    h->text_bytes = get64(buf + 40);
    h->text_hash = get64(buf + 48);
    h->n_positions = get64(buf + 56);
    h->token_hash = get64(buf + 64);
    if (h->n_vocab < 1 || h->n_vocab > GT_EVLOG_MAX_VOCAB)
        return gt_fail(GT_ERR_FORMAT, "%s: vocabulary of %u tokens is outside 1..%u", path,
                       h->n_vocab, GT_EVLOG_MAX_VOCAB);
    if (h->ctx < 2 || h->ctx > GT_EVLOG_MAX_CTX || h->chunk_tokens < 2 || h->chunk_tokens > h->ctx)
        return gt_fail(GT_ERR_FORMAT, "%s: chunks of %u tokens with a context of %u are impossible",
                       path, h->chunk_tokens, h->ctx);
    if (h->first_scored >= h->chunk_tokens || h->n_scored != h->chunk_tokens - 1 - h->first_scored)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: %u scored rows from row %u do not fit chunks of %u tokens", path,
                       h->n_scored, h->first_scored, h->chunk_tokens);
    if (h->n_chunks < 1 || h->n_chunks > (1ull << 32) ||
        h->n_positions != h->n_chunks * h->n_scored)
        return gt_fail(GT_ERR_FORMAT, "%s: %llu positions is not %llu chunks of %u scored rows",
                       path, (unsigned long long)h->n_positions, (unsigned long long)h->n_chunks,
                       h->n_scored);
    uint64_t want = gt_evlog_file_bytes(h);
    if (want == 0 || want != file_bytes)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: %llu bytes, but its header describes %llu bytes (%llu rows of %u "
                       "logits); the file is truncated or damaged",
                       path, (unsigned long long)file_bytes, (unsigned long long)want,
                       (unsigned long long)h->n_positions, h->n_vocab);
    return GT_OK;
}

gt_status gt_evlog_writer_open(gt_evlog_writer *w, const char *path, const gt_evlog_header *h,
                               const int32_t *tokens, uint64_t max_bytes) {
    memset(w, 0, sizeof *w);
    w->path = path;
    uint64_t bytes = gt_evlog_file_bytes(h);
    if (bytes == 0 || (max_bytes && bytes > max_bytes))
        return gt_fail(GT_ERR_RANGE,
                       "%s: %llu rows of %u logits make %llu bytes, more than --max-bytes %llu; "
                       "use fewer --chunks, a smaller --ctx, or --force",
                       path, (unsigned long long)h->n_positions, h->n_vocab,
                       (unsigned long long)bytes, (unsigned long long)max_bytes);
    w->f = fopen(path, "wb");
    if (!w->f) return gt_fail(GT_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    uint8_t hdr[GT_EVLOG_HEADER_BYTES];
    gt_evlog_encode_header(h, hdr);
    size_t nt = (size_t)h->n_chunks * h->chunk_tokens;
    if (fwrite(hdr, 1, sizeof hdr, w->f) != sizeof hdr || fwrite(tokens, 4, nt, w->f) != nt)
        return gt_fail(GT_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    w->rows_left = h->n_positions;
    w->n_vocab = h->n_vocab;
    return GT_OK;
}

gt_status gt_evlog_write_rows(gt_evlog_writer *w, const float *rows, uint64_t n_rows) {
    if (n_rows > w->rows_left)
        return gt_fail(GT_ERR_INTERNAL, "%s: %llu more rows than the header's count", w->path,
                       (unsigned long long)(n_rows - w->rows_left));
    size_t n = (size_t)n_rows * w->n_vocab;
    if (fwrite(rows, sizeof *rows, n, w->f) != n)
        return gt_fail(GT_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
    w->rows_left -= n_rows;
    return GT_OK;
}

gt_status gt_evlog_writer_close(gt_evlog_writer *w) {
    if (!w->f) return GT_OK;
    gt_status st = GT_OK;
    if (w->rows_left)
        st = gt_fail(GT_ERR_INTERNAL, "%s: %llu rows were never written", w->path,
                     (unsigned long long)w->rows_left);
    if (fclose(w->f) != 0 && st == GT_OK)
        st = gt_fail(GT_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
    w->f = NULL;
    return st;
}

gt_status gt_evlog_reader_open(gt_evlog_reader *r, const char *path, int32_t **tokens) {
    memset(r, 0, sizeof *r);
    *tokens = NULL;
    r->path = path;
    r->f = fopen(path, "rb");
    if (!r->f) return gt_fail(GT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t hdr[GT_EVLOG_HEADER_BYTES];
    size_t got = fread(hdr, 1, sizeof hdr, r->f);
    if (fseeko(r->f, 0, SEEK_END) != 0)
        return gt_fail(GT_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    off_t size = ftello(r->f);
    if (size < 0) return gt_fail(GT_ERR_IO, "%s: cannot tell its size: %s", path, strerror(errno));
    GT_TRY(gt_evlog_decode_header(hdr, got, (uint64_t)size, path, &r->h));
    if (fseeko(r->f, GT_EVLOG_HEADER_BYTES, SEEK_SET) != 0)
        return gt_fail(GT_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    size_t nt = (size_t)r->h.n_chunks * r->h.chunk_tokens;
    int32_t *t = malloc(nt * sizeof *t);
    if (!t) return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %zu token ids", path, nt);
    if (fread(t, sizeof *t, nt, r->f) != nt) {
        free(t);
        return gt_fail(GT_ERR_IO, "%s: read of %zu token ids failed", path, nt);
    }
    uint64_t th = gt_evlog_fnv1a(GT_FNV_OFFSET, t, nt * sizeof *t);
    if (th != r->h.token_hash) {
        free(t);
        return gt_fail(GT_ERR_FORMAT,
                       "%s: the token ids do not match the header's hash (%016llx, computed "
                       "%016llx); the file is damaged",
                       path, (unsigned long long)r->h.token_hash, (unsigned long long)th);
    }
    *tokens = t;
    r->rows_left = r->h.n_positions;
    return GT_OK;
}

gt_status gt_evlog_read_rows(gt_evlog_reader *r, float *rows, uint64_t n_rows) {
    if (n_rows > r->rows_left)
        return gt_fail(GT_ERR_INTERNAL, "%s: asked for %llu rows past the last one", r->path,
                       (unsigned long long)(n_rows - r->rows_left));
    size_t n = (size_t)n_rows * r->h.n_vocab;
    if (fread(rows, sizeof *rows, n, r->f) != n)
        return gt_fail(GT_ERR_IO, "%s: read of %llu rows failed", r->path,
                       (unsigned long long)n_rows);
    r->rows_left -= n_rows;
    return GT_OK;
}

void gt_evlog_reader_close(gt_evlog_reader *r) {
    if (r->f) fclose(r->f);
    r->f = NULL;
}
