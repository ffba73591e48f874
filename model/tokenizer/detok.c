/* Ids -> text: token pieces, whole-sequence detokenization and the streaming
 * detokenizer with stop strings.
 *
 * Design: every token's bytes are computed once at load ("▁" -> space for
 * SPM, <0xXX> -> the byte, GPT-2 byte-level characters -> their bytes for
 * BPE) into one arena, so a piece is a borrowed slice and detokenizing is
 * concatenation. No clean-up of spaces before punctuation is done, so that
 * detokenize(tokenize(s)) == s. The stream keeps two buffers: `pend`, the
 * bytes of a UTF-8 character not yet complete, and `held`, complete text that
 * could still be the start of a stop string; everything else is released at
 * once. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "<0xXX>" -> XX, else -1. */
static int byte_token_value(gt_str s) {
    if (s.len != 6 || memcmp(s.ptr, "<0x", 3) != 0 || s.ptr[5] != '>') return -1;
    int hi = hexval(s.ptr[3]), lo = hexval(s.ptr[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

gt_status gt__build_pieces(gt_tokenizer *t) {
    size_t bytes = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) bytes += t->texts[i].len;
    t->piece_arena = malloc(bytes + 1);
    t->pieces = calloc((size_t)t->n_vocab, sizeof *t->pieces);
    if (!t->piece_arena || !t->pieces)
        return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu bytes of token pieces", bytes);
    const uint32_t raw = GT_TOKEN_ATTR_UNKNOWN | GT_TOKEN_ATTR_CONTROL | GT_TOKEN_ATTR_USER_DEFINED;
    char *p = t->piece_arena;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        gt_str s = t->texts[i];
        uint32_t a = t->attr[i];
        char *start = p;
        if (a & raw) {
            memcpy(p, s.ptr, s.len);
            p += s.len;
        } else if (a & GT_TOKEN_ATTR_NORMAL) {
            if (t->type == GT_VOCAB_SPM) {
                for (size_t k = 0; k < s.len;) {
                    if (s.len - k >= 3 && memcmp(s.ptr + k, "\xe2\x96\x81", 3) == 0) {
                        *p++ = ' ';
                        k += 3;
                    } else {
                        *p++ = s.ptr[k++];
                    }
                }
            } else {
                for (size_t k = 0; k < s.len;) {
                    uint32_t c;
                    int l = gt__utf8_next((const unsigned char *)s.ptr + k, s.len - k, &c);
                    if (l <= 0) { /* not UTF-8: keep the byte */
                        *p++ = s.ptr[k++];
                        continue;
                    }
                    int b = gt__bpe_cpt_to_byte(c);
                    if (b >= 0) {
                        *p++ = (char)b;
                    } else { /* a character that stands for no byte: keep it */
                        memcpy(p, s.ptr + k, (size_t)l);
                        p += l;
                    }
                    k += (size_t)l;
                }
            }
        } else if (a & GT_TOKEN_ATTR_BYTE) {
            int b = byte_token_value(s);
            if (b >= 0) {
                *p++ = (char)b;
            } else {
                memcpy(p, s.ptr, s.len);
                p += s.len;
            }
        }
        t->pieces[i] = (gt_str){start, (uint64_t)(p - start)};
    }
    return GT_OK;
}

gt_str gt_token_piece(const gt_tokenizer *t, int32_t id, bool special) {
    if (id < 0 || id >= t->n_vocab) return (gt_str){"", 0};
    if (!special && (t->attr[id] & (GT_TOKEN_ATTR_CONTROL | GT_TOKEN_ATTR_UNKNOWN)))
        return (gt_str){"", 0};
    return t->pieces[id];
}

gt_status gt_detokenize(const gt_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                        char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    bool special = flags & GT_DETOK_SPECIAL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return gt_fail(GT_ERR_RANGE,
                           "token id %d at position %zu is outside the %d-token "
                           "vocabulary",
                           ids[i], i, t->n_vocab);
        total += gt_token_piece(t, ids[i], special).len;
    }
    char *out = malloc(total + 1);
    if (!out) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu bytes of text", total + 1);
    bool strip = (flags & GT_DETOK_STRIP_SPACE) && t->add_space_prefix;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        gt_str p = gt_token_piece(t, ids[i], special);
        if (p.len == 0) continue;
        if (strip && p.ptr[0] == ' ') p.ptr++, p.len--;
        strip = false;
        memcpy(out + o, p.ptr, p.len);
        o += p.len;
    }
    out[o] = 0;
    *text = out;
    *len = o;
    return GT_OK;
}

/* ---- streaming ---- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static gt_status buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return gt_fail(GT_ERR_NOMEM, "cannot grow the detokenizer buffer to %zu", cap);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return GT_OK;
}

struct gt_detok_stream {
    const gt_tokenizer *t;
    bool special, strip;
    char **stop;
    size_t *stop_len;
    size_t n_stop;
    buf pend, held, out;
    bool stopped;
    int stop_index;
};

gt_status gt_detok_stream_create(const gt_tokenizer *t, const gt_detok_stream_opts *opts,
                                 gt_detok_stream **out) {
    *out = NULL;
    gt_detok_stream_opts def = GT_DETOK_STREAM_OPTS_INIT;
    if (!opts) opts = &def;
    for (size_t i = 0; i < opts->n_stop; i++)
        if (!opts->stop[i] || !opts->stop[i][0])
            return gt_fail(GT_ERR_INVALID_ARG, "stop string %zu is empty", i);
    gt_detok_stream *s = calloc(1, sizeof *s);
    if (!s) return gt_fail(GT_ERR_NOMEM, "cannot allocate a detokenizer stream");
    s->t = t;
    s->special = opts->special;
    s->strip = opts->strip_leading_space && t->add_space_prefix;
    s->stop_index = -1;
    if (opts->n_stop) {
        s->stop = calloc(opts->n_stop, sizeof *s->stop);
        s->stop_len = calloc(opts->n_stop, sizeof *s->stop_len);
        if (!s->stop || !s->stop_len) goto nomem;
        s->n_stop = opts->n_stop;
        for (size_t i = 0; i < opts->n_stop; i++) {
            s->stop[i] = strdup(opts->stop[i]);
            if (!s->stop[i]) goto nomem;
            s->stop_len[i] = strlen(s->stop[i]);
        }
    }
    *out = s;
    return GT_OK;
nomem:
    gt_detok_stream_free(s);
    return gt_fail(GT_ERR_NOMEM, "cannot copy %zu stop strings", opts->n_stop);
}

void gt_detok_stream_free(gt_detok_stream *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_stop && s->stop; i++) free(s->stop[i]);
    free(s->stop);
    free(s->stop_len);
    free(s->pend.p);
    free(s->held.p);
    free(s->out.p);
    free(s);
}

/* Moves the complete characters of pend into held (invalid bytes as U+FFFD);
 * with `final`, an incomplete tail becomes U+FFFD too. */
static gt_status drain_pending(gt_detok_stream *s, bool final) {
    const unsigned char *p = (const unsigned char *)s->pend.p;
    size_t n = s->pend.n, i = 0;
    while (i < n) {
        uint32_t c;
        int l = gt__utf8_next(p + i, n - i, &c);
        if (l > 0) {
            GT_TRY(buf_add(&s->held, (const char *)p + i, (size_t)l));
            i += (size_t)l;
        } else if (l < 0) {
            GT_TRY(buf_add(&s->held, "\xef\xbf\xbd", 3));
            i += (size_t)-l;
        } else if (final) {
            GT_TRY(buf_add(&s->held, "\xef\xbf\xbd", 3));
            i = n;
        } else {
            break;
        }
    }
    if (n > i) memmove(s->pend.p, s->pend.p + i, n - i); /* pend.p may be NULL when empty */
    s->pend.n = n - i;
    return GT_OK;
}

/* Emits from held what can no longer be part of a stop string. */
static gt_status release(gt_detok_stream *s, bool final) {
    const char *h = s->held.p ? s->held.p : "";
    size_t n = s->held.n;
    /* The earliest complete stop string ends the stream. */
    size_t best = (size_t)-1;
    for (size_t k = 0; k < s->n_stop; k++) {
        const char *m = memmem(h, n, s->stop[k], s->stop_len[k]);
        if (m && (size_t)(m - h) < best) {
            best = (size_t)(m - h);
            s->stop_index = (int)k;
        }
    }
    if (best != (size_t)-1) {
        GT_TRY(buf_add(&s->out, h, best));
        s->held.n = 0;
        s->pend.n = 0;
        s->stopped = true;
        return GT_OK;
    }
    /* Hold the longest tail that is a proper prefix of some stop string. */
    size_t keep = 0;
    if (!final)
        for (size_t k = 0; k < s->n_stop; k++) {
            size_t maxl = s->stop_len[k] - 1 < n ? s->stop_len[k] - 1 : n;
            for (size_t l = maxl; l > keep; l--)
                if (memcmp(h + n - l, s->stop[k], l) == 0) {
                    keep = l;
                    break;
                }
        }
    GT_TRY(buf_add(&s->out, h, n - keep));
    if (keep) memmove(s->held.p, h + n - keep, keep);
    s->held.n = keep;
    return GT_OK;
}

gt_status gt_detok_stream_push(gt_detok_stream *s, int32_t id, gt_str *out, bool *stopped) {
    s->out.n = 0;
    *out = (gt_str){"", 0};
    *stopped = s->stopped;
    if (s->stopped) return GT_OK;
    if (id < 0 || id >= s->t->n_vocab)
        return gt_fail(GT_ERR_RANGE, "token id %d is outside the %d-token vocabulary", id,
                       s->t->n_vocab);
    gt_str p = gt_token_piece(s->t, id, s->special);
    if (p.len && s->strip) {
        if (p.ptr[0] == ' ') p.ptr++, p.len--;
        s->strip = false;
    }
    GT_TRY(buf_add(&s->pend, p.ptr, p.len));
    GT_TRY(drain_pending(s, false));
    GT_TRY(release(s, false));
    *out = (gt_str){s->out.p ? s->out.p : "", s->out.n};
    *stopped = s->stopped;
    return GT_OK;
}

gt_status gt_detok_stream_finish(gt_detok_stream *s, gt_str *out) {
    s->out.n = 0;
    *out = (gt_str){"", 0};
    if (s->stopped) return GT_OK;
    GT_TRY(drain_pending(s, true));
    GT_TRY(release(s, true));
    *out = (gt_str){s->out.p ? s->out.p : "", s->out.n};
    return GT_OK;
}

int gt_detok_stream_stop_index(const gt_detok_stream *s) { return s->stop_index; }
