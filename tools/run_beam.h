/* Beam search for `gantry run --beams W` (one sequence slot per beam);
 * the search itself is coordinator/beam.c, shared with the server. */
#ifndef GT_RUN_BEAM_H
#define GT_RUN_BEAM_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/beam.h"
#include "coordinator/coord.h"
#include "coordinator/text.h"

typedef struct gt_run_beam_opts {
    int width;            /* 1..GT_BEAM_MAX_WIDTH */
    float length_penalty; /* score = sum of log-probabilities / length^length_penalty */
    int n_predict;        /* >= 1 */
    bool ignore_eos;
    int n_vocab;
} gt_run_beam_opts;

/* A hypothesis: toks (malloc'd) of n tokens, an end-of-generation token
 * last when it finished with one, and its score. */
typedef struct gt_run_beam_hyp {
    int32_t *toks;
    int n;
    double score;
} gt_run_beam_hyp;

/* Runs beam search after prompt[n_prompt] on sequences 0..width-1 of c
 * (rank 0; the job holds at least width sequences and width output rows)
 * and returns its best n_best (1..width) hypotheses, best first, in
 * out[*n_out] (fewer when the search ranked fewer; free them with
 * gt_run_beam_hyps_free). text decides which tokens end generation.
 * GT_ERR_INVALID_ARG for a bad width or count, the coordinator's statuses. */
gt_status gt_run_beam(gt_coord *c, const gt_text *text, const int32_t *prompt, int n_prompt,
                      const gt_run_beam_opts *o, int n_best, gt_run_beam_hyp *out, int *n_out);
void gt_run_beam_hyps_free(gt_run_beam_hyp *h, int n);

#endif
