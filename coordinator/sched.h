/* Continuous batching on the coordinator: requests wait in a queue, get a
 * sequence slot when one is free, and every engine step carries one decode
 * token of each running request plus chunks of prompts still being
 * prefilled, within a token budget (chunked prefill). A request leaves when
 * it reaches max_tokens, when its token callback says stop (end of
 * generation, a stop string), or when it is cancelled; its slot and KV
 * blocks are freed with the next step.
 *
 * A request admitted to a slot first takes whatever its prompt's start has
 * in the prefix cache (gt_coord_attach_prefix), and prefills the rest.
 *
 * The scheduler decides; gt_coord executes (one step plan per step) and
 * draws each request's tokens with the request's own sampler, so a
 * request's tokens do not depend on what else is batched beside it as long
 * as the kernels are batch-invariant. Single-threaded: the server's loop
 * calls submit, cancel and step. */
#ifndef GT_SCHED_H
#define GT_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/coord.h"
#include "coordinator/sampler.h"

typedef enum gt_finish {
    GT_FINISH_STOP = 1,  /* the token callback asked to stop (end of generation, stop string) */
    GT_FINISH_LENGTH,    /* max_tokens reached */
    GT_FINISH_CANCELLED, /* gt_sched_cancel */
    GT_FINISH_SHUTDOWN,  /* gt_sched_destroy with the request unfinished */
} gt_finish;
const char *gt_finish_name(gt_finish f); /* "stop", "length", "cancelled", "shutdown" */

struct gt_spec_draft;
typedef struct gt_sched_config {
    int max_batch_tokens; /* tokens per step; 0: the engine's batch */
    int max_waiting;      /* queued requests; beyond: GT_ERR_RANGE ("queue full") */
    /* The draft model that requests with spec_draft speculate with
     * (spec_draft.h; borrowed, created with the scheduler's slots as its
     * sequences); NULL: none. */
    struct gt_spec_draft *draft;
} gt_sched_config;
#define GT_SCHED_CONFIG_INIT {0, 1024, NULL}

/* What a finished request used. */
typedef struct gt_sched_usage {
    int prompt_tokens;
    int cached_tokens;     /* prompt tokens whose KV rows came from the prefix cache */
    int completion_tokens; /* tokens generated */
    /* ---- speculative decoding (zero without it) ---- */
    int spec_steps;    /* verification steps (steps that carried guesses) */
    int spec_drafted;  /* guesses verified */
    int spec_accepted; /* of them, kept */
    /* ---- beam search (zero without it) ---- */
    double beam_score; /* the winner's sum(log p) / length^length_penalty */
    /* With n_best > 1: the runners-up, best first (n_best - 1 of them, fewer
     * when the search ranked fewer hypotheses); borrowed during on_done. */
    const struct gt_sched_hyp *alts;
    int n_alts;
} gt_sched_usage;

/* A beam-search hypothesis besides the winner: its tokens (an
 * end-of-generation token last when it finished with one) and score. */
typedef struct gt_sched_hyp {
    const int32_t *toks;
    int n;
    double score;
} gt_sched_hyp;

/* A generated token's log-probability and its best alternatives (when the
 * request asked for logprobs). */
typedef struct gt_token_info {
    float logprob;
    const gt_cand *top; /* borrowed [n_top]: id and log-probability (logit field) */
    int n_top;
} gt_token_info;

typedef struct gt_sched_req {
    uint64_t id;            /* the caller's, unique among live requests */
    const int32_t *prompt;  /* [n_prompt], copied */
    int n_prompt;
    gt_sampler_config samp;
    int max_tokens;         /* >= 1 */
    gt_penalty_config pen;  /* zeroed: none */
    int logprobs;           /* alternatives per token, 0..20 (0: none) */
    /* Logit bias and grammar (NULL: none). Handed over: the scheduler frees
     * it when the request leaves, and also when gt_sched_submit fails. A
     * request whose grammar allows no next token finishes as "stop" (the
     * sentence is logged). */
    struct gt_constraint *cons;
    /* Called with each generated token, in order (info NULL without
     * logprobs); returns true to stop after it. */
    bool (*on_token)(void *user, uint64_t id, int32_t token, const gt_token_info *info);
    /* Called when the request gets a sequence slot (leaves the queue); may be NULL. */
    void (*on_admit)(void *user, uint64_t id);
    /* Called once when the request leaves. */
    void (*on_done)(void *user, uint64_t id, gt_finish why, const gt_sched_usage *usage);
    void *user;
    /* ---- speculative decoding (prompt lookup; spec.h) ----
     * With spec_lookup > 0, a generating request's step carries its last
     * token and up to spec_tokens guesses (the tokens that followed the
     * latest earlier occurrence of its context's last n-gram, n =
     * spec_lookup down to 1), K + 1 rows verified as spec.h describes
     * (gt_spec_accept), with the request's penalties applied at each
     * verified position. The guesses take what the step's token budget and
     * output rows leave after one decode token per generating request. */
    int spec_lookup; /* longest n-gram matched, 0..64 (0: no speculation) */
    int spec_tokens; /* guesses per step, 1..64 (with spec_lookup > 0 or spec_draft) */
    /* Guesses from the scheduler's draft model instead (gt_sched_config.
     * draft; spec_lookup must then be 0): drawn for all such requests of a
     * step in shared draft forwards, verified as above with the draft's
     * distribution as q (rejection sampling). Its draft sequence is freed
     * when it finishes or is preempted. */
    bool spec_draft;
    /* ---- beam search (beam.h, sched_beam.h) ----
     * With beams W > 0 the request searches with W beams instead of
     * sampling: it waits until W sequence slots are free, holds all W
     * while it runs (W rows per step in the batch; forks rebuild their KV
     * from the prefix cache), and hands over only the winner, token by
     * token through on_token when the search ends (info NULL), then
     * on_done. samp is not used; it takes no penalties, logprobs,
     * constraint or speculation. Preempted, it starts its search again
     * (nothing was handed over yet, and the search is deterministic). */
    int beams;            /* 0: none; else 1..GT_BEAM_MAX_WIDTH and at most the job's sequences */
    float length_penalty; /* score = sum(log p) / length^length_penalty */
    int n_best; /* hypotheses to hand over, 1..beams (0: 1): the runners-up go to on_done */
    /* Says whether tok ends generation (NULL: nothing does, as ignore_eos). */
    bool (*is_eog)(void *user, int32_t tok);
} gt_sched_req;

typedef struct gt_sched gt_sched;

/* The scheduler drives c (borrowed; rank 0). */
gt_status gt_sched_create(gt_coord *c, const gt_sched_config *cfg, gt_sched **out);
/* Finishes every live request with GT_FINISH_SHUTDOWN; accepts NULL. */
void gt_sched_destroy(gt_sched *s);
/* Queues a request. GT_ERR_RANGE when its prompt plus max_tokens exceed
 * the context or the queue is full; GT_ERR_INVALID_ARG for an empty prompt,
 * a token outside the vocabulary, max_tokens < 1, a bad sampler setting,
 * speculation settings out of range (or with a constraint, or no output
 * rows left for guesses), beam settings out of range (or beams with
 * penalties, logprobs, a constraint or speculation)
 * or an id already live. Each with a sentence naming the numbers. */
gt_status gt_sched_submit(gt_sched *s, const gt_sched_req *r);
/* Finishes a waiting or running request as cancelled (its on_done runs
 * now). GT_ERR_NOT_FOUND when no live request has that id. */
gt_status gt_sched_cancel(gt_sched *s, uint64_t id);
/* Runs one engine step if any request can advance; *did_work is false when
 * nothing was waiting or running. A failed step is returned as is (the
 * job then ends). */
gt_status gt_sched_step(gt_sched *s, bool *did_work);
int gt_sched_n_waiting(const gt_sched *s);
int gt_sched_n_running(const gt_sched *s);
/* Requests taken off their slot because the KV pool was full (each resumed
 * later on what the prefix cache still holds). */
uint64_t gt_sched_n_preempted(const gt_sched *s);
/* Speculative decoding's counters over every request since the start. */
typedef struct gt_sched_spec_counts {
    uint64_t steps;    /* verification steps (a request's step with guesses) */
    uint64_t drafted;  /* guesses verified */
    uint64_t accepted; /* of them, kept */
} gt_sched_spec_counts;
typedef struct gt_sched_spec_stats {
    uint64_t steps;    /* verification steps (a request's step with guesses) */
    uint64_t drafted;  /* guesses verified */
    uint64_t accepted; /* of them, kept */
    gt_sched_spec_counts lookup, draft; /* the same by proposer (they add up to the above) */
} gt_sched_spec_stats;
gt_sched_spec_stats gt_sched_get_spec_stats(const gt_sched *s);

#endif
