/* The life of a verb that drives the job through the coordinator: create it
 * (every rank), let rank 0 lead with the verb's body while the other ranks
 * follow its steps, and end every rank alike. The one place where a verb's
 * failure becomes a printed sentence and an exit code. */
#ifndef GT_VERB_H
#define GT_VERB_H

#include "coordinator/coord.h"

/* The verb's body on rank 0. */
typedef gt_status (*gt_verb_lead_fn)(gt_coord *c, void *opts);

/* Runs a verb over the job described by rc. A failure to start (an
 * impossible layout, a bad file) is printed once, as "gantry VERB: ...";
 * a failed step on a grid ends the whole job with the failing rank named;
 * a failure of the body before any step went wrong stops the followers
 * cleanly. Returns the exit code: 0, 1, or 2 for bad usage. */
int gt_verb_run(const char *verb, const gt_rank_config *rc, void *opts, gt_verb_lead_fn lead);

#endif
