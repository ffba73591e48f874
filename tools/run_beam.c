/* `gantry run --beams W`: coordinator/beam.c's search driven directly on
 * the coordinator, one sequence per beam. A fork is rebuilt by
 * recomputation: its slot attaches the prompt's and the parent's whole KV
 * blocks from the prefix cache (gt_coord_attach_prefix) and evaluates the
 * rest; the beams that continue their parent's slot then decode in one
 * step. */
#include "tools/run_beam.h"

#include <stdlib.h>
#include <string.h>

static bool is_eog(void *user, int32_t tok) { return gt_text_is_eog(user, tok); }

/* Evaluates the live beams: forks first, then the continuing ones in one
 * decode step; then frees the slots no beam holds. */
static gt_status evaluate(gt_coord *c, const gt_beam *b, int W, const int32_t *prompt, int n_prompt,
                          int32_t *full) {
    int32_t seqs[GT_BEAM_MAX_WIDTH], toks[GT_BEAM_MAX_WIDTH];
    int n_in = 0;
    for (int j = 0; j < gt_beam_n_live(b); j++) {
        gt_beam_live l = gt_beam_get(b, j);
        if (!l.fork) {
            seqs[n_in] = l.slot;
            toks[n_in++] = l.toks[l.n - 1];
            continue;
        }
        int len = n_prompt + l.n, cached = 0;
        memcpy(full, prompt, (size_t)n_prompt * sizeof *prompt);
        memcpy(full + n_prompt, l.toks, (size_t)l.n * sizeof *l.toks);
        if (gt_coord_seq_len(c, l.slot)) GT_TRY(gt_coord_free_seq(c, l.slot));
        GT_TRY(gt_coord_attach_prefix(c, l.slot, full, len, &cached));
        GT_TRY(gt_coord_prefill(c, l.slot, full + cached, len - cached, NULL));
    }
    if (n_in) GT_TRY(gt_coord_decode(c, n_in, seqs, toks));
    for (int i = 0; i < W; i++)
        if (!gt_beam_slot_used(b, i) && gt_coord_seq_len(c, i)) GT_TRY(gt_coord_free_seq(c, i));
    return GT_OK;
}

static gt_status search(gt_coord *c, gt_beam *b, gt_sampler **smp, const gt_text *text,
                        const int32_t *prompt, int n_prompt, const gt_run_beam_opts *o,
                        int32_t *full) {
    gt_sampler_config greedy = GT_SAMPLER_CONFIG_INIT;
    for (int i = 0; i < o->width; i++) {
        GT_TRY(gt_sampler_create(&greedy, o->n_vocab, &smp[i]));
        GT_TRY(gt_coord_set_sampler(c, i, smp[i]));
        GT_TRY(gt_coord_set_extras(c, i, NULL, gt_beam_n_top(b)));
    }
    for (bool done = false; !done;) {
        GT_TRY(evaluate(c, b, o->width, prompt, n_prompt, full));
        for (int j = 0; j < gt_beam_n_live(b); j++) {
            float lp;
            const gt_cand *top;
            int n_top;
            GT_TRY(gt_coord_next_logprobs(c, gt_beam_get(b, j).slot, &lp, &top, &n_top));
            GT_TRY(gt_beam_feed(b, j, top, n_top));
        }
        GT_TRY(gt_beam_select(b, o->ignore_eos ? NULL : is_eog, (void *)text, &done));
    }
    return GT_OK;
}

gt_status gt_run_beam(gt_coord *c, const gt_text *text, const int32_t *prompt, int n_prompt,
                      const gt_run_beam_opts *o, int n_best, gt_run_beam_hyp *out, int *n_out) {
    *n_out = 0;
    if (n_best < 1 || n_best > o->width)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "beam search returns 1..%d hypotheses (one per beam), not %d", o->width,
                       n_best);
    gt_beam_opts bo = {o->width, o->length_penalty, o->n_predict};
    gt_beam *b = NULL;
    GT_TRY(gt_beam_create(&bo, &b));
    gt_sampler *smp[GT_BEAM_MAX_WIDTH] = {NULL};
    int32_t *full = malloc(((size_t)n_prompt + (size_t)o->n_predict + 1) * sizeof *full);
    gt_status st =
        full ? search(c, b, smp, text, prompt, n_prompt, o, full)
             : gt_fail(GT_ERR_NOMEM, "cannot hold a beam of %d tokens", n_prompt + o->n_predict);
    for (int i = 0; i < o->width; i++) {
        gt_coord_set_sampler(c, i, NULL);
        gt_sampler_destroy(smp[i]);
    }
    free(full);
    const int n_hyp = st == GT_OK ? gt_beam_n_results(b) : 0;
    for (int i = 0; st == GT_OK && i < n_best && i < n_hyp; i++) {
        const int32_t *toks;
        gt_run_beam_hyp *h = &out[i];
        st = gt_beam_result_at(b, i, &toks, &h->n, &h->score);
        if (st == GT_OK && !(h->toks = malloc((size_t)(h->n ? h->n : 1) * sizeof *toks)))
            st = gt_fail(GT_ERR_NOMEM, "cannot copy a hypothesis of %d tokens", h->n);
        if (st == GT_OK) {
            memcpy(h->toks, toks, (size_t)h->n * sizeof *toks);
            (*n_out)++;
        }
    }
    if (st == GT_OK && n_hyp < 1)
        st = gt_fail(GT_ERR_INTERNAL, "beam search ended without a hypothesis");
    if (st != GT_OK) {
        gt_run_beam_hyps_free(out, *n_out);
        *n_out = 0;
    }
    gt_beam_destroy(b);
    return st;
}

void gt_run_beam_hyps_free(gt_run_beam_hyp *h, int n) {
    for (int i = 0; i < n; i++) {
        free(h[i].toks);
        h[i].toks = NULL;
    }
}
