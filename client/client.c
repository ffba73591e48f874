/* The C client; see client.h. */
#include "client/client.h"

#include <errno.h>
#include <msgpack.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct gt_client {
    int fd;
    uint32_t msgid;
    msgpack_unpacker up;
    char err[512];
    char code[32];
};

static int fail(gt_client *c, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(gt_client *c, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    snprintf(c->code, sizeof c->code, "%s", code);
    return -1;
}

const char *gt_client_error(const gt_client *c) { return c->err; }
const char *gt_client_error_code(const gt_client *c) { return c->code; }

gt_client *gt_client_connect(const char *host, int port, const char *unix_path, char *err, size_t errlen) {
    int fd = -1;
    if (unix_path) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(unix_path) >= sizeof a.sun_path) {
            snprintf(err, errlen, "Unix socket path %s is too long", unix_path);
            return NULL;
        }
        strcpy(a.sun_path, unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            snprintf(err, errlen, "cannot connect to %s: %s", unix_path, strerror(errno));
            close(fd);
            return NULL;
        }
    } else {
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(host, ps, &hints, &res);
        if (rc != 0) {
            snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
            return NULL;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
            if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
            if (fd >= 0) close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0) {
            snprintf(err, errlen, "cannot connect to %s port %d: %s", host, port, strerror(errno));
            return NULL;
        }
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
        return NULL;
    }
    gt_client *c = calloc(1, sizeof *c);
    if (!c || !msgpack_unpacker_init(&c->up, MSGPACK_UNPACKER_INIT_BUFFER_SIZE)) {
        free(c);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->fd = fd;
    return c;
}

void gt_client_close(gt_client *c) {
    if (!c) return;
    close(c->fd);
    msgpack_unpacker_destroy(&c->up);
    free(c);
}

static void pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static int send_all(gt_client *c, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return fail(c, "", "cannot send to the server: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Starts [0, msgid, method, [params]] with a params map of n_keys; returns
 * the msgid. */
static uint32_t begin_request(gt_client *c, msgpack_sbuffer *sb, msgpack_packer *pk, const char *method,
                              size_t n_keys) {
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    uint32_t id = ++c->msgid;
    msgpack_pack_array(pk, 4);
    msgpack_pack_int(pk, 0);
    msgpack_pack_uint32(pk, id);
    pack_str(pk, method);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, n_keys);
    return id;
}

/* Sends the request in sb and frees it. */
static int finish_request(gt_client *c, msgpack_sbuffer *sb) {
    int rc = send_all(c, sb->data, sb->size);
    msgpack_sbuffer_destroy(sb);
    return rc;
}

/* Finds key in a map; NULL when absent. */
static const msgpack_object *get(const msgpack_object *map, const char *key) {
    if (map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static bool bytes_of(const msgpack_object *o, const char **p, size_t *n) {
    if (o && o->type == MSGPACK_OBJECT_STR) {
        *p = o->via.str.ptr;
        *n = o->via.str.size;
        return true;
    }
    if (o && o->type == MSGPACK_OBJECT_BIN) {
        *p = o->via.bin.ptr;
        *n = o->via.bin.size;
        return true;
    }
    return false;
}

static int64_t int_of(const msgpack_object *o) {
    if (!o) return 0;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (int64_t)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return o->via.i64;
    return 0;
}

static double num_of(const msgpack_object *o) {
    if (o && (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)) return o->via.f64;
    return (double)int_of(o);
}

/* What a response hands to its caller. */
typedef int (*result_fn)(gt_client *c, const msgpack_object *result, void *ctx);

/* Reads until the response to msgid; notifications for it go to on_token. */
static int wait_for(gt_client *c, uint32_t msgid, gt_client_token_fn on_token, void *user, result_fn fn,
                    void *ctx) {
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    int rc = 1;
    while (rc == 1) {
        msgpack_unpack_return ur;
        while (rc == 1 && (ur = msgpack_unpacker_next(&c->up, &res)) == MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *m = &res.data;
            if (m->type != MSGPACK_OBJECT_ARRAY || m->via.array.size < 3) continue;
            const msgpack_object *a = m->via.array.ptr;
            if (int_of(&a[0]) == 2 && a[2].type == MSGPACK_OBJECT_ARRAY && a[2].via.array.size == 1) {
                const msgpack_object *ev = &a[2].via.array.ptr[0];
                const char *t;
                size_t n;
                if (on_token && int_of(get(ev, "id")) == msgid && bytes_of(get(ev, "text"), &t, &n))
                    on_token(user, t, n);
                continue;
            }
            if (int_of(&a[0]) != 1 || m->via.array.size != 4 || int_of(&a[1]) != msgid) continue;
            if (a[2].type != MSGPACK_OBJECT_NIL) {
                const char *code = "", *msg = "";
                size_t cn = 0, mn = 0;
                bytes_of(get(&a[2], "code"), &code, &cn);
                bytes_of(get(&a[2], "message"), &msg, &mn);
                fail(c, "", "%.*s", (int)mn, msg);
                snprintf(c->code, sizeof c->code, "%.*s", (int)cn, code);
                rc = -1;
            } else {
                rc = fn ? fn(c, &a[3], ctx) : 0;
            }
        }
        if (rc != 1) break;
        if (ur == MSGPACK_UNPACK_PARSE_ERROR) {
            rc = fail(c, "", "the server sent bytes that are not msgpack");
            break;
        }
        if (!msgpack_unpacker_reserve_buffer(&c->up, 65536)) {
            rc = fail(c, "", "out of memory");
            break;
        }
        ssize_t r = recv(c->fd, msgpack_unpacker_buffer(&c->up), msgpack_unpacker_buffer_capacity(&c->up), 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = fail(c, "", "the server closed the connection");
            break;
        }
        msgpack_unpacker_buffer_consumed(&c->up, (size_t)r);
    }
    msgpack_unpacked_destroy(&res);
    return rc;
}

int gt_client_auth(gt_client *c, const char *token) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t id = begin_request(c, &sb, &pk, "auth", 1);
    pack_str(&pk, "token");
    pack_str(&pk, token);
    int rc = finish_request(c, &sb);
    return rc ? rc : wait_for(c, id, NULL, NULL, NULL, NULL);
}

static int take_result(gt_client *c, const msgpack_object *r, void *ctx) {
    gt_client_result *out = ctx;
    const char *t = "", *f = "";
    size_t n = 0, fn = 0;
    bytes_of(get(r, "text"), &t, &n);
    bytes_of(get(r, "finish_reason"), &f, &fn);
    out->text = malloc(n + 1);
    if (!out->text) return fail(c, "", "out of memory");
    memcpy(out->text, t, n);
    out->text[n] = '\0';
    out->len = n;
    snprintf(out->finish_reason, sizeof out->finish_reason, "%.*s", (int)fn, f);
    const msgpack_object *u = get(r, "usage"), *tm = get(r, "timing");
    out->prompt_tokens = (int)int_of(u ? get(u, "prompt_tokens") : NULL);
    out->completion_tokens = (int)int_of(u ? get(u, "completion_tokens") : NULL);
    out->cached_tokens = (int)int_of(u ? get(u, "cached_tokens") : NULL);
    out->ttft_ms = num_of(tm ? get(tm, "ttft_ms") : NULL);
    out->total_ms = num_of(tm ? get(tm, "total_ms") : NULL);
    return 0;
}

int gt_client_generate(gt_client *c, const gt_client_params *p, gt_client_token_fn on_token, void *user,
                       gt_client_result *out) {
    memset(out, 0, sizeof *out);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int n = 2 + (p->max_tokens > 0) + (p->temperature > 0) + (p->top_k > 0) + (p->top_p > 0) + p->has_seed;
    uint32_t id = begin_request(c, &sb, &pk, "generate", (size_t)n);
    if (p->prompt) {
        pack_str(&pk, "prompt");
        pack_str(&pk, p->prompt);
    } else {
        pack_str(&pk, "messages");
        msgpack_pack_array(&pk, (size_t)p->n_messages);
        for (int i = 0; i < p->n_messages; i++) {
            msgpack_pack_map(&pk, 2);
            pack_str(&pk, "role");
            pack_str(&pk, p->roles[i]);
            pack_str(&pk, "content");
            pack_str(&pk, p->contents[i]);
        }
    }
    pack_str(&pk, "stream");
    if (on_token) msgpack_pack_true(&pk);
    else msgpack_pack_false(&pk);
    if (p->max_tokens > 0) {
        pack_str(&pk, "max_tokens");
        msgpack_pack_int(&pk, p->max_tokens);
    }
    if (p->temperature > 0) {
        pack_str(&pk, "temperature");
        msgpack_pack_float(&pk, p->temperature);
    }
    if (p->top_k > 0) {
        pack_str(&pk, "top_k");
        msgpack_pack_int(&pk, p->top_k);
    }
    if (p->top_p > 0) {
        pack_str(&pk, "top_p");
        msgpack_pack_float(&pk, p->top_p);
    }
    if (p->has_seed) {
        pack_str(&pk, "seed");
        msgpack_pack_uint64(&pk, p->seed);
    }
    int rc = finish_request(c, &sb);
    return rc ? rc : wait_for(c, id, on_token, user, take_result, out);
}

void gt_client_result_free(gt_client_result *r) {
    if (!r) return;
    free(r->text);
    memset(r, 0, sizeof *r);
}

uint32_t gt_client_last_msgid(const gt_client *c) { return c->msgid; }

static int take_cancel(gt_client *c, const msgpack_object *r, void *ctx) {
    (void)c;
    const msgpack_object *f = get(r, "cancelled");
    *(bool *)ctx = f && f->type == MSGPACK_OBJECT_BOOLEAN && f->via.boolean;
    return 0;
}

int gt_client_cancel(gt_client *c, uint32_t msgid, bool *found) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t id = begin_request(c, &sb, &pk, "cancel", 1);
    pack_str(&pk, "id");
    msgpack_pack_uint32(&pk, msgid);
    int rc = finish_request(c, &sb);
    *found = false;
    return rc ? rc : wait_for(c, id, NULL, NULL, take_cancel, found);
}
