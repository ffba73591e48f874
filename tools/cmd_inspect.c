/* `gantry inspect FILE`: prints what a GGUF file holds.
 *
 * Layout: a short summary (version, alignment, data offset), the metadata as
 * aligned key/type/value columns with arrays abbreviated to their element
 * type, count and first few elements, the tensor table, bytes per tensor
 * type and the parameter count. Everything comes from the validating reader,
 * so a malformed file prints the reader's one sentence and exits 1. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "model/gguf.h"
#include "tools/cmds.h"
#include "tools/flags.h"

#define STR_SHOW 60 /* bytes of a string value shown before "..." */

typedef struct inspect_opts {
    const char *path;
    long kv_limit; /* array elements shown per key */
    bool tensors;
} inspect_opts;

/* A string with control bytes escaped, cut after `max` bytes. */
static void print_str(const gt_str *s, size_t max) {
    size_t n = s->len < max ? (size_t)s->len : max;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->ptr[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (s->len > max) printf("...(%llu bytes)", (unsigned long long)s->len);
}

static void print_value(const gt_gguf_value *v, long limit, int depth);

static void print_array(const gt_gguf_value *v, long limit, int depth) {
    printf("[%s x %llu]", gt_gguf_type_name(v->arr.type), (unsigned long long)v->arr.n);
    if (limit <= 0 || v->arr.n == 0) return;
    uint64_t shown = v->arr.n < (uint64_t)limit ? v->arr.n : (uint64_t)limit;
    fputs(depth ? " {" : "  ", stdout);
    for (uint64_t i = 0; i < shown; i++) {
        if (i) fputs(", ", stdout);
        if (v->arr.type == GT_GGUF_STRING) {
            print_str(&v->arr.strs[i], 24);
        } else if (v->arr.type == GT_GGUF_ARRAY) {
            print_value(&v->arr.items[i], depth < 2 ? limit : 0, depth + 1);
        } else if (v->arr.type == GT_GGUF_FLOAT32 || v->arr.type == GT_GGUF_FLOAT64) {
            printf("%g", gt_gguf_arr_f64(v, i));
        } else if (v->arr.type == GT_GGUF_UINT64) {
            uint64_t x; /* read directly: a double would round values above 2^53 */
            memcpy(&x, (const uint8_t *)v->arr.data + i * 8, 8);
            printf("%llu", (unsigned long long)x);
        } else if (v->arr.type == GT_GGUF_BOOL) {
            fputs(gt_gguf_arr_i64(v, i) ? "true" : "false", stdout);
        } else {
            printf("%lld", (long long)gt_gguf_arr_i64(v, i));
        }
    }
    if (shown < v->arr.n) fputs(", ...", stdout);
    if (depth) putchar('}');
}

static void print_value(const gt_gguf_value *v, long limit, int depth) {
    switch (v->type) {
    case GT_GGUF_STRING:
        print_str(&v->str, STR_SHOW);
        break;
    case GT_GGUF_ARRAY:
        print_array(v, limit, depth);
        break;
    case GT_GGUF_BOOL:
        fputs(v->num.u64 ? "true" : "false", stdout);
        break;
    case GT_GGUF_FLOAT32:
    case GT_GGUF_FLOAT64:
        printf("%g", v->num.f64);
        break;
    case GT_GGUF_INT8:
    case GT_GGUF_INT16:
    case GT_GGUF_INT32:
    case GT_GGUF_INT64:
        printf("%lld", (long long)v->num.i64);
        break;
    default:
        printf("%llu", (unsigned long long)v->num.u64);
        break;
    }
}

static void print_bytes_human(double b) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    printf(u ? "%.2f %s" : "%.0f %s", b, units[u]);
}

static void print_metadata(const gt_gguf *g, long limit) {
    int w = 8;
    for (size_t i = 0; i < gt_gguf_n_kv(g); i++) {
        int n = (int)(gt_gguf_kv_at(g, i)->key.len > 48 ? 48 : gt_gguf_kv_at(g, i)->key.len);
        if (n > w) w = n;
    }
    printf("\nmetadata (%zu keys):\n", gt_gguf_n_kv(g));
    for (size_t i = 0; i < gt_gguf_n_kv(g); i++) {
        const gt_gguf_kv *kv = gt_gguf_kv_at(g, i);
        printf("  %-*.*s  %-6s  ", w, (int)(kv->key.len > 200 ? 200 : kv->key.len), kv->key.ptr,
               gt_gguf_type_name(kv->value.type));
        print_value(&kv->value, limit, 0);
        putchar('\n');
    }
}

static void shape_str(const gt_tensor_info *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->n_dims && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, d ? ", %lld" : "%lld", (long long)t->ne[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static void print_tensors(const gt_gguf *g, bool table) {
    size_t nt = gt_gguf_n_tensors(g);
    uint64_t by_type_bytes[GT_DTYPE_MAX] = {0}, by_type_count[GT_DTYPE_MAX] = {0};
    uint64_t params = 0, total = 0;
    int wname = 4, wshape = 5;
    char shape[128];
    for (size_t i = 0; i < nt; i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        int n = (int)strlen(t->name);
        wname = n > wname ? (n > 64 ? 64 : n) : wname;
        shape_str(t, shape, sizeof shape);
        n = (int)strlen(shape);
        wshape = n > wshape ? n : wshape;
        by_type_bytes[t->type] += t->nbytes;
        by_type_count[t->type]++;
        params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        total += t->nbytes;
    }
    if (table && nt) {
        printf("\ntensors (%zu):\n  %5s  %-*s  %-5s  %-*s  %14s  %14s\n", nt, "#", wname, "name",
               "type", wshape, "shape", "offset", "bytes");
        for (size_t i = 0; i < nt; i++) {
            const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
            shape_str(t, shape, sizeof shape);
            printf("  %5zu  %-*s  %-5s  %-*s  %14llu  %14zu\n", i, wname, t->name,
                   gt_dtype_name(t->type), wshape, shape, (unsigned long long)t->offset, t->nbytes);
        }
    } else if (!table) {
        printf("\ntensors: %zu (table left out)\n", nt);
    } else {
        printf("\ntensors: none\n");
    }
    if (!nt) return;
    printf("\nbytes by type:\n");
    for (uint32_t ty = 0; ty < GT_DTYPE_MAX; ty++) {
        if (!by_type_count[ty]) continue;
        printf("  %-5s  %6llu tensors  %16llu bytes  (", gt_dtype_name(ty),
               (unsigned long long)by_type_count[ty], (unsigned long long)by_type_bytes[ty]);
        print_bytes_human((double)by_type_bytes[ty]);
        printf(")\n");
    }
    printf("  %-5s  %6zu tensors  %16llu bytes  (", "all", nt, (unsigned long long)total);
    print_bytes_human((double)total);
    printf(")\n\nparameters: %llu", (unsigned long long)params);
    if (params >= 1000000000ull)
        printf(" (%.2f B)", (double)params / 1e9);
    else if (params >= 1000000ull)
        printf(" (%.2f M)", (double)params / 1e6);
    putchar('\n');
}

#define O(f) offsetof(inspect_opts, f)
static const gt_flag k_flags[] = {
    {NULL, "--kv-limit", GT_FLAG_LONG, O(kv_limit), .lo = 0, .hi = 1000000, .metavar = "N",
     .help = "array elements shown per metadata key (default 6, 0: counts only)"},
    {NULL, "--tensors", GT_FLAG_BOOL, O(tensors), .help = "print the tensor table (default)"},
    {NULL, "--no-tensors", GT_FLAG_UNSET, O(tensors),
     .help = "leave out the tensor table (totals are still printed)"},
};
#undef O

static gt_status positional(const char *arg, void *opts) {
    inspect_opts *o = opts;
    if (o->path) return gt_fail(GT_ERR_INVALID_ARG, "takes one file, got '%s' and '%s'", o->path, arg);
    o->path = arg;
    return GT_OK;
}

static gt_status validate(void *opts) {
    inspect_opts *o = opts;
    if (!o->path) return gt_fail(GT_ERR_INVALID_ARG, "needs a GGUF file to inspect");
    return GT_OK;
}

static const gt_flag_spec k_spec = {
    .verb = "inspect",
    .synopsis = "FILE [--kv-limit N] [--tensors|--no-tensors]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .positional = positional,
    .validate = validate,
    .usage_on_error = GT_USAGE_AFTER,
};

int gt_cmd_inspect(int argc, char **argv) {
    inspect_opts o = {.kv_limit = 6, .tensors = true};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    gt_gguf *g;
    gt_status st = gt_gguf_open(o.path, &g);
    if (st != GT_OK) return gt_flags_report("inspect", st);
    printf("file       %s\n", gt_gguf_name(g));
    printf("size       %zu bytes (", gt_gguf_file_bytes(g));
    print_bytes_human((double)gt_gguf_file_bytes(g));
    printf(")\nversion    %u\nalignment  %zu\ndata at    byte %zu\n", gt_gguf_version(g),
           gt_gguf_alignment(g), gt_gguf_data_offset(g));
    print_metadata(g, o.kv_limit);
    print_tensors(g, o.tensors);
    gt_gguf_close(g);
    return 0;
}
