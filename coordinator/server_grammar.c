/* The server's side of constrained decoding: a request's logit bias and
 * grammar become a gt_constraint that the scheduler owns. The vocabulary
 * trie and the end-of-generation tokens are built once, at the first
 * request that asks for a grammar, and shared by all. */
#include <stdlib.h>

#include "coordinator/constraint.h"
#include "coordinator/grammar_vocab.h"
#include "coordinator/server_internal.h"

gt_status srv_constraint(gt_server *s, const gt_rpc_generate *g, gt_constraint **out) {
    *out = NULL;
    if (!g->grammar && g->n_bias == 0) return GT_OK;
    gt_constraint_config cc = {.bias_ids = g->bias_ids, .bias = g->bias, .n_bias = (int)g->n_bias};
    if (g->grammar) {
        gt_grammar *gr = NULL;
        GT_TRY(gt_grammar_from_text((gt_grammar_kind)g->grammar_kind, g->grammar, g->grammar_len,
                                    &gr));
        if (!s->trie) {
            gt_status st = gt_vocab_trie_from_tokenizer(s->tok, (int)s->n_vocab, &s->trie);
            if (st == GT_OK) st = gt_tokenizer_eog_ids(s->tok, (int)s->n_vocab, &s->eog, &s->n_eog);
            if (st != GT_OK) {
                gt_grammar_free(gr);
                return st;
            }
        }
        cc.grammar = gr;
        cc.owns_grammar = true;
        cc.trie = s->trie;
        cc.eog = s->eog;
        cc.n_eog = s->n_eog;
    }
    return gt_constraint_create(&cc, (int)s->n_vocab, out);
}

void srv_grammar_free(gt_server *s) {
    gt_vocab_trie_free(s->trie);
    free(s->eog);
    s->trie = NULL;
    s->eog = NULL;
}
