/* Importance matrices in the GGUF layout of llama.cpp's newer imatrix files
 * (tools/imatrix/imatrix.cpp, save_imatrix; common/imatrix-loader.h): for
 * each weight tensor NAME, an F32 tensor NAME.in_sum2 [n_in, n_mat] with the
 * sums of squares of every input column over all rows that went into the
 * matrix, and NAME.counts [1, n_mat] with the number of rows; metadata
 * general.type = "imatrix", imatrix.datasets (array of strings),
 * imatrix.chunk_count and imatrix.chunk_size (u32). Readers divide in_sum2
 * by counts to get each column's mean square activation, the weight the
 * quantizers use. Entries are kept in a small open-addressed table keyed by
 * name; sums accumulate in double and are stored as f32. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "model/quantize.h"

typedef struct im_entry {
    char *name;
    int64_t n_in;
    int n_mat;
    double *sum2;    /* [n_mat, n_in] while collecting */
    int64_t *counts; /* [n_mat] */
    float *mean;     /* [n_mat, n_in] when loaded: sum2 / count */
} im_entry;

struct gt_imatrix {
    im_entry *e;
    size_t n, cap;
    uint32_t chunk_count;
    char *dataset;
};

gt_status gt_imatrix_create(gt_imatrix **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return gt_fail(GT_ERR_NOMEM, "cannot allocate an importance matrix");
    return GT_OK;
}

void gt_imatrix_free(gt_imatrix *im) {
    if (!im) return;
    for (size_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].sum2);
        free(im->e[i].counts);
        free(im->e[i].mean);
    }
    free(im->e);
    free(im->dataset);
    free(im);
}

/* Linear search: a model has a few hundred matrices, and the lookup runs
 * once per matrix product, next to a matrix product. */
static im_entry *find(const gt_imatrix *im, const char *name) {
    for (size_t i = 0; i < im->n; i++)
        if (strcmp(im->e[i].name, name) == 0) return &im->e[i];
    return NULL;
}

static gt_status add_entry(gt_imatrix *im, const char *name, int64_t n_in, int n_mat,
                           im_entry **out) {
    if (im->n == im->cap) {
        size_t cap = im->cap ? im->cap * 2 : 64;
        im_entry *e = realloc(im->e, cap * sizeof *e);
        if (!e)
            return gt_fail(GT_ERR_NOMEM, "cannot grow the importance matrix to %zu entries", cap);
        im->e = e;
        im->cap = cap;
    }
    im_entry *e = &im->e[im->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    e->n_in = n_in;
    e->n_mat = n_mat;
    e->counts = calloc((size_t)n_mat, sizeof *e->counts);
    if (!e->name || !e->counts) {
        free(e->name);
        free(e->counts);
        return gt_fail(GT_ERR_NOMEM, "cannot add importance entry %s", name);
    }
    im->n++;
    *out = e;
    return GT_OK;
}

gt_status gt_imatrix_add(gt_imatrix *im, const char *name, int mat, int n_mat, const float *x,
                         int n, int64_t n_in) {
    im_entry *e = find(im, name);
    if (!e) {
        GT_TRY(add_entry(im, name, n_in, n_mat, &e));
        e->sum2 = calloc((size_t)n_mat * (size_t)n_in, sizeof *e->sum2);
        if (!e->sum2)
            return gt_fail(GT_ERR_NOMEM, "cannot allocate %d x %lld sums for %s", n_mat,
                           (long long)n_in, name);
    }
    if (e->n_in != n_in || e->n_mat != n_mat || mat < 0 || mat >= n_mat || !e->sum2)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "importance entry %s: rows of %lld into matrix %d of %d, but it has "
                       "%d matrices of %lld columns",
                       name, (long long)n_in, mat, n_mat, e->n_mat, (long long)e->n_in);
    double *acc = e->sum2 + (size_t)mat * (size_t)n_in;
    for (int r = 0; r < n; r++) {
        const float *row = x + (size_t)r * (size_t)n_in;
        for (int64_t j = 0; j < n_in; j++) acc[j] += (double)row[j] * (double)row[j];
    }
    e->counts[mat] += n;
    return GT_OK;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp((*(const im_entry *const *)a)->name, (*(const im_entry *const *)b)->name);
}

/* Sorted views of the entries (the file lists names in order). */
static gt_status write_tensors(const gt_imatrix *im, gt_gguf_writer *w) {
    const im_entry **order = malloc((im->n ? im->n : 1) * sizeof *order);
    if (!order) return gt_fail(GT_ERR_NOMEM, "cannot sort %zu importance entries", im->n);
    for (size_t i = 0; i < im->n; i++) order[i] = &im->e[i];
    qsort(order, im->n, sizeof *order, cmp_entry);
    gt_status st = GT_OK;
    char nm[512];
    for (size_t i = 0; st == GT_OK && i < im->n; i++) {
        const im_entry *e = order[i];
        size_t nv = (size_t)e->n_mat * (size_t)e->n_in;
        float *sums = gt_alloc(nv * sizeof *sums);
        float *counts = gt_alloc((size_t)e->n_mat * sizeof *counts);
        if (!sums || !counts) {
            gt_free(sums);
            gt_free(counts);
            st = gt_fail(GT_ERR_NOMEM, "cannot allocate the sums of %s", e->name);
            break;
        }
        for (size_t j = 0; j < nv; j++) sums[j] = (float)e->sum2[j];
        for (int m = 0; m < e->n_mat; m++) counts[m] = (float)e->counts[m];
        /* ggml drops trailing dimensions of 1 (ggml_n_dims): [n_in] and [1]
         * for a dense matrix, [n_in, n_mat] and [1, n_mat] for experts. */
        int64_t ne_s[2] = {e->n_in, e->n_mat}, ne_c[2] = {1, e->n_mat};
        int dims = e->n_mat > 1 ? 2 : 1;
        snprintf(nm, sizeof nm, "%s.in_sum2", e->name);
        st = gt_gguf_writer_add_tensor(w, nm, GT_F32, dims, ne_s, sums, nv * sizeof *sums, true);
        snprintf(nm, sizeof nm, "%s.counts", e->name);
        if (st == GT_OK)
            st = gt_gguf_writer_add_tensor(w, nm, GT_F32, dims, ne_c, counts,
                                           (size_t)e->n_mat * sizeof *counts, true);
        else
            gt_free(counts);
    }
    free(order);
    return st;
}

gt_status gt_imatrix_write(const gt_imatrix *im, const char *path, const char *dataset,
                           uint32_t chunk_count, uint32_t chunk_size) {
    gt_gguf_writer *w = NULL;
    GT_TRY(gt_gguf_writer_create(&w));
    gt_str ds = {dataset ? dataset : "", dataset ? strlen(dataset) : 0};
    gt_status st;
    GT_TRY_GOTO(gt_gguf_writer_set_str(w, "general.type", "imatrix"), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_arr_str(w, "imatrix.datasets", &ds, 1), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_u32(w, "imatrix.chunk_count", chunk_count), st, done);
    GT_TRY_GOTO(gt_gguf_writer_set_u32(w, "imatrix.chunk_size", chunk_size), st, done);
    GT_TRY_GOTO(write_tensors(im, w), st, done);
    st = gt_gguf_writer_write(w, path);
done:
    gt_gguf_writer_destroy(w);
    return st;
}

static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* One NAME.in_sum2 with its NAME.counts into a loaded entry. */
static gt_status load_entry(gt_imatrix *im, const gt_gguf *g, const gt_tensor_info *ts) {
    size_t n = strlen(ts->name) - strlen(".in_sum2");
    char name[512], cname[540];
    if (n >= sizeof name)
        return gt_fail(GT_ERR_FORMAT, "%s: tensor name %s is too long", gt_gguf_name(g), ts->name);
    memcpy(name, ts->name, n);
    name[n] = '\0';
    snprintf(cname, sizeof cname, "%s.counts", name);
    const gt_tensor_info *tc = gt_gguf_find_tensor(g, cname);
    int64_t n_in = ts->ne[0], n_mat = ts->ne[1];
    if (!tc || ts->type != GT_F32 || tc->type != GT_F32 || ts->n_dims > 2 || tc->ne[0] != 1 ||
        tc->ne[1] != n_mat || tc->ne[2] != 1 || n_mat > (1 << 20))
        return gt_fail(
            GT_ERR_FORMAT,
            "%s: %s needs an F32 [n_in, n_mat] tensor and an F32 [1, n_mat] %s beside it",
            gt_gguf_name(g), ts->name, cname);
    im_entry *e;
    GT_TRY(add_entry(im, name, n_in, (int)n_mat, &e));
    e->mean = malloc((size_t)n_in * (size_t)n_mat * sizeof *e->mean);
    if (!e->mean) return gt_fail(GT_ERR_NOMEM, "cannot load importance entry %s", name);
    for (int64_t m = 0; m < n_mat; m++) {
        float c;
        memcpy(&c, (const uint8_t *)tc->data + 4 * m, 4);
        if (!(c >= 0 && c < 1e15f))
            return gt_fail(GT_ERR_FORMAT, "%s: %s[%lld] is %g, not a row count", gt_gguf_name(g),
                           cname, (long long)m, (double)c);
        e->counts[m] = (int64_t)c;
        for (int64_t j = 0; j < n_in; j++) {
            float v;
            memcpy(&v, (const uint8_t *)ts->data + 4 * (m * n_in + j), 4);
            if (!(v >= 0 && v <= FLT_MAX))
                return gt_fail(GT_ERR_FORMAT, "%s: %s[%lld] is %g, not a sum of squares",
                               gt_gguf_name(g), ts->name, (long long)(m * n_in + j), (double)v);
            e->mean[m * n_in + j] = e->counts[m] > 0 ? v / (float)e->counts[m] : 0.f;
        }
    }
    return GT_OK;
}

static gt_status load_from(gt_gguf *g, const char *path, gt_imatrix **out);

gt_status gt_imatrix_load(const char *path, gt_imatrix **out) {
    *out = NULL;
    gt_gguf *g = NULL;
    GT_TRY(gt_gguf_open(path, &g));
    return load_from(g, path, out);
}

gt_status gt_imatrix_load_memory(const void *buf, size_t len, const char *name, gt_imatrix **out) {
    *out = NULL;
    gt_gguf *g = NULL;
    GT_TRY(gt_gguf_open_memory(buf, len, name, &g));
    return load_from(g, name, out);
}

/* Takes ownership of g (closed on return). */
static gt_status load_from(gt_gguf *g, const char *path, gt_imatrix **out) {
    gt_imatrix *im = NULL;
    gt_status st;
    GT_TRY_GOTO(gt_imatrix_create(&im), st, fail);
    uint32_t chunks = 0;
    GT_TRY_GOTO(gt_gguf_get_u32_or(g, "imatrix.chunk_count", 0, &chunks), st, fail);
    im->chunk_count = chunks;
    const gt_gguf_value *ds = gt_gguf_find(g, "imatrix.datasets");
    if (ds && ds->type == GT_GGUF_ARRAY && ds->arr.type == GT_GGUF_STRING && ds->arr.n > 0) {
        const gt_str *s = &ds->arr.strs[0];
        im->dataset = strndup(s->ptr, (size_t)s->len);
    }
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        if (ends_with(t->name, strlen(t->name), ".in_sum2"))
            GT_TRY_GOTO(load_entry(im, g, t), st, fail);
    }
    if (im->n == 0) {
        st = gt_fail(GT_ERR_FORMAT, "%s: no NAME.in_sum2 tensors: not an importance matrix file",
                     path);
        goto fail;
    }
    gt_gguf_close(g);
    *out = im;
    return GT_OK;
fail:
    gt_imatrix_free(im);
    gt_gguf_close(g);
    return st;
}

const float *gt_imatrix_weights(const gt_imatrix *im, const char *name, int mat, int64_t n_in,
                                int n_mat) {
    const im_entry *e = find(im, name);
    if (!e || !e->mean || e->n_in != n_in || e->n_mat != n_mat || mat < 0 || mat >= n_mat ||
        e->counts[mat] == 0)
        return NULL;
    return e->mean + (size_t)mat * (size_t)n_in;
}

size_t gt_imatrix_n_entries(const gt_imatrix *im) { return im->n; }
uint32_t gt_imatrix_chunk_count(const gt_imatrix *im) { return im->chunk_count; }
const char *gt_imatrix_dataset(const gt_imatrix *im) { return im->dataset ? im->dataset : ""; }
