/* GGUF reader/writer tests.
 *
 * The independent side is a byte builder in this file that encodes GGUF by
 * hand from the format description (not through the writer): the writer's
 * output is compared with it byte for byte, and the malformed-file table is
 * built with it. Round trips then cover every value type, nested and string
 * arrays, tensors of several types and alignments 32/64/4096, typed-getter
 * conversions, copy_kv of real vocabularies, and the open time of a
 * 262k-token array. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/dtype.h"
#include "model/gguf.h"
#include "util/test_util.h"

/* ---- an independent GGUF byte builder ---- */

typedef struct tb {
    uint8_t *p;
    size_t len, cap;
} tb;

static void tb_put(tb *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void tb_u8(tb *b, uint8_t x) { tb_put(b, &x, 1); }
static void tb_u32(tb *b, uint32_t x) { tb_put(b, &x, 4); }
static void tb_u64(tb *b, uint64_t x) { tb_put(b, &x, 8); }
static void tb_str(tb *b, const char *s) {
    tb_u64(b, strlen(s));
    tb_put(b, s, strlen(s));
}
static void tb_head(tb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    tb_u32(b, GT_GGUF_MAGIC);
    tb_u32(b, version);
    tb_u64(b, n_tensors);
    tb_u64(b, n_kv);
}
static void tb_kv_u32(tb *b, const char *key, uint32_t v) {
    tb_str(b, key);
    tb_u32(b, GT_GGUF_UINT32);
    tb_u32(b, v);
}
static void tb_kv_str(tb *b, const char *key, const char *v) {
    tb_str(b, key);
    tb_u32(b, GT_GGUF_STRING);
    tb_str(b, v);
}
/* A tensor record with up to 4 dims (n_dims taken as given). */
static void tb_tensor(tb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                      uint64_t offset) {
    tb_str(b, name);
    tb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) tb_u64(b, ne[d]);
    tb_u32(b, type);
    tb_u64(b, offset);
}
static void tb_pad(tb *b, size_t align) {
    while (b->len % align) tb_u8(b, 0);
}
static void tb_fill(tb *b, size_t n, uint8_t v) {
    for (size_t i = 0; i < n; i++) tb_u8(b, (uint8_t)(v + i));
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- dtype table ---- */

static void test_dtype_table(void **state) {
    /* Block sizes as ggml defines them (ggml-common.h), typed in by hand. */
    static const struct {
        uint32_t id;
        const char *name;
        int elems;
        size_t bytes;
        bool codec;
    } want[] = {
        {0, "F32", 1, 4, true},       {1, "F16", 1, 2, true},       {2, "Q4_0", 32, 18, true},
        {3, "Q4_1", 32, 20, true},    {6, "Q5_0", 32, 22, true},    {7, "Q5_1", 32, 24, true},
        {8, "Q8_0", 32, 34, true},    {9, "Q8_1", 32, 36, true},    {10, "Q2_K", 256, 84, true},
        {11, "Q3_K", 256, 110, true}, {12, "Q4_K", 256, 144, true}, {13, "Q5_K", 256, 176, true},
        {14, "Q6_K", 256, 210, true}, {15, "Q8_K", 256, 292, true}, {24, "I8", 1, 1, false},
        {25, "I16", 1, 2, false},     {26, "I32", 1, 4, false},     {27, "I64", 1, 8, false},
        {28, "F64", 1, 8, false},     {30, "BF16", 1, 2, true},
    };
    int known = 0;
    for (uint32_t id = 0; id < 64; id++) known += gt_dtype_get(id) != NULL;
    assert_int_equal(known, (int)(sizeof want / sizeof want[0]));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const gt_dtype_info *info = gt_dtype_get(want[i].id);
        assert_non_null(info);
        assert_string_equal(info->name, want[i].name);
        assert_int_equal(info->block_elems, want[i].elems);
        assert_int_equal(info->block_bytes, want[i].bytes);
        assert_int_equal(info->quantized, want[i].elems > 1);
        assert_int_equal(info->has_codec, want[i].codec);
        gt_dtype t;
        char lower[16];
        for (size_t k = 0; k <= strlen(want[i].name); k++)
            lower[k] =
                (char)((want[i].name[k] >= 'A' && want[i].name[k] <= 'Z') ? want[i].name[k] + 32
                                                                          : want[i].name[k]);
        assert_true(gt_dtype_parse(lower, &t));
        assert_int_equal(t, want[i].id);
        assert_string_equal(gt_dtype_name(want[i].id), want[i].name);
    }
    gt_dtype t;
    assert_false(gt_dtype_parse("q4_z", &t));
    assert_string_equal(gt_dtype_name(17), "type 17");
    assert_string_equal(gt_dtype_name(1000), "type 1000");
    size_t n;
    assert_true(gt_dtype_row_bytes(GT_Q4_K, 4096, &n));
    assert_int_equal(n, 16 * 144);
    assert_false(gt_dtype_row_bytes(GT_Q4_K, 4000, &n));
    assert_false(gt_dtype_row_bytes(GT_F32, -1, &n));
    assert_false(gt_dtype_row_bytes(GT_F64, INT64_MAX, &n));
    assert_true(gt_dtype_row_bytes(GT_F16, 0, &n));
    assert_int_equal(n, 0);
}

/* ---- writer against the hand-built bytes ---- */

static void test_writer_bytes(void **state) {
    const char *path = gt_test_tmp_path(0, "gguf-bytes.gguf");
    gt_gguf_writer *w;
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    assert_int_equal(gt_gguf_writer_set_str(w, "general.architecture", "llama"), GT_OK);
    assert_int_equal(gt_gguf_writer_set_u32(w, "llama.block_count", 7), GT_OK);
    assert_int_equal(gt_gguf_writer_set_u32(w, "llama.block_count", 2), GT_OK); /* replaces */
    float a[3] = {1, 2, 3};
    uint8_t b[40];
    for (int i = 0; i < 40; i++) b[i] = (uint8_t)(i * 7);
    int64_t ne_a[1] = {3}, ne_b[2] = {32, 1};
    assert_int_equal(gt_gguf_writer_add_tensor(w, "a", GT_F32, 1, ne_a, a, sizeof a, false), GT_OK);
    assert_int_equal(gt_gguf_writer_add_tensor(w, "b", GT_Q8_0, 2, ne_b, b, 34, false), GT_OK);
    assert_int_equal(gt_gguf_writer_write(w, path), GT_OK);
    gt_gguf_writer_destroy(w);

    tb want = {0};
    tb_head(&want, 3, 2, 2);
    tb_kv_str(&want, "general.architecture", "llama");
    tb_kv_u32(&want, "llama.block_count", 2);
    tb_tensor(&want, "a", 1, (const uint64_t[]){3}, GT_F32, 0);
    tb_tensor(&want, "b", 2, (const uint64_t[]){32, 1}, GT_Q8_0, 32);
    tb_pad(&want, 32);
    tb_put(&want, a, sizeof a);
    tb_pad(&want, 32);
    tb_put(&want, b, 34);
    tb_pad(&want, 32);

    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t got[512];
    size_t n = fread(got, 1, sizeof got, f);
    fclose(f);
    if (n != want.len || memcmp(got, want.p, n) != 0) {
        size_t i = 0;
        while (i < n && i < want.len && got[i] == want.p[i]) i++;
        fail_msg("writer output differs from the hand-built file at byte %zu (sizes %zu, %zu)", i,
                 n, want.len);
    }
    free(want.p);
}

/* ---- round trips ---- */

static void check_same_value(const gt_gguf_value *a, const gt_gguf_value *b, const char *key) {
    if (a->type != b->type) fail_msg("key %s: type %d vs %d", key, a->type, b->type);
    switch (a->type) {
    case GT_GGUF_STRING:
        assert_int_equal(a->str.len, b->str.len);
        assert_memory_equal(a->str.ptr, b->str.ptr, a->str.len);
        break;
    case GT_GGUF_ARRAY:
        assert_int_equal(a->arr.type, b->arr.type);
        assert_int_equal(a->arr.n, b->arr.n);
        for (uint64_t i = 0; i < a->arr.n; i++) {
            if (a->arr.type == GT_GGUF_STRING) {
                assert_int_equal(a->arr.strs[i].len, b->arr.strs[i].len);
                assert_memory_equal(a->arr.strs[i].ptr, b->arr.strs[i].ptr, a->arr.strs[i].len);
            } else if (a->arr.type == GT_GGUF_ARRAY) {
                check_same_value(&a->arr.items[i], &b->arr.items[i], key);
            }
        }
        if (gt_gguf_type_size(a->arr.type) && a->arr.n)
            assert_memory_equal(a->arr.data, b->arr.data,
                                a->arr.n * gt_gguf_type_size(a->arr.type));
        break;
    case GT_GGUF_FLOAT32:
    case GT_GGUF_FLOAT64:
        assert_true(a->num.f64 == b->num.f64);
        break;
    default:
        assert_true(a->num.u64 == b->num.u64);
    }
}

/* Every pair of keys of a and b, by position and by lookup. */
static void check_same_kvs(const gt_gguf *a, const gt_gguf *b) {
    assert_int_equal(gt_gguf_n_kv(a), gt_gguf_n_kv(b));
    for (size_t i = 0; i < gt_gguf_n_kv(a); i++) {
        const gt_gguf_kv *ka = gt_gguf_kv_at(a, i), *kb = gt_gguf_kv_at(b, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)ka->key.len, ka->key.ptr);
        assert_int_equal(ka->key.len, kb->key.len);
        assert_memory_equal(ka->key.ptr, kb->key.ptr, ka->key.len);
        check_same_value(&ka->value, &kb->value, key);
        assert_ptr_equal(gt_gguf_find(a, key), &ka->value);
    }
}

/* Sets one array of each numeric type; element i is (i * 37 - 50) cast. */
#define N_ARR 13
static void set_numeric_arrays(gt_gguf_writer *w) {
    static const gt_gguf_type types[] = {
        GT_GGUF_UINT8,   GT_GGUF_INT8, GT_GGUF_UINT16, GT_GGUF_INT16, GT_GGUF_UINT32, GT_GGUF_INT32,
        GT_GGUF_FLOAT32, GT_GGUF_BOOL, GT_GGUF_UINT64, GT_GGUF_INT64, GT_GGUF_FLOAT64};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        uint8_t buf[N_ARR * 8];
        for (int i = 0; i < N_ARR; i++) {
            int64_t v = i * 37 - 50;
            uint8_t *p = buf + i * gt_gguf_type_size(types[t]);
            switch (types[t]) {
            case GT_GGUF_UINT8:
                *p = (uint8_t)i;
                break;
            case GT_GGUF_INT8:
                *(int8_t *)p = (int8_t)v;
                break;
            case GT_GGUF_BOOL:
                *p = (uint8_t)(i & 1);
                break;
            case GT_GGUF_UINT16: {
                uint16_t x = (uint16_t)(i * 1000);
                memcpy(p, &x, 2);
                break;
            }
            case GT_GGUF_INT16: {
                int16_t x = (int16_t)(v * 100);
                memcpy(p, &x, 2);
                break;
            }
            case GT_GGUF_UINT32: {
                uint32_t x = (uint32_t)i * 300000000u;
                memcpy(p, &x, 4);
                break;
            }
            case GT_GGUF_INT32: {
                int32_t x = (int32_t)(v * 1000000);
                memcpy(p, &x, 4);
                break;
            }
            case GT_GGUF_UINT64: {
                uint64_t x = (uint64_t)i << 60;
                memcpy(p, &x, 8);
                break;
            }
            case GT_GGUF_INT64: {
                int64_t x = v * (1ll << 40);
                memcpy(p, &x, 8);
                break;
            }
            case GT_GGUF_FLOAT32: {
                float x = (float)v * 0.25f;
                memcpy(p, &x, 4);
                break;
            }
            case GT_GGUF_FLOAT64: {
                double x = (double)v / 3;
                memcpy(p, &x, 8);
                break;
            }
            default:
                break;
            }
        }
        char key[64];
        snprintf(key, sizeof key, "arr.%s", gt_gguf_type_name(types[t]));
        assert_int_equal(gt_gguf_writer_set_arr(w, key, types[t], buf, N_ARR), GT_OK);
    }
}

static void check_numeric_arrays(const gt_gguf *g) {
    const gt_gguf_value *v = gt_gguf_find(g, "arr.i8");
    assert_non_null(v);
    assert_int_equal(v->arr.n, N_ARR);
    for (int i = 0; i < N_ARR; i++) assert_int_equal(gt_gguf_arr_i64(v, i), (int8_t)(i * 37 - 50));
    v = gt_gguf_find(g, "arr.u32");
    for (int i = 0; i < N_ARR; i++)
        assert_int_equal(gt_gguf_arr_i64(v, i), (uint32_t)i * 300000000u);
    v = gt_gguf_find(g, "arr.i64");
    for (int i = 0; i < N_ARR; i++)
        assert_int_equal(gt_gguf_arr_i64(v, i), (int64_t)(i * 37 - 50) * (1ll << 40));
    v = gt_gguf_find(g, "arr.u64");
    assert_int_equal(gt_gguf_arr_i64(v, 1), 1ll << 60);
    assert_int_equal(gt_gguf_arr_i64(v, 12), INT64_MAX); /* 12 << 60 wraps to 0xc0...: clamps */
    v = gt_gguf_find(g, "arr.f32");
    for (int i = 0; i < N_ARR; i++) assert_true(gt_gguf_arr_f64(v, i) == (i * 37 - 50) * 0.25);
    v = gt_gguf_find(g, "arr.f64");
    for (int i = 0; i < N_ARR; i++) assert_true(gt_gguf_arr_f64(v, i) == (double)(i * 37 - 50) / 3);
    v = gt_gguf_find(g, "arr.bool");
    for (int i = 0; i < N_ARR; i++) assert_int_equal(gt_gguf_arr_i64(v, i), i & 1);
    v = gt_gguf_find(g, "arr.i16");
    assert_int_equal(gt_gguf_arr_i64(v, 0), -5000);
    assert_true(gt_gguf_arr_f64(v, N_ARR) == 0.0); /* out of range */
}

/* [[1,2,3],[4]] of i32, [["a","bc"],[]] of strings, [[[7]]] three deep. */
static void set_nested_arrays(gt_gguf_writer *w) {
    int32_t one[3] = {1, 2, 3}, two[1] = {4}, seven[1] = {7};
    gt_gguf_value ints[2] = {0}, strs[2] = {0}, inner[1] = {0}, mid[1] = {0};
    ints[0].type = ints[1].type = GT_GGUF_ARRAY;
    ints[0].arr.type = ints[1].arr.type = GT_GGUF_INT32;
    ints[0].arr.n = 3;
    ints[0].arr.data = one;
    ints[1].arr.n = 1;
    ints[1].arr.data = two;
    gt_str s[2] = {{"a", 1}, {"bc", 2}};
    strs[0].type = strs[1].type = GT_GGUF_ARRAY;
    strs[0].arr.type = strs[1].arr.type = GT_GGUF_STRING;
    strs[0].arr.n = 2;
    strs[0].arr.strs = s;
    inner[0] = (gt_gguf_value){.type = GT_GGUF_ARRAY};
    inner[0].arr.type = GT_GGUF_INT32;
    inner[0].arr.n = 1;
    inner[0].arr.data = seven;
    mid[0] = (gt_gguf_value){.type = GT_GGUF_ARRAY};
    mid[0].arr.type = GT_GGUF_ARRAY;
    mid[0].arr.n = 1;
    mid[0].arr.items = inner;
    gt_gguf_kv kv = {.key = {"nest.ints", 9}, .value = {.type = GT_GGUF_ARRAY}};
    kv.value.arr.type = GT_GGUF_ARRAY;
    kv.value.arr.n = 2;
    kv.value.arr.items = ints;
    assert_int_equal(gt_gguf_writer_copy_kv(w, &kv), GT_OK);
    kv.key = (gt_str){"nest.strs", 9};
    kv.value.arr.items = strs;
    assert_int_equal(gt_gguf_writer_copy_kv(w, &kv), GT_OK);
    kv.key = (gt_str){"nest.deep", 9};
    kv.value.arr.n = 1;
    kv.value.arr.items = mid;
    assert_int_equal(gt_gguf_writer_copy_kv(w, &kv), GT_OK);
    kv.key = (gt_str){"nest.empty", 10};
    kv.value.arr.n = 0;
    kv.value.arr.items = NULL;
    assert_int_equal(gt_gguf_writer_copy_kv(w, &kv), GT_OK);
}

static void check_nested_arrays(const gt_gguf *g) {
    const gt_gguf_value *v = gt_gguf_find(g, "nest.ints");
    assert_non_null(v);
    assert_int_equal(v->arr.type, GT_GGUF_ARRAY);
    assert_int_equal(v->arr.n, 2);
    assert_int_equal(v->arr.items[0].arr.n, 3);
    assert_int_equal(gt_gguf_arr_i64(&v->arr.items[0], 2), 3);
    assert_int_equal(gt_gguf_arr_i64(&v->arr.items[1], 0), 4);
    v = gt_gguf_find(g, "nest.strs");
    assert_int_equal(v->arr.items[0].arr.type, GT_GGUF_STRING);
    assert_int_equal(v->arr.items[0].arr.n, 2);
    assert_memory_equal(v->arr.items[0].arr.strs[1].ptr, "bc", 2);
    assert_int_equal(v->arr.items[1].arr.n, 0);
    v = gt_gguf_find(g, "nest.deep");
    assert_int_equal(gt_gguf_arr_i64(&v->arr.items[0].arr.items[0], 0), 7);
    v = gt_gguf_find(g, "nest.empty");
    assert_int_equal(v->arr.n, 0);
}

typedef struct tspec {
    const char *name;
    gt_dtype type;
    int n_dims;
    int64_t ne[4];
} tspec;

static const tspec g_tensors[] = {
    {"tok_embd.weight", GT_F32, 2, {7, 3, 1, 1}},
    {"norm.weight", GT_F16, 1, {5, 1, 1, 1}},
    {"blk.0.attn_q.weight", GT_Q4_0, 2, {64, 2, 1, 1}},
    {"blk.0.ffn_up.weight", GT_Q8_0, 3, {32, 3, 2, 1}},
    {"blk.0.ffn_down.weight", GT_Q4_K, 2, {256, 2, 1, 1}},
    {"blk.0.ffn_gate_exps.weight", GT_Q6_K, 4, {256, 1, 1, 2}},
    {"output.weight", GT_BF16, 2, {3, 3, 1, 1}},
};
#define N_TENSORS (sizeof g_tensors / sizeof g_tensors[0])

static size_t tensor_bytes(const tspec *t) {
    size_t n;
    assert_true(gt_dtype_row_bytes(t->type, t->ne[0], &n));
    return n * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]);
}

static void round_trip(uint32_t align) {
    char fname[64];
    snprintf(fname, sizeof fname, "gguf-rt-%u.gguf", align);
    const char *path = gt_test_tmp_path(0, fname);
    gt_test_rng rng;
    gt_test_rng_seed(&rng, align);
    gt_gguf_writer *w;
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    if (align != 32) assert_int_equal(gt_gguf_writer_set_u32(w, "general.alignment", align), GT_OK);
    assert_int_equal(gt_gguf_writer_set_str(w, "general.architecture", "gemma3"), GT_OK);
    assert_int_equal(gt_gguf_writer_set_u32(w, "k.u32", 4000000000u), GT_OK);
    assert_int_equal(gt_gguf_writer_set_i32(w, "k.i32", -7), GT_OK);
    assert_int_equal(gt_gguf_writer_set_i32(w, "k.i32pos", 12), GT_OK);
    assert_int_equal(gt_gguf_writer_set_u64(w, "k.u64", 1ull << 40), GT_OK);
    assert_int_equal(gt_gguf_writer_set_f32(w, "k.f32", 1e-6f), GT_OK);
    assert_int_equal(gt_gguf_writer_set_bool(w, "k.true", true), GT_OK);
    assert_int_equal(gt_gguf_writer_set_bool(w, "k.false", false), GT_OK);
    assert_int_equal(gt_gguf_writer_set_str(w, "k.empty", ""), GT_OK);
    gt_str toks[4] = {{"<s>", 3}, {"", 0}, {"a\0b", 3}, {"\xe2\x96\x81the", 6}};
    assert_int_equal(gt_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4), GT_OK);
    set_numeric_arrays(w);
    set_nested_arrays(w);
    uint8_t *data[N_TENSORS];
    for (size_t i = 0; i < N_TENSORS; i++) {
        size_t n = tensor_bytes(&g_tensors[i]);
        data[i] = malloc(n);
        for (size_t k = 0; k < n; k++) data[i][k] = (uint8_t)gt_test_rng_u64(&rng);
        bool take = i % 2 == 0;
        void *buf = data[i];
        if (take) { /* the writer takes a gt_alloc copy; the test keeps the original */
            buf = gt_alloc(n);
            memcpy(buf, data[i], n);
        }
        assert_int_equal(gt_gguf_writer_add_tensor(w, g_tensors[i].name, g_tensors[i].type,
                                                   g_tensors[i].n_dims, g_tensors[i].ne, buf, n,
                                                   take),
                         GT_OK);
    }
    assert_int_equal(gt_gguf_writer_write(w, path), GT_OK);
    gt_gguf_writer_destroy(w);

    gt_gguf *g;
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    assert_int_equal(gt_gguf_version(g), 3);
    assert_int_equal(gt_gguf_alignment(g), align);
    assert_int_equal(gt_gguf_data_offset(g) % align, 0);
    assert_string_equal(gt_gguf_name(g), path);

    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    bool b;
    gt_str s;
    assert_int_equal(gt_gguf_get_u32(g, "k.u32", &u32), GT_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gt_gguf_get_i64(g, "k.u32", &i64), GT_OK);
    assert_int_equal(i64, 4000000000ll);
    assert_int_equal(gt_gguf_get_i64(g, "k.i32", &i64), GT_OK);
    assert_int_equal(i64, -7);
    assert_int_equal(gt_gguf_get_u32(g, "k.i32", &u32), GT_ERR_FORMAT); /* negative */
    assert_non_null(strstr(gt_last_error(), "k.i32"));
    assert_int_equal(gt_gguf_get_u32(g, "k.i32pos", &u32), GT_OK);
    assert_int_equal(u32, 12);
    assert_int_equal(gt_gguf_get_u64(g, "k.u64", &u64), GT_OK);
    assert_int_equal(u64, 1ull << 40);
    assert_int_equal(gt_gguf_get_u32(g, "k.u64", &u32), GT_ERR_FORMAT); /* too wide */
    assert_int_equal(gt_gguf_get_f32(g, "k.f32", &f), GT_OK);
    assert_true(f == 1e-6f);
    assert_int_equal(gt_gguf_get_f32(g, "k.i32", &f), GT_OK);
    assert_true(f == -7.0f);
    assert_int_equal(gt_gguf_get_bool(g, "k.true", &b), GT_OK);
    assert_true(b);
    assert_int_equal(gt_gguf_get_bool(g, "k.false", &b), GT_OK);
    assert_false(b);
    assert_int_equal(gt_gguf_get_bool(g, "k.u32", &b), GT_ERR_FORMAT);
    assert_int_equal(gt_gguf_get_str(g, "k.u32", &s), GT_ERR_FORMAT);
    assert_int_equal(gt_gguf_get_u32(g, "general.architecture", &u32), GT_ERR_FORMAT);
    assert_non_null(strstr(gt_last_error(), "general.architecture"));
    assert_int_equal(gt_gguf_get_str(g, "k.empty", &s), GT_OK);
    assert_int_equal(s.len, 0);
    assert_int_equal(gt_gguf_get_str(g, "general.architecture", &s), GT_OK);
    assert_int_equal(s.len, 6);
    assert_memory_equal(s.ptr, "gemma3", 6);
    assert_int_equal(gt_gguf_get_u32(g, "no.such.key", &u32), GT_ERR_NOT_FOUND);
    assert_non_null(strstr(gt_last_error(), "no.such.key"));
    assert_non_null(strstr(gt_last_error(), path));
    assert_int_equal(gt_gguf_get_u32_or(g, "no.such.key", 99, &u32), GT_OK);
    assert_int_equal(u32, 99);
    assert_int_equal(gt_gguf_get_f32_or(g, "no.such.key", 0.5f, &f), GT_OK);
    assert_true(f == 0.5f);
    assert_int_equal(gt_gguf_get_bool_or(g, "no.such.key", true, &b), GT_OK);
    assert_true(b);
    assert_int_equal(gt_gguf_get_bool_or(g, "k.u32", true, &b), GT_ERR_FORMAT);
    assert_int_equal(gt_gguf_get_u32_or(g, "k.u32", 1, &u32), GT_OK);
    assert_int_equal(u32, 4000000000u);

    const gt_gguf_value *v = gt_gguf_find(g, "tokenizer.ggml.tokens");
    assert_non_null(v);
    assert_int_equal(v->arr.type, GT_GGUF_STRING);
    assert_int_equal(v->arr.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(v->arr.strs[i].len, toks[i].len);
        assert_memory_equal(v->arr.strs[i].ptr, toks[i].ptr, toks[i].len);
    }
    check_numeric_arrays(g);
    check_nested_arrays(g);

    assert_int_equal(gt_gguf_n_tensors(g), N_TENSORS);
    for (size_t i = 0; i < N_TENSORS; i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        assert_string_equal(t->name, g_tensors[i].name); /* insertion order */
        assert_ptr_equal(gt_gguf_find_tensor(g, g_tensors[i].name), t);
        assert_int_equal(t->type, g_tensors[i].type);
        assert_int_equal(t->n_dims, g_tensors[i].n_dims);
        for (int d = 0; d < 4; d++) assert_int_equal(t->ne[d], g_tensors[i].ne[d]);
        assert_int_equal(t->nbytes, tensor_bytes(&g_tensors[i]));
        assert_int_equal(t->offset % align, 0);
        /* Data pointers sit at their offsets from the first tensor's (offset 0). */
        assert_int_equal(
            (size_t)((const uint8_t *)t->data - (const uint8_t *)gt_gguf_tensor_at(g, 0)->data),
            t->offset);
        assert_memory_equal(t->data, data[i], t->nbytes);
        free(data[i]);
    }
    assert_null(gt_gguf_find_tensor(g, "blk.1.attn_q.weight"));
    assert_null(gt_gguf_tensor_at(g, N_TENSORS));
    assert_null(gt_gguf_kv_at(g, gt_gguf_n_kv(g)));

    /* copy_kv of everything into a second file reproduces every value. */
    const char *path2 = gt_test_tmp_path(1, "gguf-rt-copy.gguf");
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    for (size_t i = 0; i < gt_gguf_n_kv(g); i++)
        assert_int_equal(gt_gguf_writer_copy_kv(w, gt_gguf_kv_at(g, i)), GT_OK);
    assert_int_equal(gt_gguf_writer_write(w, path2), GT_OK);
    gt_gguf_writer_destroy(w);
    gt_gguf *g2;
    assert_int_equal(gt_gguf_open(path2, &g2), GT_OK);
    check_same_kvs(g, g2);
    gt_gguf_close(g2);
    gt_gguf_close(g);
    unlink(path);
    unlink(path2);
}

static void test_round_trip_32(void **state) { round_trip(32); }
static void test_round_trip_64(void **state) { round_trip(64); }
static void test_round_trip_4096(void **state) { round_trip(4096); }

static void test_writer_refusals(void **state) {
    gt_gguf_writer *w;
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    float x[4] = {0};
    int64_t ne[2] = {4, 1}, bad_ne[1] = {33};
    assert_int_equal(gt_gguf_writer_add_tensor(w, "t", GT_F32, 2, ne, x, 12, false),
                     GT_ERR_INVALID_ARG); /* wrong nbytes */
    assert_non_null(strstr(gt_last_error(), "16"));
    assert_int_equal(gt_gguf_writer_add_tensor(w, "t", GT_Q4_0, 1, bad_ne, x, 16, false),
                     GT_ERR_INVALID_ARG); /* partial block */
    assert_int_equal(gt_gguf_writer_add_tensor(w, "t", (gt_dtype)17, 1, ne, x, 16, false),
                     GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gguf_writer_add_tensor(w, "t", GT_F32, 5, ne, x, 16, false),
                     GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gguf_writer_add_tensor(w, "t", GT_F32, 2, ne, x, 16, false), GT_OK);
    assert_int_equal(gt_gguf_writer_add_tensor(w, "t", GT_F32, 2, ne, x, 16, false),
                     GT_ERR_INVALID_ARG); /* twice */
    /* A taken buffer belongs to the writer even on failure (ASan checks). */
    void *taken = gt_alloc(16);
    assert_int_equal(gt_gguf_writer_add_tensor(w, "t", GT_F32, 2, ne, taken, 16, true),
                     GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gguf_writer_set_arr(w, "k", GT_GGUF_STRING, x, 1), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gguf_writer_set_u32(w, "", 1), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gguf_writer_set_u32(w, "general.alignment", 48), GT_OK);
    assert_int_equal(gt_gguf_writer_write(w, gt_test_tmp_path(0, "gguf-never.gguf")),
                     GT_ERR_INVALID_ARG);
    assert_int_equal(gt_gguf_writer_set_u32(w, "general.alignment", 64), GT_OK);
    assert_int_equal(gt_gguf_writer_write(w, "/nonexistent-dir/x.gguf"), GT_ERR_IO);
    assert_non_null(strstr(gt_last_error(), "/nonexistent-dir/x.gguf"));
    gt_gguf_writer_destroy(w);
    gt_gguf_writer_destroy(NULL);
    gt_gguf_close(NULL);
}

/* 1000 tensors and a 262144-string array: lookups by hash, open in ms. */
static void test_many(void **state) {
    const char *path = gt_test_tmp_path(0, "gguf-many.gguf");
    enum { N_TOK = 262144, N_T = 1000 };
    char *blob = malloc((size_t)N_TOK * 16);
    gt_str *toks = malloc(N_TOK * sizeof *toks);
    for (int i = 0; i < N_TOK; i++) {
        int n = snprintf(blob + (size_t)i * 16, 16, "tok%d", i);
        toks[i] = (gt_str){blob + (size_t)i * 16, (uint64_t)n};
    }
    gt_gguf_writer *w;
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    assert_int_equal(gt_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, N_TOK), GT_OK);
    for (int i = 0; i < N_T; i++) {
        char name[64];
        float x[2] = {(float)i, -(float)i};
        int64_t ne[1] = {2};
        snprintf(name, sizeof name, "blk.%d.weight", i);
        assert_int_equal(gt_gguf_writer_add_tensor(w, name, GT_F32, 1, ne, x, 8, false), GT_OK);
    }
    assert_int_equal(gt_gguf_writer_write(w, path), GT_OK);
    gt_gguf_writer_destroy(w);

    double best = 1e9;
    gt_gguf *g = NULL;
    for (int r = 0; r < 3; r++) {
        gt_gguf_close(g);
        double t0 = now_s();
        assert_int_equal(gt_gguf_open(path, &g), GT_OK);
        double dt = now_s() - t0;
        best = dt < best ? dt : best;
    }
    printf("open with %d tokens and %d tensors: %.2f ms (best of 3)\n", N_TOK, N_T, best * 1e3);
    assert_true(best < 0.5); /* generous: a noisy shared host; typical is a few ms */
    const gt_gguf_value *v = gt_gguf_find(g, "tokenizer.ggml.tokens");
    assert_int_equal(v->arr.n, N_TOK);
    for (int i = 0; i < N_TOK; i += 4099)
        assert_memory_equal(v->arr.strs[i].ptr, toks[i].ptr, toks[i].len);
    double t0 = now_s();
    for (int i = 0; i < N_T; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.weight", i);
        const gt_tensor_info *t = gt_gguf_find_tensor(g, name);
        assert_non_null(t);
        float x[2];
        memcpy(x, t->data, 8);
        assert_true(x[0] == (float)i && x[1] == -(float)i);
    }
    printf("1000 tensor lookups: %.3f ms\n", (now_s() - t0) * 1e3);
    gt_gguf_close(g);
    free(blob);
    free(toks);
    unlink(path);
}

/* ---- the real vocabularies ---- */

static void test_vocab_files(void **state) {
    static const struct {
        const char *file;
        uint64_t n_tokens;
    } known[] = {
        {"ggml-vocab-llama-spm.gguf", 32000},      {"ggml-vocab-phi-3.gguf", 32064},
        {"ggml-vocab-gpt-2.gguf", 50257},          {"ggml-vocab-mpt.gguf", 50432},
        {"ggml-vocab-deepseek-coder.gguf", 32256},
    };
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/vocab", gt_test_shared_dir());
    DIR *d = opendir(dir);
    if (!d) {
        printf("no %s: the real-vocabulary checks are skipped\n", dir);
        skip();
    }
    int opened = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".gguf") != 0) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        gt_gguf *g;
        double t0 = now_s();
        gt_status st = gt_gguf_open(path, &g);
        double dt = now_s() - t0;
        if (st != GT_OK) fail_msg("%s: %s", path, gt_last_error());
        assert_int_equal(gt_gguf_version(g), 3);
        gt_str arch;
        assert_int_equal(gt_gguf_get_str(g, "general.architecture", &arch), GT_OK);
        assert_true(arch.len > 0);
        const gt_gguf_value *v = gt_gguf_find(g, "tokenizer.ggml.tokens");
        assert_non_null(v);
        assert_int_equal(v->type, GT_GGUF_ARRAY);
        assert_int_equal(v->arr.type, GT_GGUF_STRING);
        assert_true(v->arr.n >= 1000 && v->arr.n <= 300000);
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            if (strcmp(known[k].file, e->d_name) == 0)
                assert_int_equal(v->arr.n, known[k].n_tokens);
        gt_str model;
        assert_int_equal(gt_gguf_get_str(g, "tokenizer.ggml.model", &model), GT_OK);
        printf("%s: %.*s, %.*s, %llu tokens, %zu keys, opened in %.2f ms\n", e->d_name,
               (int)arch.len, arch.ptr, (int)model.len, model.ptr, (unsigned long long)v->arr.n,
               gt_gguf_n_kv(g), dt * 1e3);

        /* Copy every key into a new file and compare (vocabularies for synthetic models). */
        const char *copy = gt_test_tmp_path(1, "gguf-vocab-copy.gguf");
        gt_gguf_writer *w;
        assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
        for (size_t i = 0; i < gt_gguf_n_kv(g); i++)
            assert_int_equal(gt_gguf_writer_copy_kv(w, gt_gguf_kv_at(g, i)), GT_OK);
        assert_int_equal(gt_gguf_writer_write(w, copy), GT_OK);
        gt_gguf_writer_destroy(w);
        gt_gguf *g2;
        assert_int_equal(gt_gguf_open(copy, &g2), GT_OK);
        check_same_kvs(g, g2);
        gt_gguf_close(g2);
        unlink(copy);
        gt_gguf_close(g);
        opened++;
    }
    closedir(d);
    assert_true(opened >= 1);
}

/* ---- malformed files ---- */

/* A valid file: 2 keys, one F32 [4] tensor at data offset 0 and its 16 bytes. */
static void good_file(tb *b) {
    tb_head(b, 3, 1, 2);
    tb_kv_str(b, "general.architecture", "llama");
    tb_kv_u32(b, "general.alignment", 32);
    tb_tensor(b, "w", 1, (const uint64_t[]){4}, GT_F32, 0);
    tb_pad(b, 32);
    tb_fill(b, 16, 1);
}

static void one_tensor(tb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off,
                       size_t data) {
    tb_head(b, 3, 1, 0);
    tb_tensor(b, "blk.3.attn_q.weight", n_dims, ne, type, off);
    tb_pad(b, 32);
    tb_fill(b, data, 0);
}

static void m_empty(tb *b) { (void)b; }
static void m_short(tb *b) { tb_put(b, "GG", 2); }
static void m_magic(tb *b) {
    good_file(b);
    b->p[0] = 'X';
}
static void m_v1(tb *b) {
    good_file(b);
    b->p[4] = 1;
}
static void m_v9(tb *b) {
    good_file(b);
    b->p[4] = 9;
}
static void m_big_endian(tb *b) {
    tb_u32(b, GT_GGUF_MAGIC);
    tb_u32(b, 0x03000000u);
    tb_u64(b, 0);
    tb_u64(b, 0);
}
static void m_trunc_header(tb *b) {
    tb_u32(b, GT_GGUF_MAGIC);
    tb_u32(b, 3);
    tb_u64(b, 0);
}
static void m_trunc_kv(tb *b) {
    good_file(b);
    b->len = 100;
}
static void m_n_kv(tb *b) {
    tb_head(b, 3, 0, 1ull << 60);
    tb_kv_u32(b, "a", 1);
}
static void m_n_tensors(tb *b) {
    tb_head(b, 3, 1ull << 40, 0);
    tb_fill(b, 64, 0);
}
static void m_key_long(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_u64(b, 1ull << 21);
    tb_fill(b, 64, 'a');
}
static void m_str_past(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_str(b, "k");
    tb_u32(b, GT_GGUF_STRING);
    tb_u64(b, 1000);
    tb_fill(b, 10, 'a');
}
static void m_str_huge(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_str(b, "k");
    tb_u32(b, GT_GGUF_STRING);
    tb_u64(b, 1ull << 29);
}
static void m_val_type(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_str(b, "k");
    tb_u32(b, 13);
    tb_u32(b, 0);
}
static void m_arr_type(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_str(b, "k");
    tb_u32(b, GT_GGUF_ARRAY);
    tb_u32(b, 99);
    tb_u64(b, 0);
}
static void m_arr_count(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_str(b, "k");
    tb_u32(b, GT_GGUF_ARRAY);
    tb_u32(b, GT_GGUF_UINT32);
    tb_u64(b, 1ull << 62);
    tb_fill(b, 16, 0);
}
static void m_str_arr_count(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_str(b, "tokenizer.ggml.tokens");
    tb_u32(b, GT_GGUF_ARRAY);
    tb_u32(b, GT_GGUF_STRING);
    tb_u64(b, 262144);
    tb_str(b, "a");
    tb_str(b, "b");
}
static void m_depth(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_str(b, "k");
    tb_u32(b, GT_GGUF_ARRAY);
    for (int i = 0; i < 9; i++) {
        tb_u32(b, GT_GGUF_ARRAY);
        tb_u64(b, 1);
    }
    tb_u32(b, GT_GGUF_UINT8);
    tb_u64(b, 0);
}
static void m_dup_key(tb *b) {
    tb_head(b, 3, 0, 2);
    tb_kv_u32(b, "a.b", 1);
    tb_kv_u32(b, "a.b", 2);
}
static void m_align_48(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_kv_u32(b, "general.alignment", 48);
}
static void m_align_0(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_kv_u32(b, "general.alignment", 0);
}
static void m_align_str(tb *b) {
    tb_head(b, 3, 0, 1);
    tb_kv_str(b, "general.alignment", "32");
}
static void m_dims_0(tb *b) { one_tensor(b, 0, NULL, GT_F32, 0, 16); }
static void m_dims_5(tb *b) { one_tensor(b, 5, (const uint64_t[]){1, 1, 1, 1, 1}, GT_F32, 0, 16); }
static void m_ne_0(tb *b) { one_tensor(b, 2, (const uint64_t[]){4, 0}, GT_F32, 0, 16); }
static void m_ne_huge(tb *b) { one_tensor(b, 1, (const uint64_t[]){1ull << 41}, GT_F32, 0, 16); }
static void m_ne_product(tb *b) {
    one_tensor(b, 3, (const uint64_t[]){1ull << 40, 1ull << 20, 1ull << 20}, GT_F32, 0, 16);
}
static void m_type_17(tb *b) { one_tensor(b, 1, (const uint64_t[]){256}, 17, 0, 16); }
static void m_type_huge(tb *b) { one_tensor(b, 1, (const uint64_t[]){256}, 0xffffffffu, 0, 16); }
static void m_partial_block(tb *b) { one_tensor(b, 1, (const uint64_t[]){33}, GT_Q4_0, 0, 64); }
static void m_size_overflow(tb *b) {
    one_tensor(b, 2, (const uint64_t[]){1ull << 40, 1ull << 22}, GT_F64, 0, 16);
}
static void m_misaligned(tb *b) { one_tensor(b, 1, (const uint64_t[]){4}, GT_F32, 16, 64); }
static void m_past_end(tb *b) { one_tensor(b, 2, (const uint64_t[]){64, 4}, GT_F32, 0, 100); }
static void m_offset_huge(tb *b) {
    one_tensor(b, 1, (const uint64_t[]){4}, GT_F32, 1ull << 63, 16);
}
static void m_trunc_data(tb *b) {
    good_file(b);
    b->len -= 1;
}
static void m_dup_tensor(tb *b) {
    tb_head(b, 3, 2, 0);
    tb_tensor(b, "blk.0.w", 1, (const uint64_t[]){4}, GT_F32, 0);
    tb_tensor(b, "blk.0.w", 1, (const uint64_t[]){4}, GT_F32, 32);
    tb_pad(b, 32);
    tb_fill(b, 64, 0);
}
static void m_overlap(tb *b) {
    tb_head(b, 3, 2, 0);
    tb_tensor(b, "blk.0.a", 1, (const uint64_t[]){16}, GT_F32, 0);
    tb_tensor(b, "blk.0.b", 1, (const uint64_t[]){4}, GT_F32, 32);
    tb_pad(b, 32);
    tb_fill(b, 96, 0);
}
static void m_name_nul(tb *b) {
    tb_head(b, 3, 1, 0);
    tb_u64(b, 3);
    tb_put(b, "a\0b", 3);
    tb_u32(b, 1);
    tb_u64(b, 4);
    tb_u32(b, GT_F32);
    tb_u64(b, 0);
    tb_pad(b, 32);
    tb_fill(b, 16, 0);
}

typedef struct mcase {
    const char *name;
    void (*build)(tb *b);
    gt_status want;
    const char *words; /* a fragment the sentence must contain */
} mcase;

static const mcase g_cases[] = {
    {"empty", m_empty, GT_ERR_FORMAT, "empty"},
    {"short", m_short, GT_ERR_FORMAT, "too short"},
    {"magic", m_magic, GT_ERR_FORMAT, "not a GGUF"},
    {"version1", m_v1, GT_ERR_UNSUPPORTED, "version 1"},
    {"version9", m_v9, GT_ERR_UNSUPPORTED, "version 9"},
    {"bigendian", m_big_endian, GT_ERR_UNSUPPORTED, "big-endian"},
    {"trunc-header", m_trunc_header, GT_ERR_FORMAT, "truncated"},
    {"trunc-kv", m_trunc_kv, GT_ERR_FORMAT, "truncated"},
    {"n-kv", m_n_kv, GT_ERR_FORMAT, "1152921504606846976 keys"},
    {"n-tensors", m_n_tensors, GT_ERR_FORMAT, "1099511627776 tensors"},
    {"key-long", m_key_long, GT_ERR_FORMAT, "2097152 bytes"},
    {"str-past", m_str_past, GT_ERR_FORMAT, "1000 bytes"},
    {"str-huge", m_str_huge, GT_ERR_FORMAT, "536870912 bytes"},
    {"value-type", m_val_type, GT_ERR_FORMAT, "unknown value type 13"},
    {"array-type", m_arr_type, GT_ERR_FORMAT, "unknown value type 99"},
    {"array-count", m_arr_count, GT_ERR_FORMAT, "4611686018427387904 u32"},
    {"str-array-count", m_str_arr_count, GT_ERR_FORMAT, "262144 string"},
    {"depth", m_depth, GT_ERR_FORMAT, "deeper than 8"},
    {"dup-key", m_dup_key, GT_ERR_FORMAT, "a.b appears twice"},
    {"align-48", m_align_48, GT_ERR_FORMAT, "alignment is 48"},
    {"align-0", m_align_0, GT_ERR_FORMAT, "alignment is 0"},
    {"align-str", m_align_str, GT_ERR_FORMAT, "not an integer"},
    {"dims-0", m_dims_0, GT_ERR_FORMAT, "0 dimensions"},
    {"dims-5", m_dims_5, GT_ERR_FORMAT, "5 dimensions"},
    {"ne-0", m_ne_0, GT_ERR_FORMAT, "dimension 1 = 0"},
    {"ne-huge", m_ne_huge, GT_ERR_FORMAT, "2199023255552"},
    {"ne-product", m_ne_product, GT_ERR_FORMAT, "64 bits"},
    {"type-17", m_type_17, GT_ERR_UNSUPPORTED, "blk.3.attn_q.weight has type id 17"},
    {"type-huge", m_type_huge, GT_ERR_UNSUPPORTED, "type id 4294967295"},
    {"partial-block", m_partial_block, GT_ERR_FORMAT, "33 elements"},
    {"size-overflow", m_size_overflow, GT_ERR_FORMAT, "overflows"},
    {"misaligned", m_misaligned, GT_ERR_FORMAT, "offset 16"},
    {"past-end", m_past_end, GT_ERR_FORMAT, "ends at byte 1120, past the end of the 196-byte"},
    {"offset-huge", m_offset_huge, GT_ERR_FORMAT, "blk.3.attn_q.weight"},
    {"trunc-data", m_trunc_data, GT_ERR_FORMAT, "past the end"},
    {"dup-tensor", m_dup_tensor, GT_ERR_FORMAT, "blk.0.w appears twice"},
    {"overlap", m_overlap, GT_ERR_FORMAT, "overlaps tensor blk.0.b"},
    {"name-nul", m_name_nul, GT_ERR_FORMAT, "NUL"},
};

static void test_malformed(void **state) {
    int bad = 0;
    for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++) {
        const mcase *c = &g_cases[i];
        char fname[128];
        snprintf(fname, sizeof fname, "gguf-bad-%s.gguf", c->name);
        const char *path = gt_test_tmp_path(0, fname);
        tb b = {0};
        c->build(&b);
        write_file(path, b.p, b.len);
        for (int via = 0; via < 2; via++) {
            gt_gguf *g = (gt_gguf *)&b; /* must be reset to NULL */
            gt_clear_error();
            /* An exact-size copy so that ASan catches any read past the end. */
            void *exact = malloc(b.len ? b.len : 1);
            if (b.len) memcpy(exact, b.p, b.len);
            gt_status st =
                via == 0 ? gt_gguf_open(path, &g) : gt_gguf_open_memory(exact, b.len, path, &g);
            free(exact);
            const char *err = gt_last_error();
            if (st != c->want || g != NULL || !strstr(err, path) || !strstr(err, c->words)) {
                printf("case %s (%s): status %s (want %s), sentence \"%s\" (want \"%s\")\n",
                       c->name, via ? "memory" : "file", gt_status_str(st), gt_status_str(c->want),
                       err, c->words);
                bad++;
                if (st == GT_OK) gt_gguf_close(g);
            } else if (via == 0) {
                printf("  %-16s %s\n", c->name, err);
            }
        }
        free(b.p);
        unlink(path);
    }
    /* The base file of many cases is itself valid (the table tests defects, not it). */
    tb b = {0};
    good_file(&b);
    gt_gguf *g;
    assert_int_equal(gt_gguf_open_memory(b.p, b.len, "good.gguf", &g), GT_OK);
    assert_int_equal(gt_gguf_find_tensor(g, "w")->nbytes, 16);
    gt_gguf_close(g);
    free(b.p);
    assert_int_equal(bad, 0);

    assert_int_equal(gt_gguf_open("/nonexistent/model.gguf", &g), GT_ERR_IO);
    assert_non_null(strstr(gt_last_error(), "/nonexistent/model.gguf"));
    assert_int_equal(gt_gguf_open(gt_test_source_dir(), &g), GT_ERR_IO);
    assert_non_null(strstr(gt_last_error(), "not a regular file"));
}

/* Version 2 files have the same layout and are read. */
static void test_version2(void **state) {
    tb b = {0};
    good_file(&b);
    b.p[4] = 2;
    gt_gguf *g;
    assert_int_equal(gt_gguf_open_memory(b.p, b.len, "v2.gguf", &g), GT_OK);
    assert_int_equal(gt_gguf_version(g), 2);
    gt_gguf_close(g);
    /* An empty header with no keys or tensors is valid too. */
    b.len = 0;
    tb_head(&b, 3, 0, 0);
    assert_int_equal(gt_gguf_open_memory(b.p, b.len, "bare.gguf", &g), GT_OK);
    assert_int_equal(gt_gguf_n_kv(g), 0);
    assert_null(gt_gguf_find(g, "x"));
    assert_null(gt_gguf_find_tensor(g, "x"));
    gt_gguf_close(g);
    free(b.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_writer_bytes),
        cmocka_unit_test(test_round_trip_32),
        cmocka_unit_test(test_round_trip_64),
        cmocka_unit_test(test_round_trip_4096),
        cmocka_unit_test(test_writer_refusals),
        cmocka_unit_test(test_many),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_version2),
        cmocka_unit_test(test_vocab_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
