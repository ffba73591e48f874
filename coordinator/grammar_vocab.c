/* Grammar inputs from a request and the model's tokenizer; see
 * grammar_vocab.h. */
#include "coordinator/grammar_vocab.h"

#include <stdlib.h>
#include <string.h>

#include "coordinator/json_schema.h"

gt_status gt_grammar_from_text(gt_grammar_kind kind, const char *text, size_t len,
                               gt_grammar **out) {
    *out = NULL;
    if (kind == GT_GRAMMAR_GBNF) return gt_grammar_compile(text, len, out);
    if (kind == GT_GRAMMAR_JSON_OBJECT) {
        const char *g = gt_json_object_gbnf();
        return gt_grammar_compile(g, strlen(g), out);
    }
    char *gbnf = NULL;
    GT_TRY(gt_json_schema_to_gbnf(text, len, &gbnf));
    gt_status st = gt_grammar_compile(gbnf, strlen(gbnf), out);
    free(gbnf);
    return st;
}

gt_status gt_vocab_trie_from_tokenizer(const gt_tokenizer *tok, int n_vocab, gt_vocab_trie **out) {
    *out = NULL;
    const char **pieces = malloc((size_t)n_vocab * sizeof *pieces);
    size_t *lens = malloc((size_t)n_vocab * sizeof *lens);
    gt_status st;
    if (!pieces || !lens) {
        st = gt_fail(GT_ERR_NOMEM, "cannot list the pieces of %d tokens", n_vocab);
    } else {
        int32_t tv = gt_tokenizer_n_vocab(tok);
        for (int i = 0; i < n_vocab; i++) {
            gt_str p = i < tv ? gt_token_piece(tok, i, false) : (gt_str){NULL, 0};
            pieces[i] = p.ptr;
            lens[i] = p.ptr ? p.len : 0;
        }
        st = gt_vocab_trie_create(pieces, lens, n_vocab, out);
    }
    free(pieces);
    free(lens);
    return st;
}

gt_status gt_tokenizer_eog_ids(const gt_tokenizer *tok, int n_vocab, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    int cap = 8;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return gt_fail(GT_ERR_NOMEM, "cannot list end-of-generation tokens");
    for (int32_t i = 0; i < n_vocab; i++) {
        if (!gt_tokenizer_is_eog(tok, i)) continue;
        if (*n == cap) {
            int32_t *w = realloc(v, (size_t)(cap *= 2) * sizeof *w);
            if (!w) {
                free(v);
                return gt_fail(GT_ERR_NOMEM, "cannot list end-of-generation tokens");
            }
            v = w;
        }
        v[(*n)++] = i;
    }
    *ids = v;
    return GT_OK;
}
