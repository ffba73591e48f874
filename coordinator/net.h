/* The coordinator's network front: TCP and Unix-socket listeners on a libuv
 * loop, a connection table with a limit, bytes in through a callback and
 * bytes out through a bounded write queue. It knows nothing of the
 * protocol: the server feeds what arrives to the msgpack-RPC decoder and
 * sends what the encoder writes.
 *
 * One thread: everything runs on the loop's thread. A connection handle
 * stays valid until its on_close callback has returned. */
#ifndef GT_NET_H
#define GT_NET_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/status.h"

typedef struct gt_net gt_net;
typedef struct gt_conn gt_conn;

typedef struct gt_net_callbacks {
    void (*on_open)(void *user, gt_conn *c);
    void (*on_data)(void *user, gt_conn *c, const uint8_t *data, size_t n);
    void (*on_close)(void *user, gt_conn *c); /* the peer left, or the server closed it */
    void *user;
} gt_net_callbacks;

typedef struct gt_net_config {
    const char *host;         /* TCP address to bind ("127.0.0.1"); NULL: no TCP */
    int port;                 /* 0: any free port (see gt_net_port) */
    const char *unix_path;    /* Unix socket path; NULL: none */
    int max_connections;      /* beyond: accepted and closed at once */
    size_t max_write_bytes;   /* per connection queued and unsent; beyond: the connection is closed */
} gt_net_config;
#define GT_NET_CONFIG_INIT {"127.0.0.1", 7733, NULL, 256, (size_t)64 << 20}

/* Binds and listens. GT_ERR_IO with a sentence naming the address when it
 * cannot (in use, no permission, a bad address). */
gt_status gt_net_create(uv_loop_t *loop, const gt_net_config *cfg, const gt_net_callbacks *cb,
                        gt_net **out);
/* Stops listening and closes every connection once its queued bytes are
 * written (at most 2 s later; on_close runs for each), then frees the
 * server once libuv has released its handles: the loop must run again after
 * this for that. Accepts NULL. */
void gt_net_close(gt_net *n);
/* Stops accepting new connections; open ones go on (a draining server). */
void gt_net_stop_listening(gt_net *n);
/* The TCP port bound (useful with port 0), or 0 without TCP. */
int gt_net_port(const gt_net *n);
int gt_net_n_connections(const gt_net *n);

/* Queues a copy of data[n] for the peer. GT_ERR_RANGE (and the connection
 * is being closed) when its queue would pass max_write_bytes; GT_ERR_IO
 * when the connection is closing. */
gt_status gt_conn_send(gt_conn *c, const void *data, size_t n);
/* Closes after the queued bytes are written. */
void gt_conn_close(gt_conn *c);
uint64_t gt_conn_id(const gt_conn *c); /* unique for the server's life, from 1 */
void gt_conn_set_user(gt_conn *c, void *user);
void *gt_conn_user(const gt_conn *c);

#endif
