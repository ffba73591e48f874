/* GGUF v3 writer.
 *
 * Design: each key/value is encoded into its final bytes the moment it is
 * set (key string, type, payload), so copying a 262k-string vocabulary from
 * a reader is one pass of memcpy and writing the header is concatenation.
 * Tensors are kept as (name, type, shape, data pointer); the file is written
 * to PATH.tmp.PID with one large fwrite per tensor, zero padding between
 * them, and renamed over PATH only when complete, so a reader never sees a
 * half-written model. Deferred tensors (gt_gguf_writer_add_tensor_deferred)
 * have no bytes until the write asks a callback for them, one at a time, so
 * a converter holds about one tensor in memory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "model/gguf_internal.h"

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

typedef struct wkv {
    char *key;
    bytes enc; /* key string + u32 type + payload, exactly as in the file */
} wkv;

typedef struct wtensor {
    char *name;
    gt_dtype type;
    int n_dims;
    int64_t ne[GT_GGUF_MAX_DIMS];
    void *data; /* owned, from gt_alloc; NULL: produced at write time (deferred) */
    size_t nbytes;
} wtensor;

struct gt_gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *ts;
    size_t n_t, cap_t;
    uint32_t *slots; /* tensor names, open addressing, index + 1 */
    size_t n_slots;
};

/* Makes room for n more bytes (doubling). */
static bool reserve(bytes *b, size_t n) {
    if (b->cap - b->len >= n) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < n) {
        if (cap > SIZE_MAX / 2) return false;
        cap *= 2;
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static bool put(bytes *b, const void *src, size_t n) {
    if (!reserve(b, n)) return false;
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return true;
}

static bool put_zeros(bytes *b, size_t n) {
    if (!reserve(b, n)) return false;
    memset(b->p + b->len, 0, n);
    b->len += n;
    return true;
}

static bool put_u32(bytes *b, uint32_t x) { return put(b, &x, 4); }
static bool put_u64(bytes *b, uint64_t x) { return put(b, &x, 8); }
static bool put_str(bytes *b, const char *s, uint64_t n) {
    return put_u64(b, n) && put(b, s, (size_t)n);
}

gt_status gt_gguf_writer_create(gt_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return gt_fail(GT_ERR_NOMEM, "cannot allocate a GGUF writer");
    return GT_OK;
}

void gt_gguf_writer_destroy(gt_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].enc.p);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->ts[i].name);
        gt_free(w->ts[i].data);
    }
    free(w->kvs);
    free(w->ts);
    free(w->slots);
    free(w);
}

/* Starts the encoding of `key` with value type t; replaces an earlier value
 * of the same key in place so that the file keeps the first position. */
static gt_status kv_begin(gt_gguf_writer *w, const char *key, gt_gguf_type t, bytes *enc) {
    if (!key || !*key) return gt_fail(GT_ERR_INVALID_ARG, "a GGUF key must not be empty");
    size_t n = strlen(key);
    if (n > GT__GGUF_MAX_KEY_BYTES)
        return gt_fail(GT_ERR_INVALID_ARG, "GGUF key of %zu bytes is over the %llu limit", n,
                       (unsigned long long)GT__GGUF_MAX_KEY_BYTES);
    *enc = (bytes){0};
    if (!put_str(enc, key, n) || !put_u32(enc, (uint32_t)t)) {
        free(enc->p);
        return gt_fail(GT_ERR_NOMEM, "cannot encode key %s", key);
    }
    return GT_OK;
}

static gt_status kv_commit(gt_gguf_writer *w, const char *key, bytes *enc) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].enc.p);
            w->kvs[i].enc = *enc;
            return GT_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *p = realloc(w->kvs, cap * sizeof *p);
        if (!p) goto nomem;
        w->kvs = p;
        w->cap_kv = cap;
    }
    char *copy = strdup(key);
    if (!copy) goto nomem;
    w->kvs[w->n_kv++] = (wkv){.key = copy, .enc = *enc};
    return GT_OK;
nomem:
    free(enc->p);
    return gt_fail(GT_ERR_NOMEM, "cannot store key %s", key);
}

/* Sets a scalar whose payload is `size` raw bytes. */
static gt_status set_scalar(gt_gguf_writer *w, const char *key, gt_gguf_type t, const void *v,
                            size_t size) {
    bytes enc;
    GT_TRY(kv_begin(w, key, t, &enc));
    if (!put(&enc, v, size)) {
        free(enc.p);
        return gt_fail(GT_ERR_NOMEM, "cannot encode key %s", key);
    }
    return kv_commit(w, key, &enc);
}

gt_status gt_gguf_writer_set_u32(gt_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, GT_GGUF_UINT32, &v, 4);
}
gt_status gt_gguf_writer_set_i32(gt_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, GT_GGUF_INT32, &v, 4);
}
gt_status gt_gguf_writer_set_u64(gt_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, GT_GGUF_UINT64, &v, 8);
}
gt_status gt_gguf_writer_set_f32(gt_gguf_writer *w, const char *key, float v) {
    return set_scalar(w, key, GT_GGUF_FLOAT32, &v, 4);
}
gt_status gt_gguf_writer_set_bool(gt_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, GT_GGUF_BOOL, &b, 1);
}

gt_status gt_gguf_writer_set_str(gt_gguf_writer *w, const char *key, const char *v) {
    if (!v) return gt_fail(GT_ERR_INVALID_ARG, "key %s: a NULL string", key ? key : "(null)");
    bytes enc;
    GT_TRY(kv_begin(w, key, GT_GGUF_STRING, &enc));
    if (!put_str(&enc, v, strlen(v))) {
        free(enc.p);
        return gt_fail(GT_ERR_NOMEM, "cannot encode key %s", key);
    }
    return kv_commit(w, key, &enc);
}

gt_status gt_gguf_writer_set_arr(gt_gguf_writer *w, const char *key, gt_gguf_type type,
                                 const void *data, uint64_t n) {
    size_t size = gt_gguf_type_size(type), total;
    if (!size)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "key %s: gt_gguf_writer_set_arr takes numeric arrays, "
                       "not %s",
                       key ? key : "(null)", gt_gguf_type_name(type));
    if (n > SIZE_MAX || !gt_size_mul((size_t)n, size, &total) || (n && !data))
        return gt_fail(GT_ERR_INVALID_ARG, "key %s: an array of %llu %s elements is invalid",
                       key ? key : "(null)", (unsigned long long)n, gt_gguf_type_name(type));
    bytes enc;
    GT_TRY(kv_begin(w, key, GT_GGUF_ARRAY, &enc));
    if (!put_u32(&enc, (uint32_t)type) || !put_u64(&enc, n) || !put(&enc, data, total)) {
        free(enc.p);
        return gt_fail(GT_ERR_NOMEM, "cannot encode %llu elements for key %s",
                       (unsigned long long)n, key);
    }
    return kv_commit(w, key, &enc);
}

static bool put_strs(bytes *b, const gt_str *strs, uint64_t n) {
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += 8 + (size_t)strs[i].len;
    if (!reserve(b, total)) return false; /* one growth for the whole array */
    for (uint64_t i = 0; i < n; i++)
        if (!put_str(b, strs[i].ptr, strs[i].len)) return false;
    return true;
}

gt_status gt_gguf_writer_set_arr_str(gt_gguf_writer *w, const char *key, const gt_str *strs,
                                     uint64_t n) {
    if (n && !strs)
        return gt_fail(GT_ERR_INVALID_ARG, "key %s: NULL strings", key ? key : "(null)");
    for (uint64_t i = 0; i < n; i++)
        if (strs[i].len && !strs[i].ptr)
            return gt_fail(GT_ERR_INVALID_ARG, "key %s: string %llu is NULL", key ? key : "(null)",
                           (unsigned long long)i);
    bytes enc;
    GT_TRY(kv_begin(w, key, GT_GGUF_ARRAY, &enc));
    if (!put_u32(&enc, GT_GGUF_STRING) || !put_u64(&enc, n) || !put_strs(&enc, strs, n)) {
        free(enc.p);
        return gt_fail(GT_ERR_NOMEM, "cannot encode %llu strings for key %s", (unsigned long long)n,
                       key);
    }
    return kv_commit(w, key, &enc);
}

/* The payload of any value (for ARRAY: element type, count, elements).
 * Returns GT_ERR_INVALID_ARG for a value no reader could have produced. */
static gt_status put_value(bytes *b, const gt_gguf_value *v, int depth, const char *key) {
    bool ok = true;
    switch (v->type) {
    case GT_GGUF_UINT8:
    case GT_GGUF_BOOL: {
        uint8_t x = (uint8_t)v->num.u64;
        ok = put(b, &x, 1);
        break;
    }
    case GT_GGUF_INT8: {
        int8_t x = (int8_t)v->num.i64;
        ok = put(b, &x, 1);
        break;
    }
    case GT_GGUF_UINT16: {
        uint16_t x = (uint16_t)v->num.u64;
        ok = put(b, &x, 2);
        break;
    }
    case GT_GGUF_INT16: {
        int16_t x = (int16_t)v->num.i64;
        ok = put(b, &x, 2);
        break;
    }
    case GT_GGUF_UINT32:
        ok = put_u32(b, (uint32_t)v->num.u64);
        break;
    case GT_GGUF_INT32: {
        int32_t x = (int32_t)v->num.i64;
        ok = put(b, &x, 4);
        break;
    }
    case GT_GGUF_UINT64:
        ok = put_u64(b, v->num.u64);
        break;
    case GT_GGUF_INT64:
        ok = put(b, &v->num.i64, 8);
        break;
    case GT_GGUF_FLOAT32: {
        float x = (float)v->num.f64;
        ok = put(b, &x, 4);
        break;
    }
    case GT_GGUF_FLOAT64:
        ok = put(b, &v->num.f64, 8);
        break;
    case GT_GGUF_STRING:
        if (v->str.len && !v->str.ptr)
            return gt_fail(GT_ERR_INVALID_ARG, "key %s: a NULL string value", key);
        ok = put_str(b, v->str.ptr, v->str.len);
        break;
    case GT_GGUF_ARRAY: {
        gt_gguf_type et = v->arr.type;
        uint64_t n = v->arr.n;
        if (depth >= GT__GGUF_MAX_DEPTH)
            return gt_fail(GT_ERR_INVALID_ARG, "key %s nests arrays deeper than %d levels", key,
                           GT__GGUF_MAX_DEPTH);
        if ((unsigned)et >= GT_GGUF_TYPE_COUNT)
            return gt_fail(GT_ERR_INVALID_ARG, "key %s: unknown array element type %d", key, et);
        if (!put_u32(b, (uint32_t)et) || !put_u64(b, n)) break;
        if (et == GT_GGUF_STRING) {
            if (n && !v->arr.strs)
                return gt_fail(GT_ERR_INVALID_ARG, "key %s: a string array without strings", key);
            ok = put_strs(b, v->arr.strs, n);
        } else if (et == GT_GGUF_ARRAY) {
            if (n && !v->arr.items)
                return gt_fail(GT_ERR_INVALID_ARG, "key %s: an array of arrays without items", key);
            for (uint64_t i = 0; i < n; i++) {
                if (v->arr.items[i].type != GT_GGUF_ARRAY)
                    return gt_fail(GT_ERR_INVALID_ARG,
                                   "key %s: item %llu of an array of arrays "
                                   "is a %s",
                                   key, (unsigned long long)i,
                                   gt_gguf_type_name(v->arr.items[i].type));
                GT_TRY(put_value(b, &v->arr.items[i], depth + 1, key));
            }
        } else {
            size_t total;
            if (n > SIZE_MAX || !gt_size_mul((size_t)n, gt_gguf_type_size(et), &total) ||
                (n && !v->arr.data))
                return gt_fail(GT_ERR_INVALID_ARG, "key %s: an invalid array of %llu %s", key,
                               (unsigned long long)n, gt_gguf_type_name(et));
            ok = put(b, v->arr.data, total);
        }
        break;
    }
    default:
        return gt_fail(GT_ERR_INVALID_ARG, "key %s: unknown value type %d", key, v->type);
    }
    if (!ok) return gt_fail(GT_ERR_NOMEM, "cannot encode the value of key %s", key);
    return GT_OK;
}

gt_status gt_gguf_writer_copy_kv(gt_gguf_writer *w, const gt_gguf_kv *kv) {
    if (!kv || (kv->key.len && !kv->key.ptr))
        return gt_fail(GT_ERR_INVALID_ARG, "gt_gguf_writer_copy_kv needs a key/value");
    if (kv->key.len > GT__GGUF_MAX_KEY_BYTES || memchr(kv->key.ptr, 0, (size_t)kv->key.len))
        return gt_fail(GT_ERR_INVALID_ARG, "a key of %llu bytes cannot be copied",
                       (unsigned long long)kv->key.len);
    char *key = strndup(kv->key.ptr ? kv->key.ptr : "", (size_t)kv->key.len);
    if (!key) return gt_fail(GT_ERR_NOMEM, "cannot copy a key");
    bytes enc;
    gt_status st = kv_begin(w, key, kv->value.type, &enc);
    if (st == GT_OK) {
        st = put_value(&enc, &kv->value, 0, key);
        if (st == GT_OK)
            st = kv_commit(w, key, &enc);
        else
            free(enc.p);
    }
    free(key);
    return st;
}

/* ---- tensors ---- */

static wtensor *find_tensor(const gt_gguf_writer *w, const char *name, size_t n, size_t *slot) {
    size_t mask = w->n_slots - 1;
    size_t i = (size_t)gt__gguf_hash(name, n) & mask;
    for (; w->slots[i]; i = (i + 1) & mask)
        if (strcmp(w->ts[w->slots[i] - 1].name, name) == 0) return &w->ts[w->slots[i] - 1];
    *slot = i;
    return NULL;
}

static bool grow_tensors(gt_gguf_writer *w) {
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *p = realloc(w->ts, cap * sizeof *p);
        if (!p) return false;
        w->ts = p;
        w->cap_t = cap;
    }
    if (2 * (w->n_t + 1) > w->n_slots) {
        size_t n_slots = gt__gguf_slots_for(w->n_t + 1) * 2;
        uint32_t *slots = calloc(n_slots, sizeof *slots);
        if (!slots) return false;
        for (size_t t = 0; t < w->n_t; t++) {
            size_t i = (size_t)gt__gguf_hash(w->ts[t].name, strlen(w->ts[t].name)) & (n_slots - 1);
            while (slots[i]) i = (i + 1) & (n_slots - 1);
            slots[i] = (uint32_t)t + 1;
        }
        free(w->slots);
        w->slots = slots;
        w->n_slots = n_slots;
    }
    return true;
}

static gt_status check_tensor(const char *name, gt_dtype type, int n_dims, const int64_t *ne,
                              const void *data, size_t nbytes) {
    if (!name || !*name) return gt_fail(GT_ERR_INVALID_ARG, "a tensor needs a name");
    if (strlen(name) > GT__GGUF_MAX_NAME_BYTES)
        return gt_fail(GT_ERR_INVALID_ARG, "tensor name of %zu bytes is over the %llu limit",
                       strlen(name), (unsigned long long)GT__GGUF_MAX_NAME_BYTES);
    const gt_dtype_info *info = gt_dtype_get((uint32_t)type);
    if (!info) return gt_fail(GT_ERR_INVALID_ARG, "tensor %s: unknown type id %d", name, type);
    if (n_dims < 1 || n_dims > GT_GGUF_MAX_DIMS || !ne)
        return gt_fail(GT_ERR_INVALID_ARG, "tensor %s: %d dimensions (1 to %d allowed)", name,
                       n_dims, GT_GGUF_MAX_DIMS);
    size_t want;
    bool ok = gt_dtype_row_bytes(type, ne[0], &want);
    for (int d = 0; d < n_dims; d++) ok = ok && ne[d] >= 1 && ne[d] <= GT__GGUF_MAX_DIM;
    for (int d = 1; ok && d < n_dims; d++) ok = gt_size_mul(want, (size_t)ne[d], &want);
    if (!ok)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "tensor %s: shape [%lld, ...] is not a valid %s shape (dims 1..2^40, "
                       "rows a multiple of %d)",
                       name, (long long)ne[0], info->name, info->block_elems);
    if (nbytes != want)
        return gt_fail(GT_ERR_INVALID_ARG, "tensor %s: %zu bytes given, its %s shape needs %zu",
                       name, nbytes, info->name, want);
    if (!data) return gt_fail(GT_ERR_INVALID_ARG, "tensor %s: no data", name);
    return GT_OK;
}

gt_status gt_gguf_writer_add_tensor(gt_gguf_writer *w, const char *name, gt_dtype type, int n_dims,
                                    const int64_t *ne, void *data, size_t nbytes, bool take) {
    gt_status st = check_tensor(name, type, n_dims, ne, data, nbytes);
    size_t slot = 0;
    if (st == GT_OK && !grow_tensors(w)) st = gt_fail(GT_ERR_NOMEM, "cannot add tensor %s", name);
    if (st == GT_OK && find_tensor(w, name, strlen(name), &slot))
        st = gt_fail(GT_ERR_INVALID_ARG, "tensor %s is added twice", name);
    wtensor t = {.type = type, .n_dims = n_dims, .nbytes = nbytes};
    if (st == GT_OK) {
        t.name = strdup(name);
        t.data = take ? data : gt_alloc(nbytes);
        if (!t.name || !t.data)
            st = gt_fail(GT_ERR_NOMEM, "cannot copy tensor %s (%zu bytes)", name, nbytes);
    }
    if (st != GT_OK) {
        free(t.name);
        if (t.data != data) gt_free(t.data);
        if (take) gt_free(data); /* a taken buffer is the writer's even on failure */
        return st;
    }
    if (!take) memcpy(t.data, data, nbytes);
    for (int d = 0; d < GT_GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    w->ts[w->n_t] = t;
    w->slots[slot] = (uint32_t)w->n_t + 1;
    w->n_t++;
    return GT_OK;
}

/* ---- the file ---- */

/* general.alignment as set by the caller, checked. */
static gt_status writer_alignment(const gt_gguf_writer *w, size_t *out) {
    *out = GT_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        const uint8_t *p = w->kvs[i].enc.p + 8 + strlen(w->kvs[i].key);
        uint32_t type;
        uint64_t a = 0;
        memcpy(&type, p, 4);
        size_t size = gt_gguf_type_size((gt_gguf_type)type);
        if (type == GT_GGUF_UINT8 || type == GT_GGUF_UINT16 || type == GT_GGUF_UINT32 ||
            type == GT_GGUF_UINT64)
            memcpy(&a, p + 4, size);
        else
            return gt_fail(GT_ERR_INVALID_ARG, "general.alignment must be an unsigned integer");
        if (a == 0 || (a & (a - 1)) || a > (1u << 30))
            return gt_fail(GT_ERR_INVALID_ARG,
                           "general.alignment %llu is not a power of two between 1 and 2^30",
                           (unsigned long long)a);
        *out = (size_t)a;
    }
    return GT_OK;
}

static const uint8_t g_zeros[1024];

static bool write_zeros(FILE *f, size_t n) {
    while (n) {
        size_t k = n < sizeof g_zeros ? n : sizeof g_zeros;
        if (fwrite(g_zeros, 1, k, f) != k) return false;
        n -= k;
    }
    return true;
}

/* Header bytes up to the start of the data section, padding included. */
static gt_status encode_header(const gt_gguf_writer *w, size_t align, bytes *h) {
    bool ok =
        put_u32(h, GT_GGUF_MAGIC) && put_u32(h, 3) && put_u64(h, w->n_t) && put_u64(h, w->n_kv);
    for (size_t i = 0; ok && i < w->n_kv; i++) ok = put(h, w->kvs[i].enc.p, w->kvs[i].enc.len);
    uint64_t off = 0;
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->ts[i];
        ok = put_str(h, t->name, strlen(t->name)) && put_u32(h, (uint32_t)t->n_dims);
        for (int d = 0; ok && d < t->n_dims; d++) ok = put_u64(h, (uint64_t)t->ne[d]);
        ok = ok && put_u32(h, (uint32_t)t->type) && put_u64(h, off);
        off = gt_align_up(off + t->nbytes, align);
    }
    ok = ok && put_zeros(h, gt_align_up(h->len, align) - h->len);
    if (!ok) return gt_fail(GT_ERR_NOMEM, "cannot encode a GGUF header");
    return GT_OK;
}

gt_status gt_gguf_writer_add_tensor_deferred(gt_gguf_writer *w, const char *name, gt_dtype type,
                                             int n_dims, const int64_t *ne, size_t nbytes) {
    static const uint8_t placeholder;
    gt_status st = check_tensor(name, type, n_dims, ne, &placeholder, nbytes);
    size_t slot = 0;
    if (st == GT_OK && !grow_tensors(w)) st = gt_fail(GT_ERR_NOMEM, "cannot add tensor %s", name);
    if (st == GT_OK && find_tensor(w, name, strlen(name), &slot))
        st = gt_fail(GT_ERR_INVALID_ARG, "tensor %s is added twice", name);
    if (st != GT_OK) return st;
    wtensor t = {.type = type, .n_dims = n_dims, .nbytes = nbytes, .name = strdup(name)};
    if (!t.name) return gt_fail(GT_ERR_NOMEM, "cannot add tensor %s", name);
    for (int d = 0; d < GT_GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    w->ts[w->n_t] = t;
    w->slots[slot] = (uint32_t)w->n_t + 1;
    w->n_t++;
    return GT_OK;
}

/* One tensor's bytes: its own buffer, or the fill callback's into buf. */
static gt_status tensor_bytes(const gt_gguf_writer *w, size_t i, gt_gguf_fill_fn fill, void *ctx,
                              uint8_t **buf, size_t *cap, const void **out) {
    const wtensor *t = &w->ts[i];
    if (t->data) {
        *out = t->data;
        return GT_OK;
    }
    if (!fill)
        return gt_fail(GT_ERR_INVALID_ARG, "tensor %s was added without data and no fill is given",
                       t->name);
    if (*cap < t->nbytes) {
        gt_free(*buf);
        *buf = gt_alloc(t->nbytes);
        *cap = *buf ? t->nbytes : 0;
        if (!*buf) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu bytes for tensor %s",
                                  t->nbytes, t->name);
    }
    GT_TRY(fill(ctx, i, *buf, t->nbytes));
    *out = *buf;
    return GT_OK;
}

gt_status gt_gguf_writer_write(gt_gguf_writer *w, const char *path) {
    return gt_gguf_writer_write_stream(w, path, NULL, NULL);
}

gt_status gt_gguf_writer_write_stream(gt_gguf_writer *w, const char *path, gt_gguf_fill_fn fill,
                                      void *ctx) {
    size_t align;
    GT_TRY(writer_alignment(w, &align));
    bytes h = {0};
    gt_status st = encode_header(w, align, &h);
    if (st != GT_OK) {
        free(h.p);
        return st;
    }
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        free(h.p);
        return gt_fail(GT_ERR_INVALID_ARG, "%s: the path is too long", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = gt_fail(GT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(h.p);
        return st;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    bool ok = fwrite(h.p, 1, h.len, f) == h.len;
    uint8_t *buf = NULL; /* deferred tensors' bytes, one at a time */
    size_t cap = 0;
    gt_status fst = GT_OK;
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->ts[i];
        const void *data = NULL;
        fst = tensor_bytes(w, i, fill, ctx, &buf, &cap, &data);
        ok = fst == GT_OK && fwrite(data, 1, t->nbytes, f) == t->nbytes &&
             write_zeros(f, gt_align_up(t->nbytes, align) - t->nbytes);
    }
    gt_free(buf);
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    free(h.p);
    if (!ok) {
        unlink(tmp);
        if (fst != GT_OK) return fst;
        return gt_fail(GT_ERR_IO, "%s: cannot write: %s", path, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        return gt_fail(GT_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(err));
    }
    return GT_OK;
}
