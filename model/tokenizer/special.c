/* Text -> ids: special tokens first, then SPM or BPE on the text between.
 *
 * Design: as in llama.cpp (and Hugging Face's added-token pass), the text is
 * first cut into fragments at every occurrence of a special token's text,
 * longest tokens first; only the text fragments reach the model's algorithm.
 * User-defined tokens (e.g. the runs of spaces in GPT-NeoX vocabularies) are
 * always cut out; control and unknown tokens only with GT_TOK_PARSE_SPECIAL.
 * Tokens marked LSTRIP/RSTRIP swallow the whitespace beside them. For SPM
 * each text fragment that follows the start or a special token gets the
 * leading space that add_space_prefix asks for, and spaces become "▁". */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

typedef struct frag {
    int32_t token; /* GT_TOKEN_NULL for text */
    size_t off, len;
} frag;

typedef struct frags {
    frag *v;
    size_t n, cap;
} frags;

static gt_status frag_push(frags *f, frag x) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *v = realloc(f->v, cap * sizeof *v);
        if (!v) return gt_fail(GT_ERR_NOMEM, "cannot grow the fragment list to %zu", cap);
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = x;
    return GT_OK;
}

/* Splits every text fragment of *cur at occurrences of token id. */
static gt_status cut(const gt_tokenizer *t, const char *text, int32_t id, frags *cur, frags *next) {
    const char *tt = t->texts[id].ptr;
    size_t tl = t->texts[id].len;
    uint32_t a = t->attr[id];
    next->n = 0;
    for (size_t i = 0; i < cur->n; i++) {
        frag f = cur->v[i];
        if (f.token != GT_TOKEN_NULL || f.len < tl) {
            GT_TRY(frag_push(next, f));
            continue;
        }
        size_t off = f.off, end = f.off + f.len;
        for (;;) {
            const char *m = memmem(text + off, end - off, tt, tl);
            if (!m) {
                if (end > off) GT_TRY(frag_push(next, (frag){GT_TOKEN_NULL, off, end - off}));
                break;
            }
            size_t ms = (size_t)(m - text), left = ms - off;
            if (a & GT_TOKEN_ATTR_LSTRIP)
                while (left > 0 && isspace((unsigned char)text[off + left - 1])) left--;
            if (left > 0) GT_TRY(frag_push(next, (frag){GT_TOKEN_NULL, off, left}));
            GT_TRY(frag_push(next, (frag){id, ms, tl}));
            off = ms + tl;
            if (a & GT_TOKEN_ATTR_RSTRIP)
                while (off < end && isspace((unsigned char)text[off])) off++;
        }
    }
    return GT_OK;
}

/* SPM: optional leading space, then " " -> "▁". */
static gt_status spm_fragment(const gt_tokenizer *t, const char *s, size_t n, bool prefix,
                              char **buf, size_t *cap, gt__ids *out) {
    size_t need = 3 * (n + 1);
    if (need > *cap) {
        char *b = realloc(*buf, need);
        if (!b) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu bytes to escape text", need);
        *buf = b;
        *cap = need;
    }
    char *p = *buf;
    if (prefix) {
        memcpy(p, "\xe2\x96\x81", 3);
        p += 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(p, "\xe2\x96\x81", 3);
            p += 3;
        } else {
            *p++ = s[i];
        }
    }
    return gt__spm_tokenize(t, *buf, (size_t)(p - *buf), out);
}

gt_status gt_tokenize(const gt_tokenizer *t, const char *text, size_t len, unsigned flags,
                      int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    bool add_special = flags & GT_TOK_ADD_SPECIAL, parse = flags & GT_TOK_PARSE_SPECIAL;
    frags cur = {0}, next = {0};
    gt__ids out = {0};
    char *buf = NULL;
    size_t buf_cap = 0;
    gt_status st = GT_OK;

    if (len > 0) {
        GT_TRY_GOTO(frag_push(&cur, (frag){GT_TOKEN_NULL, 0, len}), st, done);
        for (size_t k = 0; k < t->n_special; k++) {
            int32_t id = t->special[k];
            if (!parse && (t->attr[id] & (GT_TOKEN_ATTR_CONTROL | GT_TOKEN_ATTR_UNKNOWN))) continue;
            GT_TRY_GOTO(cut(t, text, id, &cur, &next), st, done);
            frags tmp = cur;
            cur = next;
            next = tmp;
        }
    }

    if (add_special && t->add_bos) GT_TRY_GOTO(gt__ids_push(&out, t->bos), st, done);
    bool prev_special = true; /* SPM: the start counts as after a special token */
    for (size_t i = 0; i < cur.n; i++) {
        frag f = cur.v[i];
        if (f.token != GT_TOKEN_NULL) {
            GT_TRY_GOTO(gt__ids_push(&out, f.token), st, done);
            prev_special = true;
            continue;
        }
        if (t->type == GT_VOCAB_SPM) {
            GT_TRY_GOTO(spm_fragment(t, text + f.off, f.len, t->add_space_prefix && prev_special,
                                     &buf, &buf_cap, &out),
                        st, done);
        } else {
            GT_TRY_GOTO(gt__bpe_tokenize(t, text + f.off, f.len, &out), st, done);
        }
        prev_special = false;
    }
    if (add_special && t->add_eos) GT_TRY_GOTO(gt__ids_push(&out, t->eos), st, done);
    *ids = out.v;
    *n = out.n;
    out.v = NULL;
done:
    free(out.v);
    free(cur.v);
    free(next.v);
    free(buf);
    return st;
}
