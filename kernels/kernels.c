/* The dispatch: chooses a backend by name at creation and forwards every
 * public call through its function table (kernels/backend.h). Buffer range
 * checks and copies between backends live here, since every backend shares
 * them. */
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"

gt_status gt_kernels_create(const gt_kernels_config *cfg, gt_kernels **out) {
    *out = NULL;
    const char *name = cfg && cfg->backend ? cfg->backend : "cpu";
    if (!strcmp(name, "cpu")) return gt__cpu_backend_create(cfg, out);
    if (!strcmp(name, "cuda")) {
#ifdef GT_KERNELS_CUDA
        return gt__cuda_backend_create(cfg, out);
#else
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "gantry was built without CUDA (-DGANTRY_CUDA=OFF or no toolkit found)");
#endif
    }
    return gt_fail(GT_ERR_INVALID_ARG, "kernels: unknown backend \"%s\" (expected cpu or cuda)",
                   name);
}

void gt_kernels_destroy(gt_kernels *k) {
    if (k) k->iface->destroy(k);
}

const char *gt_kernels_backend(const gt_kernels *k) { return k->iface->name; }
const char *gt_kernels_isa(const gt_kernels *k) { return k->iface->isa(k); }
const char *gt_kernels_half(const gt_kernels *k) {
    return k->iface->half ? k->iface->half(k) : "off";
}
int gt_kernels_n_threads(const gt_kernels *k) { return k->iface->n_threads(k); }
gt_pool *gt_kernels_pool(gt_kernels *k) { return k->iface->pool ? k->iface->pool(k) : NULL; }

size_t gt_kernels_workspace_bytes(const gt_workspace_req *r) { return gt__cpu_workspace_bytes(r); }

static gt_status missing(const gt_kernels *k, const char *what) {
    return gt_fail(GT_ERR_UNSUPPORTED, "the %s backend has no %s", k->iface->name, what);
}

/* Calls entry `f` of k's table, or fails when the backend lacks it. */
#define DISPATCH(k, f, what, ...) ((k)->iface->f ? (k)->iface->f(__VA_ARGS__) : missing(k, what))

gt_status gt_kernels_reserve(gt_kernels *k, const gt_workspace_req *r) {
    return DISPATCH(k, reserve, "workspace", k, r);
}

/* ---- buffers ---- */

gt_status gt_buffer_alloc(gt_kernels *k, size_t bytes, gt_buffer **out) {
    *out = NULL;
    if (bytes == 0) return gt_fail(GT_ERR_INVALID_ARG, "kernels: a buffer needs at least one byte");
    gt_buffer *b = calloc(1, sizeof *b);
    if (!b) return gt_fail(GT_ERR_NOMEM, "kernels: out of memory for a buffer descriptor");
    b->k = k;
    b->bytes = bytes;
    gt_status st = DISPATCH(k, buffer_alloc, "buffers", k, b);
    if (st != GT_OK) {
        free(b);
        return st;
    }
    *out = b;
    return GT_OK;
}

void gt_buffer_free(gt_buffer *b) {
    if (!b) return;
    if (b->k->iface->buffer_free) (void)b->k->iface->buffer_free(b->k, b);
    free(b);
}

size_t gt_buffer_size(const gt_buffer *b) { return b->bytes; }
void *gt_buffer_addr(gt_buffer *b) { return b->addr; }
void *gt_buffer_host_ptr(gt_buffer *b) { return b->host ? b->addr : NULL; }

static gt_status check_range(const gt_buffer *b, size_t off, size_t n, const char *what) {
    if (off > b->bytes || n > b->bytes - off)
        return gt_fail(GT_ERR_RANGE, "kernels: %s of %zu bytes at offset %zu leaves a buffer of %zu bytes",
                       what, n, off, b->bytes);
    return GT_OK;
}

gt_status gt_buffer_upload(gt_buffer *b, size_t offset, const void *src, size_t n) {
    GT_TRY(check_range(b, offset, n, "an upload"));
    if (n == 0) return GT_OK;
    if (b->host) {
        memcpy((char *)b->addr + offset, src, n);
        return GT_OK;
    }
    return DISPATCH(b->k, buffer_upload, "uploads", b, offset, src, n);
}

gt_status gt_buffer_download(gt_buffer *b, size_t offset, void *dst, size_t n) {
    GT_TRY(check_range(b, offset, n, "a download"));
    if (n == 0) return GT_OK;
    if (b->host) {
        memcpy(dst, (const char *)b->addr + offset, n);
        return GT_OK;
    }
    return DISPATCH(b->k, buffer_download, "downloads", b, offset, dst, n);
}

gt_status gt_buffer_copy(gt_buffer *dst, size_t dst_off, gt_buffer *src, size_t src_off, size_t n) {
    GT_TRY(check_range(dst, dst_off, n, "a copy"));
    GT_TRY(check_range(src, src_off, n, "a copy"));
    if (n == 0) return GT_OK;
    if (src->host) return gt_buffer_upload(dst, dst_off, (const char *)src->addr + src_off, n);
    if (dst->host) return gt_buffer_download(src, src_off, (char *)dst->addr + dst_off, n);
    if (src->k == dst->k && src->k->iface->buffer_copy)
        return src->k->iface->buffer_copy(dst, dst_off, src, src_off, n);
    /* Two device buffers without a direct path: through host memory. */
    void *tmp = malloc(n);
    if (!tmp) return gt_fail(GT_ERR_NOMEM, "kernels: out of memory for a %zu-byte copy through the host", n);
    gt_status st = gt_buffer_download(src, src_off, tmp, n);
    if (st == GT_OK) st = gt_buffer_upload(dst, dst_off, tmp, n);
    free(tmp);
    return st;
}

/* ---- weights ---- */

bool gt_kernels_matmul_supports(const gt_kernels *k, gt_dtype type) {
    return k->iface->matmul_supports && k->iface->matmul_supports(k, type);
}

static gt_status weight_init(gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                             const void *data, bool invariant, gt_weight *w) {
    memset(w, 0, sizeof *w);
    GT_TRY(DISPATCH(k, weight_init, "matrix product", k, type, n_in, n_out, data, invariant, w));
    w->backend = k;
    return GT_OK;
}

gt_status gt_weight_init(gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                         const void *data, gt_weight *w) {
    return weight_init(k, type, n_in, n_out, data, false, w);
}

gt_status gt_weight_init_invariant(gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                                   const void *data, gt_weight *w) {
    return weight_init(k, type, n_in, n_out, data, true, w);
}

void gt_weight_free(gt_weight *w) {
    if (!w || !w->backend) return;
    if (w->backend->iface->weight_free) (void)w->backend->iface->weight_free(w->backend, w);
    w->owned = NULL;
    w->data = NULL;
    w->layout = 0;
}

size_t gt_weight_prepared_bytes(const gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out) {
    return k->iface->weight_bytes ? k->iface->weight_bytes(k, type, n_in, n_out, false) : 0;
}

void gt_weight_view(const gt_weight *src, void *addr, gt_weight *out) {
    *out = *src;
    out->data = addr;
    out->owned = NULL;
}

/* ---- asynchronous copies ---- */

gt_status gt_copy_start(gt_kernels *k, gt_buffer *dst, size_t offset, const void *src, size_t n,
                        uint64_t *ticket) {
    *ticket = 0;
    GT_TRY(check_range(dst, offset, n, "an asynchronous copy"));
    if (!k->iface->copy_start) return gt_buffer_upload(dst, offset, src, n);
    return k->iface->copy_start(k, dst, offset, src, n, ticket);
}

gt_status gt_copy_wait(gt_kernels *k, uint64_t ticket) {
    if (!k->iface->copy_wait || ticket == 0) return GT_OK;
    return k->iface->copy_wait(k, ticket);
}

/* ---- ops ---- */

gt_status gt_matmul(gt_kernels *k, const gt_weight *w, const float *x, float *y, int64_t n_tok) {
    return DISPATCH(k, matmul, "matrix product", k, w, x, y, n_tok);
}

gt_status gt_matmul_multi(gt_kernels *k, const gt_matmul_item *items, int n, const float *x,
                          int64_t n_tok) {
    if (k->iface->matmul_multi) return k->iface->matmul_multi(k, items, n, x, n_tok);
    for (int i = 0; i < n; i++) GT_TRY(gt_matmul(k, items[i].w, x, items[i].y, n_tok));
    return GT_OK;
}

gt_status gt_rmsnorm(gt_kernels *k, const float *x, const float *w, float *y, int64_t n_rows,
                     int64_t n, float eps) {
    return DISPATCH(k, rmsnorm, "rmsnorm", k, x, w, y, n_rows, n, eps);
}

gt_status gt_rope(gt_kernels *k, float *x, int64_t n_tok, int n_head, int head_dim,
                  const int32_t *pos, const gt_rope_params *p) {
    return DISPATCH(k, rope, "rope", k, x, n_tok, n_head, head_dim, pos, p);
}

gt_status gt_swiglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n) {
    return DISPATCH(k, swiglu, "swiglu", k, gate, up, out, n);
}

gt_status gt_geglu(gt_kernels *k, const float *gate, const float *up, float *out, int64_t n) {
    return DISPATCH(k, geglu, "geglu", k, gate, up, out, n);
}

gt_status gt_add(gt_kernels *k, float *y, const float *x, int64_t n) {
    return DISPATCH(k, add, "add", k, y, x, n);
}

gt_status gt_add_bias(gt_kernels *k, float *y, const float *b, int64_t n_rows, int64_t n) {
    return DISPATCH(k, add_bias, "bias add", k, y, b, n_rows, n);
}

gt_status gt_scale(gt_kernels *k, float *y, float s, int64_t n) {
    return DISPATCH(k, scale, "scale", k, y, s, n);
}

gt_status gt_softcap(gt_kernels *k, float *y, float c, int64_t n) {
    return DISPATCH(k, softcap, "softcap", k, y, c, n);
}

gt_status gt_zero(gt_kernels *k, float *y, int64_t n) {
    return DISPATCH(k, zero, "zero fill", k, y, n);
}

gt_status gt_embed(gt_kernels *k, const gt_embed_args *a) {
    return DISPATCH(k, embed, "embedding look-up", k, a);
}

gt_status gt_router_topk(gt_kernels *k, float *probs, int64_t n_tok, int n_expert, int k_used,
                         bool renorm, int32_t *ids, float *w) {
    return DISPATCH(k, router_topk, "router", k, probs, n_tok, n_expert, k_used, renorm, ids, w);
}

gt_status gt_gather_rows(gt_kernels *k, const float *src, const int32_t *rows, int64_t m,
                         int64_t n, float *dst) {
    return DISPATCH(k, gather_rows, "row gather", k, src, rows, m, n, dst);
}

gt_status gt_scatter_add_rows(gt_kernels *k, const float *src, const int32_t *rows,
                              const float *w, int64_t m, int64_t n, float *dst) {
    return DISPATCH(k, scatter_add_rows, "row scatter", k, src, rows, w, m, n, dst);
}

gt_status gt_sigmoid_gate_add(gt_kernels *k, const float *gate, const float *src, float *dst,
                              int64_t n_tok, int64_t n) {
    return DISPATCH(k, sigmoid_gate_add, "gated add", k, gate, src, dst, n_tok, n);
}

gt_status gt_attention(gt_kernels *k, const gt_attn_args *a) {
    return DISPATCH(k, attention, "attention", k, a);
}

gt_status gt_kv_store(gt_kernels *k, const gt_kv_store_args *a) {
    return DISPATCH(k, kv_store, "KV store", k, a);
}
