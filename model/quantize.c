/* `gantry quantize`: a GGUF file's matrices converted to another element
 * type, tensor by tensor.
 *
 * Every tensor's type is decided first (quantize_plan.c), so that the output
 * header can be written before any data; then the writer's streaming mode
 * asks for each tensor's bytes in file order, and the fill callback below
 * converts its rows on a thread pool (rows split evenly; each thread
 * dequantizes a row into its own float buffer when the source is not F32,
 * then quantizes it). A tensor whose type does not change is copied. The
 * rows of a 3-D (stacked experts) tensor use their own expert's imatrix
 * weights. Plain round-to-nearest goes through gt_quantize_row exactly as
 * `gantry synth` does, so converting an F32 synthetic model gives the bytes
 * synth writes for the same seed and type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/pool.h"
#include "common/quant.h"
#include "model/quantize.h"

typedef struct conv_job {
    const gt_quantize_config *cfg;
    const gt_gguf *g;
    const gt_quant_choice *choice; /* [n_tensors] */
    gt_pool *pool;
    float *scratch; /* [n_threads, max_row] */
    int64_t max_row;
    gt_quantize_report *rep;
    /* the tensor being filled */
    const gt_tensor_info *t;
    gt_dtype out_type;
    uint8_t *out;
    size_t out_row_bytes, in_row_bytes;
    int64_t n_rows;
    gt_status st[256];
} conv_job;

static void convert_rows(void *arg, int ith, int nth) {
    conv_job *j = arg;
    const gt_tensor_info *t = j->t;
    const int64_t n = t->ne[0];
    float *x = j->scratch + (size_t)ith * (size_t)j->max_row;
    long r0, r1;
    gt_pool_split((long)j->n_rows, 1, ith, nth, &r0, &r1);
    j->st[ith] = GT_OK;
    for (long r = r0; r < r1; r++) {
        const uint8_t *in = (const uint8_t *)t->data + (size_t)r * j->in_row_bytes;
        const float *row = (const float *)(const void *)in;
        if (t->type != GT_F32) {
            gt_status st = gt_dequantize_row(t->type, in, x, n);
            if (st != GT_OK) {
                j->st[ith] = st;
                return;
            }
            row = x;
        } else if (((uintptr_t)in & 3) != 0) {
            memcpy(x, in, (size_t)n * 4);
            row = x;
        }
        const float *qw = NULL;
        if (j->cfg->imatrix) {
            int n_mat = t->n_dims >= 3 ? (int)t->ne[2] : 1;
            int mat = (int)(r / t->ne[1]);
            qw = gt_imatrix_weights(j->cfg->imatrix, t->name, mat, n, n_mat);
        }
        gt_status st =
            gt_quantize_row_imatrix(j->out_type, row, j->out + (size_t)r * j->out_row_bytes, n, qw);
        if (st != GT_OK) {
            j->st[ith] = st;
            return;
        }
    }
}

static gt_status fill_tensor(void *ctx, size_t index, void *buf, size_t nbytes) {
    conv_job *j = ctx;
    const gt_tensor_info *t = gt_gguf_tensor_at(j->g, index);
    const gt_quant_choice *c = &j->choice[index];
    if (c->type == t->type) {
        memcpy(buf, t->data, nbytes);
    } else {
        j->t = t;
        j->out_type = c->type;
        j->out = buf;
        if (!gt_dtype_row_bytes(c->type, t->ne[0], &j->out_row_bytes) ||
            !gt_dtype_row_bytes(t->type, t->ne[0], &j->in_row_bytes))
            return gt_fail(GT_ERR_INTERNAL, "tensor %s: rows of %lld do not fit %s", t->name,
                           (long long)t->ne[0], gt_dtype_name((uint32_t)c->type));
        j->n_rows = (int64_t)(t->nbytes / j->in_row_bytes);
        gt_pool_run(j->pool, convert_rows, j);
        for (int i = 0; i < gt_pool_size(j->pool); i++)
            if (j->st[i] != GT_OK) return j->st[i];
    }
    j->rep->bytes_in += t->nbytes;
    j->rep->bytes_out += nbytes;
    if (j->cfg->progress) {
        gt_quantize_progress p = {index + 1, gt_gguf_n_tensors(j->g), t->name, j->rep->bytes_in,
                                  j->rep->bytes_out};
        j->cfg->progress(j->cfg->progress_ctx, &p);
    }
    return GT_OK;
}

/* The model's layer count from its tensor names (blk.N.*): arch-agnostic. */
static int count_layers(const gt_gguf *g) {
    int n = 0;
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        int l;
        if (sscanf(gt_gguf_tensor_at(g, i)->name, "blk.%d.", &l) == 1 && l + 1 > n) n = l + 1;
    }
    return n;
}

static bool is_float(gt_dtype t) { return t == GT_F32 || t == GT_F16 || t == GT_BF16; }

/* Decides every tensor's type, declares it to the writer, and reports
 * fallbacks, requantization and unused --keep patterns. */
static gt_status plan_tensors(const gt_quantize_config *cfg, const gt_gguf *g, gt_gguf_writer *w,
                              gt_quant_choice *choice, int64_t *max_row, gt_quantize_report *rep) {
    const int n_layer = count_layers(g);
    const size_t nt = gt_gguf_n_tensors(g);
    int *keep_used = calloc((size_t)cfg->n_keep + 1, sizeof *keep_used);
    if (!keep_used) return gt_fail(GT_ERR_NOMEM, "cannot plan %zu tensors", nt);
    gt_status st = GT_OK;
    for (size_t i = 0; st == GT_OK && i < nt; i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        gt_quant_choice c = gt_quant_choose(&cfg->preset, t, n_layer, cfg->keep, cfg->n_keep);
        choice[i] = c;
        if (c.keep_index >= 0) keep_used[c.keep_index]++;
        /* Said for the tensors outside the layers and for layer 0's (the
         * others repeat them), as synth does. */
        if (c.why == GT_QUANT_FALLBACK &&
            (strncmp(t->name, "blk.", 4) != 0 || strncmp(t->name, "blk.0.", 6) == 0))
            GT_LOG_WARN(GT_SUB_MODEL,
                        "quantize: %s%s has rows of %lld, not whole %s blocks: stored as %s",
                        t->name, strncmp(t->name, "blk.0.", 6) == 0 ? " (and every layer's)" : "",
                        (long long)t->ne[0], gt_dtype_name((uint32_t)c.wanted),
                        gt_dtype_name((uint32_t)c.type));
        if (c.why != GT_QUANT_AS_IS && c.type != t->type) {
            rep->n_converted++;
            rep->matrix_bytes_in += t->nbytes;
            rep->n_fallback += c.why == GT_QUANT_FALLBACK;
            if (!is_float(t->type)) {
                if (rep->n_requantized++ == 0)
                    GT_LOG_WARN(GT_SUB_MODEL,
                                "quantize: %s is already %s; requantizing quantized weights to %s "
                                "adds the errors of both formats",
                                t->name, gt_dtype_name((uint32_t)t->type),
                                gt_dtype_name((uint32_t)c.type));
            }
            if (t->ne[0] > *max_row) *max_row = t->ne[0];
            if (cfg->imatrix && gt_quant_uses_imatrix(c.type) &&
                !gt_imatrix_weights(cfg->imatrix, t->name, 0, t->ne[0],
                                    t->n_dims >= 3 ? (int)t->ne[2] : 1) &&
                rep->n_no_imatrix++ < 3)
                GT_LOG_WARN(GT_SUB_MODEL,
                            "quantize: the imatrix has no entry for %s (%lld columns): "
                            "rounded to nearest",
                            t->name, (long long)t->ne[0]);
        } else {
            rep->n_copied++;
        }
        size_t nbytes = 0, row = 0;
        int64_t rows = 1;
        for (int d = 1; d < t->n_dims; d++) rows *= t->ne[d];
        if (!gt_dtype_row_bytes(c.type, t->ne[0], &row) || !gt_size_mul(row, (size_t)rows, &nbytes))
            st = gt_fail(GT_ERR_INVALID_ARG, "tensor %s: %lld x %lld elements do not fit %s",
                         t->name, (long long)t->ne[0], (long long)rows,
                         gt_dtype_name((uint32_t)c.type));
        if (st == GT_OK)
            st = gt_gguf_writer_add_tensor_deferred(w, t->name, c.type, t->n_dims, t->ne, nbytes);
    }
    for (int k = 0; st == GT_OK && k < cfg->n_keep; k++)
        if (!keep_used[k])
            GT_LOG_WARN(GT_SUB_MODEL, "quantize: --keep %s=%s matched no matrix",
                        cfg->keep[k].pattern, gt_dtype_name((uint32_t)cfg->keep[k].type));
    free(keep_used);
    return st;
}

static gt_status copy_metadata(const gt_quantize_config *cfg, const gt_gguf *g, gt_gguf_writer *w) {
    for (size_t i = 0; i < gt_gguf_n_kv(g); i++)
        GT_TRY(gt_gguf_writer_copy_kv(w, gt_gguf_kv_at(g, i)));
    if (cfg->preset.file_type >= 0)
        GT_TRY(gt_gguf_writer_set_u32(w, "general.file_type", (uint32_t)cfg->preset.file_type));
    if (!gt_gguf_find(g, "general.quantization_version"))
        GT_TRY(gt_gguf_writer_set_u32(w, "general.quantization_version", 2));
    if (cfg->imatrix) {
        /* llama.cpp's keys (tools/quantize/quantize.cpp). */
        GT_TRY(gt_gguf_writer_set_str(w, "quantize.imatrix.file",
                                      cfg->imatrix_path ? cfg->imatrix_path : ""));
        GT_TRY(gt_gguf_writer_set_str(w, "quantize.imatrix.dataset",
                                      gt_imatrix_dataset(cfg->imatrix)));
        GT_TRY(gt_gguf_writer_set_i32(w, "quantize.imatrix.entries_count",
                                      (int32_t)gt_imatrix_n_entries(cfg->imatrix)));
        GT_TRY(gt_gguf_writer_set_i32(w, "quantize.imatrix.chunks_count",
                                      (int32_t)gt_imatrix_chunk_count(cfg->imatrix)));
    }
    return GT_OK;
}

gt_status gt_quantize_file(const gt_quantize_config *cfg, gt_quantize_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (cfg->n_threads < 1 || cfg->n_threads > 256)
        return gt_fail(GT_ERR_INVALID_ARG, "quantize: %d threads (1 to 256 allowed)",
                       cfg->n_threads);
    gt_gguf *g = NULL;
    gt_gguf_writer *w = NULL;
    gt_quant_choice *choice = NULL;
    conv_job job = {.cfg = cfg, .rep = rep};
    GT_TRY(gt_gguf_open(cfg->in_path, &g));
    gt_status st;
    GT_TRY_GOTO(gt_gguf_writer_create(&w), st, done);
    size_t nt = gt_gguf_n_tensors(g);
    rep->n_tensors = nt;
    choice = calloc(nt ? nt : 1, sizeof *choice);
    if (!choice) {
        st = gt_fail(GT_ERR_NOMEM, "cannot plan %zu tensors", nt);
        goto done;
    }
    GT_TRY_GOTO(copy_metadata(cfg, g, w), st, done);
    int64_t max_row = 1;
    GT_TRY_GOTO(plan_tensors(cfg, g, w, choice, &max_row, rep), st, done);
    GT_TRY_GOTO(gt_pool_create(cfg->n_threads, &job.pool), st, done);
    job.g = g;
    job.choice = choice;
    job.max_row = max_row;
    job.scratch = gt_alloc((size_t)cfg->n_threads * (size_t)max_row * sizeof(float));
    if (!job.scratch) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate %d rows of %lld floats", cfg->n_threads,
                     (long long)max_row);
        goto done;
    }
    rep->bytes_in = rep->bytes_out = 0;
    st = gt_gguf_writer_write_stream(w, cfg->out_path, fill_tensor, &job);
done:
    gt_free(job.scratch);
    gt_pool_destroy(job.pool);
    free(choice);
    gt_gguf_writer_destroy(w);
    gt_gguf_close(g);
    return st;
}
