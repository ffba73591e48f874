/* The step plan's wire form; see step.h. Payload arrays are read in place,
 * which needs a little-endian host (every platform Gantry builds for). */
#include "worker/step.h"

#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the step plan is little-endian");

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static size_t nonneg(int32_t v) { return (size_t)(v > 0 ? v : 0); }

size_t gt_step_payload_bytes(int32_t n_tokens, int32_t n_free, int32_t n_attach, int32_t n_attach_tokens,
                             int32_t n_trunc) {
    size_t n = nonneg(n_tokens);
    return (3 * n + nonneg(n_free) + 2 * nonneg(n_attach) + nonneg(n_attach_tokens) + 2 * nonneg(n_trunc)) * 4 +
           ((n + 3) & ~(size_t)3);
}

size_t gt_step_max_payload_bytes(const gt_step_limits *lim) {
    return gt_step_payload_bytes(lim->max_tokens, lim->max_seqs, lim->max_seqs, lim->max_attach_tokens,
                                 lim->max_seqs);
}

static size_t put_words(uint8_t *dst, const int32_t *src, int32_t n) {
    if (n > 0) memcpy(dst, src, (size_t)n * 4);
    return nonneg(n) * 4;
}

gt_status gt_step_encode(const gt_step *s, uint8_t *header, uint8_t *payload, size_t cap) {
    size_t bytes = gt_step_payload_bytes(s->n_tokens, s->n_free, s->n_attach, s->n_attach_tokens, s->n_trunc);
    if (bytes > cap)
        return gt_fail(GT_ERR_RANGE, "a step of %d tokens, %d freed and %d attached sequences (%d prefix "
                       "tokens) needs %zu bytes, more than the %zu the ranks accept", s->n_tokens,
                       s->n_free, s->n_attach, s->n_attach_tokens, bytes, cap);
    uint32_t h[12] = {GT_STEP_MAGIC, GT_STEP_VERSION, (uint32_t)s->op, s->id,
                      (uint32_t)s->n_tokens, (uint32_t)s->n_free, (uint32_t)s->n_cand, s->flags,
                      (uint32_t)bytes, (uint32_t)s->n_trunc, (uint32_t)s->n_attach, (uint32_t)s->n_attach_tokens};
    for (int i = 0; i < 12; i++) put_u32(header + 4 * i, h[i]);
    size_t o = 0;
    o += put_words(payload + o, s->tokens, s->n_tokens);
    o += put_words(payload + o, s->pos, s->n_tokens);
    o += put_words(payload + o, s->seq, s->n_tokens);
    o += put_words(payload + o, s->free_seqs, s->n_free);
    o += put_words(payload + o, s->attach_seq, s->n_attach);
    o += put_words(payload + o, s->attach_len, s->n_attach);
    o += put_words(payload + o, s->attach_tokens, s->n_attach_tokens);
    o += put_words(payload + o, s->trunc_seq, s->n_trunc);
    o += put_words(payload + o, s->trunc_len, s->n_trunc);
    size_t n = nonneg(s->n_tokens);
    for (size_t i = 0; i < n; i++) payload[o + i] = s->want ? (uint8_t)(s->want[i] != 0) : 0;
    memset(payload + o + n, 0, bytes - o - n);
    return GT_OK;
}

gt_status gt_step_decode_header(const uint8_t *header, const gt_step_limits *lim, gt_step *s,
                                size_t *payload_bytes) {
    uint32_t h[12];
    for (int i = 0; i < 12; i++) h[i] = get_u32(header + 4 * i);
    if (h[0] != GT_STEP_MAGIC)
        return gt_fail(GT_ERR_FORMAT, "step plan: magic 0x%08x is not 0x%08x", h[0], GT_STEP_MAGIC);
    if (h[1] != GT_STEP_VERSION)
        return gt_fail(GT_ERR_FORMAT, "step plan: version %u, but this rank speaks version %u",
                       h[1], GT_STEP_VERSION);
    if (h[2] < GT_STEP_FORWARD || h[2] > GT_STEP_STOP)
        return gt_fail(GT_ERR_FORMAT, "step plan: unknown operation %u", h[2]);
    int32_t n = (int32_t)h[4], nf = (int32_t)h[5], nc = (int32_t)h[6];
    int32_t na = (int32_t)h[10], nat = (int32_t)h[11], nt = (int32_t)h[9];
    if (n < 0 || n > lim->max_tokens)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d tokens, outside 0..%d", n, lim->max_tokens);
    if (nf < 0 || nf > lim->max_seqs)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d sequences to free, outside 0..%d", nf,
                       lim->max_seqs);
    if (nc < 0 || nc > lim->max_cand)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d candidates per row, outside 0..%d", nc,
                       lim->max_cand);
    if (na < 0 || na > lim->max_seqs)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d sequences to attach, outside 0..%d", na,
                       lim->max_seqs);
    if (nat < 0 || nat > lim->max_attach_tokens)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d prefix tokens to attach, outside 0..%d", nat,
                       lim->max_attach_tokens);
    if (nt < 0 || nt > lim->max_seqs)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d sequences to truncate, outside 0..%d", nt,
                       lim->max_seqs);
    if (h[7] & ~(uint32_t)GT_STEP_FLAGS_ALL)
        return gt_fail(GT_ERR_FORMAT, "step plan: unknown flags 0x%x", h[7] & ~(uint32_t)GT_STEP_FLAGS_ALL);
    size_t want = gt_step_payload_bytes(n, nf, na, nat, nt);
    if (h[8] != want)
        return gt_fail(GT_ERR_FORMAT, "step plan: payload of %u bytes, but %d tokens, %d freed, %d "
                       "truncated and %d attached sequences with %d prefix tokens take %zu", h[8], n, nf,
                       nt, na, nat, want);
    memset(s, 0, sizeof *s);
    s->op = (gt_step_op)h[2];
    s->id = h[3];
    s->n_tokens = n;
    s->n_free = nf;
    s->n_cand = nc;
    s->flags = h[7];
    s->n_attach = na;
    s->n_attach_tokens = nat;
    s->n_trunc = nt;
    *payload_bytes = want;
    return GT_OK;
}

gt_status gt_step_decode_payload(const uint8_t *payload, size_t bytes, gt_step *s) {
    if (bytes != gt_step_payload_bytes(s->n_tokens, s->n_free, s->n_attach, s->n_attach_tokens, s->n_trunc))
        return gt_fail(GT_ERR_FORMAT, "step plan: payload of %zu bytes does not match its header",
                       bytes);
    size_t n = (size_t)s->n_tokens, o = 0;
    const int32_t *w = (const int32_t *)(const void *)payload;
    s->tokens = w;
    s->pos = w + n;
    s->seq = w + 2 * n;
    s->free_seqs = w + 3 * n;
    s->attach_seq = s->free_seqs + s->n_free;
    s->attach_len = s->attach_seq + s->n_attach;
    s->attach_tokens = s->attach_len + s->n_attach;
    s->trunc_seq = s->attach_tokens + s->n_attach_tokens;
    s->trunc_len = s->trunc_seq + s->n_trunc;
    o = (3 * n + (size_t)s->n_free + 2 * (size_t)s->n_attach + (size_t)s->n_attach_tokens + 2 * (size_t)s->n_trunc) * 4;
    s->want = (const int8_t *)(payload + o);
    int64_t sum = 0;
    for (int32_t i = 0; i < s->n_attach; i++) {
        if (s->attach_len[i] < 0)
            return gt_fail(GT_ERR_FORMAT, "step plan: attach %d has a negative length %d", i, s->attach_len[i]);
        sum += s->attach_len[i];
    }
    if (sum != s->n_attach_tokens)
        return gt_fail(GT_ERR_FORMAT, "step plan: attach lengths add up to %lld, but %d prefix tokens "
                       "follow", (long long)sum, s->n_attach_tokens);
    for (int32_t i = 0; i < s->n_trunc; i++)
        if (s->trunc_len[i] < 0)
            return gt_fail(GT_ERR_FORMAT, "step plan: truncation %d to a negative length %d", i, s->trunc_len[i]);
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s->want[i] > 1)
            return gt_fail(GT_ERR_FORMAT, "step plan: want flag %u of token %zu is not 0 or 1",
                           (uint8_t)s->want[i], i);
    for (size_t i = o + n; i < bytes; i++)
        if (payload[i])
            return gt_fail(GT_ERR_FORMAT, "step plan: padding byte %zu is %u, not 0", i, payload[i]);
    return GT_OK;
}
