/* The RPC encoders: responses, error responses and token notifications,
 * packed with msgpack-c into a gt_rpc_buf the caller owns.
 *
 * Each encoder appends one whole message or, when memory runs out, nothing:
 * the buffer's length is put back. Text written as msgpack str is made
 * valid UTF-8 on the way (an invalid byte becomes U+FFFD), since strict
 * clients (Python's msgpack with raw=False) refuse a frame holding
 * anything else; token pieces, which may be part of a character, are bin. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/rpc_internal.h"

void gt_rpc_buf_init(gt_rpc_buf *b) { memset(b, 0, sizeof *b); }

void gt_rpc_buf_free(gt_rpc_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void gt_rpc_buf_consume(gt_rpc_buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

typedef struct enc {
    gt_rpc_buf *b;
    size_t start;
    bool oom;
    msgpack_packer pk;
} enc;

static int buf_write(void *data, const char *p, size_t n) {
    enc *e = data;
    gt_rpc_buf *b = e->b;
    if (e->oom) return -1;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                e->oom = true;
                return -1;
            }
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (!d) {
            e->oom = true;
            return -1;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static void begin(enc *e, gt_rpc_buf *b) {
    e->b = b;
    e->start = b->len;
    e->oom = false;
    msgpack_packer_init(&e->pk, e, buf_write);
}

static gt_status end(enc *e, const char *what) {
    if (!e->oom) return GT_OK;
    e->b->len = e->start;
    return gt_fail(GT_ERR_NOMEM, "out of memory encoding %s", what);
}

/* Length of the valid UTF-8 sequence at p[n], 0 when invalid. */
static size_t utf8_len(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* A str of p[n], invalid bytes replaced by U+FFFD. */
static void pack_text(enc *e, const char *p, size_t n) {
    const uint8_t *u = (const uint8_t *)p;
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(u + i, n - i);
        out += l ? l : 3;
        i += l ? l : 1;
    }
    msgpack_pack_str(&e->pk, out);
    if (out == n) {
        msgpack_pack_str_body(&e->pk, p, n);
        return;
    }
    size_t run = 0; /* start of the current valid run */
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(u + i, n - i);
        if (l) {
            i += l;
            continue;
        }
        msgpack_pack_str_body(&e->pk, p + run, i - run);
        msgpack_pack_str_body(&e->pk, "\xef\xbf\xbd", 3);
        run = ++i;
    }
    msgpack_pack_str_body(&e->pk, p + run, n - run);
}

static void pack_cstr(enc *e, const char *s) { pack_text(e, s, strlen(s)); }

static void pack_kv_uint(enc *e, const char *k, uint64_t v) {
    pack_cstr(e, k);
    msgpack_pack_uint64(&e->pk, v);
}

static void pack_kv_double(enc *e, const char *k, double v) {
    pack_cstr(e, k);
    msgpack_pack_double(&e->pk, v);
}

/* [1, msgid, nil, <result follows>]. */
static void response_head(enc *e, uint32_t msgid) {
    msgpack_pack_array(&e->pk, 4);
    msgpack_pack_uint8(&e->pk, 1);
    msgpack_pack_uint32(&e->pk, msgid);
    msgpack_pack_nil(&e->pk);
}

gt_status gt_rpc_encode_error(gt_rpc_buf *b, uint32_t msgid, gt_rpc_code code,
                              const char *message) {
    enc e;
    begin(&e, b);
    msgpack_pack_array(&e.pk, 4);
    msgpack_pack_uint8(&e.pk, 1);
    msgpack_pack_uint32(&e.pk, msgid);
    msgpack_pack_map(&e.pk, 2);
    pack_cstr(&e, "code");
    pack_cstr(&e, gt_rpc_code_name(code));
    pack_cstr(&e, "message");
    pack_cstr(&e, message ? message : "");
    msgpack_pack_nil(&e.pk);
    return end(&e, "an error response");
}

static void pack_token_ids(enc *e, const int32_t *ids, uint32_t n) {
    msgpack_pack_array(&e->pk, n);
    for (uint32_t i = 0; i < n; i++) msgpack_pack_int32(&e->pk, ids[i]);
}

static void pack_logprobs(enc *e, const gt_rpc_token_logprobs *l) {
    msgpack_pack_map(&e->pk, 3);
    pack_cstr(e, "token");
    msgpack_pack_int32(&e->pk, l->token);
    pack_cstr(e, "logprob");
    msgpack_pack_float(&e->pk, l->logprob);
    pack_cstr(e, "top");
    msgpack_pack_array(&e->pk, l->n_top);
    for (uint32_t i = 0; i < l->n_top; i++) {
        msgpack_pack_array(&e->pk, 2);
        msgpack_pack_int32(&e->pk, l->top[i].token);
        msgpack_pack_float(&e->pk, l->top[i].logprob);
    }
}

/* An answer's "text", "tokens" and "finish_reason" (the result's own, or an
 * alternative's). */
static void pack_answer(enc *e, const char *text, size_t len, const int32_t *tokens, uint32_t n,
                        gt_rpc_finish finish) {
    pack_cstr(e, "text");
    pack_text(e, text ? text : "", text ? len : 0);
    pack_cstr(e, "tokens");
    pack_token_ids(e, tokens, n);
    pack_cstr(e, "finish_reason");
    pack_cstr(e, gt_rpc_finish_name(finish));
}

gt_status gt_rpc_encode_generate(gt_rpc_buf *b, uint32_t msgid, const gt_rpc_generate_result *r) {
    enc e;
    begin(&e, b);
    response_head(&e, msgid);
    msgpack_pack_map(&e.pk,
                     5 + (r->logprobs != NULL) + r->has_spec + (r->beams > 0) + (r->alts != NULL));
    pack_answer(&e, r->text, r->text_len, r->tokens, r->n_tokens, r->finish);
    pack_cstr(&e, "usage");
    msgpack_pack_map(&e.pk, 3);
    pack_kv_uint(&e, "prompt_tokens", r->prompt_tokens);
    pack_kv_uint(&e, "completion_tokens", r->completion_tokens);
    pack_kv_uint(&e, "cached_tokens", r->cached_tokens);
    if (r->logprobs) {
        pack_cstr(&e, "logprobs");
        msgpack_pack_array(&e.pk, r->n_tokens);
        for (uint32_t i = 0; i < r->n_tokens; i++) pack_logprobs(&e, &r->logprobs[i]);
    }
    pack_cstr(&e, "timing");
    msgpack_pack_map(&e.pk, 3);
    pack_kv_double(&e, "queue_ms", r->queue_ms);
    pack_kv_double(&e, "ttft_ms", r->ttft_ms);
    pack_kv_double(&e, "total_ms", r->total_ms);
    if (r->has_spec) {
        pack_cstr(&e, "spec");
        msgpack_pack_map(&e.pk, 3 + (r->spec_method != NULL));
        pack_kv_uint(&e, "drafted", r->spec_drafted);
        pack_kv_uint(&e, "accepted", r->spec_accepted);
        pack_kv_uint(&e, "steps", r->spec_steps);
        if (r->spec_method) {
            pack_cstr(&e, "method");
            pack_cstr(&e, r->spec_method);
        }
    }
    if (r->beams > 0) {
        pack_cstr(&e, "beam");
        msgpack_pack_map(&e.pk, 2);
        pack_kv_uint(&e, "beams", r->beams);
        pack_kv_double(&e, "score", r->beam_score);
    }
    if (r->alts) {
        pack_cstr(&e, "alternatives");
        msgpack_pack_array(&e.pk, r->n_alts);
        for (uint32_t i = 0; i < r->n_alts; i++) {
            const gt_rpc_alternative *a = &r->alts[i];
            msgpack_pack_map(&e.pk, 4);
            pack_answer(&e, a->text, a->text_len, a->tokens, a->n_tokens, a->finish);
            pack_kv_double(&e, "score", a->score);
        }
    }
    return end(&e, "a generate response");
}

gt_status gt_rpc_encode_token(gt_rpc_buf *b, const gt_rpc_token_event *t) {
    enc e;
    begin(&e, b);
    msgpack_pack_array(&e.pk, 3);
    msgpack_pack_uint8(&e.pk, 2);
    pack_cstr(&e, "token");
    msgpack_pack_array(&e.pk, 1);
    msgpack_pack_map(&e.pk, t->logprobs ? 4 : 3);
    pack_kv_uint(&e, "id", t->msgid);
    pack_cstr(&e, "text");
    pack_text(&e, t->text ? t->text : "", t->text ? t->text_len : 0);
    pack_cstr(&e, "token");
    msgpack_pack_int32(&e.pk, t->token);
    if (t->logprobs) {
        pack_cstr(&e, "logprobs");
        pack_logprobs(&e, t->logprobs);
    }
    return end(&e, "a token notification");
}

gt_status gt_rpc_encode_tokenize(gt_rpc_buf *b, uint32_t msgid, const int32_t *tokens, uint32_t n,
                                 const char *const *pieces, const size_t *piece_lens) {
    enc e;
    begin(&e, b);
    response_head(&e, msgid);
    msgpack_pack_map(&e.pk, pieces ? 2 : 1);
    pack_cstr(&e, "tokens");
    pack_token_ids(&e, tokens, n);
    if (pieces) {
        pack_cstr(&e, "pieces");
        msgpack_pack_array(&e.pk, n);
        for (uint32_t i = 0; i < n; i++) {
            msgpack_pack_bin(&e.pk, piece_lens[i]);
            msgpack_pack_bin_body(&e.pk, pieces[i], piece_lens[i]);
        }
    }
    return end(&e, "a tokenize response");
}

gt_status gt_rpc_encode_detokenize(gt_rpc_buf *b, uint32_t msgid, const char *text, size_t len) {
    enc e;
    begin(&e, b);
    response_head(&e, msgid);
    msgpack_pack_map(&e.pk, 1);
    pack_cstr(&e, "text");
    pack_text(&e, text ? text : "", text ? len : 0);
    return end(&e, "a detokenize response");
}

gt_status gt_rpc_encode_model_info(gt_rpc_buf *b, uint32_t msgid, const gt_rpc_model_info *mi) {
    enc e;
    begin(&e, b);
    response_head(&e, msgid);
    msgpack_pack_map(&e.pk, 5 + !!mi->name + !!mi->chat_format);
    pack_cstr(&e, "architecture");
    pack_cstr(&e, mi->architecture ? mi->architecture : "");
    if (mi->name) {
        pack_cstr(&e, "name");
        pack_cstr(&e, mi->name);
    }
    if (mi->chat_format) {
        pack_cstr(&e, "chat_format");
        pack_cstr(&e, mi->chat_format);
    }
    pack_kv_uint(&e, "context", mi->n_ctx);
    pack_kv_uint(&e, "vocabulary", mi->n_vocab);
    pack_cstr(&e, "layout");
    msgpack_pack_map(&e.pk, 3);
    pack_kv_uint(&e, "tp", mi->tp);
    pack_kv_uint(&e, "pp", mi->pp);
    pack_kv_uint(&e, "ep", mi->ep);
    pack_kv_uint(&e, "ranks", mi->ranks);
    return end(&e, "a model_info response");
}

gt_status gt_rpc_encode_stats(gt_rpc_buf *b, uint32_t msgid, const gt_rpc_stats *s) {
    enc e;
    begin(&e, b);
    response_head(&e, msgid);
    msgpack_pack_map(&e.pk, 2);
    pack_cstr(&e, "counters");
    msgpack_pack_map(&e.pk, s->n_counters);
    for (uint32_t i = 0; i < s->n_counters; i++)
        pack_kv_uint(&e, s->counters[i].name, s->counters[i].value);
    pack_cstr(&e, "histograms");
    msgpack_pack_map(&e.pk, s->n_histograms);
    for (uint32_t i = 0; i < s->n_histograms; i++) {
        const gt_rpc_histogram *h = &s->histograms[i];
        pack_cstr(&e, h->name);
        msgpack_pack_map(&e.pk, 4);
        pack_cstr(&e, "bounds_ms");
        msgpack_pack_array(&e.pk, h->n_bounds);
        for (uint32_t j = 0; j < h->n_bounds; j++) msgpack_pack_double(&e.pk, h->bounds_ms[j]);
        pack_cstr(&e, "counts");
        msgpack_pack_array(&e.pk, h->n_bounds + 1);
        for (uint32_t j = 0; j <= h->n_bounds; j++) msgpack_pack_uint64(&e.pk, h->counts[j]);
        pack_kv_uint(&e, "count", h->count);
        pack_kv_double(&e, "sum_ms", h->sum_ms);
    }
    return end(&e, "a stats response");
}

gt_status gt_rpc_encode_health(gt_rpc_buf *b, uint32_t msgid, const char *status) {
    enc e;
    begin(&e, b);
    response_head(&e, msgid);
    msgpack_pack_map(&e.pk, 1);
    pack_cstr(&e, "status");
    pack_cstr(&e, status ? status : "");
    return end(&e, "a health response");
}

gt_status gt_rpc_encode_cancel(gt_rpc_buf *b, uint32_t msgid, bool found) {
    enc e;
    begin(&e, b);
    response_head(&e, msgid);
    msgpack_pack_map(&e.pk, 1);
    pack_cstr(&e, "cancelled");
    if (found)
        msgpack_pack_true(&e.pk);
    else
        msgpack_pack_false(&e.pk);
    return end(&e, "a cancel response");
}

gt_status gt_rpc_encode_ok(gt_rpc_buf *b, uint32_t msgid) {
    enc e;
    begin(&e, b);
    response_head(&e, msgid);
    msgpack_pack_true(&e.pk);
    return end(&e, "a response");
}
