/* A small blocking client for an OpenAI-compatible `POST /v1/completions`
 * with `stream: true`: the request written by hand, the response parsed by
 * http-parser (Debian's libhttp-parser) and each server-sent event's JSON by
 * jansson. One keep-alive HTTP/1.1 connection per gt_http_client, used by
 * one thread; it reconnects when the server closed the last one. Every call
 * returns 0 on success or -1 with a sentence in gt_http_error(). */
#ifndef GT_HTTP_CLIENT_H
#define GT_HTTP_CLIENT_H

#include <stddef.h>

typedef struct gt_http_client gt_http_client;

/* TCP host:port; auth_token (may be NULL) is sent as `Authorization: Bearer`.
 * NULL on failure with the sentence in err[errlen]. */
gt_http_client *gt_http_connect(const char *host, int port, const char *auth_token, char *err, size_t errlen);
void gt_http_close(gt_http_client *c); /* accepts NULL */
const char *gt_http_error(const gt_http_client *c);

typedef struct gt_http_result {
    int status;             /* the HTTP status */
    int chunks;             /* events that carried text */
    int completion_tokens;  /* usage.completion_tokens, or chunks when the server sent no usage */
    int prompt_tokens;      /* usage.prompt_tokens, or 0 */
    char finish_reason[16];
} gt_http_result;

/* Called with each event's text as it arrives. */
typedef void (*gt_http_piece_fn)(void *user, const char *text, size_t len);

/* Streams one completion of prompt (greedy, at most max_tokens). A status
 * other than 200, a response that is not HTTP, an event that is not JSON or
 * holds no choices, or a stream that ends before `data: [DONE]` fails. */
int gt_http_complete(gt_http_client *c, const char *prompt, int max_tokens, gt_http_piece_fn on_piece, void *user,
                     gt_http_result *out);

#endif
