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

size_t gt_step_payload_bytes(int32_t n_tokens, int32_t n_free) {
    size_t n = (size_t)(n_tokens > 0 ? n_tokens : 0), f = (size_t)(n_free > 0 ? n_free : 0);
    return (3 * n + f) * 4 + ((n + 3) & ~(size_t)3);
}

size_t gt_step_max_payload_bytes(const gt_step_limits *lim) {
    return gt_step_payload_bytes(lim->max_tokens, lim->max_seqs);
}

gt_status gt_step_encode(const gt_step *s, uint8_t *header, uint8_t *payload, size_t cap) {
    size_t bytes = gt_step_payload_bytes(s->n_tokens, s->n_free);
    if (bytes > cap)
        return gt_fail(GT_ERR_RANGE, "a step of %d tokens and %d freed sequences needs %zu bytes, "
                       "more than the %zu the ranks accept", s->n_tokens, s->n_free, bytes, cap);
    uint32_t h[10] = {GT_STEP_MAGIC, GT_STEP_VERSION, (uint32_t)s->op, s->id,
                      (uint32_t)s->n_tokens, (uint32_t)s->n_free, (uint32_t)s->n_cand, s->flags,
                      (uint32_t)bytes, 0};
    for (int i = 0; i < 10; i++) put_u32(header + 4 * i, h[i]);
    size_t n = (size_t)s->n_tokens, o = 0;
    if (n) {
        memcpy(payload + o, s->tokens, n * 4);
        memcpy(payload + (o += n * 4), s->pos, n * 4);
        memcpy(payload + (o += n * 4), s->seq, n * 4);
        o += n * 4;
    }
    if (s->n_free) memcpy(payload + o, s->free_seqs, (size_t)s->n_free * 4);
    o += (size_t)s->n_free * 4;
    for (size_t i = 0; i < n; i++) payload[o + i] = s->want ? (uint8_t)(s->want[i] != 0) : 0;
    memset(payload + o + n, 0, bytes - o - n);
    return GT_OK;
}

gt_status gt_step_decode_header(const uint8_t *header, const gt_step_limits *lim, gt_step *s,
                                size_t *payload_bytes) {
    uint32_t h[10];
    for (int i = 0; i < 10; i++) h[i] = get_u32(header + 4 * i);
    if (h[0] != GT_STEP_MAGIC)
        return gt_fail(GT_ERR_FORMAT, "step plan: magic 0x%08x is not 0x%08x", h[0], GT_STEP_MAGIC);
    if (h[1] != GT_STEP_VERSION)
        return gt_fail(GT_ERR_FORMAT, "step plan: version %u, but this rank speaks version %u",
                       h[1], GT_STEP_VERSION);
    if (h[2] < GT_STEP_FORWARD || h[2] > GT_STEP_STOP)
        return gt_fail(GT_ERR_FORMAT, "step plan: unknown operation %u", h[2]);
    int32_t n = (int32_t)h[4], nf = (int32_t)h[5], nc = (int32_t)h[6];
    if (n < 0 || n > lim->max_tokens)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d tokens, outside 0..%d", n, lim->max_tokens);
    if (nf < 0 || nf > lim->max_seqs)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d sequences to free, outside 0..%d", nf,
                       lim->max_seqs);
    if (nc < 0 || nc > lim->max_cand)
        return gt_fail(GT_ERR_FORMAT, "step plan: %d candidates per row, outside 0..%d", nc,
                       lim->max_cand);
    if (h[7] & ~(uint32_t)GT_STEP_FLAGS_ALL)
        return gt_fail(GT_ERR_FORMAT, "step plan: unknown flags 0x%x", h[7] & ~(uint32_t)GT_STEP_FLAGS_ALL);
    size_t want = gt_step_payload_bytes(n, nf);
    if (h[8] != want || h[9] != 0)
        return gt_fail(GT_ERR_FORMAT, "step plan: payload of %u bytes, but %d tokens and %d freed "
                       "sequences take %zu", h[8], n, nf, want);
    memset(s, 0, sizeof *s);
    s->op = (gt_step_op)h[2];
    s->id = h[3];
    s->n_tokens = n;
    s->n_free = nf;
    s->n_cand = nc;
    s->flags = h[7];
    *payload_bytes = want;
    return GT_OK;
}

gt_status gt_step_decode_payload(const uint8_t *payload, size_t bytes, gt_step *s) {
    if (bytes != gt_step_payload_bytes(s->n_tokens, s->n_free))
        return gt_fail(GT_ERR_FORMAT, "step plan: payload of %zu bytes does not match its header",
                       bytes);
    size_t n = (size_t)s->n_tokens, o = 0;
    s->tokens = (const int32_t *)(const void *)payload;
    s->pos = (const int32_t *)(const void *)(payload + (o += n * 4));
    s->seq = (const int32_t *)(const void *)(payload + (o += n * 4));
    s->free_seqs = (const int32_t *)(const void *)(payload + (o += n * 4));
    s->want = (const int8_t *)(payload + (o += (size_t)s->n_free * 4));
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)s->want[i] > 1)
            return gt_fail(GT_ERR_FORMAT, "step plan: want flag %u of token %zu is not 0 or 1",
                           (uint8_t)s->want[i], i);
    for (size_t i = o + n; i < bytes; i++)
        if (payload[i])
            return gt_fail(GT_ERR_FORMAT, "step plan: padding byte %zu is %u, not 0", i, payload[i]);
    return GT_OK;
}
