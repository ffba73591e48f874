/* The backend interface: what a backend (kernels/cpu/, kernels/cuda/)
 * implements and kernels/kernels.c dispatches to, in the style of ggml's
 * ggml_backend_i. A backend's instance struct starts with a gt_kernels
 * (its table and name), which the backend's entries cast back to their own
 * type. Every entry returns a status; an entry left NULL answers
 * GT_ERR_UNSUPPORTED through the dispatch. */
#ifndef GT_KERNELS_BACKEND_H
#define GT_KERNELS_BACKEND_H

#include "kernels/kernels.h"

struct gt_buffer {
    gt_kernels *k; /* the backend that owns it */
    void *addr;    /* backend address of byte 0 */
    bool host;     /* addr is a host pointer */
    size_t bytes;
    void *ctx;     /* backend-private */
};

typedef struct gt_backend_iface {
    const char *name; /* "cpu", "cuda" */
    void (*destroy)(gt_kernels *k);
    const char *(*isa)(const gt_kernels *k);
    const char *(*half)(const gt_kernels *k); /* NULL entry: "off" */
    int (*n_threads)(const gt_kernels *k);
    gt_pool *(*pool)(gt_kernels *k); /* NULL entry: no host thread pool */

    /* workspace */
    gt_status (*reserve)(gt_kernels *k, const gt_workspace_req *r);

    /* buffers: alloc fills b->addr, b->host, b->ctx for b->bytes (zeroed) */
    gt_status (*buffer_alloc)(gt_kernels *k, gt_buffer *b);
    gt_status (*buffer_free)(gt_kernels *k, gt_buffer *b);
    gt_status (*buffer_upload)(gt_buffer *b, size_t off, const void *src, size_t n);
    gt_status (*buffer_download)(gt_buffer *b, size_t off, void *dst, size_t n);
    /* Both buffers on this backend; NULL: the dispatch copies through host memory. */
    gt_status (*buffer_copy)(gt_buffer *dst, size_t dst_off, gt_buffer *src, size_t src_off,
                             size_t n);

    /* weights */
    bool (*matmul_supports)(const gt_kernels *k, gt_dtype type);
    /* invariant: see gt_weight_init_invariant */
    gt_status (*weight_init)(gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                             const void *data, bool invariant, gt_weight *w);
    gt_status (*weight_free)(gt_kernels *k, gt_weight *w);
    /* bytes of the prepared form (gt_weight_prepared_bytes); invariant as for weight_init */
    size_t (*weight_bytes)(const gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                           bool invariant);
    /* asynchronous host -> buffer copies (gt_copy_start / gt_copy_wait); NULL
     * entries: the dispatch copies synchronously and every ticket is done */
    gt_status (*copy_start)(gt_kernels *k, gt_buffer *dst, size_t off, const void *src, size_t n,
                            uint64_t *ticket);
    gt_status (*copy_wait)(gt_kernels *k, uint64_t ticket);

    /* ops: the meaning of each is the public function of the same name */
    gt_status (*matmul)(gt_kernels *k, const gt_weight *w, const float *x, float *y,
                        int64_t n_tok);
    /* NULL: the dispatch runs gt_matmul for each item */
    gt_status (*matmul_multi)(gt_kernels *k, const gt_matmul_item *items, int n, const float *x,
                              int64_t n_tok);
    gt_status (*rmsnorm)(gt_kernels *k, const float *x, const float *w, float *y,
                         int64_t n_rows, int64_t n, float eps);
    gt_status (*rope)(gt_kernels *k, float *x, int64_t n_tok, int n_head, int head_dim,
                      const int32_t *pos, const gt_rope_params *p);
    gt_status (*swiglu)(gt_kernels *k, const float *gate, const float *up, float *out,
                        int64_t n);
    gt_status (*geglu)(gt_kernels *k, const float *gate, const float *up, float *out,
                       int64_t n);
    gt_status (*add)(gt_kernels *k, float *y, const float *x, int64_t n);
    gt_status (*add_bias)(gt_kernels *k, float *y, const float *b, int64_t n_rows, int64_t n);
    gt_status (*scale)(gt_kernels *k, float *y, float s, int64_t n);
    gt_status (*softcap)(gt_kernels *k, float *y, float c, int64_t n);
    gt_status (*zero)(gt_kernels *k, float *y, int64_t n);
    gt_status (*embed)(gt_kernels *k, const gt_embed_args *a);
    gt_status (*router_topk)(gt_kernels *k, float *probs, int64_t n_tok, int n_expert,
                             int k_used, bool renorm, int32_t *ids, float *w);
    gt_status (*gather_rows)(gt_kernels *k, const float *src, const int32_t *rows, int64_t m,
                             int64_t n, float *dst);
    gt_status (*scatter_add_rows)(gt_kernels *k, const float *src, const int32_t *rows,
                                  const float *w, int64_t m, int64_t n, float *dst);
    gt_status (*sigmoid_gate_add)(gt_kernels *k, const float *gate, const float *src,
                                  float *dst, int64_t n_tok, int64_t n);
    gt_status (*attention)(gt_kernels *k, const gt_attn_args *a);
    gt_status (*kv_store)(gt_kernels *k, const gt_kv_store_args *a);
} gt_backend_iface;

struct gt_kernels {
    const gt_backend_iface *iface;
};

/* The backends' entry points (kernels/cpu/backend.c, kernels/cuda/backend.c). */
gt_status gt__cpu_backend_create(const gt_kernels_config *cfg, gt_kernels **out);
gt_status gt__cuda_backend_create(const gt_kernels_config *cfg, gt_kernels **out);
/* The CPU backend's workspace for r (kernels/cpu/workspace.c). */
size_t gt__cpu_workspace_bytes(const gt_workspace_req *r);

#endif
