/* The server's draft model: one draft engine on rank 0 — a draft GGUF of
 * the target's vocabulary, or the target's own first L layers
 * (self-speculation) — that keeps a KV sequence per scheduler slot and
 * proposes the guesses of every request that speculates with it in a step,
 * batched: one draft forward catches every such request up with its
 * context (its last accepted tokens, or a whole prompt after admission),
 * then K - 1 forwards of one row per request draw the rest of the guesses.
 *
 * A slot's draft cache holds a prefix of its request's context followed,
 * maybe, by guesses of the last step; a proposal keeps the part that still
 * agrees with the context (accepted guesses are not computed again) and
 * drops the rest, so the scheduler never has to report acceptances, only
 * releases, which free the draft's KV blocks (finish, cancel, preemption: a
 * resumed request starts its draft cache again from the draft's own prefix
 * cache and recomputes the rest). The guesses only decide how much a verification
 * keeps; the output is the target's (spec.h), so a draft never changes a
 * greedy request's tokens. Rank 0 only; not thread-safe. */
#ifndef GT_SPEC_DRAFT_H
#define GT_SPEC_DRAFT_H

#include <stdint.h>

#include "coordinator/coord.h"
#include "coordinator/sampler.h"

typedef struct gt_spec_draft_config {
    const char *path; /* draft model GGUF (NULL: the target's first self_layers layers) */
    int self_layers;  /* self-speculation: layers of the target the draft runs (0: use path) */
    int n_threads;    /* the draft engine's compute threads */
    const char *isa;  /* its kernels (NULL: the best for this CPU) */
    int max_seqs;     /* sequences: the scheduler's slots */
    int max_tokens;   /* tokens per draft forward (catch-up chunks); >= max_seqs */
    int max_guesses;  /* K at most (1..64): sizes the draft's KV pool beside the target's */
} gt_spec_draft_config;
#define GT_SPEC_DRAFT_CONFIG_INIT                                                                  \
    { NULL, 0, 1, NULL, 8, 512, 64 }

/* One request's proposal. */
typedef struct gt_spec_draft_job {
    int seq;            /* its slot: the draft's sequence */
    const int32_t *ctx; /* [n] borrowed: its tokens; ctx[n - 1] is not yet in the target's cache */
    int n;
    int k;           /* in: guesses wanted (>= 1, n + k - 1 within the context); out: guesses
                        made (0 when the draft's KV pool had no room: the step decodes plainly) */
    gt_sampler *smp; /* borrowed: the request's sampler (its random stream draws the guesses) */
    const gt_penalty_config
        *pen;       /* borrowed: its penalties, applied to the draft's rows over the
                       tokens before each guess as verification applies them; NULL: none */
    int32_t *guess; /* [k] out */
    float *q;       /* [k, n_vocab] out: the draft's distribution each guess was drawn from */
} gt_spec_draft_job;

typedef struct gt_spec_draft_stats {
    uint64_t forwards; /* draft forward calls */
    uint64_t tokens;   /* tokens they evaluated (catch-up and guesses) */
    double seconds;    /* time in them, sampling included */
} gt_spec_draft_stats;

typedef struct gt_spec_draft gt_spec_draft;

/* Loads the draft engine on rank 0 for the target of c (borrowed).
 * GT_ERR_INVALID_ARG for both or neither of path and self_layers, a
 * self-draft of at least the target's layers, a draft whose vocabulary
 * differs from the target's, or sizes out of range; what gt_engine_create
 * returns for the draft. */
gt_status gt_spec_draft_create(gt_coord *c, const gt_spec_draft_config *cfg, gt_spec_draft **out);
void gt_spec_draft_destroy(gt_spec_draft *d); /* accepts NULL */
/* "self-draft (L layers)" or the draft file's name, for the log. */
const char *gt_spec_draft_name(const gt_spec_draft *d);
/* Empties seq's draft cache (its full blocks stay in the draft's prefix
 * cache); for a request that finishes, is cancelled or is preempted. */
void gt_spec_draft_release(gt_spec_draft *d, int seq); /* accepts d NULL */
/* Sequences whose draft cache holds tokens (0 once every request left). */
int gt_spec_draft_seqs_held(const gt_spec_draft *d);
/* Draws jobs[i].k guesses for each job (distinct sequences) in batched
 * draft forwards. GT_ERR_INVALID_ARG for a bad job; what the draft's
 * forward returns other than a full KV pool (which empties the jobs'
 * sequences and leaves them with k = 0). */
gt_status gt_spec_draft_propose(gt_spec_draft *d, gt_spec_draft_job *jobs, int n_jobs);
gt_spec_draft_stats gt_spec_draft_get_stats(const gt_spec_draft *d);

#endif
