/* The network front; see net.h.
 *
 * Handles are closed through libuv (uv_close), whose callback may only run
 * on a later loop turn: a connection is unlinked and freed in its close
 * callback, and the server itself once every one of its handles (the
 * listeners and all connections) has been released. A peer that sends EOF
 * or an error is closed at once; gt_conn_close first lets queued writes
 * finish. */
#include "coordinator/net.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

struct gt_conn {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    gt_net *net;
    uint64_t id;
    void *user;
    size_t queued;      /* bytes written but not yet acknowledged by libuv */
    int closing;        /* 1: after the queue drains; 2: uv_close called */
    int opened;         /* on_open ran, so on_close must */
    gt_conn *prev, *next;
};

struct gt_net {
    uv_loop_t *loop;
    gt_net_config cfg;
    gt_net_callbacks cb;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    int have_tcp, have_pipe;
    int handles;        /* open handles: listeners and connections */
    int closing;
    int n_conns;
    uint64_t next_id;
    gt_conn *conns;
    char unix_path[256];
    uv_timer_t linger;  /* after gt_net_close: how long queued answers may take */
    char buf[65536];    /* read buffer: one read is handed on before the next */
};

typedef struct write_req {
    uv_write_t req;
    gt_conn *c;
    size_t n;
    uint8_t data[];
} write_req;

static void maybe_free(gt_net *n) {
    if (n->closing && n->handles == 0) {
        if (n->have_pipe) unlink(n->unix_path);
        free(n);
    }
}

static void on_handle_closed(uv_handle_t *h) {
    gt_net *n = h->data;
    n->handles--;
    maybe_free(n);
}

static void on_conn_closed(uv_handle_t *h) {
    gt_conn *c = h->data;
    gt_net *n = c->net;
    if (c->prev) c->prev->next = c->next;
    else n->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    n->n_conns--;
    if (c->opened && n->cb.on_close) n->cb.on_close(n->cb.user, c);
    free(c);
    n->handles--;
    maybe_free(n);
}

static void close_now(gt_conn *c) {
    if (c->closing == 2) return;
    c->closing = 2;
    uv_read_stop(&c->h.stream);
    uv_close(&c->h.handle, on_conn_closed);
}

void gt_conn_close(gt_conn *c) {
    if (c->closing) return;
    c->closing = 1;
    uv_read_stop(&c->h.stream);
    if (c->queued == 0) close_now(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    gt_conn *c = h->data;
    *buf = uv_buf_init(c->net->buf, sizeof c->net->buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    gt_conn *c = s->data;
    gt_net *n = c->net;
    if (nread > 0) {
        if (!c->closing && n->cb.on_data) n->cb.on_data(n->cb.user, c, (const uint8_t *)buf->base, (size_t)nread);
    } else if (nread < 0) {
        if (nread != UV_EOF)
            GT_LOG_DEBUG(GT_SUB_NET, "connection %llu: %s", (unsigned long long)c->id, uv_strerror((int)nread));
        close_now(c);
    }
}

static void on_written(uv_write_t *req, int status) {
    write_req *w = (write_req *)req;
    gt_conn *c = w->c;
    c->queued -= w->n;
    free(w);
    if (status < 0) close_now(c);
    else if (c->closing == 1 && c->queued == 0) close_now(c);
}

gt_status gt_conn_send(gt_conn *c, const void *data, size_t n) {
    if (c->closing) return gt_fail(GT_ERR_IO, "connection %llu is closing", (unsigned long long)c->id);
    if (c->queued + n > c->net->cfg.max_write_bytes) {
        close_now(c);
        return gt_fail(GT_ERR_RANGE, "connection %llu: %zu bytes already queued for a client that does not "
                       "read; closing it", (unsigned long long)c->id, c->queued);
    }
    write_req *w = malloc(sizeof *w + n);
    if (!w) return gt_fail(GT_ERR_NOMEM, "cannot queue %zu bytes", n);
    w->c = c;
    w->n = n;
    memcpy(w->data, data, n);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
    int rc = uv_write(&w->req, &c->h.stream, &b, 1, on_written);
    if (rc < 0) {
        free(w);
        close_now(c);
        return gt_fail(GT_ERR_IO, "connection %llu: %s", (unsigned long long)c->id, uv_strerror(rc));
    }
    c->queued += n;
    return GT_OK;
}

static void on_connection(uv_stream_t *server, int status) {
    gt_net *n = server->data;
    if (status < 0 || n->closing) return;
    gt_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->net = n;
    int rc = server == (uv_stream_t *)&n->tcp ? uv_tcp_init(n->loop, &c->h.tcp) : uv_pipe_init(n->loop, &c->h.pipe, 0);
    if (rc < 0) {
        free(c);
        return;
    }
    c->h.handle.data = c;
    c->id = ++n->next_id;
    c->next = n->conns;
    if (n->conns) n->conns->prev = c;
    n->conns = c;
    n->n_conns++;
    n->handles++;
    if (uv_accept(server, &c->h.stream) < 0 || n->n_conns > n->cfg.max_connections) {
        if (n->n_conns > n->cfg.max_connections)
            GT_LOG_WARN(GT_SUB_NET, "refusing a connection: %d are open, the limit is %d", n->n_conns - 1,
                        n->cfg.max_connections);
        close_now(c);
        return;
    }
    /* Tokens go out as small writes as they are decoded: Nagle's algorithm
     * would hold each one back until the previous one is acknowledged. */
    if (server == (uv_stream_t *)&n->tcp) uv_tcp_nodelay(&c->h.tcp, 1);
    c->opened = 1;
    if (n->cb.on_open) n->cb.on_open(n->cb.user, c);
    if (!c->closing) uv_read_start(&c->h.stream, on_alloc, on_read);
}

static gt_status listen_tcp(gt_net *n) {
    const gt_net_config *c = &n->cfg;
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(c->host, c->port, (struct sockaddr_in *)&addr);
    if (rc < 0) rc = uv_ip6_addr(c->host, c->port, (struct sockaddr_in6 *)&addr);
    if (rc < 0) return gt_fail(GT_ERR_INVALID_ARG, "'%s' is not an IPv4 or IPv6 address", c->host);
    if ((rc = uv_tcp_init(n->loop, &n->tcp)) < 0)
        return gt_fail(GT_ERR_IO, "cannot create a TCP socket: %s", uv_strerror(rc));
    n->tcp.data = n;
    n->have_tcp = 1;
    n->handles++;
    if ((rc = uv_tcp_bind(&n->tcp, (const struct sockaddr *)&addr, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&n->tcp, 128, on_connection)) < 0)
        return gt_fail(GT_ERR_IO, "cannot listen on %s port %d: %s", c->host, c->port, uv_strerror(rc));
    return GT_OK;
}

static gt_status listen_unix(gt_net *n) {
    const char *path = n->cfg.unix_path;
    if (strlen(path) >= sizeof n->unix_path)
        return gt_fail(GT_ERR_INVALID_ARG, "Unix socket path of %zu bytes is longer than %zu", strlen(path),
                       sizeof n->unix_path - 1);
    snprintf(n->unix_path, sizeof n->unix_path, "%s", path);
    int rc = uv_pipe_init(n->loop, &n->pipe, 0);
    if (rc < 0) return gt_fail(GT_ERR_IO, "cannot create a Unix socket: %s", uv_strerror(rc));
    n->pipe.data = n;
    n->handles++;
    unlink(path); /* a stale socket file of an earlier server */
    if ((rc = uv_pipe_bind(&n->pipe, path)) < 0 || (rc = uv_listen((uv_stream_t *)&n->pipe, 128, on_connection)) < 0)
        return gt_fail(GT_ERR_IO, "cannot listen on Unix socket %s: %s", path, uv_strerror(rc));
    n->have_pipe = 1;
    return GT_OK;
}

gt_status gt_net_create(uv_loop_t *loop, const gt_net_config *cfg, const gt_net_callbacks *cb, gt_net **out) {
    *out = NULL;
    if (!cfg->host && !cfg->unix_path) return gt_fail(GT_ERR_INVALID_ARG, "no address to listen on");
    if (cfg->port < 0 || cfg->port > 65535)
        return gt_fail(GT_ERR_INVALID_ARG, "port %d is outside 0..65535", cfg->port);
    if (cfg->max_connections < 1)
        return gt_fail(GT_ERR_INVALID_ARG, "at most %d connections: at least 1", cfg->max_connections);
    gt_net *n = calloc(1, sizeof *n);
    if (!n) return gt_fail(GT_ERR_NOMEM, "cannot allocate the network front");
    n->loop = loop;
    n->cfg = *cfg;
    n->cb = *cb;
    gt_status st = cfg->host ? listen_tcp(n) : GT_OK;
    if (st == GT_OK && cfg->unix_path) st = listen_unix(n);
    if (st != GT_OK) {
        gt_net_close(n);
        return st;
    }
    *out = n;
    return GT_OK;
}

static void on_linger(uv_timer_t *t) {
    gt_net *n = t->data;
    for (gt_conn *c = n->conns; c; c = c->next) close_now(c);
    uv_close((uv_handle_t *)&n->linger, on_handle_closed);
}

void gt_net_close(gt_net *n) {
    if (!n || n->closing) return;
    n->closing = 1;
    if (n->handles == 0) {
        free(n);
        return;
    }
    if (n->tcp.data && !uv_is_closing((uv_handle_t *)&n->tcp)) uv_close((uv_handle_t *)&n->tcp, on_handle_closed);
    if (n->pipe.data && !uv_is_closing((uv_handle_t *)&n->pipe))
        uv_close((uv_handle_t *)&n->pipe, on_handle_closed);
    /* Answers already queued get 2 s to reach their clients; then every
     * connection is closed regardless. */
    bool pending = false;
    for (gt_conn *c = n->conns; c; c = c->next) {
        pending |= c->queued > 0;
        gt_conn_close(c);
    }
    if (pending && uv_timer_init(n->loop, &n->linger) == 0) {
        n->linger.data = n;
        n->handles++;
        uv_timer_start(&n->linger, on_linger, 2000, 0);
    }
}

void gt_net_stop_listening(gt_net *n) {
    if (n->have_tcp && n->tcp.data && !uv_is_closing((uv_handle_t *)&n->tcp)) {
        uv_close((uv_handle_t *)&n->tcp, on_handle_closed);
        n->have_tcp = 0;
    }
    if (n->pipe.data && !uv_is_closing((uv_handle_t *)&n->pipe)) uv_close((uv_handle_t *)&n->pipe, on_handle_closed);
}

int gt_net_port(const gt_net *n) {
    if (!n->have_tcp) return 0;
    struct sockaddr_storage a;
    int len = sizeof a;
    if (uv_tcp_getsockname(&n->tcp, (struct sockaddr *)&a, &len) < 0) return 0;
    return a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
                                   : ntohs(((struct sockaddr_in *)&a)->sin_port);
}

int gt_net_n_connections(const gt_net *n) { return n->n_conns; }
uint64_t gt_conn_id(const gt_conn *c) { return c->id; }
void gt_conn_set_user(gt_conn *c, void *user) { c->user = user; }
void *gt_conn_user(const gt_conn *c) { return c->user; }
