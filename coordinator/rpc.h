/* The msgpack-RPC protocol of `gantry serve` (docs/protocol.md) as a codec:
 * bytes in, validated C structs out; C structs in, bytes out. No sockets and
 * no server state: the network front feeds what it reads and sends what
 * the encoders write.
 *
 * Design: every byte that arrives first passes a small incremental msgpack
 * scanner of our own (rpc_frame.c) that finds frame boundaries and bounds
 * every declared length and element count against --max-frame-bytes before
 * msgpack-c sees it; only whole frames reach msgpack-c's unpacker, so what
 * it allocates is bounded by the frame limit whatever the lengths claim.
 * Validation (rpc_request.c) turns a decoded message into plain structs
 * that own copies of their strings and arrays, refusing wrong types,
 * unknown or repeated keys and out-of-range values with one sentence that
 * names the field and the limit. The encoders (rpc_encode.c) pack with
 * msgpack-c into a buffer the caller owns.
 *
 * Errors: functions return a gt_status with the sentence in gt_last_error();
 * those that refuse client input also fill a gt_rpc_refusal with the
 * protocol's error code and, when known, the msgid to answer. Nothing here
 * has global state; one decoder per connection, used by one thread. */
#ifndef GT_RPC_H
#define GT_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/sampler.h"

/* ---- error codes (stable strings on the wire) ---- */

typedef enum gt_rpc_code {
    GT_RPC_BAD_FRAME = 1,  /* "bad_frame": undecodable bytes, nesting too deep */
    GT_RPC_BAD_REQUEST,    /* "bad_request": not a msgpack-RPC request of the right shape */
    GT_RPC_UNKNOWN_METHOD, /* "unknown_method" */
    GT_RPC_INVALID_PARAM,  /* "invalid_param": a wrong type, an unknown key, a value out of range */
    GT_RPC_TOO_LONG, /* "too_long": a frame or value over its limit, a prompt past the context */
    GT_RPC_UNAUTHORIZED, /* "unauthorized" */
    GT_RPC_DRAINING,     /* "draining": the server is shutting down */
    GT_RPC_QUEUE_FULL,   /* "queue_full" */
    GT_RPC_INTERNAL,     /* "internal" */
    GT_RPC_CODE_COUNT
} gt_rpc_code;

/* The wire string ("bad_frame"); "internal" for anything out of range. */
const char *gt_rpc_code_name(gt_rpc_code c);

/* What a refused frame or request gets answered with. The sentence is
 * gt_last_error(). has_msgid is false when the frame carried no usable
 * msgid (a notification, a broken header): there is nobody to answer. */
typedef struct gt_rpc_refusal {
    gt_rpc_code code;
    bool has_msgid;
    uint32_t msgid;
} gt_rpc_refusal;

/* ---- limits ---- */

/* Bounds checked before anything is allocated or copied. */
typedef struct gt_rpc_limits {
    size_t max_frame_bytes; /* --max-frame-bytes: one whole message */
    size_t max_text_bytes;  /* prompt, a message's content, tokenize's text */
    uint32_t max_tokens_in; /* length of `tokens` (generate, detokenize) */
    uint32_t max_messages;  /* length of `messages` */
    uint32_t max_new;       /* largest max_tokens */
    uint32_t max_stop;      /* number of stop strings */
    uint32_t max_stop_bytes;
    uint32_t max_logprobs; /* alternatives per token */
    uint32_t max_auth_bytes;
} gt_rpc_limits;
#define GT_RPC_LIMITS_INIT                                                                         \
    { (size_t)4 << 20, (size_t)1 << 20, 1u << 20, 1024, 1u << 20, 16, 256, 20, 1024 }

/* Frames nest at most this deep (a valid request needs 5). */
#define GT_RPC_MAX_DEPTH 16

/* ---- frame decoder ---- */

typedef struct gt_rpc_decoder gt_rpc_decoder;
/* One decoded message (opaque): owns msgpack-c's zone. */
typedef struct gt_rpc_msg gt_rpc_msg;

/* max_frame_bytes >= 16. GT_ERR_INVALID_ARG, GT_ERR_NOMEM. */
gt_status gt_rpc_decoder_create(size_t max_frame_bytes, gt_rpc_decoder **out);
void gt_rpc_decoder_destroy(gt_rpc_decoder *d); /* accepts NULL */
/* Takes n bytes as they arrived (any split: part of a frame, several
 * frames). They are copied; call gt_rpc_decoder_next until it gives no
 * message before feeding more, so at most one unfinished frame is held.
 * A frame over the limit or undecodable bytes are found here but reported
 * by gt_rpc_decoder_next after the whole frames before them. Fails only
 * with GT_ERR_NOMEM, or with the decoder's fatal error once it had one. */
gt_status gt_rpc_decoder_feed(gt_rpc_decoder *d, const void *data, size_t n);
/* The next whole message in *msg (free with gt_rpc_msg_free), or *msg NULL
 * when more bytes are needed. GT_ERR_FORMAT (undecodable bytes, code
 * bad_frame) and GT_ERR_RANGE (a frame over the limit, code too_long) are
 * fatal for the connection: every later call repeats them. ref has the
 * msgid when the frame's start showed a request's. GT_ERR_NOMEM; and
 * GT_ERR_INTERNAL should the scanner and msgpack-c ever end a frame at
 * different bytes (checked on every frame). */
gt_status gt_rpc_decoder_next(gt_rpc_decoder *d, gt_rpc_msg **msg, gt_rpc_refusal *ref);
/* At end of stream: GT_ERR_FORMAT ("the connection closed N bytes into a
 * frame") when an unfinished frame is held, else GT_OK. */
gt_status gt_rpc_decoder_finish(const gt_rpc_decoder *d);
/* Bytes of the unfinished frame held. */
size_t gt_rpc_decoder_pending(const gt_rpc_decoder *d);
void gt_rpc_msg_free(gt_rpc_msg *m); /* accepts NULL */

/* ---- requests ---- */

typedef enum gt_rpc_kind { GT_RPC_KIND_REQUEST = 0, GT_RPC_KIND_NOTIFICATION = 2 } gt_rpc_kind;

typedef enum gt_rpc_method {
    GT_RPC_GENERATE = 0,
    GT_RPC_TOKENIZE,
    GT_RPC_DETOKENIZE,
    GT_RPC_CANCEL,
    GT_RPC_MODEL_INFO,
    GT_RPC_HEALTH,
    GT_RPC_STATS,
    GT_RPC_AUTH,
    GT_RPC_METHOD_COUNT
} gt_rpc_method;
/* "generate", ...; "unknown" out of range. */
const char *gt_rpc_method_name(gt_rpc_method m);

typedef enum gt_rpc_input {
    GT_RPC_INPUT_PROMPT = 1,
    GT_RPC_INPUT_MESSAGES,
    GT_RPC_INPUT_TOKENS
} gt_rpc_input;

/* Owned strings are NUL-terminated and hold no NUL byte (refused). */
typedef struct gt_rpc_chat_msg {
    char *role; /* "system", "user" or "assistant" */
    char *content;
} gt_rpc_chat_msg;

typedef struct gt_rpc_generate {
    gt_rpc_input input; /* exactly one of the three below */
    char *prompt;       /* owned */
    size_t prompt_len;
    gt_rpc_chat_msg *messages; /* owned [n_messages] */
    uint32_t n_messages;
    int32_t *tokens; /* owned [n_tokens], each in [0, 2^31) */
    uint32_t n_tokens;
    /* max_tokens: when absent, has_max_tokens is false until
     * gt_rpc_generate_check sets it to what remains of the context. */
    bool has_max_tokens;
    uint32_t max_tokens;
    /* temperature, top_k, top_p, min_p, seed: GT_SAMPLER_CONFIG_INIT where
     * absent (greedy) */
    gt_sampler_config sampling;
    float repetition_penalty; /* 1: off; in (0, 10] */
    float presence_penalty;   /* 0: off; in [-2, 2] */
    float frequency_penalty;  /* 0: off; in [-2, 2] */
    char **stop;              /* owned [n_stop], each 1..max_stop_bytes long */
    uint32_t n_stop;
    uint32_t logprobs; /* 0: none; else alternatives per token */
    bool stream;
    /* logit_bias {id: bias}: owned [n_bias]; ids checked against the
     * vocabulary by gt_rpc_generate_check; bias finite or -inf */
    int32_t *bias_ids;
    float *bias;
    uint32_t n_bias;
    /* grammar (GBNF text) or json_schema (JSON text): owned, NUL-terminated;
     * NULL: none. grammar_kind is a gt_grammar_kind (grammar_vocab.h). */
    char *grammar;
    size_t grammar_len;
    int grammar_kind;
    /* ---- speculative decoding: speculate {lookup, draft, tokens} ---- */
    bool has_speculate;   /* given (else the server's --lookup/--draft/--self-draft/--draft-tokens) */
    bool spec_has_lookup; /* lookup given (else the server's --lookup, or 3) */
    uint32_t spec_lookup; /* prompt lookup's longest n-gram, 0..64 (0: off) */
    uint32_t spec_tokens; /* guesses per step, 1..64 (0: the server's --draft-tokens) */
    bool spec_has_draft;  /* draft given */
    bool spec_draft;      /* guess with the server's draft model (never with lookup > 0) */
    /* ---- beam search: beams W (0: none), length_penalty A (default 1),
     * n_best N (default 1): the answer's text and tokens are the winner's,
     * "alternatives" the next N - 1 hypotheses ---- */
    uint32_t beams;       /* 0..64 here; the scheduler takes 1..min(10, --seqs) */
    float length_penalty; /* in [-10, 10] */
    uint32_t n_best;      /* 0..64 here (0: 1); at most beams */
} gt_rpc_generate;

typedef struct gt_rpc_request {
    gt_rpc_kind kind;
    /* A notification is valid and ignored: its method name is kept for
     * logging (printable ASCII, cut after 32 bytes); nothing else is filled. */
    char notification[48];
    uint32_t msgid;
    gt_rpc_method method;
    gt_rpc_generate generate;
    struct {
        char *text; /* owned */
        size_t text_len;
        bool add_special; /* default false, as `gantry tokenize` */
    } tokenize;
    struct {
        int32_t *tokens; /* owned [n_tokens] */
        uint32_t n_tokens;
    } detokenize;
    struct {
        uint32_t id; /* msgid of the request to cancel */
    } cancel;
    struct {
        char *token; /* owned */
        size_t token_len;
    } auth;
} gt_rpc_request;

/* Classifies and validates one message: a request [0, msgid(uint32),
 * method (str or bin), params] or a notification [2, method, params], where
 * params is an array holding one map, a bare map, an empty array or nil.
 * Keys may be str or bin; nil stands for an absent optional value.
 * On failure req is left empty (nothing to free) and ref says how to
 * answer: bad_request (shape), unknown_method, invalid_param (types, keys,
 * ranges), too_long (a length over its limit). The statuses are
 * GT_ERR_FORMAT, GT_ERR_NOT_FOUND (unknown method), GT_ERR_INVALID_ARG,
 * GT_ERR_RANGE and GT_ERR_NOMEM (code internal). */
gt_status gt_rpc_request_parse(const gt_rpc_msg *m, const gt_rpc_limits *lim, gt_rpc_request *req,
                               gt_rpc_refusal *ref);
void gt_rpc_request_free(gt_rpc_request *req); /* frees the owned fields; accepts zeroed */
void gt_rpc_generate_free(gt_rpc_generate *g);  /* the same for a generate's params alone */

/* The model's numbers for the checks that depend on it. */
typedef struct gt_rpc_model_limits {
    uint32_t n_ctx;
    uint32_t n_vocab;
} gt_rpc_model_limits;

/* The second stage of generate's validation, once the prompt is tokenized
 * into n_prompt tokens: token ids within the vocabulary, top_k within the
 * vocabulary, a non-empty prompt, prompt plus max_tokens within the
 * context ("prompt of 5000 tokens plus max_tokens 100 exceeds the context
 * of 4096"). Sets max_tokens to what remains when it was absent. *code:
 * invalid_param (GT_ERR_INVALID_ARG) or too_long (GT_ERR_RANGE). */
gt_status gt_rpc_generate_check(gt_rpc_generate *g, const gt_rpc_model_limits *m, uint32_t n_prompt,
                                gt_rpc_code *code);
/* Compares the token of an auth call with the server's --auth-token in a
 * time that depends on the lengths only, not on where they differ. */
bool gt_rpc_token_equal(const char *given, size_t given_len, const char *expected,
                        size_t expected_len);
/* Every id of field (e.g. "tokens") in [0, n_vocab): GT_ERR_INVALID_ARG
 * naming the index, the id and the vocabulary. */
gt_status gt_rpc_tokens_check(const char *field, const int32_t *ids, uint32_t n, uint32_t n_vocab);

/* ---- encoders ---- */

/* A growable output buffer the caller owns. An encoder that fails leaves
 * len as it was (no half message is ever left in it). */
typedef struct gt_rpc_buf {
    char *data; /* [cap] */
    size_t len, cap;
} gt_rpc_buf;
void gt_rpc_buf_init(gt_rpc_buf *b);
void gt_rpc_buf_free(gt_rpc_buf *b);
/* Drops the first n bytes (sent ones). */
void gt_rpc_buf_consume(gt_rpc_buf *b, size_t n);

/* Strings the encoders write as msgpack str are made valid UTF-8 (each
 * invalid byte becomes U+FFFD); pieces are written as bin. */

/* [1, msgid, {"code": code, "message": message}, nil]. */
gt_status gt_rpc_encode_error(gt_rpc_buf *b, uint32_t msgid, gt_rpc_code code, const char *message);

typedef enum gt_rpc_finish {
    GT_RPC_FINISH_STOP = 0,
    GT_RPC_FINISH_LENGTH,
    GT_RPC_FINISH_CANCELLED,
    GT_RPC_FINISH_SHUTDOWN
} gt_rpc_finish;
const char *gt_rpc_finish_name(gt_rpc_finish f); /* "stop", ... */

typedef struct gt_rpc_logprob {
    int32_t token;
    float logprob;
} gt_rpc_logprob;
/* One generated token's log-probability and its n_top best alternatives:
 * {"token": id, "logprob": f, "top": [[id, logprob], ...]}. */
typedef struct gt_rpc_token_logprobs {
    int32_t token;
    float logprob;
    const gt_rpc_logprob *top; /* borrowed [n_top] */
    uint32_t n_top;
} gt_rpc_token_logprobs;

typedef struct gt_rpc_generate_result {
    const char *text; /* borrowed [text_len] */
    size_t text_len;
    const int32_t *tokens; /* borrowed [n_tokens] */
    uint32_t n_tokens;
    gt_rpc_finish finish;
    uint32_t prompt_tokens, completion_tokens, cached_tokens;
    const gt_rpc_token_logprobs *logprobs; /* borrowed [n_tokens]; NULL: no "logprobs" key */
    double queue_ms, ttft_ms, total_ms;
    /* ---- speculative decoding: "spec": {"drafted", "accepted", "steps", "method"?} ---- */
    bool has_spec; /* the request speculated (else no "spec" key) */
    uint32_t spec_drafted, spec_accepted, spec_steps;
    const char *spec_method; /* "lookup" or "draft" (NULL: no "method" key) */
    /* ---- beam search: "beam": {"beams", "score"}, "alternatives"?: [{"text",
     * "tokens", "finish_reason", "score"}] (the runners-up, best first) ---- */
    uint32_t beams; /* 0: no "beam" key */
    double beam_score;
    const struct gt_rpc_alternative *alts; /* borrowed [n_alts]; NULL: no "alternatives" key */
    uint32_t n_alts;
} gt_rpc_generate_result;
typedef struct gt_rpc_alternative {
    const char *text; /* borrowed [text_len] */
    size_t text_len;
    const int32_t *tokens; /* borrowed [n_tokens] */
    uint32_t n_tokens;
    gt_rpc_finish finish;
    double score;
} gt_rpc_alternative;
/* [1, msgid, nil, {"text", "tokens", "finish_reason", "usage":
 * {"prompt_tokens", "completion_tokens", "cached_tokens"}, "logprobs"?,
 * "timing": {"queue_ms", "ttft_ms", "total_ms"}, "spec"?: {"drafted",
 * "accepted", "steps", "method"?}, "beam"?: {"beams", "score"},
 * "alternatives"?: [{"text", "tokens", "finish_reason", "score"}]}]. */
gt_status gt_rpc_encode_generate(gt_rpc_buf *b, uint32_t msgid, const gt_rpc_generate_result *r);

typedef struct gt_rpc_token_event {
    uint32_t msgid;   /* the generate request's */
    const char *text; /* borrowed [text_len]: whole UTF-8 characters */
    size_t text_len;
    int32_t token;
    const gt_rpc_token_logprobs *logprobs; /* NULL: no "logprobs" key */
} gt_rpc_token_event;
/* [2, "token", [{"id", "text", "token", "logprobs"?}]]. */
gt_status gt_rpc_encode_token(gt_rpc_buf *b, const gt_rpc_token_event *e);

/* [1, msgid, nil, {"tokens": [...], "pieces": [bin, ...]?}]; pieces
 * (borrowed, [n] with lengths piece_lens) may be NULL. */
gt_status gt_rpc_encode_tokenize(gt_rpc_buf *b, uint32_t msgid, const int32_t *tokens, uint32_t n,
                                 const char *const *pieces, const size_t *piece_lens);
/* [1, msgid, nil, {"text": str}]. */
gt_status gt_rpc_encode_detokenize(gt_rpc_buf *b, uint32_t msgid, const char *text, size_t len);

typedef struct gt_rpc_model_info {
    const char *architecture; /* "llama", ... */
    const char *name;         /* general.name; NULL: omitted */
    const char *chat_format;  /* "chatml", ...; NULL: omitted */
    uint32_t n_ctx, n_vocab;
    uint32_t tp, pp, ep, ranks;
} gt_rpc_model_info;
/* [1, msgid, nil, {"architecture", "name"?, "chat_format"?, "context",
 * "vocabulary", "layout": {"tp", "pp", "ep"}, "ranks"}]. */
gt_status gt_rpc_encode_model_info(gt_rpc_buf *b, uint32_t msgid, const gt_rpc_model_info *mi);

typedef struct gt_rpc_counter {
    const char *name;
    uint64_t value;
} gt_rpc_counter;
/* counts[i] is the number of samples <= bounds_ms[i] and above the bound
 * before; counts[n_bounds] those above the last bound. */
typedef struct gt_rpc_histogram {
    const char *name;
    const double *bounds_ms; /* borrowed [n_bounds], increasing */
    const uint64_t *counts;  /* borrowed [n_bounds + 1] */
    uint32_t n_bounds;
    uint64_t count;
    double sum_ms;
} gt_rpc_histogram;
typedef struct gt_rpc_stats {
    const gt_rpc_counter *counters; /* borrowed [n_counters] */
    uint32_t n_counters;
    const gt_rpc_histogram *histograms; /* borrowed [n_histograms] */
    uint32_t n_histograms;
} gt_rpc_stats;
/* [1, msgid, nil, {"counters": {name: n}, "histograms": {name:
 * {"bounds_ms", "counts", "count", "sum_ms"}}}]. */
gt_status gt_rpc_encode_stats(gt_rpc_buf *b, uint32_t msgid, const gt_rpc_stats *s);

/* [1, msgid, nil, {"status": status}] (health: "serving"). */
gt_status gt_rpc_encode_health(gt_rpc_buf *b, uint32_t msgid, const char *status);
/* [1, msgid, nil, {"cancelled": found}]. */
gt_status gt_rpc_encode_cancel(gt_rpc_buf *b, uint32_t msgid, bool found);
/* [1, msgid, nil, true] (auth). */
gt_status gt_rpc_encode_ok(gt_rpc_buf *b, uint32_t msgid);

#endif
