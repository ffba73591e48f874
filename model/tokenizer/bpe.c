/* Byte-level BPE (tokenizer.ggml.model = "gpt2").
 *
 * The text is split into words by the pre-tokenizer patterns (pretok.c);
 * each word's bytes are mapped to printable code points with GPT-2's
 * byte <-> unicode table; then, within the word, adjacent symbols are merged
 * lowest merge rank first (ties: leftmost) using a binary heap of candidate
 * pairs over a linked list of symbols. Stale heap entries are recognised by
 * the combined length no longer matching and skipped, so each word costs
 * O(k log k) for k characters. A final symbol that is not a token falls back
 * to per-character tokens, as llama.cpp does. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

typedef struct sym {
    int32_t prev, next;
    uint32_t off, n; /* bytes of the encoded word; n == 0 once merged away */
} sym;

typedef struct pair {
    int32_t rank;
    int32_t left, right;
    uint32_t size;
} pair;

typedef struct session {
    char *enc; /* the byte-encoded word */
    size_t enc_cap;
    sym *syms;
    size_t syms_cap;
    pair *heap;
    size_t heap_n, heap_cap;
    char enc_table[256][2];
    uint8_t enc_len[256];
} session;

/* Heap order: lower rank first, then the leftmost pair. */
static bool before(const pair *a, const pair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static gt_status heap_push(session *s, pair p) {
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        pair *h = realloc(s->heap, cap * sizeof *h);
        if (!h) return gt_fail(GT_ERR_NOMEM, "cannot grow the BPE merge queue to %zu", cap);
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(&p, &s->heap[up])) break;
        s->heap[i] = s->heap[up];
        i = up;
    }
    s->heap[i] = p;
    return GT_OK;
}

static pair heap_pop(session *s) {
    pair top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

static gt_status try_pair(const gt_tokenizer *t, session *s, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return GT_OK;
    const sym *a = &s->syms[l], *b = &s->syms[r];
    int32_t rank = gt__merge_rank(t, s->enc + a->off, a->n, s->enc + b->off, b->n);
    if (rank < 0) return GT_OK;
    return heap_push(s, (pair){rank, l, r, a->n + b->n});
}

static gt_status emit_symbol(const gt_tokenizer *t, const char *p, size_t n, gt__ids *out) {
    int32_t id = gt__tok_find(t, p, n);
    if (id >= 0) return gt__ids_push(out, id);
    /* Not a token: llama.cpp looks each byte up on its own; only one-byte
     * (ASCII) characters can succeed. */
    for (size_t i = 0; i < n; i++) {
        id = gt__tok_find(t, p + i, 1);
        if (id >= 0) GT_TRY(gt__ids_push(out, id));
    }
    return GT_OK;
}

static gt_status grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return GT_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu bytes for BPE", c * elem);
    *p = q;
    *cap = c;
    return GT_OK;
}

static gt_status word(const gt_tokenizer *t, session *s, const char *w, size_t wn, gt__ids *out) {
    GT_TRY(grow((void **)&s->enc, &s->enc_cap, 2 * wn + 1, 1));
    size_t en = 0;
    for (size_t i = 0; i < wn; i++) {
        uint8_t b = (uint8_t)w[i];
        memcpy(s->enc + en, s->enc_table[b], s->enc_len[b]);
        en += s->enc_len[b];
    }
    if (t->ignore_merges) {
        int32_t id = gt__tok_find(t, s->enc, en);
        if (id >= 0) return gt__ids_push(out, id);
    }
    /* One symbol per encoded character (every encoded character is 1 or 2
     * bytes of valid UTF-8). */
    GT_TRY(grow((void **)&s->syms, &s->syms_cap, en, sizeof *s->syms));
    int32_t k = 0;
    for (size_t off = 0; off < en;) {
        size_t cl = gt__utf8_len((unsigned char)s->enc[off]);
        if (cl > en - off) cl = en - off;
        s->syms[k] = (sym){k - 1, -1, (uint32_t)off, (uint32_t)cl};
        if (k > 0) s->syms[k - 1].next = k;
        k++;
        off += cl;
    }
    s->heap_n = 0;
    for (int32_t i = 1; i < k; i++) GT_TRY(try_pair(t, s, i - 1, i));
    while (s->heap_n) {
        pair p = heap_pop(s);
        sym *a = &s->syms[p.left], *b = &s->syms[p.right];
        if (a->n == 0 || b->n == 0 || a->n + b->n != p.size) continue; /* stale */
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->syms[b->next].prev = p.left;
        GT_TRY(try_pair(t, s, a->prev, p.left));
        GT_TRY(try_pair(t, s, p.left, a->next));
    }
    for (int32_t i = 0; i >= 0 && i < k; i = s->syms[i].next)
        GT_TRY(emit_symbol(t, s->enc + s->syms[i].off, s->syms[i].n, out));
    return GT_OK;
}

gt_status gt__bpe_tokenize(const gt_tokenizer *t, const char *text, size_t len, gt__ids *out) {
    size_t *ends = NULL, n_words = 0;
    GT_TRY(gt__pretok_split(t->pretok, text, len, &ends, &n_words));
    session s;
    memset(&s, 0, sizeof s);
    for (int b = 0; b < 256; b++)
        s.enc_len[b] = (uint8_t)gt__bpe_byte_utf8((uint8_t)b, s.enc_table[b]);
    gt_status st = GT_OK;
    size_t start = 0;
    for (size_t i = 0; i < n_words && st == GT_OK; i++) {
        if (ends[i] > start) st = word(t, &s, text + start, ends[i] - start, out);
        start = ends[i];
    }
    free(ends);
    free(s.enc);
    free(s.syms);
    free(s.heap);
    return st;
}
