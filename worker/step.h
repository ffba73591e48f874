/* The step plan: what the coordinator asks every rank to do in one engine
 * step, and its wire form.
 *
 * Rank 0 builds a step (tokens with their sequence and position, which rows
 * want output and in what form, sequences to free first) and broadcasts it;
 * every rank decodes the same bytes and executes the same step, so the grid
 * stays in lockstep without any rank seeing text, sockets or requests.
 *
 * Wire layout (little-endian, versioned). A fixed 48-byte header is
 * broadcast first, then the payload whose length the header gives:
 *   u32 magic 'GTSP'   u32 version     u32 op          u32 id
 *   i32 n_tokens       i32 n_free      i32 n_cand      u32 flags
 *   u32 payload_bytes  i32 n_trunc      i32 n_attach   i32 n_attach_tokens
 *   payload: i32 tokens[n_tokens], i32 pos[n_tokens], i32 seq[n_tokens],
 *            i32 free_seqs[n_free], i32 attach_seq[n_attach],
 *            i32 attach_len[n_attach], i32 attach_tokens[n_attach_tokens],
 *            i32 trunc_seq[n_trunc], i32 trunc_len[n_trunc],
 *            u8 want[n_tokens], zero padding to 4.
 * A step executes in that order: free, truncate (sequence trunc_seq[i]
 * keeps its first trunc_len[i] KV rows: speculative decoding drops its
 * rejected draft tokens), attach cached prefixes (sequence attach_seq[i]
 * takes the cached KV rows of its first attach_len[i] tokens, which follow
 * each other in attach_tokens), then the batch. Version 3 added the
 * truncations (the word that version 2 reserved as 0).
 * Decoding checks every field against the receiver's limits and answers a
 * broken frame with a sentence naming the field and the numbers. */
#ifndef GT_STEP_H
#define GT_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

#define GT_STEP_MAGIC 0x50535447u /* "GTSP" */
#define GT_STEP_VERSION 3u
#define GT_STEP_HEADER_BYTES 48

typedef enum gt_step_op {
    GT_STEP_FORWARD = 1, /* free sequences, then run the batch (may be empty) */
    GT_STEP_REPORT = 2,  /* gather every rank's counters to rank 0 (see gt_rank_report) */
    GT_STEP_STOP = 3,    /* leave the step loop */
} gt_step_op;

/* flags */
enum {
    GT_STEP_LOGITS = 1u << 0,      /* gather the full logits of wanted rows to rank 0 */
    GT_STEP_RESET_STATS = 1u << 1, /* zero the counters before the step */
    GT_STEP_TRACE_ON = 1u << 2,    /* record trace spans from this step on */
    GT_STEP_TRACE_WRITE = 1u << 3, /* REPORT: also write this rank's trace file */
    GT_STEP_FLAGS_ALL = 0xf,
};

/* A decoded or to-be-encoded step. Arrays are borrowed. */
typedef struct gt_step {
    gt_step_op op;
    uint32_t id;               /* consecutive per job; receivers check it */
    int32_t n_tokens;
    int32_t n_free;
    int32_t n_cand;            /* candidates per wanted row (0: none) */
    uint32_t flags;
    const int32_t *tokens;     /* [n_tokens] */
    const int32_t *pos;        /* [n_tokens] */
    const int32_t *seq;        /* [n_tokens] */
    const int8_t *want;        /* [n_tokens]: 1 when the row's output is wanted */
    const int32_t *free_seqs;  /* [n_free] */
    int32_t n_attach;
    int32_t n_attach_tokens;
    const int32_t *attach_seq;    /* [n_attach] */
    const int32_t *attach_len;    /* [n_attach] tokens, whole KV blocks */
    const int32_t *attach_tokens; /* [n_attach_tokens] the prefixes, one after another */
    int32_t n_trunc;
    const int32_t *trunc_seq;     /* [n_trunc] */
    const int32_t *trunc_len;     /* [n_trunc] tokens each keeps */
} gt_step;

/* What a receiver accepts: the engine's batch limit, its sequences and the
 * largest candidate count. */
typedef struct gt_step_limits {
    int32_t max_tokens;
    int32_t max_seqs;        /* also bounds the sequences freed, truncated or attached in one step */
    int32_t max_cand;
    int32_t max_attach_tokens;
} gt_step_limits;

/* Bytes of the payload of a step with these counts. */
size_t gt_step_payload_bytes(int32_t n_tokens, int32_t n_free, int32_t n_attach, int32_t n_attach_tokens,
                             int32_t n_trunc);
/* Largest payload under these limits (every sequence freed at once). */
size_t gt_step_max_payload_bytes(const gt_step_limits *lim);

/* Writes the header [GT_STEP_HEADER_BYTES] and the payload [cap] of s.
 * GT_ERR_RANGE when the payload exceeds cap. */
gt_status gt_step_encode(const gt_step *s, uint8_t *header, uint8_t *payload, size_t cap);
/* Reads a header: fills the counts, op, id and flags of *s and the payload
 * length. GT_ERR_FORMAT with a sentence for a bad magic, version, op, flag,
 * count beyond lim, or a length that disagrees with the counts. */
gt_status gt_step_decode_header(const uint8_t *header, const gt_step_limits *lim, gt_step *s,
                                size_t *payload_bytes);
/* Points s's arrays into the payload (which must stay alive) and checks
 * the want bytes; the 4-byte alignment of payload is the caller's. */
gt_status gt_step_decode_payload(const uint8_t *payload, size_t bytes, gt_step *s);

#endif
