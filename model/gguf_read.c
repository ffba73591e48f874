/* GGUF v2/v3 reader: maps the file and validates the whole header.
 *
 * Design: one forward pass over the header with a bounds-checked cursor.
 * Every count is compared with the bytes that remain before anything is
 * allocated (a key/value needs at least 13 bytes, a tensor record 32, an
 * array element its own minimum), so a hostile file can make the reader
 * allocate at most a small multiple of its own size. Values are decoded
 * with memcpy (the mapping has no alignment guarantees); strings, numeric
 * arrays and tensor data stay borrowed views into the mapping, which is why
 * a 262k-entry token array costs one allocation and one pass. Tensor
 * records are checked against the dtype table, the alignment, the file
 * size and each other (duplicate names, overlaps). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "model/gguf_internal.h"

/* Names in sentences are cut to this many bytes. */
#define SHOW 120

typedef struct cursor {
    const uint8_t *base;
    size_t pos, len;
    const char *file;
} cursor;

static size_t remain(const cursor *c) { return c->len - c->pos; }

static gt_status need(const cursor *c, uint64_t n, const char *what) {
    if (n > remain(c))
        return gt_fail(GT_ERR_FORMAT,
                       "%s: truncated header: %s at byte %zu needs %llu bytes but only %zu remain",
                       c->file, what, c->pos, (unsigned long long)n, remain(c));
    return GT_OK;
}

static gt_status rd_u32(cursor *c, const char *what, uint32_t *out) {
    GT_TRY(need(c, 4, what));
    memcpy(out, c->base + c->pos, 4);
    c->pos += 4;
    return GT_OK;
}

static gt_status rd_u64(cursor *c, const char *what, uint64_t *out) {
    GT_TRY(need(c, 8, what));
    memcpy(out, c->base + c->pos, 8);
    c->pos += 8;
    return GT_OK;
}

/* A length-prefixed string of at most `cap` bytes, borrowed. */
static gt_status rd_str(cursor *c, const char *what, uint64_t cap, gt_str *out) {
    uint64_t n = 0;
    size_t at = c->pos;
    GT_TRY(rd_u64(c, what, &n));
    if (n > cap)
        return gt_fail(GT_ERR_FORMAT, "%s: %s at byte %zu declares %llu bytes, over the %llu limit",
                       c->file, what, at, (unsigned long long)n, (unsigned long long)cap);
    GT_TRY(need(c, n, what));
    out->ptr = (const char *)c->base + c->pos;
    out->len = n;
    c->pos += n;
    return GT_OK;
}

static int show_len(uint64_t n) { return n > SHOW ? SHOW : (int)n; }

/* Smallest encoding of one value of type t (an array: its type and count). */
static uint64_t min_bytes(gt_gguf_type t) {
    if (t == GT_GGUF_STRING) return 8;
    if (t == GT_GGUF_ARRAY) return 12;
    return gt_gguf_type_size(t);
}

void gt__gguf_value_free(gt_gguf_value *v) {
    if (v->type != GT_GGUF_ARRAY) return;
    free(v->arr.strs);
    if (v->arr.items) {
        for (uint64_t i = 0; i < v->arr.n; i++) gt__gguf_value_free(&v->arr.items[i]);
        free(v->arr.items);
    }
    v->arr.strs = NULL;
    v->arr.items = NULL;
}

static gt_status parse_value(cursor *c, const gt_str *key, gt_gguf_type type, int depth,
                             gt_gguf_value *v);

/* The payload of an ARRAY value: element type, count, elements. */
static gt_status parse_array(cursor *c, const gt_str *key, int depth, gt_gguf_value *v) {
    uint32_t et = 0;
    uint64_t n = 0;
    if (depth >= GT__GGUF_MAX_DEPTH)
        return gt_fail(GT_ERR_FORMAT, "%s: key %.*s nests arrays deeper than %d levels", c->file,
                       show_len(key->len), key->ptr, GT__GGUF_MAX_DEPTH);
    GT_TRY(rd_u32(c, "an array element type", &et));
    if (et >= GT_GGUF_TYPE_COUNT)
        return gt_fail(GT_ERR_FORMAT, "%s: key %.*s is an array of unknown value type %u", c->file,
                       show_len(key->len), key->ptr, et);
    GT_TRY(rd_u64(c, "an array length", &n));
    v->arr.type = (gt_gguf_type)et;
    uint64_t least = min_bytes((gt_gguf_type)et);
    if (n > remain(c) / least)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: key %.*s declares %llu %s elements, more than the %zu remaining bytes "
                       "can hold",
                       c->file, show_len(key->len), key->ptr, (unsigned long long)n,
                       gt_gguf_type_name((gt_gguf_type)et), remain(c));
    if (et == GT_GGUF_STRING) {
        if (n) {
            v->arr.strs = malloc((size_t)n * sizeof(gt_str));
            if (!v->arr.strs)
                return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %llu strings for key %.*s",
                               c->file, (unsigned long long)n, show_len(key->len), key->ptr);
        }
        v->arr.n = n;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t len = 0;
            size_t at = c->pos;
            GT_TRY(rd_u64(c, "a string length", &len));
            if (len > GT__GGUF_MAX_STR_BYTES || len > remain(c))
                return gt_fail(GT_ERR_FORMAT,
                               "%s: element %llu of key %.*s at byte %zu declares %llu bytes, "
                               "but %zu remain",
                               c->file, (unsigned long long)i, show_len(key->len), key->ptr, at,
                               (unsigned long long)len, remain(c));
            v->arr.strs[i].ptr = (const char *)c->base + c->pos;
            v->arr.strs[i].len = len;
            c->pos += len;
        }
    } else if (et == GT_GGUF_ARRAY) {
        if (n) {
            v->arr.items = calloc((size_t)n, sizeof(gt_gguf_value));
            if (!v->arr.items)
                return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %llu arrays for key %.*s",
                               c->file, (unsigned long long)n, show_len(key->len), key->ptr);
        }
        v->arr.n = n;
        for (uint64_t i = 0; i < n; i++)
            GT_TRY(parse_value(c, key, GT_GGUF_ARRAY, depth + 1, &v->arr.items[i]));
    } else {
        v->arr.n = n;
        v->arr.data = c->base + c->pos;
        c->pos += (size_t)(n * least);
    }
    return GT_OK;
}

static gt_status parse_value(cursor *c, const gt_str *key, gt_gguf_type type, int depth,
                             gt_gguf_value *v) {
    v->type = type;
    uint8_t raw[8] = {0};
    switch (type) {
    case GT_GGUF_STRING:
        return rd_str(c, "a string value", GT__GGUF_MAX_STR_BYTES, &v->str);
    case GT_GGUF_ARRAY:
        return parse_array(c, key, depth, v);
    default:
        break;
    }
    size_t size = gt_gguf_type_size(type);
    if (size > remain(c))
        return gt_fail(GT_ERR_FORMAT,
                       "%s: truncated header: the %s value of key %.*s at byte %zu needs %zu "
                       "bytes but only %zu remain",
                       c->file, gt_gguf_type_name(type), show_len(key->len), key->ptr, c->pos, size,
                       remain(c));
    memcpy(raw, c->base + c->pos, size);
    c->pos += size;
    switch (type) {
    case GT_GGUF_UINT8:
        v->num.u64 = raw[0];
        break;
    case GT_GGUF_BOOL:
        v->num.u64 = raw[0] != 0;
        break;
    case GT_GGUF_INT8:
        v->num.i64 = (int8_t)raw[0];
        break;
    case GT_GGUF_UINT16: {
        uint16_t x;
        memcpy(&x, raw, 2);
        v->num.u64 = x;
        break;
    }
    case GT_GGUF_INT16: {
        int16_t x;
        memcpy(&x, raw, 2);
        v->num.i64 = x;
        break;
    }
    case GT_GGUF_UINT32: {
        uint32_t x;
        memcpy(&x, raw, 4);
        v->num.u64 = x;
        break;
    }
    case GT_GGUF_INT32: {
        int32_t x;
        memcpy(&x, raw, 4);
        v->num.i64 = x;
        break;
    }
    case GT_GGUF_UINT64:
        memcpy(&v->num.u64, raw, 8);
        break;
    case GT_GGUF_INT64:
        memcpy(&v->num.i64, raw, 8);
        break;
    case GT_GGUF_FLOAT32: {
        float x;
        memcpy(&x, raw, 4);
        v->num.f64 = x;
        break;
    }
    case GT_GGUF_FLOAT64:
        memcpy(&v->num.f64, raw, 8);
        break;
    default:
        return gt_fail(GT_ERR_INTERNAL, "%s: value type %d slipped through", c->file, type);
    }
    return GT_OK;
}

/* Inserts entry `idx` named (s, n) unless the name is present; *dup then holds
 * the earlier index. */
static bool index_insert(uint32_t *slots, size_t cap, const char *s, size_t n, uint32_t idx,
                         const char *(*name_of)(const gt_gguf *, uint32_t, size_t *),
                         const gt_gguf *g, uint32_t *dup) {
    size_t mask = cap - 1;
    for (size_t i = (size_t)gt__gguf_hash(s, n) & mask;; i = (i + 1) & mask) {
        if (!slots[i]) {
            slots[i] = idx + 1;
            return true;
        }
        size_t m;
        const char *other = name_of(g, slots[i] - 1, &m);
        if (m == n && memcmp(other, s, n) == 0) {
            *dup = slots[i] - 1;
            return false;
        }
    }
}

static const char *kv_name(const gt_gguf *g, uint32_t i, size_t *n) {
    *n = (size_t)g->kvs[i].key.len;
    return g->kvs[i].key.ptr;
}

static const char *tensor_name(const gt_gguf *g, uint32_t i, size_t *n) {
    *n = strlen(g->tensors[i].name);
    return g->tensors[i].name;
}

static gt_status parse_header(gt_gguf *g, cursor *c, uint64_t *n_tensors, uint64_t *n_kv) {
    uint32_t magic = 0, version = 0;
    if (c->len == 0)
        return gt_fail(GT_ERR_FORMAT, "%s: the file is empty, not a GGUF model", c->file);
    if (c->len < 4)
        return gt_fail(GT_ERR_FORMAT, "%s: the file is %zu bytes long, too short for a GGUF header",
                       c->file, c->len);
    GT_TRY(rd_u32(c, "the magic", &magic));
    if (magic != GT_GGUF_MAGIC)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: not a GGUF file (it starts with bytes %02x %02x %02x %02x, not 'GGUF')",
                       c->file, c->base[0], c->base[1], c->base[2], c->base[3]);
    GT_TRY(rd_u32(c, "the version", &version));
    if (version == 1)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "%s: GGUF version 1 is not supported (Gantry reads versions 2 and 3); "
                       "convert the file again with a current converter",
                       c->file);
    if (version == 0x02000000u || version == 0x03000000u)
        return gt_fail(GT_ERR_UNSUPPORTED, "%s: a big-endian GGUF file, which Gantry does not read",
                       c->file);
    if (version != 2 && version != 3)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "%s: unknown GGUF version %u (Gantry reads versions 2 and 3)", c->file,
                       version);
    g->version = version;
    GT_TRY(rd_u64(c, "the tensor count", n_tensors));
    GT_TRY(rd_u64(c, "the key/value count", n_kv));
    /* 13 = shortest key/value (empty key, one-byte value); 32 = shortest
     * tensor record (empty name, one dimension). */
    uint64_t r = remain(c);
    if (*n_kv > r / 13 || *n_tensors > r / 32 || *n_kv * 13 + *n_tensors * 32 > r)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: the header declares %llu keys and %llu tensors, more than the "
                       "remaining %llu bytes can hold",
                       c->file, (unsigned long long)*n_kv, (unsigned long long)*n_tensors,
                       (unsigned long long)r);
    return GT_OK;
}

static gt_status parse_kvs(gt_gguf *g, cursor *c, uint64_t n_kv) {
    g->kv_cap = gt__gguf_slots_for((size_t)n_kv);
    g->kvs = calloc(n_kv ? (size_t)n_kv : 1, sizeof(gt_gguf_kv));
    g->kv_slots = calloc(g->kv_cap, sizeof(uint32_t));
    if (!g->kvs || !g->kv_slots)
        return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %llu key/value records", c->file,
                       (unsigned long long)n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        gt_gguf_kv *kv = &g->kvs[i];
        uint32_t type = 0;
        GT_TRY(rd_str(c, "a key", GT__GGUF_MAX_KEY_BYTES, &kv->key));
        g->n_kv = (size_t)i + 1; /* from here on its value is freed on failure */
        GT_TRY(rd_u32(c, "a value type", &type));
        if (type >= GT_GGUF_TYPE_COUNT)
            return gt_fail(GT_ERR_FORMAT, "%s: key %.*s has unknown value type %u", c->file,
                           show_len(kv->key.len), kv->key.ptr, type);
        GT_TRY(parse_value(c, &kv->key, (gt_gguf_type)type, 0, &kv->value));
        uint32_t dup = 0;
        if (!index_insert(g->kv_slots, g->kv_cap, kv->key.ptr, (size_t)kv->key.len, (uint32_t)i,
                          kv_name, g, &dup))
            return gt_fail(GT_ERR_FORMAT, "%s: key %.*s appears twice (entries %u and %llu)",
                           c->file, show_len(kv->key.len), kv->key.ptr, dup, (unsigned long long)i);
    }
    return GT_OK;
}

static gt_status read_alignment(gt_gguf *g) {
    g->alignment = GT_GGUF_DEFAULT_ALIGNMENT;
    const gt_gguf_value *v = gt_gguf_find(g, "general.alignment");
    if (!v) return GT_OK;
    uint64_t a;
    switch (v->type) {
    case GT_GGUF_UINT8:
    case GT_GGUF_UINT16:
    case GT_GGUF_UINT32:
    case GT_GGUF_UINT64:
        a = v->num.u64;
        break;
    case GT_GGUF_INT8:
    case GT_GGUF_INT16:
    case GT_GGUF_INT32:
    case GT_GGUF_INT64:
        a = v->num.i64 < 0 ? 0 : (uint64_t)v->num.i64;
        break;
    default:
        return gt_fail(GT_ERR_FORMAT, "%s: general.alignment is a %s, not an integer", g->name,
                       gt_gguf_type_name(v->type));
    }
    if (a == 0 || (a & (a - 1)) || a > (1u << 30))
        return gt_fail(GT_ERR_FORMAT,
                       "%s: general.alignment is %llu, not a power of two between 1 and 2^30",
                       g->name, (unsigned long long)a);
    g->alignment = (size_t)a;
    return GT_OK;
}

/* One tensor record: name, dims, type, offset; sizes checked, data not yet. */
static gt_status parse_tensor(gt_gguf *g, cursor *c, size_t i) {
    gt_tensor_info *t = &g->tensors[i];
    gt_str name;
    GT_TRY(rd_str(c, "a tensor name", GT__GGUF_MAX_NAME_BYTES, &name));
    if (memchr(name.ptr, 0, (size_t)name.len))
        return gt_fail(GT_ERR_FORMAT, "%s: the name of tensor %zu contains a NUL byte", c->file, i);
    char *copy = malloc((size_t)name.len + 1);
    if (!copy) return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate a tensor name", c->file);
    memcpy(copy, name.ptr, (size_t)name.len);
    copy[name.len] = '\0';
    t->name = copy;
    g->n_tensors = i + 1;

    uint32_t n_dims = 0, type = 0;
    GT_TRY(rd_u32(c, "a tensor's dimension count", &n_dims));
    if (n_dims < 1 || n_dims > GT_GGUF_MAX_DIMS)
        return gt_fail(GT_ERR_FORMAT, "%s: tensor %s has %u dimensions (1 to %d allowed)", c->file,
                       t->name, n_dims, GT_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    int64_t n_elems = 1;
    for (int d = 0; d < GT_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < (int)n_dims) GT_TRY(rd_u64(c, "a tensor dimension", &ne));
        if (ne < 1 || ne > (uint64_t)GT__GGUF_MAX_DIM)
            return gt_fail(GT_ERR_FORMAT,
                           "%s: tensor %s has dimension %d = %llu (1 to 2^40 allowed)", c->file,
                           t->name, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        if (__builtin_mul_overflow(n_elems, t->ne[d], &n_elems))
            return gt_fail(GT_ERR_FORMAT, "%s: tensor %s has more elements than fit in 64 bits",
                           c->file, t->name);
    }
    GT_TRY(rd_u32(c, "a tensor type", &type));
    GT_TRY(rd_u64(c, "a tensor offset", &t->offset));
    const gt_dtype_info *info = gt_dtype_get(type);
    if (!info)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "%s: tensor %s has type id %u, whose layout Gantry does not know", c->file,
                       t->name, type);
    t->type = (gt_dtype)type;
    size_t row, bytes;
    if (t->ne[0] % info->block_elems)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: tensor %s has rows of %lld elements, not a multiple of the "
                       "%d-element %s blocks",
                       c->file, t->name, (long long)t->ne[0], info->block_elems, info->name);
    if (!gt_dtype_row_bytes(t->type, t->ne[0], &row) ||
        !gt_size_mul(row, (size_t)t->ne[1], &bytes) ||
        !gt_size_mul(bytes, (size_t)t->ne[2], &bytes) ||
        !gt_size_mul(bytes, (size_t)t->ne[3], &bytes))
        return gt_fail(GT_ERR_FORMAT, "%s: the size of tensor %s overflows", c->file, t->name);
    t->nbytes = bytes;
    if (t->offset % g->alignment)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: tensor %s starts at data offset %llu, not a multiple of the "
                       "alignment %zu",
                       c->file, t->name, (unsigned long long)t->offset, g->alignment);
    uint32_t dup = 0;
    if (!index_insert(g->t_slots, g->t_cap, t->name, (size_t)name.len, (uint32_t)i, tensor_name, g,
                      &dup))
        return gt_fail(GT_ERR_FORMAT, "%s: tensor %s appears twice (records %u and %zu)", c->file,
                       t->name, dup, i);
    return GT_OK;
}

static int by_offset(const void *a, const void *b) {
    const gt_tensor_info *x = *(const gt_tensor_info *const *)a;
    const gt_tensor_info *y = *(const gt_tensor_info *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places every tensor inside the file and refuses overlaps. */
static gt_status place_tensors(gt_gguf *g) {
    for (size_t i = 0; i < g->n_tensors; i++) {
        gt_tensor_info *t = &g->tensors[i];
        uint64_t start, end;
        if (__builtin_add_overflow((uint64_t)g->data_offset, t->offset, &start) ||
            __builtin_add_overflow(start, (uint64_t)t->nbytes, &end))
            return gt_fail(GT_ERR_FORMAT,
                           "%s: tensor %s at data offset %llu with %zu bytes ends past 2^64, "
                           "far beyond the end of the %zu-byte file",
                           g->name, t->name, (unsigned long long)t->offset, t->nbytes, g->len);
        if (end > g->len)
            return gt_fail(GT_ERR_FORMAT,
                           "%s: tensor %s ends at byte %llu, past the end of the %zu-byte file",
                           g->name, t->name, (unsigned long long)end, g->len);
        t->data = g->base + start;
    }
    if (g->n_tensors < 2) return GT_OK;
    const gt_tensor_info **order = malloc(g->n_tensors * sizeof *order);
    if (!order) return gt_fail(GT_ERR_NOMEM, "%s: cannot sort %zu tensors", g->name, g->n_tensors);
    for (size_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, by_offset);
    gt_status st = GT_OK;
    for (size_t i = 1; i < g->n_tensors; i++) {
        const gt_tensor_info *a = order[i - 1], *b = order[i];
        if (a->offset + a->nbytes > b->offset) {
            st = gt_fail(GT_ERR_FORMAT,
                         "%s: tensor %s (data bytes %llu..%llu) overlaps tensor %s (from %llu)",
                         g->name, a->name, (unsigned long long)a->offset,
                         (unsigned long long)(a->offset + a->nbytes), b->name,
                         (unsigned long long)b->offset);
            break;
        }
    }
    free(order);
    return st;
}

static gt_status parse(gt_gguf *g) {
    cursor c = {.base = g->base, .pos = 0, .len = g->len, .file = g->name};
    uint64_t n_tensors = 0, n_kv = 0;
    GT_TRY(parse_header(g, &c, &n_tensors, &n_kv));
    if (n_kv >= UINT32_MAX || n_tensors >= UINT32_MAX)
        return gt_fail(GT_ERR_FORMAT, "%s: %llu keys and %llu tensors are more than Gantry indexes",
                       g->name, (unsigned long long)n_kv, (unsigned long long)n_tensors);
    GT_TRY(parse_kvs(g, &c, n_kv));
    GT_TRY(read_alignment(g));
    if (n_tensors > remain(&c) / 32)
        return gt_fail(GT_ERR_FORMAT,
                       "%s: the header declares %llu tensors, more than the remaining %zu bytes "
                       "can describe",
                       g->name, (unsigned long long)n_tensors, remain(&c));
    g->t_cap = gt__gguf_slots_for((size_t)n_tensors);
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(gt_tensor_info));
    g->t_slots = calloc(g->t_cap, sizeof(uint32_t));
    if (!g->tensors || !g->t_slots)
        return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %llu tensor records", g->name,
                       (unsigned long long)n_tensors);
    for (size_t i = 0; i < (size_t)n_tensors; i++) GT_TRY(parse_tensor(g, &c, i));
    g->data_offset = gt_align_up(c.pos, g->alignment);
    return place_tensors(g);
}

/* Takes (base, len); on failure the caller still owns the buffer. */
static gt_status open_common(const void *buf, size_t len, const char *name, int mapped,
                             gt_gguf **out) {
    *out = NULL;
    gt_gguf *g = calloc(1, sizeof *g);
    char *copy = strdup(name ? name : "(buffer)");
    if (!g || !copy) {
        free(g);
        free(copy);
        return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate a GGUF handle", name ? name : "(buffer)");
    }
    g->name = copy;
    g->base = buf;
    g->len = len;
    gt_status st = parse(g);
    if (st != GT_OK) {
        gt_gguf_close(g); /* g->mapped is still 0: the buffer stays the caller's */
        return st;
    }
    g->mapped = mapped;
    *out = g;
    GT_LOG_DEBUG(GT_SUB_MODEL, "%s: GGUF v%u, %zu keys, %zu tensors, data at %zu", g->name,
                 g->version, g->n_kv, g->n_tensors, g->data_offset);
    return GT_OK;
}

gt_status gt_gguf_open_memory(const void *buf, size_t len, const char *name, gt_gguf **out) {
    if (!out) return gt_fail(GT_ERR_INVALID_ARG, "gt_gguf_open_memory needs an output pointer");
    *out = NULL;
    if (!buf && len)
        return gt_fail(GT_ERR_INVALID_ARG, "%s: a NULL buffer of %zu bytes",
                       name ? name : "(buffer)", len);
    static const uint8_t empty[1];
    return open_common(buf ? buf : empty, len, name, 0, out);
}

gt_status gt_gguf_open(const char *path, gt_gguf **out) {
    if (!out || !path) return gt_fail(GT_ERR_INVALID_ARG, "gt_gguf_open needs a path and output");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gt_fail(GT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return gt_fail(GT_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return gt_fail(GT_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return gt_fail(GT_ERR_FORMAT, "%s: the file is empty, not a GGUF model", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED)
        return gt_fail(GT_ERR_IO, "%s: cannot map %zu bytes: %s", path, len, strerror(e));
    gt_status st = open_common(map, len, path, 1, out);
    if (st != GT_OK) munmap(map, len);
    return st;
}

void gt_gguf_close(gt_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) gt__gguf_value_free(&g->kvs[i].value);
    for (size_t i = 0; i < g->n_tensors; i++) free((void *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    free(g->kv_slots);
    free(g->t_slots);
    if (g->mapped) munmap((void *)g->base, g->len);
    free(g->name);
    free(g);
}
