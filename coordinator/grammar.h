/* Grammar-constrained decoding: GBNF grammars (llama.cpp's syntax) compiled
 * to a stack-based matcher over code points, and the token mask it implies.
 *
 * Syntax: rules `name ::= alternatives`, one per line (a rule continues on
 * the next line after `|` or inside parentheses); string literals "..."
 * (escapes \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH), character classes
 * [a-z0-9_] and negated ones [^"\\], `.` (any character), rule references,
 * grouping ( ... ), repetition `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`, and
 * `#` comments. The start rule is `root`.
 *
 * Design (as llama.cpp): the grammar is a flat array of elements; a matcher
 * state is a set of stacks of element positions, each stack's top a
 * character set the next code point may match. Stacks are hash-consed
 * (a node is (position, parent node)), so two equal stacks are one index
 * and a set's deduplication is an integer comparison; the nodes live in the
 * matcher until it is destroyed (and are compacted when they pile up).
 *
 * A grammar that can match nothing is refused at compile time with a
 * sentence naming the rule: an undefined rule, a missing root, a rule that
 * can never finish, or left recursion (which a stack matcher cannot run).
 *
 * Ownership: a gt_grammar is immutable after compilation and may be shared
 * by any number of matchers on one thread at a time per matcher. */
#ifndef GT_GRAMMAR_H
#define GT_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct gt_grammar gt_grammar;
typedef struct gt_gmatch gt_gmatch;

/* Compiles text[0..len). GT_ERR_FORMAT (syntax, with the line and column),
 * GT_ERR_INVALID_ARG (undefined rule, no root, a rule that cannot finish,
 * left recursion: the rule is named), GT_ERR_RANGE (more than 1 MiB of
 * grammar or 65536 elements), GT_ERR_NOMEM. */
gt_status gt_grammar_compile(const char *text, size_t len, gt_grammar **out);
void gt_grammar_free(gt_grammar *g); /* accepts NULL */
/* Rules after compilation (including the ones groups and repetitions add). */
int gt_grammar_n_rules(const gt_grammar *g);

/* A matcher at the start of the grammar (borrows g). GT_ERR_NOMEM,
 * GT_ERR_RANGE (the start already needs more stacks than the limit). */
gt_status gt_gmatch_create(const gt_grammar *g, gt_gmatch **out);
void gt_gmatch_free(gt_gmatch *m); /* accepts NULL */
/* Back to the start of the grammar. */
gt_status gt_gmatch_reset(gt_gmatch *m);
/* Whether bytes[0..n) may follow the current state (a trailing incomplete
 * UTF-8 character is allowed when some continuation could match). The
 * state does not change. */
bool gt_gmatch_try(gt_gmatch *m, const uint8_t *bytes, size_t n);
/* Advances the state over bytes[0..n). GT_ERR_INVALID_ARG (with the byte
 * offset) when the grammar rejects them; the state is unchanged then. */
gt_status gt_gmatch_accept(gt_gmatch *m, const uint8_t *bytes, size_t n);
/* True when the input so far is a complete sentence of the grammar. */
bool gt_gmatch_can_end(const gt_gmatch *m);
/* True when nothing more can follow (complete and no stack left). */
bool gt_gmatch_done(const gt_gmatch *m);

/* ---- the token mask ----
 * A trie of the vocabulary's byte strings, walked once per mask with the
 * matcher's stacks; a subtree whose prefix the grammar rejects is skipped
 * whole. */
typedef struct gt_vocab_trie gt_vocab_trie;
/* pieces[i] of lens[i] bytes is token i's text (copied); tokens with an
 * empty piece are never allowed by a grammar. GT_ERR_NOMEM. */
gt_status gt_vocab_trie_create(const char *const *pieces, const size_t *lens, int n_vocab,
                               gt_vocab_trie **out);
void gt_vocab_trie_free(gt_vocab_trie *t); /* accepts NULL */
int gt_vocab_trie_n_vocab(const gt_vocab_trie *t);
/* Token id's bytes (borrowed; empty for an id out of range). */
const uint8_t *gt_vocab_trie_piece(const gt_vocab_trie *t, int32_t id, size_t *len);
/* allowed[n_vocab]: 1 where the token's bytes may follow the state, else 0
 * (end-of-generation tokens are the caller's: see gt_gmatch_can_end).
 * Returns how many are allowed. */
int gt_gmatch_mask(gt_gmatch *m, const gt_vocab_trie *t, uint8_t *allowed);

#endif
