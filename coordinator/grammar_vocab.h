/* What a grammar-constrained request needs from the model: the vocabulary
 * trie and end-of-generation tokens from its tokenizer, and the grammar
 * from whichever form the request gave (GBNF, a JSON schema, or "any JSON
 * object"). Shared by `gantry run` and the server. */
#ifndef GT_GRAMMAR_VOCAB_H
#define GT_GRAMMAR_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/grammar.h"
#include "model/tokenizer/tokenizer.h"

typedef enum gt_grammar_kind {
    GT_GRAMMAR_GBNF = 0,
    GT_GRAMMAR_JSON_SCHEMA,
    GT_GRAMMAR_JSON_OBJECT, /* text ignored */
} gt_grammar_kind;

/* Compiles text[0..len) of the given kind. The statuses of
 * gt_grammar_compile and gt_json_schema_to_gbnf. */
gt_status gt_grammar_from_text(gt_grammar_kind kind, const char *text, size_t len,
                               gt_grammar **out);
/* The trie of the pieces of tokens 0..n_vocab-1 (ids past the tokenizer's
 * vocabulary and control tokens have no piece and are never allowed). */
gt_status gt_vocab_trie_from_tokenizer(const gt_tokenizer *tok, int n_vocab, gt_vocab_trie **out);
/* *ids (malloc'd, caller frees) receives the end-of-generation tokens below
 * n_vocab, *n their count. GT_ERR_NOMEM. */
gt_status gt_tokenizer_eog_ids(const gt_tokenizer *tok, int n_vocab, int32_t **ids, int *n);

#endif
