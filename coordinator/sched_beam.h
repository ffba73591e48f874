/* A beam-search request inside the scheduler's continuous batch
 * (internal to the coordinator; sched.c owns the request around it).
 *
 * The request holds W sequence slots, one per beam (beam.h's local slot i
 * is slots[i]). Every step carries, for each live beam, the tokens its slot
 * still lacks: one for a beam that continues its parent's slot, and for a
 * fork (or the prompt at the start) whatever the prefix cache did not give
 * back when its slot attached the prompt's and its parent's whole KV blocks
 * (gt_coord_attach_prefix), cut to the room the step has, as a prompt is
 * chunked. A slot's progress is the coordinator's sequence length, so a
 * step the KV pool refused (lengths unchanged, frees and attaches done)
 * is simply rebuilt. When every live beam's last token was evaluated, their
 * log-probabilities go to the search, which picks the next beams; slots no
 * beam holds are freed with the next step. */
#ifndef GT_SCHED_BEAM_H
#define GT_SCHED_BEAM_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/beam.h"
#include "coordinator/coord.h"

typedef struct gt__sbeam gt__sbeam;

/* A search after prompt[n_prompt] (copied) on the coordinator's sequences
 * slots[o->width] (copied; empty). gt_beam_create's statuses. */
gt_status gt__sbeam_create(const gt_beam_opts *o, const int *slots, const int32_t *prompt,
                           int n_prompt, gt__sbeam **out);
void gt__sbeam_destroy(gt__sbeam *b); /* accepts NULL */
/* Live beams (the rows the next step wants at most). */
int gt__sbeam_n_live(const gt__sbeam *b);
/* Appends the beams' next tokens to the step (seqs/toks/want at n, at most
 * room of them); a fork's slot is freed and attached the first time.
 * *added receives the count. The coordinator's statuses. */
gt_status gt__sbeam_rows(gt__sbeam *b, gt_coord *c, int n, int room, int32_t *seqs, int32_t *toks,
                         int8_t *want, int *added);
/* After a step: when every live beam's last token is in, feeds the search
 * and selects the next beams (freeing the slots left over); *done when the
 * search ended. */
gt_status gt__sbeam_advance(gt__sbeam *b, gt_coord *c, gt_beam_eog_fn is_eog, void *user,
                            bool *done);
/* The i-th best hypothesis once done (gt_beam_result_at; 0: the winner),
 * and how many there are (gt_beam_n_results). */
gt_status gt__sbeam_result(const gt__sbeam *b, int i, const int32_t **toks, int *n, double *score);
int gt__sbeam_n_results(const gt__sbeam *b);
/* Prompt tokens the first attach found in the prefix cache. */
int gt__sbeam_cached(const gt__sbeam *b);

#endif
