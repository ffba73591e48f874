/* Tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata alone.
 *
 * Two families are supported, chosen by `tokenizer.ggml.model`:
 *   - "llama": SentencePiece-style (SPM) score-driven bigram merging over the
 *     whole text with "▁" for spaces, an optional leading space and <0xXX>
 *     byte fallback;
 *   - "gpt2": byte-level BPE with merge ranks; the text is first split into
 *     words by the PCRE2 patterns that `tokenizer.ggml.pre` names.
 * Both reproduce the published llama.cpp/Hugging Face test vectors exactly.
 *
 * A gt_tokenizer is immutable after gt_tokenizer_load and owns copies of all
 * strings it needs (the gt_gguf may be closed afterwards). Every function here
 * may be called from any number of threads at once on the same tokenizer; a
 * gt_detok_stream belongs to one thread at a time. */
#ifndef GT_TOKENIZER_H
#define GT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/gguf.h"

#define GT_TOKEN_NULL (-1)

typedef struct gt_tokenizer gt_tokenizer;

typedef enum gt_vocab_type {
    GT_VOCAB_SPM = 1, /* tokenizer.ggml.model = "llama" */
    GT_VOCAB_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
} gt_vocab_type;

/* Token attributes (bit set), from tokenizer.ggml.token_type plus the
 * adjustments llama.cpp makes by token text. */
enum {
    GT_TOKEN_ATTR_NORMAL = 1u << 0,
    GT_TOKEN_ATTR_UNKNOWN = 1u << 1,
    GT_TOKEN_ATTR_CONTROL = 1u << 2,
    GT_TOKEN_ATTR_USER_DEFINED = 1u << 3,
    GT_TOKEN_ATTR_UNUSED = 1u << 4,
    GT_TOKEN_ATTR_BYTE = 1u << 5,
    GT_TOKEN_ATTR_LSTRIP = 1u << 6, /* eat whitespace left of the token when matched in text */
    GT_TOKEN_ATTR_RSTRIP = 1u << 7, /* eat whitespace right of the token */
};

/* Reads the vocabulary, scores, types, merges, special ids and flags.
 * GT_ERR_NOT_FOUND (no tokenizer.ggml.model / tokens / merges),
 * GT_ERR_FORMAT (wrong types, duplicate tokens, counts that disagree),
 * GT_ERR_UNSUPPORTED (a tokenizer model or pre-tokenizer Gantry lacks),
 * GT_ERR_NOMEM. *out is NULL on failure. */
gt_status gt_tokenizer_load(const gt_gguf *g, gt_tokenizer **out);
void gt_tokenizer_free(gt_tokenizer *t); /* accepts NULL */

gt_vocab_type gt_tokenizer_type(const gt_tokenizer *t);
const char *gt_tokenizer_pre(const gt_tokenizer *t); /* "default" when none was given */
int32_t gt_tokenizer_n_vocab(const gt_tokenizer *t);
int32_t gt_tokenizer_bos(const gt_tokenizer *t); /* GT_TOKEN_NULL when absent */
int32_t gt_tokenizer_eos(const gt_tokenizer *t);
int32_t gt_tokenizer_eot(const gt_tokenizer *t);
int32_t gt_tokenizer_unk(const gt_tokenizer *t);
int32_t gt_tokenizer_pad(const gt_tokenizer *t);
int32_t gt_tokenizer_nl(const gt_tokenizer *t); /* the newline token */
bool gt_tokenizer_add_bos(const gt_tokenizer *t);
bool gt_tokenizer_add_eos(const gt_tokenizer *t);
bool gt_tokenizer_add_space_prefix(const gt_tokenizer *t);
/* End of generation: EOS, EOT, EOM, FIM pad/repo/sep and tokens recognised by
 * text (<|im_end|>, <end_of_turn>, <|eot_id|>, <|endoftext|>, ...). False for
 * ids outside the vocabulary. */
bool gt_tokenizer_is_eog(const gt_tokenizer *t, int32_t id);
/* Attribute bits of a token; 0 for ids outside the vocabulary. */
uint32_t gt_tokenizer_attr(const gt_tokenizer *t, int32_t id);
/* The token's text as stored in the vocabulary (borrowed; {NULL,0} when out
 * of range). */
gt_str gt_tokenizer_text(const gt_tokenizer *t, int32_t id);
/* The id whose vocabulary text is exactly text[0..len), or GT_TOKEN_NULL. */
int32_t gt_tokenizer_find(const gt_tokenizer *t, const char *text, size_t len);

/* ---- text -> ids ---- */
enum {
    GT_TOK_ADD_SPECIAL = 1u << 0,   /* BOS/EOS as the model's add_bos/add_eos flags say */
    GT_TOK_PARSE_SPECIAL = 1u << 1, /* control-token text ("<|im_end|>") becomes that token */
};

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is carried through byte
 * tokens). *ids is a new array the caller releases with free(); *n its length
 * (*ids may be NULL when *n is 0). Without GT_TOK_PARSE_SPECIAL, only
 * user-defined tokens are matched as whole pieces of text, as llama.cpp and
 * Hugging Face do. GT_ERR_NOMEM, GT_ERR_INTERNAL (a regex engine failure). */
gt_status gt_tokenize(const gt_tokenizer *t, const char *text, size_t len, unsigned flags,
                      int32_t **ids, size_t *n);

/* ---- ids -> text ---- */
/* The bytes a token stands for (borrowed, valid while t lives). Control and
 * unknown tokens give their text only when `special`, else an empty piece.
 * An out-of-range id gives an empty piece. */
gt_str gt_token_piece(const gt_tokenizer *t, int32_t id, bool special);

enum {
    GT_DETOK_SPECIAL = 1u << 0, /* render control tokens' text */
    GT_DETOK_STRIP_SPACE =
        1u << 1, /* drop the leading space SPM added (only with add_space_prefix) */
};

/* Concatenates the pieces of ids[0..n) into a new NUL-terminated string the
 * caller releases with free(); *len excludes the NUL. GT_ERR_RANGE names the
 * first id outside the vocabulary; GT_ERR_NOMEM. */
gt_status gt_detokenize(const gt_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                        char **text, size_t *len);

/* ---- streaming detokenizer ----
 * Turns one token at a time into text that is always whole, valid UTF-8:
 * bytes of a character split over several tokens are held until it is
 * complete (invalid bytes come out as U+FFFD), and text that could be the
 * start of a stop string is held until it is known not to be one, so a stop
 * string split across tokens is found and never shown. */
typedef struct gt_detok_stream gt_detok_stream;

typedef struct gt_detok_stream_opts {
    bool special;             /* render control tokens' text */
    bool strip_leading_space; /* as GT_DETOK_STRIP_SPACE, for the first piece */
    const char *const *stop;  /* stop strings (copied); may be NULL */
    size_t n_stop;
} gt_detok_stream_opts;
#define GT_DETOK_STREAM_OPTS_INIT                                                                  \
    { false, true, NULL, 0 }

/* GT_ERR_INVALID_ARG (an empty stop string), GT_ERR_NOMEM. */
gt_status gt_detok_stream_create(const gt_tokenizer *t, const gt_detok_stream_opts *opts,
                                 gt_detok_stream **out);
void gt_detok_stream_free(gt_detok_stream *s); /* accepts NULL */
/* Feeds one token. *out receives the text that is now final (borrowed, valid
 * until the next call on s). *stopped becomes true when a stop string has
 * been completed: *out then holds the text before it, and later pushes give
 * nothing. GT_ERR_RANGE for an id outside the vocabulary; GT_ERR_NOMEM. */
gt_status gt_detok_stream_push(gt_detok_stream *s, int32_t id, gt_str *out, bool *stopped);
/* Ends the stream: releases everything held (an incomplete character becomes
 * U+FFFD). Empty after a stop. */
gt_status gt_detok_stream_finish(gt_detok_stream *s, gt_str *out);
/* Index into opts.stop of the stop string that ended the stream, or -1. */
int gt_detok_stream_stop_index(const gt_detok_stream *s);

#endif
