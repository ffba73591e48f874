/* Logit bias and the lazy grammar mask; see constraint.h. */
#include "coordinator/constraint.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/timer.h"

struct gt_constraint {
    int n_vocab;
    int32_t *bias_ids; /* [n_bias] */
    float *bias;       /* [n_bias] */
    int n_bias;
    int32_t *eog; /* [n_eog] */
    int n_eog;
    const gt_vocab_trie *trie; /* borrowed */
    gt_gmatch *m;              /* NULL: no grammar */
    gt_grammar *owned;         /* the grammar, when the constraint owns it */
    uint8_t *allowed;          /* [n_vocab] the last full mask */
    gt_constraint_stats stats;
};

static gt_status create(const gt_constraint_config *cfg, int n_vocab, gt_constraint **out);

gt_status gt_constraint_create(const gt_constraint_config *cfg, int n_vocab, gt_constraint **out) {
    gt_status st = create(cfg, n_vocab, out);
    if (cfg->owns_grammar) {
        if (st == GT_OK)
            (*out)->owned = cfg->grammar;
        else
            gt_grammar_free(cfg->grammar);
    }
    return st;
}

static gt_status create(const gt_constraint_config *cfg, int n_vocab, gt_constraint **out) {
    *out = NULL;
    for (int i = 0; i < cfg->n_bias; i++) {
        if (cfg->bias_ids[i] < 0 || cfg->bias_ids[i] >= n_vocab)
            return gt_fail(GT_ERR_INVALID_ARG,
                           "logit bias token %d is outside the vocabulary of %d", cfg->bias_ids[i],
                           n_vocab);
        if (isnan(cfg->bias[i]) || cfg->bias[i] == INFINITY)
            return gt_fail(GT_ERR_INVALID_ARG,
                           "logit bias %g for token %d is not a finite number or -inf",
                           (double)cfg->bias[i], cfg->bias_ids[i]);
    }
    if (cfg->grammar && (!cfg->trie || gt_vocab_trie_n_vocab(cfg->trie) != n_vocab))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "a grammar needs the vocabulary trie of the model's %d tokens", n_vocab);
    gt_constraint *c = calloc(1, sizeof *c);
    if (!c) return gt_fail(GT_ERR_NOMEM, "cannot allocate a constraint");
    c->n_vocab = n_vocab;
    c->n_bias = cfg->n_bias;
    c->n_eog = cfg->n_eog;
    c->trie = cfg->trie;
    c->bias_ids = malloc((size_t)(cfg->n_bias + 1) * sizeof *c->bias_ids);
    c->bias = malloc((size_t)(cfg->n_bias + 1) * sizeof *c->bias);
    c->eog = malloc((size_t)(cfg->n_eog + 1) * sizeof *c->eog);
    gt_status st = GT_OK;
    if (!c->bias_ids || !c->bias || !c->eog) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate a constraint");
        goto fail;
    }
    if (cfg->n_bias) {
        memcpy(c->bias_ids, cfg->bias_ids, (size_t)cfg->n_bias * sizeof *c->bias_ids);
        memcpy(c->bias, cfg->bias, (size_t)cfg->n_bias * sizeof *c->bias);
    }
    if (cfg->n_eog) memcpy(c->eog, cfg->eog, (size_t)cfg->n_eog * sizeof *c->eog);
    if (cfg->grammar) {
        c->allowed = malloc((size_t)n_vocab);
        if (!c->allowed) {
            st = gt_fail(GT_ERR_NOMEM, "cannot allocate a token mask of %d", n_vocab);
            goto fail;
        }
        GT_TRY_GOTO(gt_gmatch_create(cfg->grammar, &c->m), st, fail);
    }
    *out = c;
    return GT_OK;
fail:
    gt_constraint_free(c);
    return st;
}

void gt_constraint_free(gt_constraint *c) {
    if (!c) return;
    free(c->bias_ids);
    free(c->bias);
    free(c->eog);
    free(c->allowed);
    gt_gmatch_free(c->m);
    gt_grammar_free(c->owned);
    free(c);
}

bool gt_constraint_active(const gt_constraint *c) { return c && (c->n_bias > 0 || c->m); }

gt_constraint_stats gt_constraint_get_stats(const gt_constraint *c) { return c->stats; }

static bool is_eog(const gt_constraint *c, int32_t tok) {
    for (int i = 0; i < c->n_eog; i++)
        if (c->eog[i] == tok) return true;
    return false;
}

/* Whether the grammar allows tok next. */
static bool allows(gt_constraint *c, int32_t tok) {
    if (is_eog(c, tok)) return gt_gmatch_can_end(c->m);
    size_t len;
    const uint8_t *p = gt_vocab_trie_piece(c->trie, tok, &len);
    return len > 0 && gt_gmatch_try(c->m, p, len);
}

static bool any_finite(const float *row, int n) {
    for (int i = 0; i < n; i++)
        if (row[i] != -INFINITY) return true;
    return false;
}

gt_status gt_constraint_draw(gt_constraint *c, gt_sampler *s, float *row, int32_t *tok) {
    for (int i = 0; i < c->n_bias; i++) row[c->bias_ids[i]] += c->bias[i];
    c->stats.draws++;
    if (!c->m) {
        if (!any_finite(row, c->n_vocab))
            return gt_fail(GT_ERR_INVALID_ARG, "the logit bias bans every one of the %d tokens",
                           c->n_vocab);
        *tok = gt_sampler_sample(s, row);
        return GT_OK;
    }
    int32_t t =
        row[0] == -INFINITY && !any_finite(row, c->n_vocab) ? -1 : gt_sampler_sample(s, row);
    uint64_t t0 = gt_now_ns();
    bool ok = t >= 0 && row[t] != -INFINITY && allows(c, t);
    uint64_t t1 = gt_now_ns();
    c->stats.check_ns += t1 - t0;
    if (!ok) {
        c->stats.masks++;
        gt_gmatch_mask(c->m, c->trie, c->allowed);
        bool end = gt_gmatch_can_end(c->m);
        int n_ok = 0;
        for (int i = 0; i < c->n_vocab; i++) {
            bool a = is_eog(c, i) ? end : c->allowed[i] != 0;
            if (!a)
                row[i] = -INFINITY;
            else
                n_ok += row[i] != -INFINITY;
        }
        c->stats.mask_ns += gt_now_ns() - t1;
        if (n_ok == 0)
            return gt_fail(GT_ERR_INVALID_ARG, "the grammar%s allows none of the %d tokens here",
                           c->n_bias ? " together with the logit bias" : "", c->n_vocab);
        t = gt_sampler_sample(s, row);
    }
    if (!is_eog(c, t)) {
        size_t len;
        const uint8_t *p = gt_vocab_trie_piece(c->trie, t, &len);
        GT_TRY(gt_gmatch_accept(c->m, p, len));
    }
    *tok = t;
    return GT_OK;
}
