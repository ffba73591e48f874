/* A small C client for `gantry serve` (docs/protocol.md): blocking sockets
 * and msgpack-c, nothing of the server's code, so a program that only talks
 * to a server links this file and msgpack-c alone.
 *
 * One connection per gt_client, used by one thread. Every call returns 0 on
 * success or -1 with a sentence in gt_client_error(); a server error keeps
 * its code ("too_long", ...) in gt_client_error_code(). */
#ifndef GT_CLIENT_H
#define GT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gt_client gt_client;

/* TCP host:port, or a Unix socket when unix_path is given. NULL on failure
 * with the sentence in err[errlen]. */
gt_client *gt_client_connect(const char *host, int port, const char *unix_path, char *err, size_t errlen);
void gt_client_close(gt_client *c); /* accepts NULL */
const char *gt_client_error(const gt_client *c);
const char *gt_client_error_code(const gt_client *c); /* "" when the failure was not the server's */

int gt_client_auth(gt_client *c, const char *token);

typedef struct gt_client_params {
    const char *prompt;              /* text; or messages below */
    const char *const *roles;        /* [n_messages] "system", "user", "assistant" */
    const char *const *contents;     /* [n_messages] */
    int n_messages;
    int max_tokens;                  /* 0: what the context leaves */
    float temperature;               /* 0: greedy */
    int top_k;                       /* 0: the server's default */
    float top_p;                     /* 0: the server's default */
    uint64_t seed;
    bool has_seed;
} gt_client_params;

typedef struct gt_client_result {
    char *text; /* malloc'd, NUL-terminated */
    size_t len;
    char finish_reason[16];
    int prompt_tokens, completion_tokens, cached_tokens;
    double ttft_ms, total_ms;
} gt_client_result;

/* Called with each piece of text as it is generated (whole UTF-8
 * characters). */
typedef void (*gt_client_token_fn)(void *user, const char *text, size_t len);

/* Runs one generate request, streaming when on_token is given. */
int gt_client_generate(gt_client *c, const gt_client_params *p, gt_client_token_fn on_token, void *user,
                       gt_client_result *out);
void gt_client_result_free(gt_client_result *r);

/* The msgid of the last request this client sent: what another connection
 * passes to gt_client_cancel. */
uint32_t gt_client_last_msgid(const gt_client *c);
/* Cancels the request with that msgid (from any connection); *found says
 * whether it was still running. */
int gt_client_cancel(gt_client *c, uint32_t msgid, bool *found);

#endif
