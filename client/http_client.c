/* The OpenAI-API streaming client; see http_client.h. http-parser splits
 * the response (status, headers, chunked or sized body); the body is cut
 * into server-sent events at blank lines, and each `data:` payload is JSON
 * read with jansson. */
#include "client/http_client.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct gt_http_client {
    char host[256];
    int port, fd;
    char *auth;
    char err[512];
    /* one response */
    http_parser hp;
    char *line; /* the event being read: its `data:` lines joined */
    size_t line_len, line_cap;
    char *body; /* a non-200 answer's body (first 4 KiB) */
    size_t body_len;
    bool done_msg, done_sse, failed, keep_alive;
    gt_http_result *res;
    gt_http_piece_fn on_piece;
    void *user;
};

static int fail(gt_http_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(gt_http_client *c, const char *fmt, ...) {
    if (c->failed) return -1; /* the first sentence is the cause */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    c->failed = true;
    return -1;
}

static int dial(const char *host, int port, char *err, size_t errlen) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (fd >= 0) close(fd);
        fd = -1;
    }
    if (fd < 0) snprintf(err, errlen, "cannot connect to %s port %d: %s", host, port, strerror(errno));
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

gt_http_client *gt_http_connect(const char *host, int port, const char *auth_token, char *err, size_t errlen) {
    gt_http_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "cannot allocate an HTTP client");
        return NULL;
    }
    snprintf(c->host, sizeof c->host, "%s", host);
    c->port = port;
    c->auth = auth_token ? strdup(auth_token) : NULL;
    c->fd = dial(host, port, err, errlen);
    if (c->fd < 0 || (auth_token && !c->auth)) {
        gt_http_close(c);
        return NULL;
    }
    return c;
}

void gt_http_close(gt_http_client *c) {
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    free(c->auth);
    free(c->line);
    free(c->body);
    free(c);
}

const char *gt_http_error(const gt_http_client *c) { return c->err; }

/* ---- one server-sent event ---- */

static void on_event(gt_http_client *c, const char *data, size_t n) {
    if (c->done_sse) {
        fail(c, "the server sent an event after data: [DONE]");
        return;
    }
    if (n == 6 && memcmp(data, "[DONE]", 6) == 0) {
        c->done_sse = true;
        return;
    }
    json_error_t je;
    json_t *j = json_loadb(data, n, 0, &je);
    if (!j) {
        fail(c, "the server sent an event that is not JSON (%s at byte %d): %.60s", je.text, je.position, data);
        return;
    }
    json_t *e = json_object_get(j, "error");
    json_t *choices = json_object_get(j, "choices");
    json_t *usage = json_object_get(j, "usage");
    if (json_is_object(e)) {
        fail(c, "the server sent an error event: %s", json_string_value(json_object_get(e, "message")) ?
             json_string_value(json_object_get(e, "message")) : "(no message)");
    } else if (!json_is_array(choices)) {
        fail(c, "the server sent an event without a `choices` array: %.60s", data);
    } else {
        json_t *ch = json_array_get(choices, 0);
        json_t *text = json_object_get(ch, "text");
        json_t *fin = json_object_get(ch, "finish_reason");
        if (ch && !json_is_string(text) && !json_is_null(text) && text)
            fail(c, "the server sent a choice whose `text` is not a string: %.60s", data);
        if (json_is_string(text) && json_string_length(text)) {
            c->res->chunks++;
            if (c->on_piece) c->on_piece(c->user, json_string_value(text), json_string_length(text));
        }
        if (json_is_string(fin))
            snprintf(c->res->finish_reason, sizeof c->res->finish_reason, "%s", json_string_value(fin));
        if (json_is_object(usage)) {
            c->res->completion_tokens = (int)json_integer_value(json_object_get(usage, "completion_tokens"));
            c->res->prompt_tokens = (int)json_integer_value(json_object_get(usage, "prompt_tokens"));
        }
    }
    json_decref(j);
}

/* Body bytes of a 200 answer: lines ending in \n (an optional \r dropped);
 * `data:` lines are joined with \n, a blank line ends the event; comments
 * (`:`) and other fields are ignored. */
static int sse_feed(gt_http_client *c, const char *p, size_t n) {
    for (size_t i = 0; i < n && !c->failed; i++) {
        if (c->line_len + 2 > c->line_cap) {
            size_t cap = c->line_cap ? c->line_cap * 2 : 1024;
            char *t = realloc(c->line, cap);
            if (!t) return fail(c, "cannot hold an event of %zu bytes", c->line_len);
            c->line = t;
            c->line_cap = cap;
        }
        c->line[c->line_len++] = p[i];
        if (p[i] != '\n') continue;
        /* a whole line: c->line holds the event so far, then this line */
        char *buf = c->line;
        size_t end = c->line_len - 1;
        size_t start = end;
        while (start > 0 && buf[start - 1] != '\n') start--;
        size_t ll = end - start;
        if (ll && buf[start + ll - 1] == '\r') ll--;
        if (ll == 0) { /* blank line: dispatch */
            /* the event's lines are "data: x\n" each; strip the field names */
            size_t out = 0;
            char *q = buf, *stop = buf + start;
            bool any = false;
            while (q < stop) {
                char *nl = memchr(q, '\n', (size_t)(stop - q));
                size_t len = (size_t)(nl - q);
                if (len && q[len - 1] == '\r') len--;
                if (len >= 5 && memcmp(q, "data:", 5) == 0) {
                    size_t skip = (len > 5 && q[5] == ' ') ? 6 : 5;
                    if (any) buf[out++] = '\n';
                    memmove(buf + out, q + skip, len - skip);
                    out += len - skip;
                    any = true;
                }
                q = nl + 1;
            }
            if (any) {
                buf[out] = '\0';
                on_event(c, buf, out);
            }
            c->line_len = 0;
        }
    }
    return c->failed ? -1 : 0;
}

/* ---- http-parser callbacks ---- */

static int cb_headers_complete(http_parser *p) {
    gt_http_client *c = p->data;
    c->res->status = (int)p->status_code;
    return 0;
}

static int cb_body(http_parser *p, const char *at, size_t n) {
    gt_http_client *c = p->data;
    if (p->status_code != 200) {
        size_t room = 4096 - c->body_len;
        if (!c->body) c->body = malloc(4097);
        if (c->body && room) {
            size_t k = n < room ? n : room;
            memcpy(c->body + c->body_len, at, k);
            c->body_len += k;
        }
        return 0;
    }
    return sse_feed(c, at, n) ? -1 : 0;
}

static int cb_message_complete(http_parser *p) {
    gt_http_client *c = p->data;
    c->done_msg = true;
    c->keep_alive = http_should_keep_alive(p) != 0;
    http_parser_pause(p, 1);
    return 0;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int answer_error(gt_http_client *c) {
    const char *msg = NULL;
    json_t *j = c->body ? json_loadb(c->body, c->body_len, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    if (json_is_object(e)) msg = json_string_value(json_object_get(e, "message"));
    else if (json_is_string(e)) msg = json_string_value(e);
    int rc = fail(c, "the server answered HTTP %d: %s", c->res->status,
                  msg ? msg : "(no OpenAI error object in the body)");
    json_decref(j);
    return rc;
}

int gt_http_complete(gt_http_client *c, const char *prompt, int max_tokens, gt_http_piece_fn on_piece, void *user,
                     gt_http_result *out) {
    memset(out, 0, sizeof *out);
    c->failed = false;
    c->err[0] = '\0';
    if (c->fd < 0) { /* the server closed the last connection */
        c->fd = dial(c->host, c->port, c->err, sizeof c->err);
        if (c->fd < 0) return -1;
    }
    json_t *req = json_pack("{s:s, s:s, s:i, s:f, s:b, s:{s:b}}", "model", "gantry", "prompt", prompt,
                            "max_tokens", max_tokens, "temperature", 0.0, "stream", 1, "stream_options",
                            "include_usage", 1);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body) return fail(c, "cannot build the request's JSON (a prompt of %zu bytes)", strlen(prompt));
    size_t blen = strlen(body);
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "POST /v1/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                      "Accept: text/event-stream\r\nConnection: keep-alive\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                      c->host, c->port, blen, c->auth ? "Authorization: Bearer " : "", c->auth ? c->auth : "",
                      c->auth ? "\r\n" : "");
    int rc = (hn > 0 && (size_t)hn < sizeof head && send_all(c->fd, head, (size_t)hn) == 0 &&
              send_all(c->fd, body, blen) == 0) ? 0 : -1;
    free(body);
    if (rc) {
        close(c->fd);
        c->fd = -1;
        return fail(c, "cannot send the request to %s port %d: %s", c->host, c->port, strerror(errno));
    }
    http_parser_settings st;
    http_parser_settings_init(&st);
    st.on_headers_complete = cb_headers_complete;
    st.on_body = cb_body;
    st.on_message_complete = cb_message_complete;
    http_parser_init(&c->hp, HTTP_RESPONSE);
    c->hp.data = c;
    c->res = out;
    c->on_piece = on_piece;
    c->user = user;
    c->line_len = c->body_len = 0;
    c->done_msg = c->done_sse = c->keep_alive = false;
    char buf[16384];
    while (!c->done_msg && !c->failed) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            fail(c, "cannot read the answer from %s port %d: %s", c->host, c->port, strerror(errno));
            break;
        }
        size_t k = http_parser_execute(&c->hp, &st, buf, (size_t)n);
        if (c->failed) break;
        if (HTTP_PARSER_ERRNO(&c->hp) != HPE_OK && HTTP_PARSER_ERRNO(&c->hp) != HPE_PAUSED) {
            fail(c, "the server's answer is not valid HTTP: %s", http_errno_description(HTTP_PARSER_ERRNO(&c->hp)));
            break;
        }
        if (n == 0 && !c->done_msg) {
            fail(c, "the server closed the connection before the answer ended");
            break;
        }
        (void)k;
    }
    if (!c->done_msg || !c->keep_alive || c->failed) { /* a half-read answer leaves the connection unusable */
        close(c->fd);
        c->fd = -1;
    }
    if (c->failed) return -1;
    if (out->status != 200) return answer_error(c);
    if (c->line_len) return fail(c, "the stream ended inside an event (%zu bytes without a blank line)", c->line_len);
    if (!c->done_sse) return fail(c, "the stream ended without `data: [DONE]` after %d chunks", out->chunks);
    if (!out->completion_tokens) out->completion_tokens = out->chunks;
    return 0;
}
