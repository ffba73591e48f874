/* SentencePiece-style BPE (tokenizer.ggml.model = "llama").
 *
 * The fragment (spaces already escaped to "▁") starts as one symbol per UTF-8
 * character; the pair of adjacent symbols whose concatenation is the
 * highest-scoring vocabulary token is merged first (ties: leftmost), using a
 * binary heap of candidates over a linked list of symbols, so a fragment of
 * n characters costs O(n log n). Stale candidates are recognised by their
 * combined length and skipped. A final symbol that is not a token is emitted
 * byte by byte with the <0xXX> byte-fallback tokens. This is the algorithm of
 * llama.cpp's llm_tokenizer_spm, written for C. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

typedef struct sym {
    int32_t prev, next;
    uint32_t off, n;
} sym;

typedef struct cand {
    float score;
    int32_t left, right;
    uint32_t size;
} cand;

typedef struct heap {
    cand *v;
    size_t n, cap;
} heap;

/* Higher score first, then the leftmost pair. */
static bool before(const cand *a, const cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static gt_status push(heap *h, cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        cand *v = realloc(h->v, cap * sizeof *v);
        if (!v) return gt_fail(GT_ERR_NOMEM, "cannot grow the SPM merge queue to %zu", cap);
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(&c, &h->v[up])) break;
        h->v[i] = h->v[up];
        i = up;
    }
    h->v[i] = c;
    return GT_OK;
}

static cand pop(heap *h) {
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&h->v[c + 1], &h->v[c])) c++;
        if (!before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
    return top;
}

static gt_status try_pair(const gt_tokenizer *t, const char *text, sym *s, heap *h, int32_t l,
                          int32_t r) {
    if (l < 0 || r < 0) return GT_OK;
    int32_t id = gt__tok_find(t, text + s[l].off, s[l].n + s[r].n);
    if (id < 0) return GT_OK;
    return push(h, (cand){t->scores[id], l, r, s[l].n + s[r].n});
}

gt_status gt__spm_tokenize(const gt_tokenizer *t, const char *text, size_t len, gt__ids *out) {
    if (len == 0) return GT_OK;
    if (len > UINT32_MAX) return gt_fail(GT_ERR_RANGE, "text of %zu bytes is too long", len);
    sym *s = malloc(len * sizeof *s);
    if (!s) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu SPM symbols", len);
    heap h = {0};
    gt_status st = GT_OK;
    int32_t k = 0;
    for (size_t off = 0; off < len;) {
        /* Valid characters are one symbol; an invalid byte is one on its own
         * (llama.cpp trusts lead bytes, which can swallow an escaped space
         * after a stray lead byte; the two agree on valid UTF-8). */
        uint32_t cpt;
        int l = gt__utf8_next((const unsigned char *)text + off, len - off, &cpt);
        size_t cl = l > 0 ? (size_t)l : 1;
        s[k] = (sym){k - 1, -1, (uint32_t)off, (uint32_t)cl};
        if (k > 0) s[k - 1].next = k;
        k++;
        off += cl;
    }
    for (int32_t i = 1; i < k && st == GT_OK; i++) st = try_pair(t, text, s, &h, i - 1, i);
    while (h.n && st == GT_OK) {
        cand c = pop(&h);
        sym *a = &s[c.left], *b = &s[c.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != c.size) continue; /* stale */
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s[b->next].prev = c.left;
        st = try_pair(t, text, s, &h, a->prev, c.left);
        if (st == GT_OK) st = try_pair(t, text, s, &h, c.left, a->next);
    }
    for (int32_t i = 0; i >= 0 && st == GT_OK; i = s[i].next) {
        int32_t id = gt__tok_find(t, text + s[i].off, s[i].n);
        if (id >= 0) {
            st = gt__ids_push(out, id);
            continue;
        }
        for (uint32_t j = 0; j < s[i].n && st == GT_OK; j++) {
            int32_t b = t->byte_tok[(unsigned char)text[s[i].off + j]];
            /* A vocabulary without byte tokens gives UNK, like SentencePiece. */
            if (b < 0) b = t->unk;
            if (b >= 0) st = gt__ids_push(out, b);
        }
    }
    free(s);
    free(h.v);
    return st;
}
