/* The network front against real sockets on loopback, with libuv clients
 * on the same loop: bytes sent in pieces arrive in order and are echoed
 * back (TCP and a Unix socket), a connection beyond the limit is closed at
 * once without reaching the server's callbacks, a client that does not
 * read is cut off when its queue passes the limit, a peer that leaves is
 * reported, and closing the server closes every connection and frees
 * everything (the sanitizer build checks the last). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "coordinator/net.h"
#include "util/test_util.h"

typedef struct server_side {
    int opened, closed;
    size_t received;
    gt_status last_send;
    int echo; /* 0: swallow, 1: echo, 2: reply with more than the queue allows */
} server_side;

static void s_open(void *user, gt_conn *c) {
    server_side *s = user;
    s->opened++;
    gt_conn_set_user(c, s);
}

static void s_data(void *user, gt_conn *c, const uint8_t *data, size_t n) {
    server_side *s = user;
    s->received += n;
    if (s->echo == 1) s->last_send = gt_conn_send(c, data, n);
    if (s->echo == 2) {
        char big[64] = {0};
        s->last_send = gt_conn_send(c, big, sizeof big);
    }
}

static void s_close(void *user, gt_conn *c) {
    (void)c;
    server_side *s = user;
    s->closed++;
}

typedef struct client {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_stream_t stream;
        uv_handle_t handle;
    } h;
    uv_connect_t conn;
    uv_write_t w[3];
    char got[256];
    size_t n_got;
    int eof, closed, connected;
    const char *msg;
} client;

static void c_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
    (void)s;
    client *c = h->data;
    *b = uv_buf_init(c->got + c->n_got, (unsigned)(sizeof c->got - c->n_got));
}

static void c_closed(uv_handle_t *h) {
    client *c = h->data;
    c->closed = 1;
}

static void c_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    (void)b;
    client *c = st->data;
    if (n > 0) c->n_got += (size_t)n;
    if (n < 0) {
        c->eof = 1;
        uv_close(&c->h.handle, c_closed);
    } else if (c->msg && c->n_got == strlen(c->msg)) {
        uv_close(&c->h.handle, c_closed); /* got the whole echo */
    }
}

static void c_connected(uv_connect_t *req, int status) {
    client *c = req->handle->data;
    assert_int_equal(status, 0);
    c->connected = 1;
    uv_read_start(&c->h.stream, c_alloc, c_read);
    if (!c->msg) return;
    /* Three pieces, so the server sees the message arrive in parts or whole. */
    size_t n = strlen(c->msg), a = n / 3, b = 2 * n / 3;
    uv_buf_t p[3] = {uv_buf_init((char *)c->msg, (unsigned)a), uv_buf_init((char *)c->msg + a, (unsigned)(b - a)),
                     uv_buf_init((char *)c->msg + b, (unsigned)(n - b))};
    for (int i = 0; i < 3; i++) uv_write(&c->w[i], &c->h.stream, &p[i], 1, NULL);
}

static void tcp_client(uv_loop_t *loop, client *c, int port, const char *msg) {
    memset(c, 0, sizeof *c);
    c->msg = msg;
    uv_tcp_init(loop, &c->h.tcp);
    c->h.handle.data = c;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(uv_tcp_connect(&c->conn, &c->h.tcp, (const struct sockaddr *)&a, c_connected), 0);
}

static gt_net *serve(uv_loop_t *loop, server_side *s, gt_net_config *cfg) {
    gt_net_callbacks cb = {s_open, s_data, s_close, s};
    gt_net *n = NULL;
    if (gt_net_create(loop, cfg, &cb, &n) != GT_OK) fail_msg("listen: %s", gt_last_error());
    return n;
}

static void test_echo_tcp_and_unix(void **state) {
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server_side s = {.echo = 1};
    gt_net_config cfg = GT_NET_CONFIG_INIT;
    cfg.port = 0;
    char path[200];
    snprintf(path, sizeof path, "%s", gt_test_tmp_path(0, "net_test.sock"));
    cfg.unix_path = path;
    gt_net *n = serve(&loop, &s, &cfg);
    assert_true(gt_net_port(n) > 0);
    client a;
    tcp_client(&loop, &a, gt_net_port(n), "the quick brown fox jumps over the lazy dog");
    client u;
    memset(&u, 0, sizeof u);
    u.msg = "over a Unix socket";
    uv_pipe_init(&loop, &u.h.pipe, 0);
    u.h.handle.data = &u;
    uv_pipe_connect(&u.conn, &u.h.pipe, path, c_connected);
    while (!(a.closed && u.closed)) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(a.n_got, strlen(a.msg));
    assert_memory_equal(a.got, a.msg, a.n_got);
    assert_int_equal(u.n_got, strlen(u.msg));
    assert_memory_equal(u.got, u.msg, u.n_got);
    assert_int_equal(s.received, strlen(a.msg) + strlen(u.msg));
    /* Both peers left: the server saw each open and close once. */
    while (s.closed < 2) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(s.opened, 2);
    assert_int_equal(gt_net_n_connections(n), 0);
    gt_net_close(n);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(access(path, F_OK), -1); /* the socket file is gone */
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_limits_and_close(void **state) {
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server_side s = {.echo = 0};
    gt_net_config cfg = GT_NET_CONFIG_INIT;
    cfg.port = 0;
    cfg.max_connections = 1;
    cfg.max_write_bytes = 16;
    gt_net *n = serve(&loop, &s, &cfg);
    client a, b;
    tcp_client(&loop, &a, gt_net_port(n), NULL);
    while (s.opened < 1) uv_run(&loop, UV_RUN_ONCE);
    /* A second connection is over the limit: closed at once, never opened. */
    tcp_client(&loop, &b, gt_net_port(n), NULL);
    while (!b.eof) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(s.opened, 1);
    assert_int_equal(s.closed, 0);
    /* The first one asks for more than its queue may hold: cut off. */
    s.echo = 2;
    static const char ping[] = "ping";
    uv_buf_t p = uv_buf_init((char *)ping, 4);
    uv_write(&a.w[0], &a.h.stream, &p, 1, NULL);
    while (!a.eof) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(s.last_send, GT_ERR_RANGE);
    assert_non_null(strstr(gt_last_error(), "does not read"));
    while (s.closed < 1) uv_run(&loop, UV_RUN_ONCE);
    /* Closing the server with a client connected closes it too. */
    client c;
    tcp_client(&loop, &c, gt_net_port(n), NULL);
    while (s.opened < 2) uv_run(&loop, UV_RUN_ONCE);
    gt_net_close(n);
    while (!c.eof) uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(s.closed, 2);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_refusals(void **state) {
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server_side s = {0};
    gt_net_callbacks cb = {s_open, s_data, s_close, &s};
    gt_net_config cfg = GT_NET_CONFIG_INIT;
    gt_net *n = NULL;
    cfg.host = "not-an-address";
    assert_int_equal(gt_net_create(&loop, &cfg, &cb, &n), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "'not-an-address' is not an IPv4 or IPv6 address"));
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    gt_net *first = serve(&loop, &s, &cfg);
    cfg.port = gt_net_port(first); /* in use */
    assert_int_equal(gt_net_create(&loop, &cfg, &cb, &n), GT_ERR_IO);
    assert_non_null(strstr(gt_last_error(), "cannot listen on 127.0.0.1 port"));
    cfg.port = 70000;
    assert_int_equal(gt_net_create(&loop, &cfg, &cb, &n), GT_ERR_INVALID_ARG);
    gt_net_close(first);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_tcp_and_unix),
        cmocka_unit_test(test_limits_and_close),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
