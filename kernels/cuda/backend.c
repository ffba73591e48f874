/* The CUDA backend: its instance (one GPU, a compute stream, a copy stream),
 * device buffers, asynchronous host -> device copies, weights kept as their
 * GGUF rows in device memory, and the non-matmul ops, which launch the
 * kernels of kernels/cuda/ *.cu through kernels/cuda/launch.h.
 *
 * Streams: every op, upload, download and device copy runs in order on one
 * compute stream, so an op sees the data of every earlier call without
 * events; uploads and downloads synchronize that stream before returning
 * (their host memory may be pageable and reused at once). Ops only enqueue:
 * a fault inside a kernel is reported by the next synchronizing call.
 * gt_copy_start's copies run on a second stream beside the ops, each
 * followed by an event in a ring of GT_CUDA_TICKETS; waiting for a ticket
 * waits on its slot's event, which a later ticket may have re-recorded: the
 * copy stream is in order, so that wait covers the earlier copy too. For the
 * copies to overlap compute, their source must be pinned host memory
 * (cudaHostAlloc / cudaHostRegister, the caller's concern): from pageable
 * memory the driver stages them and they may return only once copied.
 *
 * Matrix products and attention are not here yet (their entries are NULL,
 * so the dispatch answers GT_ERR_UNSUPPORTED); weight_init already uploads
 * F32/F16/BF16 rows as they are, the layout a cuBLASLt GEMM reads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "kernels/backend.h"
#include "kernels/cuda/launch.h"

/* Asynchronous copies in flight before a slot's event is re-recorded. */
#define GT_CUDA_TICKETS 64

typedef struct gt_cuda {
    gt_kernels base; /* first: the dispatch casts */
    int device;
    char isa[300];                   /* "sm_90 NVIDIA H200" */
    cudaStream_t stream;             /* compute: ops and synchronous transfers, in call order */
    cudaStream_t copy;               /* gt_copy_start's host -> device copies, beside compute */
    cudaEvent_t ev[GT_CUDA_TICKETS]; /* ticket t completes at ev[t % GT_CUDA_TICKETS] */
    pthread_mutex_t copy_lock;       /* copy_start/copy_wait may come from another thread */
    uint64_t next_ticket;            /* last issued ticket; 0: none */
} gt_cuda;

static gt_cuda *cu(gt_kernels *k) { return (gt_cuda *)k; }
static const gt_cuda *cu_c(const gt_kernels *k) { return (const gt_cuda *)k; }

static const gt_backend_iface cuda_iface;

/* A failed CUDA call as a status: the call, what it was for and CUDA's words. */
static gt_status cuda_fail(cudaError_t e, const char *call, const char *what) {
    return gt_fail(e == cudaErrorMemoryAllocation ? GT_ERR_NOMEM : GT_ERR_INTERNAL,
                   "cuda: %s failed for %s: %s (%s)", call, what, cudaGetErrorString(e),
                   cudaGetErrorName(e));
}

#define GT_CUDA_TRY(call, what)                                                                    \
    do {                                                                                           \
        cudaError_t gt__e = (call);                                                                \
        if (gt__e != cudaSuccess) return cuda_fail(gt__e, #call, what);                            \
    } while (0)

/* The calling thread's current device is per thread in the runtime: every
 * entry makes it ours, since the copy thread and the op thread may differ. */
#define USE(k) GT_CUDA_TRY(cudaSetDevice((k)->device), "selecting the backend's GPU")

/* ---- creation ---- */

/* The GPU of this process when none is named: the local rank (from the MPI
 * launcher or Slurm) modulo the visible GPUs, so ranks on one node spread. */
static int default_device(int n_dev) {
    static const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                 "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            char *end;
            long r = strtol(v, &end, 10);
            if (*end == '\0' && r >= 0) return (int)(r % n_dev);
        }
    }
    return 0;
}

static void cuda_destroy(gt_kernels *kb) {
    gt_cuda *k = cu(kb);
    (void)cudaSetDevice(k->device);
    if (k->copy) (void)cudaStreamSynchronize(k->copy);
    if (k->stream) (void)cudaStreamSynchronize(k->stream);
    for (int i = 0; i < GT_CUDA_TICKETS; i++)
        if (k->ev[i]) (void)cudaEventDestroy(k->ev[i]);
    if (k->copy) (void)cudaStreamDestroy(k->copy);
    if (k->stream) (void)cudaStreamDestroy(k->stream);
    pthread_mutex_destroy(&k->copy_lock);
    free(k);
}

static gt_status cuda_setup(gt_cuda *k) {
    USE(k);
    struct cudaDeviceProp prop;
    GT_CUDA_TRY(cudaGetDeviceProperties(&prop, k->device), "reading the GPU's properties");
    snprintf(k->isa, sizeof k->isa, "sm_%d%d %s", prop.major, prop.minor, prop.name);
    GT_CUDA_TRY(cudaStreamCreateWithFlags(&k->stream, cudaStreamNonBlocking), "the compute stream");
    GT_CUDA_TRY(cudaStreamCreateWithFlags(&k->copy, cudaStreamNonBlocking), "the copy stream");
    for (int i = 0; i < GT_CUDA_TICKETS; i++)
        GT_CUDA_TRY(cudaEventCreateWithFlags(&k->ev[i], cudaEventDisableTiming),
                    "a copy ticket's event");
    return GT_OK;
}

gt_status gt__cuda_backend_create(const gt_kernels_config *cfg, gt_kernels **out) {
    *out = NULL;
    gt_kernels_config c = GT_KERNELS_CONFIG_INIT;
    if (cfg) c = *cfg;
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "cuda: no GPU is visible to this process (%s); use "
                       "--backend cpu",
                       e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    if (c.device >= n_dev || c.device < GT_KERNELS_DEVICE_AUTO)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "cuda: device %d was requested but %d GPU%s visible "
                       "(0..%d)",
                       c.device, n_dev, n_dev == 1 ? " is" : "s are", n_dev - 1);
    gt_cuda *k = calloc(1, sizeof *k);
    if (!k) return gt_fail(GT_ERR_NOMEM, "kernels: out of memory for the backend");
    k->base.iface = &cuda_iface;
    k->device = c.device == GT_KERNELS_DEVICE_AUTO ? default_device(n_dev) : c.device;
    pthread_mutex_init(&k->copy_lock, NULL);
    gt_status st = cuda_setup(k);
    if (st != GT_OK) {
        cuda_destroy(&k->base);
        return st;
    }
    *out = &k->base;
    return GT_OK;
}

static const char *cuda_isa(const gt_kernels *k) { return cu_c(k)->isa; }
static int cuda_n_threads(const gt_kernels *k) { return 1; }

/* Nothing to reserve yet: the ops here need no workspace (attention and the
 * matrix products, when they arrive, will size theirs from r). */
static gt_status cuda_reserve(gt_kernels *k, const gt_workspace_req *r) { return GT_OK; }

/* ---- buffers ---- */

static gt_status cuda_buffer_alloc(gt_kernels *kb, gt_buffer *b) {
    gt_cuda *k = cu(kb);
    USE(k);
    /* cudaMalloc aligns to at least 256 bytes (the interface promises 64). */
    cudaError_t e = cudaMalloc(&b->addr, b->bytes);
    if (e != cudaSuccess)
        return gt_fail(GT_ERR_NOMEM, "cuda: cannot allocate %zu bytes on GPU %d: %s", b->bytes,
                       k->device, cudaGetErrorString(e));
    b->host = false;
    /* Zeroed as the interface promises; on the compute stream so that ops see it. */
    e = cudaMemsetAsync(b->addr, 0, b->bytes, k->stream);
    if (e != cudaSuccess) {
        (void)cudaFree(b->addr);
        b->addr = NULL;
        return cuda_fail(e, "cudaMemsetAsync", "zeroing a new buffer");
    }
    return GT_OK;
}

static gt_status cuda_buffer_free(gt_kernels *kb, gt_buffer *b) {
    gt_cuda *k = cu(kb);
    USE(k);
    /* cudaFree waits for the device, so no op still reads the memory. */
    GT_CUDA_TRY(cudaFree(b->addr), "freeing a buffer");
    b->addr = NULL;
    return GT_OK;
}

static gt_status cuda_buffer_upload(gt_buffer *b, size_t off, const void *src, size_t n) {
    gt_cuda *k = cu(b->k);
    USE(k);
    /* On the compute stream: after every op already issued that may read the range. */
    GT_CUDA_TRY(cudaMemcpyAsync((char *)b->addr + off, src, n, cudaMemcpyHostToDevice, k->stream),
                "an upload");
    GT_CUDA_TRY(cudaStreamSynchronize(k->stream), "an upload");
    return GT_OK;
}

static gt_status cuda_buffer_download(gt_buffer *b, size_t off, void *dst, size_t n) {
    gt_cuda *k = cu(b->k);
    USE(k);
    GT_CUDA_TRY(
        cudaMemcpyAsync(dst, (const char *)b->addr + off, n, cudaMemcpyDeviceToHost, k->stream),
        "a download");
    GT_CUDA_TRY(cudaStreamSynchronize(k->stream), "a download (or an op before it)");
    return GT_OK;
}

static gt_status cuda_buffer_copy(gt_buffer *dst, size_t dst_off, gt_buffer *src, size_t src_off,
                                  size_t n) {
    gt_cuda *k = cu(src->k);
    USE(k);
    /* Stays on the stream: ordered with the ops around it, no host wait. */
    GT_CUDA_TRY(cudaMemcpyAsync((char *)dst->addr + dst_off, (const char *)src->addr + src_off, n,
                                cudaMemcpyDeviceToDevice, k->stream),
                "a device copy");
    return GT_OK;
}

/* ---- asynchronous copies ---- */

static gt_status cuda_copy_start(gt_kernels *kb, gt_buffer *dst, size_t off, const void *src,
                                 size_t n, uint64_t *ticket) {
    gt_cuda *k = cu(kb);
    USE(k);
    if (dst->host) { /* a host buffer of another backend: nothing to overlap */
        memcpy((char *)dst->addr + off, src, n);
        return GT_OK;
    }
    pthread_mutex_lock(&k->copy_lock);
    gt_status st = GT_OK;
    cudaError_t e =
        cudaMemcpyAsync((char *)dst->addr + off, src, n, cudaMemcpyHostToDevice, k->copy);
    const uint64_t t = k->next_ticket + 1;
    if (e == cudaSuccess) e = cudaEventRecord(k->ev[t % GT_CUDA_TICKETS], k->copy);
    if (e == cudaSuccess) {
        k->next_ticket = t;
        *ticket = t;
    } else {
        st = cuda_fail(e, "cudaMemcpyAsync/cudaEventRecord", "an asynchronous copy");
    }
    pthread_mutex_unlock(&k->copy_lock);
    return st;
}

static gt_status cuda_copy_wait(gt_kernels *kb, uint64_t ticket) {
    gt_cuda *k = cu(kb);
    USE(k);
    pthread_mutex_lock(&k->copy_lock);
    const uint64_t last = k->next_ticket;
    cudaEvent_t ev = k->ev[ticket % GT_CUDA_TICKETS];
    pthread_mutex_unlock(&k->copy_lock);
    if (ticket > last)
        return gt_fail(GT_ERR_INVALID_ARG, "cuda: copy ticket %llu was never issued (last %llu)",
                       (unsigned long long)ticket, (unsigned long long)last);
    /* The slot holds this ticket's event or a later one's: either covers it. */
    GT_CUDA_TRY(cudaEventSynchronize(ev), "waiting for an asynchronous copy");
    return GT_OK;
}

/* ---- weights ---- */

static bool plain_type(gt_dtype t) { return t == GT_F32 || t == GT_F16 || t == GT_BF16; }

static size_t cuda_weight_bytes(const gt_kernels *k, gt_dtype type, int64_t n_in, int64_t n_out,
                                bool invariant) {
    size_t row;
    if (!plain_type(type) || n_in <= 0 || n_out <= 0 || !gt_dtype_row_bytes(type, n_in, &row))
        return 0;
    if ((size_t)n_out > SIZE_MAX / row) return 0;
    return row * (size_t)n_out;
}

static gt_status cuda_weight_init(gt_kernels *kb, gt_dtype type, int64_t n_in, int64_t n_out,
                                  const void *data, bool invariant, gt_weight *w) {
    gt_cuda *k = cu(kb);
    if (!plain_type(type))
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "cuda: %s weights are not supported yet (F32, F16 and "
                       "BF16 are)",
                       gt_dtype_name(type));
    const size_t bytes = cuda_weight_bytes(kb, type, n_in, n_out, invariant);
    if (bytes == 0)
        return gt_fail(GT_ERR_INVALID_ARG, "cuda: a %lld x %lld %s weight has no valid size",
                       (long long)n_out, (long long)n_in, gt_dtype_name(type));
    USE(k);
    void *dev;
    cudaError_t e = cudaMalloc(&dev, bytes);
    if (e != cudaSuccess)
        return gt_fail(GT_ERR_NOMEM, "cuda: cannot allocate %zu bytes on GPU %d for a weight: %s",
                       bytes, k->device, cudaGetErrorString(e));
    /* Uploaded once at load from the (pageable) mmap: a synchronous copy. */
    e = cudaMemcpyAsync(dev, data, bytes, cudaMemcpyHostToDevice, k->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(k->stream);
    if (e != cudaSuccess) {
        (void)cudaFree(dev);
        return cuda_fail(e, "cudaMemcpyAsync", "uploading a weight");
    }
    w->type = type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->owned = dev;
    w->data = dev;
    w->layout = 0;
    return GT_OK;
}

static gt_status cuda_weight_free(gt_kernels *kb, gt_weight *w) {
    if (!w->owned) return GT_OK;
    USE(cu(kb));
    GT_CUDA_TRY(cudaFree(w->owned), "freeing a weight");
    return GT_OK;
}

static bool cuda_matmul_supports(const gt_kernels *k, gt_dtype type) { return false; }

/* ---- ops ---- */

/* The status of a launcher's result. */
#define LAUNCHED(call, what) GT_CUDA_TRY(call, what)

static gt_status cuda_rmsnorm(gt_kernels *kb, const float *x, const float *w, float *y,
                              int64_t n_rows, int64_t n, float eps) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_rmsnorm(k->stream, x, w, y, n_rows, n, eps), "rmsnorm");
    return GT_OK;
}

static gt_status cuda_rope(gt_kernels *kb, float *x, int64_t n_tok, int n_head, int head_dim,
                           const int32_t *pos, const gt_rope_params *p) {
    gt_cuda *k = cu(kb);
    if (p->n_rot < 0 || p->n_rot % 2 != 0 || p->n_rot > head_dim)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "rope: %d rotated dimensions do not fit a head of %d "
                       "(they must be even and at most the head)",
                       p->n_rot, head_dim);
    USE(k);
    LAUNCHED(gt__cuda_rope(k->stream, x, n_tok, n_head, head_dim, pos, p->freq_base, p->freq_scale,
                           p->n_rot, p->neox),
             "rope");
    return GT_OK;
}

static gt_status cuda_swiglu(gt_kernels *kb, const float *g, const float *u, float *o, int64_t n) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_swiglu(k->stream, g, u, o, n), "swiglu");
    return GT_OK;
}

static gt_status cuda_geglu(gt_kernels *kb, const float *g, const float *u, float *o, int64_t n) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_geglu(k->stream, g, u, o, n), "geglu");
    return GT_OK;
}

static gt_status cuda_add(gt_kernels *kb, float *y, const float *x, int64_t n) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_add(k->stream, y, x, n), "add");
    return GT_OK;
}

static gt_status cuda_add_bias(gt_kernels *kb, float *y, const float *b, int64_t n_rows,
                               int64_t n) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_add_bias(k->stream, y, b, n_rows, n), "bias add");
    return GT_OK;
}

static gt_status cuda_scale(gt_kernels *kb, float *y, float s, int64_t n) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_scale(k->stream, y, s, n), "scale");
    return GT_OK;
}

static gt_status cuda_softcap(gt_kernels *kb, float *y, float c, int64_t n) {
    gt_cuda *k = cu(kb);
    if (!(c > 0))
        return gt_fail(GT_ERR_INVALID_ARG, "softcap: the cap must be positive, not %g", (double)c);
    USE(k);
    LAUNCHED(gt__cuda_softcap(k->stream, y, c, n), "softcap");
    return GT_OK;
}

static gt_status cuda_zero(gt_kernels *kb, float *y, int64_t n) {
    gt_cuda *k = cu(kb);
    if (n <= 0) return GT_OK;
    USE(k);
    GT_CUDA_TRY(cudaMemsetAsync(y, 0, (size_t)n * sizeof *y, k->stream), "a zero fill");
    return GT_OK;
}

static gt_status cuda_embed(gt_kernels *kb, const gt_embed_args *a) {
    gt_cuda *k = cu(kb);
    if (a->type != GT_F32 && a->type != GT_F16 && a->type != GT_BF16 && a->type != GT_Q8_0)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "cuda: embedding rows of type %s are not supported yet "
                       "(F32, F16, BF16 and Q8_0 are)",
                       gt_dtype_name(a->type));
    size_t row_bytes;
    if (!gt_dtype_row_bytes(a->type, a->n, &row_bytes))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "embedding: rows of %lld %s elements are not whole blocks", (long long)a->n,
                       gt_dtype_name(a->type));
    USE(k);
    LAUNCHED(gt__cuda_embed(k->stream, (int)a->type, a->rows, a->v0, a->n_rows, a->n, row_bytes,
                            a->scale, a->ids, a->n_ids, a->out),
             "the embedding look-up");
    return GT_OK;
}

static gt_status cuda_router_topk(gt_kernels *kb, float *probs, int64_t n_tok, int n_expert,
                                  int k_used, bool renorm, int32_t *ids, float *w) {
    gt_cuda *k = cu(kb);
    if (k_used < 1 || k_used > n_expert)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "router: %d experts per token out of %d is not a valid "
                       "choice",
                       k_used, n_expert);
    USE(k);
    LAUNCHED(gt__cuda_router_topk(k->stream, probs, n_tok, n_expert, k_used, renorm, ids, w),
             "the router");
    return GT_OK;
}

static gt_status cuda_gather_rows(gt_kernels *kb, const float *src, const int32_t *rows, int64_t m,
                                  int64_t n, float *dst) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_gather_rows(k->stream, src, rows, m, n, dst), "a row gather");
    return GT_OK;
}

static gt_status cuda_scatter_add_rows(gt_kernels *kb, const float *src, const int32_t *rows,
                                       const float *w, int64_t m, int64_t n, float *dst) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_scatter_add_rows(k->stream, src, rows, w, m, n, dst), "a row scatter");
    return GT_OK;
}

static gt_status cuda_sigmoid_gate_add(gt_kernels *kb, const float *gate, const float *src,
                                       float *dst, int64_t n_tok, int64_t n) {
    gt_cuda *k = cu(kb);
    USE(k);
    LAUNCHED(gt__cuda_sigmoid_gate_add(k->stream, gate, src, dst, n_tok, n), "a gated add");
    return GT_OK;
}

static const gt_backend_iface cuda_iface = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .isa = cuda_isa,
    .n_threads = cuda_n_threads,
    .pool = NULL,
    .reserve = cuda_reserve,
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free = cuda_buffer_free,
    .buffer_upload = cuda_buffer_upload,
    .buffer_download = cuda_buffer_download,
    .buffer_copy = cuda_buffer_copy,
    .matmul_supports = cuda_matmul_supports,
    .weight_init = cuda_weight_init,
    .weight_free = cuda_weight_free,
    .weight_bytes = cuda_weight_bytes,
    .copy_start = cuda_copy_start,
    .copy_wait = cuda_copy_wait,
    .matmul = NULL, /* not yet: cuBLASLt for F32/F16/BF16, own kernels for the quants */
    .rmsnorm = cuda_rmsnorm,
    .rope = cuda_rope,
    .swiglu = cuda_swiglu,
    .geglu = cuda_geglu,
    .add = cuda_add,
    .add_bias = cuda_add_bias,
    .scale = cuda_scale,
    .softcap = cuda_softcap,
    .zero = cuda_zero,
    .embed = cuda_embed,
    .router_topk = cuda_router_topk,
    .gather_rows = cuda_gather_rows,
    .scatter_add_rows = cuda_scatter_add_rows,
    .sigmoid_gate_add = cuda_sigmoid_gate_add,
    .attention = NULL, /* not yet: flash prefill and paged decode */
    .kv_store = NULL,  /* not yet: with attention */
};
