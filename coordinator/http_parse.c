/* gt_http_parser: nodejs http-parser over one connection's bytes; see http.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "coordinator/http.h"

struct gt_http_parser {
    http_parser hp;
    http_parser_settings set;
    gt_http_limits lim;
    gt_http_request *cur;          /* being parsed */
    gt_http_request *head, *tail;  /* whole, unanswered */
    uint32_t n_queued;
    size_t header_bytes;
    char *url;
    size_t url_len;
    char field[32];   /* the current header's name (enough for Authorization) */
    size_t field_len;
    bool field_long, field_done, in_auth;
    size_t auth_len;
    size_t body_cap;
    int state; /* see gt_http_parser_state */
    int error_status;
    char error_msg[256];
};

void gt_http_request_free(gt_http_request *r) {
    if (!r) return;
    free(r->path);
    free(r->auth);
    free(r->body);
    free(r);
}

static int fail(gt_http_parser *p, int status, const char *msg) {
    if (!p->error_status) {
        p->error_status = status;
        snprintf(p->error_msg, sizeof p->error_msg, "%s", msg);
    }
    return -1; /* stops http-parser (in on_headers_complete too, where 1 would mean "no body") */
}

static gt_http_parser *of(http_parser *hp) { return hp->data; }

static int count_header(gt_http_parser *p, size_t n) {
    p->header_bytes += n;
    if (p->header_bytes > p->lim.max_header_bytes) {
        char m[160];
        snprintf(m, sizeof m, "the request line and headers exceed the limit of %zu bytes",
                 p->lim.max_header_bytes);
        return fail(p, 431, m);
    }
    return 0;
}

static int on_begin(http_parser *hp) {
    gt_http_parser *p = of(hp);
    p->cur = calloc(1, sizeof *p->cur);
    if (!p->cur) return fail(p, 500, "out of memory for a request");
    p->header_bytes = 0;
    p->url_len = 0;
    p->field_len = 0;
    p->field_long = p->in_auth = false;
    p->field_done = true;
    p->state = 1;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n) {
    gt_http_parser *p = of(hp);
    if (count_header(p, n)) return -1;
    char *u = realloc(p->url, p->url_len + n + 1);
    if (!u) return fail(p, 500, "out of memory for a URL");
    memcpy(u + p->url_len, at, n);
    p->url = u;
    p->url_len += n;
    p->url[p->url_len] = '\0';
    return 0;
}

static int on_field(http_parser *hp, const char *at, size_t n) {
    gt_http_parser *p = of(hp);
    if (count_header(p, n)) return -1;
    if (p->field_done) { /* a new header */
        p->field_len = 0;
        p->field_long = false;
        p->field_done = false;
    }
    if (p->field_len + n >= sizeof p->field) {
        p->field_long = true;
        return 0;
    }
    memcpy(p->field + p->field_len, at, n);
    p->field_len += n;
    p->field[p->field_len] = '\0';
    return 0;
}

static int on_value(http_parser *hp, const char *at, size_t n) {
    gt_http_parser *p = of(hp);
    if (count_header(p, n)) return -1;
    if (!p->field_done) {
        p->field_done = true;
        p->in_auth = !p->field_long && !strcasecmp(p->field, "authorization");
        if (p->in_auth) { /* the last Authorization header counts */
            free(p->cur->auth);
            p->cur->auth = NULL;
            p->auth_len = 0;
        }
    }
    if (!p->in_auth) return 0;
    char *a = realloc(p->cur->auth, p->auth_len + n + 1);
    if (!a) return fail(p, 500, "out of memory for a header");
    memcpy(a + p->auth_len, at, n);
    p->cur->auth = a;
    p->auth_len += n;
    a[p->auth_len] = '\0';
    return 0;
}

static int on_headers(http_parser *hp) {
    gt_http_parser *p = of(hp);
    gt_http_request *r = p->cur;
    snprintf(r->method, sizeof r->method, "%s", http_method_str((enum http_method)hp->method));
    struct http_parser_url u;
    http_parser_url_init(&u);
    const char *url = p->url ? p->url : "";
    if (http_parser_parse_url(url, p->url_len, hp->method == HTTP_CONNECT, &u) != 0)
        return fail(p, 400, "the request target is not a valid URL");
    const char *path = "/";
    size_t plen = 1;
    if (u.field_set & (1 << UF_PATH)) {
        path = url + u.field_data[UF_PATH].off;
        plen = u.field_data[UF_PATH].len;
    }
    r->path = malloc(plen + 1);
    if (!r->path) return fail(p, 500, "out of memory for a path");
    memcpy(r->path, path, plen);
    r->path[plen] = '\0';
    r->http10 = hp->http_major == 1 && hp->http_minor == 0;
    if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > p->lim.max_body_bytes) {
        char m[160];
        snprintf(m, sizeof m, "the body of %llu bytes exceeds the limit of %zu bytes",
                 (unsigned long long)hp->content_length, p->lim.max_body_bytes);
        return fail(p, 413, m);
    }
    p->state = 2;
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n) {
    gt_http_parser *p = of(hp);
    gt_http_request *r = p->cur;
    if (r->body_len + n > p->lim.max_body_bytes) {
        char m[160];
        snprintf(m, sizeof m, "the body exceeds the limit of %zu bytes", p->lim.max_body_bytes);
        return fail(p, 413, m);
    }
    if (r->body_len + n + 1 > p->body_cap) {
        size_t cap = (r->body_len + n + 1) * 2;
        if (cap > p->lim.max_body_bytes + 1) cap = p->lim.max_body_bytes + 1;
        char *b = realloc(r->body, cap);
        if (!b) return fail(p, 500, "out of memory for a body");
        r->body = b;
        p->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static void push(gt_http_parser *p, gt_http_request *r) {
    if (p->tail) p->tail->next = r;
    else p->head = r;
    p->tail = r;
    p->n_queued++;
}

static int on_complete(http_parser *hp) {
    gt_http_parser *p = of(hp);
    gt_http_request *r = p->cur;
    p->cur = NULL;
    p->body_cap = 0;
    if (!r->body) {
        r->body = calloc(1, 1);
        if (!r->body) {
            gt_http_request_free(r);
            return fail(p, 500, "out of memory for a body");
        }
    }
    r->keep_alive = http_should_keep_alive(hp);
    push(p, r);
    p->state = 0;
    if (!r->keep_alive) { /* nothing after it will be read */
        p->state = 3;
        return 1;
    }
    return 0;
}

gt_status gt_http_parser_create(const gt_http_limits *lim, gt_http_parser **out) {
    *out = NULL;
    gt_http_parser *p = calloc(1, sizeof *p);
    if (!p) return gt_fail(GT_ERR_NOMEM, "cannot allocate an HTTP parser");
    p->lim = *lim;
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    http_parser_settings_init(&p->set);
    p->set.on_message_begin = on_begin;
    p->set.on_url = on_url;
    p->set.on_header_field = on_field;
    p->set.on_header_value = on_value;
    p->set.on_headers_complete = on_headers;
    p->set.on_body = on_body;
    p->set.on_message_complete = on_complete;
    *out = p;
    return GT_OK;
}

void gt_http_parser_destroy(gt_http_parser *p) {
    if (!p) return;
    while (p->head) {
        gt_http_request *r = p->head;
        p->head = r->next;
        gt_http_request_free(r);
    }
    gt_http_request_free(p->cur);
    free(p->url);
    free(p);
}

gt_status gt_http_parser_feed(gt_http_parser *p, const void *data, size_t n) {
    if (p->state == 3 || !n) return GT_OK;
    size_t used = http_parser_execute(&p->hp, &p->set, data, n);
    if (p->state == 3) return GT_OK; /* a request without keep-alive ended the stream */
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (e != HPE_OK || p->error_status) {
        if (!p->error_status) {
            char m[200];
            snprintf(m, sizeof m, "malformed HTTP request at byte %zu of the read: %s", used,
                     http_errno_description(e));
            fail(p, 400, m);
        }
        gt_http_request *r = calloc(1, sizeof *r);
        if (!r) return gt_fail(GT_ERR_NOMEM, "cannot hold an HTTP error");
        r->error_status = p->error_status;
        snprintf(r->error_msg, sizeof r->error_msg, "%s", p->error_msg);
        push(p, r);
        p->state = 3;
        return GT_OK;
    }
    if (p->n_queued > p->lim.max_pipelined)
        return gt_fail(GT_ERR_RANGE, "%u pipelined requests wait unanswered, over the limit of %u",
                       p->n_queued, p->lim.max_pipelined);
    return GT_OK;
}

gt_http_request *gt_http_parser_next(gt_http_parser *p) {
    gt_http_request *r = p->head;
    if (!r) return NULL;
    p->head = r->next;
    if (!p->head) p->tail = NULL;
    r->next = NULL;
    p->n_queued--;
    return r;
}

int gt_http_parser_state(const gt_http_parser *p) { return p->state; }
