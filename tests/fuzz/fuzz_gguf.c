/* libFuzzer target for the GGUF reader.
 *
 * Opens the input with gt_gguf_open_memory and, when it is accepted, touches
 * everything a caller could: every key by position and by lookup, every
 * typed getter on every key, every array element (numeric, string, nested),
 * every tensor by position and by name including the first and last byte
 * of its data. A refusal must come with a sentence. The input buffer is the
 * exact size of the data, so ASan reports any read past it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"

static volatile uint64_t g_sink;

static void walk_value(const gt_gguf_value *v, int depth) {
    if (v->type == GT_GGUF_STRING) {
        if (v->str.len) g_sink += (uint8_t)v->str.ptr[0] + (uint8_t)v->str.ptr[v->str.len - 1];
        return;
    }
    if (v->type != GT_GGUF_ARRAY) {
        g_sink += v->num.u64;
        return;
    }
    if (depth > 16) abort(); /* the reader caps nesting at 8 */
    for (uint64_t i = 0; i < v->arr.n; i++) {
        if (v->arr.type == GT_GGUF_STRING) {
            const gt_str *s = &v->arr.strs[i];
            if (s->len) g_sink += (uint8_t)s->ptr[0] + (uint8_t)s->ptr[s->len - 1];
        } else if (v->arr.type == GT_GGUF_ARRAY) {
            walk_value(&v->arr.items[i], depth + 1);
        } else {
            g_sink += (uint64_t)gt_gguf_arr_i64(v, i);
            double d = gt_gguf_arr_f64(v, i); /* any double, NaN included */
            uint64_t bits;
            memcpy(&bits, &d, 8);
            g_sink += bits;
        }
    }
}

static void walk(const gt_gguf *g) {
    g_sink += gt_gguf_version(g) + gt_gguf_alignment(g) + gt_gguf_data_offset(g);
    if (gt_gguf_alignment(g) == 0 || gt_gguf_file_bytes(g) == 0) abort();
    for (size_t i = 0; i < gt_gguf_n_kv(g); i++) {
        const gt_gguf_kv *kv = gt_gguf_kv_at(g, i);
        walk_value(&kv->value, 0);
        char key[256];
        if (kv->key.len >= sizeof key || memchr(kv->key.ptr, 0, (size_t)kv->key.len)) continue;
        memcpy(key, kv->key.ptr, (size_t)kv->key.len);
        key[kv->key.len] = '\0';
        if (gt_gguf_find(g, key) != &kv->value) abort(); /* keys are unique */
        uint32_t u32;
        uint64_t u64;
        int64_t i64;
        float f;
        bool b;
        gt_str s;
        g_sink += gt_gguf_get_u32(g, key, &u32) + gt_gguf_get_u64(g, key, &u64) +
                  gt_gguf_get_i64(g, key, &i64) + gt_gguf_get_f32(g, key, &f) +
                  gt_gguf_get_bool(g, key, &b) + gt_gguf_get_str(g, key, &s) +
                  gt_gguf_get_u32_or(g, key, 1, &u32) + gt_gguf_get_f32_or(g, key, 1, &f) +
                  gt_gguf_get_bool_or(g, key, true, &b);
    }
    if (gt_gguf_kv_at(g, gt_gguf_n_kv(g))) abort();
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        if (gt_gguf_find_tensor(g, t->name) != t) abort(); /* names are unique */
        if (t->n_dims < 1 || t->n_dims > GT_GGUF_MAX_DIMS || t->nbytes == 0) abort();
        const uint8_t *d = t->data;
        g_sink += d[0] + d[t->nbytes - 1] + (uint64_t)t->ne[0] + t->type;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gt_gguf *g = NULL;
    gt_status st = gt_gguf_open_memory(data, size, "fuzz.gguf", &g);
    if (st != GT_OK) {
        if (g || !strstr(gt_last_error(), "fuzz.gguf")) abort(); /* a refusal names the file */
        return 0;
    }
    walk(g);
    gt_gguf_close(g);
    return 0;
}
