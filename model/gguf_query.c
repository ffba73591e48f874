/* Read-only questions to an open GGUF handle: accessors, hashed lookups of
 * keys and tensors, typed getters that convert between integer widths, and
 * the value-type table.
 *
 * Design: the getters share one conversion routine per target (unsigned,
 * signed, float) so that every getter answers the same way about the same
 * stored value, and every refusal is a sentence naming the key and file. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "model/gguf_internal.h"

static const struct {
    const char *name;
    size_t size;
} g_types[GT_GGUF_TYPE_COUNT] = {
    [GT_GGUF_UINT8] = {"u8", 1},    [GT_GGUF_INT8] = {"i8", 1},    [GT_GGUF_UINT16] = {"u16", 2},
    [GT_GGUF_INT16] = {"i16", 2},   [GT_GGUF_UINT32] = {"u32", 4}, [GT_GGUF_INT32] = {"i32", 4},
    [GT_GGUF_FLOAT32] = {"f32", 4}, [GT_GGUF_BOOL] = {"bool", 1},  [GT_GGUF_STRING] = {"string", 0},
    [GT_GGUF_ARRAY] = {"array", 0}, [GT_GGUF_UINT64] = {"u64", 8}, [GT_GGUF_INT64] = {"i64", 8},
    [GT_GGUF_FLOAT64] = {"f64", 8},
};

size_t gt_gguf_type_size(gt_gguf_type t) {
    return (unsigned)t < GT_GGUF_TYPE_COUNT ? g_types[t].size : 0;
}

const char *gt_gguf_type_name(gt_gguf_type t) {
    return (unsigned)t < GT_GGUF_TYPE_COUNT ? g_types[t].name : "unknown type";
}

const char *gt_gguf_name(const gt_gguf *g) { return g->name; }
uint32_t gt_gguf_version(const gt_gguf *g) { return g->version; }
size_t gt_gguf_alignment(const gt_gguf *g) { return g->alignment; }
size_t gt_gguf_file_bytes(const gt_gguf *g) { return g->len; }
size_t gt_gguf_data_offset(const gt_gguf *g) { return g->data_offset; }
size_t gt_gguf_n_kv(const gt_gguf *g) { return g->n_kv; }
size_t gt_gguf_n_tensors(const gt_gguf *g) { return g->n_tensors; }

const gt_gguf_kv *gt_gguf_kv_at(const gt_gguf *g, size_t i) {
    return i < g->n_kv ? &g->kvs[i] : NULL;
}

const gt_tensor_info *gt_gguf_tensor_at(const gt_gguf *g, size_t i) {
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gt_gguf_value *gt_gguf_find(const gt_gguf *g, const char *key) {
    if (!g || !key || !g->kv_slots) return NULL;
    size_t n = strlen(key), mask = g->kv_cap - 1;
    for (size_t i = (size_t)gt__gguf_hash(key, n) & mask; g->kv_slots[i]; i = (i + 1) & mask) {
        const gt_gguf_kv *kv = &g->kvs[g->kv_slots[i] - 1];
        if (kv->key.len == n && memcmp(kv->key.ptr, key, n) == 0) return &kv->value;
    }
    return NULL;
}

const gt_tensor_info *gt_gguf_find_tensor(const gt_gguf *g, const char *name) {
    if (!g || !name || !g->t_slots) return NULL;
    size_t n = strlen(name), mask = g->t_cap - 1;
    for (size_t i = (size_t)gt__gguf_hash(name, n) & mask; g->t_slots[i]; i = (i + 1) & mask) {
        const gt_tensor_info *t = &g->tensors[g->t_slots[i] - 1];
        if (strcmp(t->name, name) == 0) return t;
    }
    return NULL;
}

static bool is_unsigned(gt_gguf_type t) {
    return t == GT_GGUF_UINT8 || t == GT_GGUF_UINT16 || t == GT_GGUF_UINT32 || t == GT_GGUF_UINT64;
}
static bool is_signed(gt_gguf_type t) {
    return t == GT_GGUF_INT8 || t == GT_GGUF_INT16 || t == GT_GGUF_INT32 || t == GT_GGUF_INT64;
}
static bool is_float(gt_gguf_type t) { return t == GT_GGUF_FLOAT32 || t == GT_GGUF_FLOAT64; }

static gt_status lookup(const gt_gguf *g, const char *key, const gt_gguf_value **v) {
    *v = gt_gguf_find(g, key);
    if (!*v)
        return gt_fail(GT_ERR_NOT_FOUND, "%s: key %s is missing", g ? g->name : "(no file)",
                       key ? key : "(null)");
    return GT_OK;
}

static gt_status wrong_type(const gt_gguf *g, const char *key, const gt_gguf_value *v,
                            const char *want) {
    return gt_fail(GT_ERR_FORMAT, "%s: key %s is a %s, not %s", g->name, key,
                   gt_gguf_type_name(v->type), want);
}

/* An integer value as unsigned within [0, max]. */
static gt_status as_unsigned(const gt_gguf *g, const char *key, uint64_t max, const char *tname,
                             uint64_t *out) {
    const gt_gguf_value *v;
    GT_TRY(lookup(g, key, &v));
    if (is_unsigned(v->type)) {
        if (v->num.u64 > max)
            return gt_fail(GT_ERR_FORMAT, "%s: key %s = %llu does not fit in a %s", g->name, key,
                           (unsigned long long)v->num.u64, tname);
        *out = v->num.u64;
        return GT_OK;
    }
    if (is_signed(v->type)) {
        if (v->num.i64 < 0 || (uint64_t)v->num.i64 > max)
            return gt_fail(GT_ERR_FORMAT, "%s: key %s = %lld does not fit in a %s", g->name, key,
                           (long long)v->num.i64, tname);
        *out = (uint64_t)v->num.i64;
        return GT_OK;
    }
    return wrong_type(g, key, v, "an integer");
}

gt_status gt_gguf_get_u32(const gt_gguf *g, const char *key, uint32_t *out) {
    uint64_t x = 0;
    GT_TRY(as_unsigned(g, key, UINT32_MAX, "u32", &x));
    *out = (uint32_t)x;
    return GT_OK;
}

gt_status gt_gguf_get_u64(const gt_gguf *g, const char *key, uint64_t *out) {
    return as_unsigned(g, key, UINT64_MAX, "u64", out);
}

gt_status gt_gguf_get_i64(const gt_gguf *g, const char *key, int64_t *out) {
    const gt_gguf_value *v;
    GT_TRY(lookup(g, key, &v));
    if (is_signed(v->type)) {
        *out = v->num.i64;
        return GT_OK;
    }
    if (is_unsigned(v->type)) {
        if (v->num.u64 > (uint64_t)INT64_MAX)
            return gt_fail(GT_ERR_FORMAT, "%s: key %s = %llu does not fit in an i64", g->name, key,
                           (unsigned long long)v->num.u64);
        *out = (int64_t)v->num.u64;
        return GT_OK;
    }
    return wrong_type(g, key, v, "an integer");
}

gt_status gt_gguf_get_f32(const gt_gguf *g, const char *key, float *out) {
    const gt_gguf_value *v;
    GT_TRY(lookup(g, key, &v));
    if (is_float(v->type)) /* an f64 beyond the f32 range becomes an infinity, not UB */
        *out = fabs(v->num.f64) > FLT_MAX && !isnan(v->num.f64)
                   ? (float)copysign(INFINITY, v->num.f64)
                   : (float)v->num.f64;
    else if (is_unsigned(v->type))
        *out = (float)v->num.u64;
    else if (is_signed(v->type))
        *out = (float)v->num.i64;
    else
        return wrong_type(g, key, v, "a number");
    return GT_OK;
}

gt_status gt_gguf_get_bool(const gt_gguf *g, const char *key, bool *out) {
    const gt_gguf_value *v;
    GT_TRY(lookup(g, key, &v));
    if (v->type != GT_GGUF_BOOL) return wrong_type(g, key, v, "a bool");
    *out = v->num.u64 != 0;
    return GT_OK;
}

gt_status gt_gguf_get_str(const gt_gguf *g, const char *key, gt_str *out) {
    const gt_gguf_value *v;
    GT_TRY(lookup(g, key, &v));
    if (v->type != GT_GGUF_STRING) return wrong_type(g, key, v, "a string");
    *out = v->str;
    return GT_OK;
}

gt_status gt_gguf_get_u32_or(const gt_gguf *g, const char *key, uint32_t def, uint32_t *out) {
    if (!gt_gguf_find(g, key)) {
        *out = def;
        return GT_OK;
    }
    return gt_gguf_get_u32(g, key, out);
}

gt_status gt_gguf_get_f32_or(const gt_gguf *g, const char *key, float def, float *out) {
    if (!gt_gguf_find(g, key)) {
        *out = def;
        return GT_OK;
    }
    return gt_gguf_get_f32(g, key, out);
}

gt_status gt_gguf_get_bool_or(const gt_gguf *g, const char *key, bool def, bool *out) {
    if (!gt_gguf_find(g, key)) {
        *out = def;
        return GT_OK;
    }
    return gt_gguf_get_bool(g, key, out);
}

/* Element i of a numeric array, widened; false when v is not one or i is out
 * of range. */
static bool arr_elem(const gt_gguf_value *v, uint64_t i, gt_gguf_value *e) {
    if (!v || v->type != GT_GGUF_ARRAY || i >= v->arr.n || !v->arr.data) return false;
    size_t size = gt_gguf_type_size(v->arr.type);
    if (!size) return false;
    const uint8_t *p = (const uint8_t *)v->arr.data + i * size;
    e->type = v->arr.type;
    switch (v->arr.type) {
    case GT_GGUF_UINT8:
    case GT_GGUF_BOOL:
        e->num.u64 = p[0];
        break;
    case GT_GGUF_INT8:
        e->num.i64 = (int8_t)p[0];
        break;
    case GT_GGUF_UINT16: {
        uint16_t x;
        memcpy(&x, p, 2);
        e->num.u64 = x;
        break;
    }
    case GT_GGUF_INT16: {
        int16_t x;
        memcpy(&x, p, 2);
        e->num.i64 = x;
        break;
    }
    case GT_GGUF_UINT32: {
        uint32_t x;
        memcpy(&x, p, 4);
        e->num.u64 = x;
        break;
    }
    case GT_GGUF_INT32: {
        int32_t x;
        memcpy(&x, p, 4);
        e->num.i64 = x;
        break;
    }
    case GT_GGUF_UINT64:
        memcpy(&e->num.u64, p, 8);
        break;
    case GT_GGUF_INT64:
        memcpy(&e->num.i64, p, 8);
        break;
    case GT_GGUF_FLOAT32: {
        float x;
        memcpy(&x, p, 4);
        e->num.f64 = x;
        break;
    }
    case GT_GGUF_FLOAT64:
        memcpy(&e->num.f64, p, 8);
        break;
    default:
        return false;
    }
    return true;
}

double gt_gguf_arr_f64(const gt_gguf_value *v, uint64_t i) {
    gt_gguf_value e;
    if (!arr_elem(v, i, &e)) return 0.0;
    if (is_float(e.type)) return e.num.f64;
    if (is_signed(e.type)) return (double)e.num.i64;
    return (double)e.num.u64;
}

/* Floats are truncated toward zero and clamped to the int64 range (NaN is 0);
 * unsigned values above INT64_MAX clamp to INT64_MAX. */
int64_t gt_gguf_arr_i64(const gt_gguf_value *v, uint64_t i) {
    gt_gguf_value e;
    if (!arr_elem(v, i, &e)) return 0;
    if (is_signed(e.type)) return e.num.i64;
    if (is_float(e.type)) {
        double d = e.num.f64;
        if (isnan(d)) return 0;
        if (d >= 9223372036854775807.0) return INT64_MAX;
        if (d <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)d;
    }
    return e.num.u64 > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)e.num.u64;
}
