/* Beam search as a state machine, shared by `gantry run --beams W`
 * (tools/run_beam.c) and the server's scheduler (sched_beam.c).
 *
 * The search holds up to W live beams, each in one of W local sequence
 * slots (0..W-1) that the caller maps onto its own sequences. It never
 * touches a model: after the caller has evaluated every live beam, it
 * feeds each beam's K = 2W best next tokens with their log-probabilities
 * (gt_beam_feed), and gt_beam_select ranks all beam x token extensions by
 * cumulative log-probability and keeps the W best; an end-of-generation
 * token among the first W finishes that hypothesis instead. The new live
 * beams then say what the caller evaluates next: the first child of a beam
 * continues in its parent's slot (one token, toks[n - 1]); every other
 * child is a fork, which takes a slot whose beam died and must be rebuilt
 * there as prompt + toks[0..n) (the caller frees the slot, attaches the
 * cached prefix and evaluates the rest). Slots no live beam uses are freed
 * by the caller. The winner maximises sum(log p) / length^A over the
 * finished hypotheses and, at the token limit, the live beams (the runners-up
 * are kept too, for callers that return the n best); the search
 * ends when W hypotheses finished and no live beam scores better now (the
 * early_stopping=False rule of Hugging Face's beam search), or at the limit.
 *
 * At the start one live beam (slot 0, no tokens) is a fork: the caller
 * evaluates the prompt in slot 0. Not thread-safe; one object per search. */
#ifndef GT_BEAM_H
#define GT_BEAM_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "common/cand.h"

enum { GT_BEAM_MAX_WIDTH = 10 };

typedef struct gt_beam_opts {
    int width;            /* 1..GT_BEAM_MAX_WIDTH */
    float length_penalty; /* score = sum of log-probabilities / length^length_penalty */
    int n_predict;        /* tokens at most, >= 1 */
} gt_beam_opts;

/* A live beam: what the caller evaluates before the next gt_beam_select. */
typedef struct gt_beam_live {
    int slot;            /* local slot, 0..W-1 */
    bool fork;           /* rebuild the slot as prompt + toks[0..n); else append toks[n - 1] */
    const int32_t *toks; /* borrowed until the next gt_beam_select: the generated tokens */
    int n;
} gt_beam_live;

/* Says whether tok ends generation (NULL: nothing does). */
typedef bool (*gt_beam_eog_fn)(void *user, int32_t tok);

typedef struct gt_beam gt_beam;

/* GT_ERR_INVALID_ARG for a width outside 1..GT_BEAM_MAX_WIDTH or n_predict
 * < 1, GT_ERR_NOMEM. */
gt_status gt_beam_create(const gt_beam_opts *o, gt_beam **out);
void gt_beam_destroy(gt_beam *b); /* accepts NULL */
/* Log-probability alternatives each beam feeds: 2W. */
int gt_beam_n_top(const gt_beam *b);
int gt_beam_n_live(const gt_beam *b);
gt_beam_live gt_beam_get(const gt_beam *b, int j);
/* True when a live beam holds local slot `slot`. */
bool gt_beam_slot_used(const gt_beam *b, int slot);
/* Live beam j's best next tokens, best first (id, log-probability in the
 * logit field), as gt_coord_next_logprobs returns them. Copied.
 * GT_ERR_INVALID_ARG for a bad j or count. */
gt_status gt_beam_feed(gt_beam *b, int j, const gt_cand *top, int n_top);
/* After every live beam was fed: the next beams; *done when the search
 * ended (gt_beam_result then holds the winner). */
gt_status gt_beam_select(gt_beam *b, gt_beam_eog_fn is_eog, void *user, bool *done);
/* The best hypothesis (borrowed until gt_beam_destroy): an end-of-generation
 * token last when it finished with one. GT_ERR_INTERNAL before the search
 * ended or when it found none. */
gt_status gt_beam_result(const gt_beam *b, const int32_t **toks, int *n, double *score);
/* Once the search ended: how many hypotheses it ranked (up to W: the W best
 * by score among the finished ones and the beams live at the end; 0 before
 * the end), and the i-th best of them (0 = gt_beam_result's; a tie keeps
 * the one that finished first), borrowed until gt_beam_destroy. */
int gt_beam_n_results(const gt_beam *b);
gt_status gt_beam_result_at(const gt_beam *b, int i, const int32_t **toks, int *n, double *score);

#endif
