/* libFuzzer target for the GBNF compiler and matcher (coordinator/
 * grammar.h). Input: grammar text, a NUL byte, then subject bytes. A
 * refused grammar must come with a sentence; a compiled one must run the
 * subject byte by byte with gt_gmatch_try agreeing with gt_gmatch_accept,
 * and its token mask over a small fixed vocabulary must equal trying each
 * token alone, at every step. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/grammar.h"

static const char *const k_pieces[] = {
    "a",    "b",        "ab",           "{",    "}",    "\"", " ", "0", "12", "\xc3",
    "\xa9", "\xc3\xa9", "\xe2\x82\xac", "null", "true", ",",  ":", "[", "]",  "x\n",
    "\\",   "\xff"};
enum { NV = sizeof k_pieces / sizeof *k_pieces };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t glen = nul ? (size_t)(nul - data) : size;
    const uint8_t *subj = nul ? nul + 1 : data + size;
    size_t slen = nul ? size - glen - 1 : 0;
    gt_grammar *g = NULL;
    gt_clear_error();
    if (gt_grammar_compile((const char *)data, glen, &g) != GT_OK) {
        if (!*gt_last_error() || g) abort();
        return 0;
    }
    size_t lens[NV];
    for (int i = 0; i < NV; i++) lens[i] = strlen(k_pieces[i]);
    gt_vocab_trie *t = NULL;
    gt_gmatch *m = NULL;
    if (gt_vocab_trie_create(k_pieces, lens, NV, &t) != GT_OK || gt_gmatch_create(g, &m) != GT_OK) {
        gt_vocab_trie_free(t);
        gt_grammar_free(g);
        return 0; /* a start too large for the stack limit is a refusal */
    }
    uint8_t allowed[NV];
    for (size_t i = 0; i <= slen && i < 64; i++) {
        int n = gt_gmatch_mask(m, t, allowed);
        int count = 0;
        for (int k = 0; k < NV; k++) {
            bool want = gt_gmatch_try(m, (const uint8_t *)k_pieces[k], lens[k]);
            if (want != (allowed[k] != 0)) abort();
            count += want;
        }
        if (count != n) abort();
        if (i == slen) break;
        bool ok = gt_gmatch_try(m, subj + i, 1);
        gt_status st = gt_gmatch_accept(m, subj + i, 1);
        if (ok != (st == GT_OK) && st != GT_ERR_RANGE) abort();
        if (st != GT_OK) break;
        if (gt_gmatch_done(m) && !gt_gmatch_can_end(m)) abort();
    }
    gt_gmatch_free(m);
    gt_vocab_trie_free(t);
    gt_grammar_free(g);
    return 0;
}
