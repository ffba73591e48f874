/* The bottom of the tokenizer: the pieces every other tokenizer file shares
 * (FNV-1a hashing and the token / merge look-ups, the growable id array,
 * UTF-8 decoding and GPT-2's byte <-> code point mapping). It calls no other
 * file of model/tokenizer/, so the files above it form no loop:
 *   tok_base <- pretok, detok, spm, bpe <- special, vocab. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer/tok_internal.h"

uint64_t gt__hash_bytes(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t gt__merge_hash(const char *l, size_t ln, const char *r, size_t rn) {
    uint64_t h = gt__hash_bytes(GT__HASH_SEED, l, ln);
    h = gt__hash_bytes(h ^ 0xff, "\xff", 1);
    return gt__hash_bytes(h, r, rn);
}

int32_t gt__tok_find(const gt_tokenizer *t, const char *s, size_t n) {
    size_t i = gt__hash_bytes(GT__HASH_SEED, s, n) & t->tok_mask;
    for (;;) {
        int32_t id = t->tok_map[i];
        if (id < 0) return GT_TOKEN_NULL;
        if (t->texts[id].len == n && memcmp(t->texts[id].ptr, s, n) == 0) return id;
        i = (i + 1) & t->tok_mask;
    }
}

int32_t gt__merge_rank(const gt_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn) {
    if (!t->merge_map) return -1;
    size_t i = gt__merge_hash(l, ln, r, rn) & t->merge_mask;
    for (;;) {
        int32_t m = t->merge_map[i];
        if (m < 0) return -1;
        if (t->merge_l[m].len == ln && t->merge_r[m].len == rn &&
            memcmp(t->merge_l[m].ptr, l, ln) == 0 && memcmp(t->merge_r[m].ptr, r, rn) == 0)
            return m;
        i = (i + 1) & t->merge_mask;
    }
}

gt_status gt__ids_push(gt__ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return gt_fail(GT_ERR_NOMEM, "cannot grow the token list to %zu ids", cap);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return GT_OK;
}

int gt__utf8_next(const unsigned char *p, size_t n, uint32_t *cpt) {
    unsigned char c = p[0];
    if (c < 0x80) {
        *cpt = c;
        return 1;
    }
    int len;
    uint32_t v, lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, v = c & 0x0F, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, v = c & 0x07, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return -1;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        unsigned char x = p[i];
        if (x < lo || x > hi) return -i;
        lo = 0x80, hi = 0xBF;
        v = (v << 6) | (x & 0x3F);
    }
    *cpt = v;
    return len;
}

/* Printable Latin-1 bytes stand for themselves in GPT-2's mapping. */
static bool byte_is_printable(uint32_t x) {
    return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
}

uint32_t gt__bpe_byte_to_cpt(uint8_t b) {
    /* The other 68 bytes map, in order, to U+0100 onwards. */
    if (byte_is_printable(b)) return b;
    uint32_t n = 0;
    for (uint32_t x = 0; x < b; x++)
        if (!byte_is_printable(x)) n++;
    return 256 + n;
}

int gt__bpe_cpt_to_byte(uint32_t cpt) {
    if (cpt < 256) return byte_is_printable(cpt) ? (int)cpt : -1;
    if (cpt >= 256 + 68) return -1;
    uint32_t n = 0;
    for (uint32_t x = 0; x < 256; x++)
        if (!byte_is_printable(x)) {
            if (n == cpt - 256) return (int)x;
            n++;
        }
    return -1;
}

size_t gt__bpe_byte_utf8(uint8_t b, char out[2]) {
    uint32_t c = gt__bpe_byte_to_cpt(b);
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    out[0] = (char)(0xC0 | (c >> 6));
    out[1] = (char)(0x80 | (c & 0x3F));
    return 2;
}
