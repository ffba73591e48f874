/* The HTTP front of `gantry serve`: a second gt_net on --http-port whose
 * connections feed gt_http_parser; requests are answered one at a time per
 * connection, in order (pipelining), and completions go to the same
 * submit (s->core) and scheduler as msgpack-RPC's generate. See http.h and
 * docs/protocol.md ("HTTP"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/log.h"
#include "common/timer.h"
#include "coordinator/http.h"
#include "coordinator/metrics.h"
#include "coordinator/server_internal.h"

typedef struct srv_http_conn {
    gt_server *s;
    gt_conn *conn;
    gt_http_parser *p;
    gt_http_request *cur; /* a completion in flight */
    srv_req *req;
    bool closing, pump_due;
    bool idle;                            /* hdr_deadline is the keep-alive idle clock */
    uint64_t hdr_deadline, body_deadline; /* ns; 0: none */
    struct srv_http_conn *prev, *next;
} srv_http_conn;

typedef struct srv_http {
    gt_net *net;
    uv_timer_t sweep;
    uv_check_t polled; /* after each I/O poll: io_ns */
    uint64_t io_ns;    /* when the loop last read what the sockets held */
    uv_async_t wake;
    srv_http_conn *conns;
    gt_http_limits lim;
    uint64_t next_id;
} srv_http;

typedef struct srv_http_req {
    gt_oai_kind kind;
    bool stream, chunked, include_usage, want_lp;
    uint32_t top_lp;
    char id[48];
    long long created;
} srv_http_req;

void srv_http_req_free(struct srv_http_req *h) { free(h); }

/* ---- writing ---- */

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    }
    return "Error";
}

static void send_raw(srv_http_conn *hc, const char *p, size_t n) {
    if (hc && !hc->closing) gt_conn_send(hc->conn, p, n);
}

static void respond(srv_http_conn *hc, int status, const char *ctype, const char *body, size_t len,
                    bool keep_alive, const char *extra) {
    char head[512];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n", status,
                     reason(status), ctype, len, keep_alive ? "" : "Connection: close\r\n",
                     extra ? extra : "");
    send_raw(hc, head, (size_t)h);
    send_raw(hc, body, len);
    if (!keep_alive && !hc->closing) {
        gt_conn_close(hc->conn);
        hc->closing = true;
    }
}

static void respond_json(srv_http_conn *hc, int status, json_t *o, bool keep_alive) {
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!t) {
        static const char k[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":\"internal\"}}";
        respond(hc, 500, "application/json", k, sizeof k - 1, false, NULL);
        return;
    }
    respond(hc, status, "application/json", t, strlen(t), keep_alive, NULL);
    free(t);
}

/* A string as JSON, its invalid UTF-8 bytes as '?'. */
static json_t *jstr(const char *p, size_t n) {
    json_t *v = json_stringn(p ? p : "", p ? n : 0);
    if (v) return v;
    char *c = malloc(n + 1);
    if (!c) return json_string("");
    for (size_t i = 0; i < n; i++) c[i] = (p[i] & 0x80) || !p[i] ? '?' : p[i];
    v = json_stringn(c, n);
    free(c);
    return v;
}

static int status_of(gt_rpc_code code) {
    switch (code) {
    case GT_RPC_UNAUTHORIZED: return 401;
    case GT_RPC_DRAINING: return 503;
    case GT_RPC_QUEUE_FULL: return 429;
    case GT_RPC_INTERNAL: return 500;
    case GT_RPC_UNKNOWN_METHOD: return 404;
    default: return 400;
    }
}

static json_t *error_json(int status, const char *code, const char *param, const char *msg) {
    const char *type = status == 401   ? "authentication_error"
                       : status == 404 ? "not_found_error"
                       : status == 429 ? "rate_limit_error"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    return json_pack("{s:{s:o,s:s,s:o,s:s}}", "error", "message", jstr(msg, strlen(msg)), "type", type,
                     "param", param ? json_string(param) : json_null(), "code", code);
}

static void respond_error(srv_http_conn *hc, int status, const char *code, const char *param,
                          const char *msg, bool keep_alive) {
    hc->s->n_refused++;
    respond_json(hc, status, error_json(status, code, param, msg), keep_alive);
}

/* ---- completions ---- */

static const char *finish_name(gt_rpc_finish f) { return gt_rpc_finish_name(f); }

static json_t *usage_json(const srv_req *r, const gt_sched_usage *u) {
    uint32_t done = u ? (uint32_t)u->completion_tokens : r->n_toks;
    for (uint32_t i = 0; i < r->n_alts; i++)
        done += r->alts[i].n_tokens; /* every choice's, as OpenAI counts */
    json_t *o = json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)r->n_prompt, "completion_tokens",
                          (json_int_t)done, "total_tokens", (json_int_t)(r->n_prompt + done),
                          "prompt_tokens_details", "cached_tokens", (json_int_t)(u ? u->cached_tokens : 0));
    /* Gantry's extension: a speculating request's guesses. */
    if (o && r->spec && u)
        json_object_set_new(o, "spec", json_pack("{s:I,s:I,s:I,s:s}", "drafted", (json_int_t)u->spec_drafted,
                                                 "accepted", (json_int_t)u->spec_accepted, "steps",
                                                 (json_int_t)u->spec_steps, "method",
                                                 r->spec_draft ? "draft" : "lookup"));
    /* Gantry's extension: a beam search's width and its winner's score. */
    if (o && r->beams && u)
        json_object_set_new(o, "beam", json_pack("{s:I,s:f}", "beams", (json_int_t)r->beams, "score", u->beam_score));
    return o;
}

static json_t *bytes_json(gt_str p) {
    json_t *a = json_array();
    for (size_t i = 0; i < p.len; i++) json_array_append_new(a, json_integer((uint8_t)p.ptr[i]));
    return a;
}

/* Chat: {"content": [{token, logprob, bytes, top_logprobs}]} for lps[n]. */
static json_t *chat_logprobs(gt_server *s, const srv_http_req *h, const gt_rpc_token_logprobs *lps, uint32_t n) {
    json_t *content = json_array();
    for (uint32_t i = 0; i < n; i++) {
        const gt_rpc_token_logprobs *lp = &lps[i];
        gt_str p = gt_token_piece(s->tok, lp->token, true);
        json_t *tops = json_array();
        for (uint32_t k = 0; k < lp->n_top && k < h->top_lp; k++) {
            gt_str q = gt_token_piece(s->tok, lp->top[k].token, true);
            json_array_append_new(tops, json_pack("{s:o,s:f,s:o}", "token", jstr(q.ptr, q.len), "logprob",
                                                  (double)lp->top[k].logprob, "bytes", bytes_json(q)));
        }
        json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", jstr(p.ptr, p.len), "logprob",
                                                 (double)lp->logprob, "bytes", bytes_json(p), "top_logprobs", tops));
    }
    return json_pack("{s:o}", "content", content);
}

/* Completions: {tokens, token_logprobs, top_logprobs, text_offset}. */
static json_t *text_logprobs(gt_server *s, const srv_http_req *h, const gt_rpc_token_logprobs *lps, uint32_t n,
                             size_t offset) {
    json_t *toks = json_array(), *lpv = json_array(), *tops = json_array(), *offs = json_array();
    for (uint32_t i = 0; i < n; i++) {
        const gt_rpc_token_logprobs *lp = &lps[i];
        gt_str p = gt_token_piece(s->tok, lp->token, true);
        json_array_append_new(toks, jstr(p.ptr, p.len));
        json_array_append_new(lpv, json_real(lp->logprob));
        json_t *t = json_object();
        for (uint32_t k = 0; k < lp->n_top && k < h->top_lp; k++) {
            gt_str q = gt_token_piece(s->tok, lp->top[k].token, true);
            json_t *key = jstr(q.ptr, q.len);
            json_object_set_new(t, json_string_value(key), json_real(lp->top[k].logprob));
            json_decref(key);
        }
        json_array_append_new(tops, t);
        json_array_append_new(offs, json_integer((json_int_t)offset));
        offset += p.len;
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lpv, "top_logprobs", tops,
                     "text_offset", offs);
}

static json_t *chunk_base(gt_server *s, const srv_http_req *h) {
    return json_pack("{s:s,s:s,s:I,s:s}", "id", h->id, "object",
                     h->kind == GT_OAI_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)h->created, "model", s->core->model_name(s));
}

/* One SSE event, in one write (with its chunk framing when chunked). */
static void send_event(srv_http_conn *hc, const srv_http_req *h, const char *data, size_t n) {
    char head[32];
    int k = h->chunked ? snprintf(head, sizeof head, "%zx\r\n", n + 8) : 0;
    const char *tail = h->chunked ? "\n\n\r\n" : "\n\n";
    size_t nt = h->chunked ? 4 : 2, total = (size_t)k + 6 + n + nt;
    char *buf = malloc(total);
    if (!buf) { /* the pieces one by one, as a last resort */
        send_raw(hc, head, (size_t)k);
        send_raw(hc, "data: ", 6);
        send_raw(hc, data, n);
        send_raw(hc, tail, nt);
        return;
    }
    memcpy(buf, head, (size_t)k);
    memcpy(buf + k, "data: ", 6);
    memcpy(buf + k + 6, data, n);
    memcpy(buf + k + 6 + n, tail, nt);
    send_raw(hc, buf, total);
    free(buf);
}

static void send_chunk(srv_http_conn *hc, const srv_http_req *h, json_t *o) {
    char *t = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (t) send_event(hc, h, t, strlen(t));
    free(t);
}

/* One streamed choice: a piece of text (with its token's logprobs), or the
 * end (finish non-NULL). */
static json_t *choice_chunk(gt_server *s, const srv_http_req *h, const char *p, size_t n,
                            const gt_rpc_token_logprobs *lp, const char *finish, bool role) {
    json_t *c = json_pack("{s:i}", "index", 0);
    if (h->kind == GT_OAI_CHAT) {
        json_t *d = json_object();
        if (role) json_object_set_new(d, "role", json_string("assistant"));
        if (!finish) json_object_set_new(d, "content", jstr(p, n));
        json_object_set_new(c, "delta", d);
        json_object_set_new(c, "logprobs", lp && h->want_lp ? chat_logprobs(s, h, lp, 1) : json_null());
    } else {
        json_object_set_new(c, "text", jstr(p, n));
        json_object_set_new(c, "logprobs", lp && h->want_lp ? text_logprobs(s, h, lp, 1, 0) : json_null());
    }
    json_object_set_new(c, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *o = chunk_base(s, h);
    json_object_set_new(o, "choices", json_pack("[o]", c));
    return o;
}

void srv_http_piece(gt_server *s, srv_req *r, const char *p, size_t n, const gt_rpc_token_logprobs *lp) {
    srv_http_conn *hc = r->hc;
    if (!hc || !r->h) return;
    send_chunk(hc, r->h, choice_chunk(s, r->h, p, n, lp, NULL, false));
}

static void finish_conn_request(srv_http_conn *hc) {
    bool keep = hc->cur && hc->cur->keep_alive && !(hc->req && hc->req->h && hc->req->h->stream && !hc->req->h->chunked);
    gt_http_request_free(hc->cur);
    hc->cur = NULL;
    hc->req = NULL;
    if (!keep && !hc->closing) {
        gt_conn_close(hc->conn);
        hc->closing = true;
    }
    hc->pump_due = true;
    srv_http *http = hc->s->http;
    if (http) uv_async_send(&http->wake); /* the next pipelined request, outside the scheduler's callback */
}

/* One choice of a finished answer: its text as a chat message or as text. */
static json_t *choice_json(const srv_http_req *h, int index, const char *text, size_t len,
                           json_t *lp, gt_rpc_finish f) {
    json_t *c = json_pack("{s:i}", "index", index);
    if (h->kind == GT_OAI_CHAT)
        json_object_set_new(
            c, "message",
            json_pack("{s:s,s:o}", "role", "assistant", "content", jstr(text ? text : "", len)));
    else
        json_object_set_new(c, "text", jstr(text ? text : "", len));
    json_object_set_new(c, "logprobs", lp);
    json_object_set_new(c, "finish_reason", json_string(finish_name(f)));
    return c;
}

void srv_http_done(gt_server *s, srv_req *r, gt_rpc_finish f, const gt_sched_usage *u) {
    srv_http_conn *hc = r->hc;
    srv_http_req *h = r->h;
    if (!hc || !h) return;
    if (h->stream) {
        send_chunk(hc, h, choice_chunk(s, h, "", 0, NULL, finish_name(f), false));
        if (h->include_usage) {
            json_t *o = chunk_base(s, h);
            json_object_set_new(o, "choices", json_array());
            json_object_set_new(o, "usage", usage_json(r, u));
            send_chunk(hc, h, o);
        }
        send_event(hc, h, "[DONE]", 6);
        if (h->chunked) send_raw(hc, "0\r\n\r\n", 5);
    } else {
        json_t *lp = r->n_lp && h->want_lp ? (h->kind == GT_OAI_CHAT ? chat_logprobs(s, h, r->lps, r->n_toks)
                                                                     : text_logprobs(s, h, r->lps, r->n_toks, 0))
                                           : json_null();
        /* The answer, then a beam search's runners-up (n > 1), best first. */
        json_t *choices = json_array();
        json_array_append_new(choices, choice_json(h, 0, r->text, r->len, lp, f));
        for (uint32_t i = 0; i < r->n_alts; i++) {
            const gt_rpc_alternative *a = &r->alts[i];
            json_array_append_new(
                choices, choice_json(h, (int)i + 1, a->text, a->text_len, json_null(), a->finish));
        }
        json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "id", h->id, "object",
                              h->kind == GT_OAI_CHAT ? "chat.completion" : "text_completion",
                              "created", (json_int_t)h->created, "model", s->core->model_name(s),
                              "choices", choices, "usage", usage_json(r, u));
        respond_json(hc, 200, o, hc->cur ? hc->cur->keep_alive : false);
    }
    r->hc = NULL;
    finish_conn_request(hc);
}

void srv_http_fail(gt_server *s, srv_req *r, const char *msg) {
    (void)s;
    srv_http_conn *hc = r->hc;
    if (!hc || !r->h) return;
    if (r->h->stream) { /* the headers went out: an error event, then the end */
        json_t *e = error_json(500, "internal", NULL, msg);
        send_chunk(hc, r->h, e);
        if (r->h->chunked) send_raw(hc, "0\r\n\r\n", 5);
    } else {
        respond_json(hc, 500, error_json(500, "internal", NULL, msg), false);
    }
    r->hc = NULL;
    if (hc->cur) hc->cur->keep_alive = false;
    finish_conn_request(hc);
}

/* Returns true when the request went to the scheduler (answered later). */
static bool handle_completion(srv_http_conn *hc, gt_http_request *q, gt_oai_kind kind) {
    gt_server *s = hc->s;
    gt_oai_request o;
    const char *param = NULL;
    gt_rpc_code code;
    if (gt_oai_parse(kind, q->body, q->body_len, &s->cfg.limits, &o, &param, &code) != GT_OK) {
        respond_error(hc, status_of(code), gt_rpc_code_name(code), param, gt_last_error(), q->keep_alive);
        return false;
    }
    srv_http_req *h = calloc(1, sizeof *h);
    srv_req *r = NULL;
    gt_status st = h ? GT_OK : gt_fail(GT_ERR_NOMEM, "cannot hold an HTTP request");
    code = GT_RPC_INTERNAL;
    if (st == GT_OK) {
        h->kind = kind;
        h->stream = o.g.stream;
        h->chunked = !q->http10;
        h->include_usage = o.include_usage;
        h->want_lp = o.want_logprobs;
        h->top_lp = o.top_logprobs;
        h->created = (long long)time(NULL);
        snprintf(h->id, sizeof h->id, "%s-%llu", kind == GT_OAI_CHAT ? "chatcmpl" : "cmpl",
                 (unsigned long long)++s->http->next_id);
        st = s->core->submit(s, &o.g, NULL, 0, hc, &r, &code);
    }
    gt_oai_request_free(&o);
    if (st != GT_OK) {
        free(h);
        respond_error(hc, status_of(code), gt_rpc_code_name(code), NULL, gt_last_error(), q->keep_alive);
        return false;
    }
    r->h = h;
    hc->cur = q;
    hc->req = r;
    if (h->stream) {
        char head[256];
        int k = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n%s\r\n",
                         h->chunked ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n");
        send_raw(hc, head, (size_t)k);
        if (kind == GT_OAI_CHAT) send_chunk(hc, h, choice_chunk(s, h, "", 0, NULL, NULL, true));
    }
    return true;
}

static void handle_tokenize(srv_http_conn *hc, gt_http_request *q) {
    gt_server *s = hc->s;
    char *text;
    size_t len;
    bool add;
    const char *param;
    if (gt_oai_parse_tokenize(q->body, q->body_len, &s->cfg.limits, &text, &len, &add, &param) != GT_OK) {
        respond_error(hc, 400, "invalid_param", param, gt_last_error(), q->keep_alive);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    unsigned flags = GT_TOK_PARSE_SPECIAL | (add ? GT_TOK_ADD_SPECIAL : 0);
    gt_status st = gt_tokenize(s->tok, text, len, flags, &ids, &n);
    free(text);
    if (st != GT_OK) {
        respond_error(hc, 500, "internal", NULL, gt_last_error(), q->keep_alive);
        return;
    }
    json_t *toks = json_array(), *pieces = json_array();
    for (size_t i = 0; i < n; i++) {
        gt_str p = gt_token_piece(s->tok, ids[i], true);
        json_array_append_new(toks, json_integer(ids[i]));
        json_array_append_new(pieces, jstr(p.ptr, p.len));
    }
    free(ids);
    respond_json(hc, 200, json_pack("{s:o,s:o}", "tokens", toks, "pieces", pieces), q->keep_alive);
}

static void handle_detokenize(srv_http_conn *hc, gt_http_request *q) {
    gt_server *s = hc->s;
    int32_t *ids;
    uint32_t n;
    const char *param;
    if (gt_oai_parse_detokenize(q->body, q->body_len, &s->cfg.limits, &ids, &n, &param) != GT_OK ||
        gt_rpc_tokens_check("tokens", ids, n, s->n_vocab) != GT_OK) {
        if (!param) param = "tokens";
        respond_error(hc, 400, "invalid_param", param, gt_last_error(), q->keep_alive);
        free(ids);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    gt_status st = gt_detokenize(s->tok, ids, n, 0, &text, &len);
    free(ids);
    if (st != GT_OK) {
        respond_error(hc, 500, "internal", NULL, gt_last_error(), q->keep_alive);
        return;
    }
    respond_json(hc, 200, json_pack("{s:o}", "text", jstr(text, len)), q->keep_alive);
    free(text);
}

static void handle_metrics(srv_http_conn *hc, gt_http_request *q) {
    gt_rpc_buf b;
    gt_rpc_buf_init(&b);
    if (hc->s->core->metrics_text(hc->s, &b) == GT_OK)
        respond(hc, 200, GT_METRICS_CONTENT_TYPE, b.data, b.len, q->keep_alive, NULL);
    else
        respond_error(hc, 500, "internal", NULL, gt_last_error(), q->keep_alive);
    gt_rpc_buf_free(&b);
}

static bool authorized(gt_server *s, const gt_http_request *q) {
    const char *want = s->cfg.auth_token;
    if (!want) return true;
    const char *a = q->auth;
    if (!a || strncmp(a, "Bearer ", 7)) return false;
    a += 7;
    return gt_rpc_token_equal(a, strlen(a), want, strlen(want));
}

/* Returns true when the request is answered later (a completion). */
static bool handle(srv_http_conn *hc, gt_http_request *q) {
    gt_server *s = hc->s;
    if (q->error_status) {
        respond_error(hc, q->error_status, q->error_status == 413 ? "too_long" : "bad_request", NULL,
                      q->error_msg, false);
        return false;
    }
    static const struct {
        const char *path, *method;
        bool open;
    } routes[] = {{"/v1/completions", "POST", false}, {"/v1/chat/completions", "POST", false},
                  {"/v1/models", "GET", false},       {"/health", "GET", true},
                  {"/metrics", "GET", true},          {"/tokenize", "POST", false},
                  {"/detokenize", "POST", false}};
    int k = 0, n = (int)(sizeof routes / sizeof routes[0]);
    while (k < n && strcmp(routes[k].path, q->path)) k++;
    if (!(k < n && routes[k].open && s->cfg.http.open_health) && !authorized(s, q)) {
        respond_error(hc, 401, "unauthorized", NULL,
                      q->auth ? "the bearer token is not this server's"
                              : "this server needs an Authorization: Bearer token",
                      q->keep_alive);
        return false;
    }
    if (k == n) {
        char m[200];
        snprintf(m, sizeof m, "no endpoint at '%.120s'", q->path);
        respond_error(hc, 404, "not_found", NULL, m, q->keep_alive);
        return false;
    }
    if (strcmp(q->method, routes[k].method)) {
        char m[200], allow[32];
        snprintf(m, sizeof m, "%s takes %s, not %s", routes[k].path, routes[k].method, q->method);
        snprintf(allow, sizeof allow, "Allow: %s\r\n", routes[k].method);
        s->n_refused++;
        json_t *e = error_json(405, "method_not_allowed", NULL, m);
        char *t = json_dumps(e, JSON_COMPACT);
        json_decref(e);
        respond(hc, 405, "application/json", t ? t : "{}", t ? strlen(t) : 2, q->keep_alive, allow);
        free(t);
        return false;
    }
    switch (k) {
    case 0: return handle_completion(hc, q, GT_OAI_COMPLETIONS);
    case 1: return handle_completion(hc, q, GT_OAI_CHAT);
    case 2:
        respond_json(hc, 200,
                     json_pack("{s:s,s:[{s:s,s:s,s:i,s:s}]}", "object", "list", "data", "id", s->core->model_name(s),
                               "object", "model", "created", 0, "owned_by", "gantry"),
                     q->keep_alive);
        return false;
    case 3:
        if (s->draining)
            respond_error(hc, 503, "draining", NULL, "the server is draining", q->keep_alive);
        else
            respond_json(hc, 200, json_pack("{s:s}", "status", "serving"), q->keep_alive);
        return false;
    case 4: handle_metrics(hc, q); return false;
    case 5: handle_tokenize(hc, q); return false;
    default: handle_detokenize(hc, q); return false;
    }
}

static void pump(srv_http_conn *hc) {
    hc->pump_due = false;
    while (!hc->cur && !hc->closing) {
        gt_http_request *q = gt_http_parser_next(hc->p);
        if (!q) break;
        if (!handle(hc, q)) gt_http_request_free(q);
    }
    /* Idle (between requests, nothing in flight): the header clock runs. */
    int ps = gt_http_parser_state(hc->p);
    uint64_t now = gt_now_ns();
    if (ps == 0 && !hc->cur && !hc->hdr_deadline) {
        hc->hdr_deadline = now + (uint64_t)(hc->s->cfg.http.idle_timeout_s * 1e9);
        hc->idle = true;
    }
    if (ps == 1 && !hc->hdr_deadline) {
        hc->hdr_deadline = now + (uint64_t)(hc->s->cfg.http.header_timeout_s * 1e9);
        hc->idle = false;
    }
    if (ps == 2 && !hc->body_deadline) hc->body_deadline = now + (uint64_t)(hc->s->cfg.http.body_timeout_s * 1e9);
    if (ps != 0 && ps != 1) hc->hdr_deadline = 0;
    if (ps == 0 && hc->cur) hc->hdr_deadline = 0;
    if (ps != 2) hc->body_deadline = 0;
}

/* ---- connections ---- */

static void on_open(void *user, gt_conn *c) {
    gt_server *s = user;
    srv_http_conn *hc = calloc(1, sizeof *hc);
    if (!hc || gt_http_parser_create(&s->http->lim, &hc->p) != GT_OK) {
        free(hc);
        gt_conn_close(c);
        return;
    }
    hc->s = s;
    hc->conn = c;
    hc->hdr_deadline = gt_now_ns() + (uint64_t)(s->cfg.http.header_timeout_s * 1e9);
    hc->next = s->http->conns;
    if (hc->next) hc->next->prev = hc;
    s->http->conns = hc;
    gt_conn_set_user(c, hc);
}

static void on_data(void *user, gt_conn *c, const uint8_t *data, size_t n) {
    (void)user;
    srv_http_conn *hc = gt_conn_user(c);
    if (!hc || hc->closing) return;
    int before = gt_http_parser_state(hc->p);
    if (gt_http_parser_feed(hc->p, data, n) != GT_OK) {
        GT_LOG_WARN(GT_SUB_NET, "HTTP connection %llu: %s; closing it", (unsigned long long)gt_conn_id(c),
                    gt_last_error());
        gt_conn_close(c);
        hc->closing = true;
        return;
    }
    /* Bytes between requests begin a new one (whole, or its headers): the
     * open-time or idle clock stops, and pump starts the one that applies. */
    if (before == 0) hc->hdr_deadline = 0;
    pump(hc);
}

static void on_close(void *user, gt_conn *c) {
    gt_server *s = user;
    srv_http_conn *hc = gt_conn_user(c);
    if (!hc) return;
    /* A completion in flight is cancelled: its answer has nowhere to go. */
    if (hc->req) {
        srv_req *r = hc->req;
        r->hc = NULL;
        hc->req = NULL;
        gt_sched_cancel(s->sched, r->id);
    }
    if (hc->prev) hc->prev->next = hc->next;
    else if (s->http) s->http->conns = hc->next;
    if (hc->next) hc->next->prev = hc->prev;
    gt_http_request_free(hc->cur);
    gt_http_parser_destroy(hc->p);
    free(hc);
}

static void on_sweep(uv_timer_t *t) {
    gt_server *s = t->data;
    uint64_t now = gt_now_ns();
    for (srv_http_conn *hc = s->http->conns; hc; hc = hc->next) {
        if (hc->closing) continue;
        /* A deadline counts only if it had passed at the last I/O poll: a
         * long engine step blocks the loop, and bytes that arrived during it
         * are read after this timer, not before. */
        uint64_t seen = s->http->io_ns < now ? s->http->io_ns : now;
        bool late = (hc->hdr_deadline && seen > hc->hdr_deadline) || (hc->body_deadline && seen > hc->body_deadline);
        if (!late) continue;
        GT_LOG_INFO(GT_SUB_NET, "HTTP connection %llu: %s not in within the timeout; closing it",
                    (unsigned long long)gt_conn_id(hc->conn),
                    hc->body_deadline ? "body" : hc->idle ? "next request" : "headers");
        gt_conn_close(hc->conn);
        hc->closing = true;
    }
}

static void on_wake(uv_async_t *a) {
    gt_server *s = a->data;
    for (srv_http_conn *hc = s->http->conns; hc; hc = hc->next)
        if (hc->pump_due) pump(hc);
}

static void on_polled(uv_check_t *c) {
    gt_server *s = c->data;
    s->http->io_ns = gt_now_ns();
}

gt_status srv_http_start(gt_server *s) {
    srv_http *h = calloc(1, sizeof *h);
    if (!h) return gt_fail(GT_ERR_NOMEM, "cannot allocate the HTTP front");
    const gt_server_http_config *hc = &s->cfg.http;
    h->lim = (gt_http_limits)GT_HTTP_LIMITS_INIT;
    h->lim.max_header_bytes = hc->max_header_bytes;
    h->lim.max_body_bytes = hc->max_body_bytes;
    gt_net_config nc = s->cfg.net;
    nc.host = hc->host ? hc->host : "127.0.0.1";
    nc.port = hc->port;
    nc.unix_path = NULL;
    gt_net_callbacks cb = {on_open, on_data, on_close, s};
    gt_status st = gt_net_create(&s->loop, &nc, &cb, &h->net);
    if (st != GT_OK) {
        free(h);
        return st;
    }
    s->http = h;
    uv_timer_init(&s->loop, &h->sweep);
    h->sweep.data = s;
    uv_timer_start(&h->sweep, on_sweep, 200, 200);
    uv_check_init(&s->loop, &h->polled);
    h->polled.data = s;
    uv_check_start(&h->polled, on_polled);
    uv_unref((uv_handle_t *)&h->polled);
    uv_async_init(&s->loop, &h->wake, on_wake);
    h->wake.data = s;
    if (hc->on_ready) hc->on_ready(s->cfg.user, gt_net_port(h->net));
    return GT_OK;
}

void srv_http_stop_listening(gt_server *s) {
    if (s->http) gt_net_stop_listening(s->http->net);
}

void srv_http_close(gt_server *s) {
    srv_http *h = s->http;
    if (!h) return;
    uv_timer_stop(&h->sweep);
    uv_close((uv_handle_t *)&h->sweep, NULL);
    uv_check_stop(&h->polled);
    uv_close((uv_handle_t *)&h->polled, NULL);
    uv_close((uv_handle_t *)&h->wake, NULL);
    gt_net_close(h->net);
}

void srv_http_free(gt_server *s) {
    /* After the loop has run out: every connection's on_close has run. */
    free(s->http);
    s->http = NULL;
}
