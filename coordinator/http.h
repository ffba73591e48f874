/* The HTTP/1.1 front of `gantry serve` (docs/protocol.md, "HTTP"): an
 * OpenAI-compatible API beside msgpack-RPC, on the same loop and scheduler.
 *
 * Two pure pieces live here, with no sockets and no server state, so the
 * fuzz target drives them as the server does:
 * - gt_http_parser: bytes of one connection in (any split), whole requests
 *   out in order (keep-alive, pipelining, Content-Length and chunked
 *   bodies), through nodejs http-parser (libhttp-parser), with limits on
 *   header and body bytes. A broken stream ends in one last request that
 *   carries the error status to answer before closing.
 * - gt_oai_parse: an OpenAI completions or chat completions body (JSON,
 *   through jansson) into the same gt_rpc_generate the msgpack-RPC
 *   validation fills, with the same limits; a refusal names the field.
 * The server side (server_http.c) routes requests and writes responses. */
#ifndef GT_HTTP_H
#define GT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "coordinator/rpc.h"

typedef struct gt_http_limits {
    size_t max_header_bytes; /* request line plus headers; beyond: 431 */
    size_t max_body_bytes;   /* beyond: 413 */
    uint32_t max_pipelined;  /* whole requests held unanswered; beyond: the connection closes */
} gt_http_limits;
#define GT_HTTP_LIMITS_INIT {(size_t)16 << 10, (size_t)4 << 20, 32}

typedef struct gt_http_request {
    char method[16]; /* "GET", "POST", ... */
    char *path;      /* the URL's path, without query or fragment */
    char *auth;      /* the Authorization header's value; NULL when absent */
    char *body;      /* NUL-terminated [body_len] (may hold NUL bytes) */
    size_t body_len;
    bool keep_alive; /* http_should_keep_alive */
    bool http10;     /* HTTP/1.0: no chunked responses */
    /* Nonzero: the stream broke here (400 malformed, 413 body, 431
     * headers); answer with this status and error_msg, then close. */
    int error_status;
    char error_msg[256];
    struct gt_http_request *next;
} gt_http_request;
void gt_http_request_free(gt_http_request *r); /* accepts NULL */

typedef struct gt_http_parser gt_http_parser;
gt_status gt_http_parser_create(const gt_http_limits *lim, gt_http_parser **out);
void gt_http_parser_destroy(gt_http_parser *p); /* accepts NULL; frees queued requests */
/* Feeds bytes as they arrived. Whole requests are queued; after a broken
 * stream (one error request queued) later bytes are ignored. GT_ERR_RANGE
 * when more than max_pipelined requests wait (close the connection). */
gt_status gt_http_parser_feed(gt_http_parser *p, const void *data, size_t n);
/* The oldest whole request (caller frees), or NULL. */
gt_http_request *gt_http_parser_next(gt_http_parser *p);
/* Where the current request is: 0 between requests, 1 in its headers,
 * 2 in its body; 3 once the stream broke. */
int gt_http_parser_state(const gt_http_parser *p);

/* ---- OpenAI request bodies ---- */

typedef enum gt_oai_kind { GT_OAI_COMPLETIONS = 0, GT_OAI_CHAT } gt_oai_kind;

typedef struct gt_oai_request {
    gt_oai_kind kind;
    gt_rpc_generate g;     /* as msgpack-RPC's generate; g.logprobs >= 1 when logprobs asked */
    bool want_logprobs;    /* completions: logprobs given; chat: logprobs true */
    uint32_t top_logprobs; /* alternatives to show per token (may be 0) */
    bool include_usage;    /* stream_options.include_usage */
} gt_oai_request;

/* Parses and validates a body. On failure *out is left empty, the sentence
 * is gt_last_error(), *param names the field at fault (NULL for the body
 * as a whole) and *code is invalid_param or too_long. Unknown fields are
 * refused except "user"; n must be 1. Completions default max_tokens to 16
 * (as OpenAI); chat leaves it to the rest of the context. */
gt_status gt_oai_parse(gt_oai_kind kind, const char *body, size_t len, const gt_rpc_limits *lim,
                       gt_oai_request *out, const char **param, gt_rpc_code *code);
void gt_oai_request_free(gt_oai_request *r); /* accepts zeroed */

/* POST /tokenize {"text": str, "add_special"?: bool} and POST /detokenize
 * {"tokens": [int]}; the same limits as msgpack-RPC. */
gt_status gt_oai_parse_tokenize(const char *body, size_t len, const gt_rpc_limits *lim, char **text,
                                size_t *text_len, bool *add_special, const char **param);
gt_status gt_oai_parse_detokenize(const char *body, size_t len, const gt_rpc_limits *lim,
                                  int32_t **tokens, uint32_t *n, const char **param);

/* ---- Prometheus text ---- */

#endif
