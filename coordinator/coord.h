/* The in-process coordinator: the job's leader on world rank 0.
 *
 * It owns the rank (worker/rank.h) and drives every rank of the grid with
 * step plans: it turns "evaluate these tokens of sequence s" into steps of at
 * most the engine's batch, keeps each sequence's length, samples each
 * sequence's next token from the candidates (or full logits) the ranks
 * return, and gathers full logits when a caller wants them. The verbs (`run`,
 * `bench`, `perplexity`, later `serve`) are thin clients of it; on every
 * other rank they only call gt_coord_follow.
 *
 * How a sequence's next token is drawn, the same on every grid: on one rank
 * the sampler reads the full logits row; on a grid each rank of the last
 * stage sends its k best (logit, id) pairs and the sampler draws from the k
 * best of those (k = the sampler's candidate count), or, when the sampler
 * needs the whole vocabulary (top-k 0), the full row is gathered. Both give
 * the token the full row would. */
#ifndef GT_COORD_H
#define GT_COORD_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/sampler.h"
#include "worker/rank.h"

typedef struct gt_coord gt_coord;

/* Creates the rank (collective over the job) and, on rank 0, the leader's
 * state. cfg->max_cand bounds the samplers' candidate counts. */
gt_status gt_coord_create(const gt_rank_config *cfg, gt_coord **out);
/* Rank 0 sends STOP first (unless a step failed); then the rank is freed.
 * Accepts NULL. */
void gt_coord_destroy(gt_coord *c);
/* True on the rank that leads (and prints). */
bool gt_coord_leads(const gt_coord *c);
/* Ranks other than 0: execute the leader's steps until it stops. */
gt_status gt_coord_follow(gt_coord *c);
/* Ends the whole job after a failed step. Never returns. */
_Noreturn void gt_coord_abort(gt_coord *c, int code);
gt_rank *gt_coord_rank(gt_coord *c);
/* True once a step failed: the ranks may be out of step, so the job must
 * end with gt_coord_abort rather than a STOP. */
bool gt_coord_failed(const gt_coord *c);
uint32_t gt_coord_n_ctx(const gt_coord *c);
/* True when the last step failed only because the KV pool was full: the
 * ranks are still in step and the sequences unchanged (gt_coord_step then
 * returns GT_ERR_RANGE; free a sequence and try again). */
bool gt_coord_kv_full(const gt_coord *c);

/* ---- rank 0 only ---- */

/* The sampler that draws seq's tokens (borrowed; NULL: none). Each step
 * that evaluates seq's wanted token draws its next token at once, in batch
 * order, so a sampler shared by several sequences sees them in that order. */
gt_status gt_coord_set_sampler(gt_coord *c, int seq, gt_sampler *s);
/* The most log-probability alternatives reported per token. */
#define GT_COORD_MAX_LOGPROBS 20
/* Penalties on seq's recent tokens (NULL: none) and the log-probability
 * alternatives to report per token (0..GT_COORD_MAX_LOGPROBS; 0: none); both need the full
 * logits row, which the ranks then gather to rank 0. Kept until set
 * again. */
gt_status gt_coord_set_extras(gt_coord *c, int seq, const gt_penalty_config *pen, int n_logprobs);
/* With n_logprobs > 0: the log-probability of seq's next token (at
 * temperature 1, before penalties) and the n_top most likely tokens with
 * theirs (logit field), best first; borrowed until the next step. */
gt_status gt_coord_next_logprobs(const gt_coord *c, int seq, float *lp, const gt_cand **top, int *n_top);
/* The logit bias and grammar that seq's tokens go through (borrowed; NULL:
 * none); they need the full logits row, which the ranks then gather. When
 * they leave no token, gt_coord_next_token fails with their sentence.
 * Kept until set again. */
struct gt_constraint;
gt_status gt_coord_set_constraint(gt_coord *c, int seq, struct gt_constraint *cons);
/* Tokens seq holds. */
uint32_t gt_coord_seq_len(const gt_coord *c, int seq);
/* Evaluates toks[n] at the end of seq, in steps of at most the engine's
 * batch. With logits != NULL, the full logits of every token are gathered
 * into logits[n, n_vocab]. The last token's output is kept for
 * gt_coord_next_token. GT_ERR_RANGE when the sequence would pass the
 * context, GT_ERR_INVALID_ARG for a token outside the vocabulary. */
gt_status gt_coord_prefill(gt_coord *c, int seq, const int32_t *toks, int n, float *logits);
/* One step of any mix (the scheduler's): toks[i] appended to seqs[i], in
 * order, each continuing its sequence's cache; want[i] draws that
 * sequence's next token from token i's output (only a sequence's last token
 * of the step may want one). GT_ERR_RANGE past the context,
 * GT_ERR_INVALID_ARG for a bad sequence, token or count. */
gt_status gt_coord_step(gt_coord *c, int n, const int32_t *seqs, const int32_t *toks,
                        const int8_t *want);
/* One step: toks[i] appended to seqs[i] (distinct sequences); each one's
 * next token is drawn. */
gt_status gt_coord_decode(gt_coord *c, int n, const int32_t *seqs, const int32_t *toks);
/* The token drawn from seq's last output. GT_ERR_INVALID_ARG when the
 * sequence has no sampler or nothing was evaluated since its last token. */
gt_status gt_coord_next_token(gt_coord *c, int seq, int32_t *tok);
/* Prefix caching: gives the empty sequence seq the KV rows the ranks
 * already hold for the start of toks[n] (whole blocks of an earlier
 * sequence with the same tokens, never the last token), sent with the next
 * step; *cached receives their count (0 when none), and seq continues at
 * that position, so the caller evaluates only toks[*cached..n). */
gt_status gt_coord_attach_prefix(gt_coord *c, int seq, const int32_t *toks, int n, int *cached);
/* Drops seq's KV cache on every rank (sent with the next step); its full
 * blocks stay cached for later prefixes. */
gt_status gt_coord_free_seq(gt_coord *c, int seq);
/* Speculative decoding. Keeps only seq's first n tokens (n <= its length),
 * on every rank with the next step: the next token continues at position n.
 * GT_ERR_INVALID_ARG when n exceeds the length or seq is being freed. */
gt_status gt_coord_truncate_seq(gt_coord *c, int seq, uint32_t n);
/* As gt_coord_step, but the full logits of every wanted row go to
 * logits[rows, n_vocab] in batch order and no token is drawn (the caller
 * verifies draft tokens with them); a sequence's wanted rows may be any of
 * its tokens. */
gt_status gt_coord_step_logits(gt_coord *c, int n, const int32_t *seqs, const int32_t *toks,
                               const int8_t *want, float *logits);
/* Speculative decoding in a batch (the server's): as gt_coord_step, but
 * the wanted rows with verify[i] set are a speculating sequence's
 * verification rows (any of its tokens may be one): their full logits go
 * to logits[verify rows, n_vocab] in batch order and no token is drawn
 * from them, while every other wanted row draws its sequence's next token
 * as in gt_coord_step (from the full row: a step with verify rows gathers
 * full rows). GT_ERR_INVALID_ARG for a verify row that is not wanted, and
 * what gt_coord_step returns. */
gt_status gt_coord_step_verify(gt_coord *c, int n, const int32_t *seqs, const int32_t *toks,
                               const int8_t *want, const int8_t *verify, float *logits);
/* Wanted rows one step may hold (the job's max_out_rows, within its batch). */
int gt_coord_max_rows(const gt_coord *c);
/* Seconds the other ranks wait for a step plan before their watchdog ends
 * the job. */
double gt_coord_step_timeout(const gt_coord *c);
/* Sends the pending frees and attaches in a step of no tokens, so that an
 * idle job holds no stale KV blocks; *sent says whether a step went. */
gt_status gt_coord_flush(gt_coord *c, bool *sent);
/* Counters: zeroed on every rank at the next step; tracing from the next
 * step on. */
void gt_coord_reset_stats(gt_coord *c);
void gt_coord_trace_on(gt_coord *c);
/* Every rank's counters since the reset ([world size]); write_trace also
 * has each rank write its trace file. */
gt_status gt_coord_report(gt_coord *c, bool write_trace, gt_rank_counters *all);

#endif
