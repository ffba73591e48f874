/* Private to model/tokenizer/: the tokenizer object and the helpers its
 * files share (hash look-ups, growable id arrays, the pre-tokenizer).
 *
 * The files form layers, each calling only the ones below it (scripts/
 * check-deps.py checks it on the object files):
 *   tok_base.c             hashing, look-ups, id arrays, UTF-8, bytes
 *   pretok.c detok.c spm.c bpe.c   (bpe.c also calls pretok.c)
 *   special.c              text -> ids (gt_tokenize)
 *   vocab.c                loading (calls pretok.c and detok.c)
 *
 * All strings the tokenizer needs live in arenas it owns, addressed with
 * (offset, length) pairs, so the GGUF mapping can be closed after loading.
 * Token text -> id and merge pair -> rank are open-addressing hash tables
 * keyed by FNV-1a over the bytes; look-ups never allocate. */
#ifndef GT_TOK_INTERNAL_H
#define GT_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/tokenizer/tokenizer.h"

typedef struct gt__pretok gt__pretok;

/* A growable array of token ids (malloc/realloc). */
typedef struct gt__ids {
    int32_t *v;
    size_t n, cap;
} gt__ids;

struct gt_tokenizer {
    gt_vocab_type type;
    char model[32];
    char pre[64];
    int32_t n_vocab;

    char *text_arena; /* every token's text, back to back */
    gt_str *texts;    /* [n_vocab] into text_arena */
    float *scores;    /* [n_vocab] */
    uint32_t *attr;   /* [n_vocab] GT_TOKEN_ATTR_* */
    uint8_t *eog;     /* [n_vocab] 1 when the token ends generation */
    int32_t *tok_map; /* [tok_mask + 1] ids, -1 empty */
    size_t tok_mask;

    char *piece_arena; /* detokenized bytes of every token (special = true) */
    gt_str *pieces;    /* [n_vocab] into piece_arena */

    /* BPE merges: the two halves of merge i, and pair -> merge index. */
    size_t n_merges;
    char *merge_arena;
    gt_str *merge_l, *merge_r; /* [n_merges] into merge_arena */
    int32_t *merge_map;        /* [merge_mask + 1] merge index, -1 empty */
    size_t merge_mask;

    int32_t *special; /* control / user-defined / unknown ids, longest text first */
    size_t n_special;

    int32_t byte_tok[256]; /* SPM: id of "<0xXX>" (or the raw byte); BPE: id of the byte's unicode
                              char */

    int32_t bos, eos, eot, eom, unk, sep, pad, mask, nl;
    int32_t fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    bool add_bos, add_eos, add_space_prefix, ignore_merges;

    gt__pretok *pretok; /* BPE only */
};

/* ---- shared (tok_base.c): calls no other tokenizer file ---- */
uint64_t gt__hash_bytes(uint64_t h, const char *s, size_t n);
#define GT__HASH_SEED 0xcbf29ce484222325ull
/* The merge table's key: l, a 0xff separator, r. */
uint64_t gt__merge_hash(const char *l, size_t ln, const char *r, size_t rn);

/* Id of the token whose text is s[0..n), or GT_TOKEN_NULL. */
int32_t gt__tok_find(const gt_tokenizer *t, const char *s, size_t n);
/* Rank (merge index) of merging l then r, or -1. */
int32_t gt__merge_rank(const gt_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn);

gt_status gt__ids_push(gt__ids *a, int32_t id);

/* Length in bytes of the UTF-8 sequence a lead byte announces (1 for
 * continuation and invalid bytes). */
static inline size_t gt__utf8_len(unsigned char c) {
    static const unsigned char k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k_len[c >> 4];
}

/* Decodes one UTF-8 character from p[0..n) (n >= 1): its length, 0 when p
 * holds a valid but incomplete start, or -k when the first k bytes are
 * invalid (the maximal invalid subpart, shown as one U+FFFD). Sets *cpt when
 * valid. Overlongs, surrogates and code points past U+10FFFF are invalid. */
int gt__utf8_next(const unsigned char *p, size_t n, uint32_t *cpt);

/* The GPT-2 byte <-> unicode mapping of byte-level BPE. */
uint32_t gt__bpe_byte_to_cpt(uint8_t b);
int gt__bpe_cpt_to_byte(uint32_t cpt); /* -1 when the code point stands for no byte */
/* The UTF-8 of byte b's code point into out: its length, 1 or 2. */
size_t gt__bpe_byte_utf8(uint8_t b, char out[2]);

/* ---- SPM (spm.c) ---- */
/* Tokenizes one fragment already escaped ("▁" for spaces), appending to out. */
gt_status gt__spm_tokenize(const gt_tokenizer *t, const char *text, size_t len, gt__ids *out);

/* ---- BPE (bpe.c) ---- */
/* Splits with the pre-tokenizer, byte-encodes and merges, appending to out. */
gt_status gt__bpe_tokenize(const gt_tokenizer *t, const char *text, size_t len, gt__ids *out);

/* ---- pre-tokenizer (pretok.c) ---- */
typedef struct gt__pretok_info {
    bool ignore_merges;
    bool add_bos;
    bool no_bos;
} gt__pretok_info;
/* Compiles the patterns for `pre`. GT_ERR_UNSUPPORTED for an unknown name. */
gt_status gt__pretok_create(const char *pre, gt__pretok **out, gt__pretok_info *info);
void gt__pretok_free(gt__pretok *p);
/* Splits text[0..len) into words: *offs receives word end offsets (a new
 * array, free()), strictly increasing, the last equal to len. */
gt_status gt__pretok_split(const gt__pretok *p, const char *text, size_t len, size_t **ends,
                           size_t *n_words);

/* ---- pieces (detok.c) ---- */
/* Builds t->pieces from the vocabulary. */
gt_status gt__build_pieces(gt_tokenizer *t);

#endif
