/* Converting a GGUF model's weights to another element type (`gantry
 * quantize`) and the importance-matrix files that steer it.
 *
 * The converter reads the input through the GGUF reader (mmap) and writes
 * through the GGUF writer's streaming mode: each output tensor is produced
 * when the writer reaches it, its rows split over a thread pool, so memory
 * stays about one tensor. Every metadata key is copied unchanged except
 * general.file_type (and the quantize.imatrix.* keys when --imatrix is
 * used).
 *
 * Which type each tensor gets (quantize_plan.c):
 *   - tensors that must stay as they are: anything that is not a matrix
 *     (1-D tensors, biases, names without ".weight"), norms ("norm" in the
 *     name), MoE routers and shared-expert gates ("ffn_gate_inp"), and types
 *     without a codec;
 *   - the preset's type: a plain type ("q4_0") for every matrix, or a mix
 *     ("q4_k_m": see gt_quant_preset_type);
 *   - then --keep PATTERN=TYPE overrides (fnmatch globs over tensor names,
 *     the last matching pattern wins; matrices only);
 *   - then the fallback for rows that are not whole blocks of the chosen
 *     type: Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0
 *     (llama.cpp's, with Q4_0 for its IQ4_NL, which Gantry lacks); rows
 *     that are not whole 32-element blocks -> F16; reported. (Synth stores
 *     every such K-quant matrix as Q8_0 instead.) */
#ifndef GT_QUANTIZE_H
#define GT_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"
#include "model/gguf.h"

/* A target: a plain type or a llama.cpp-style mix. */
typedef struct gt_quant_preset {
    char name[16]; /* as given, lower case: "q4_k_m" */
    gt_dtype base; /* the type of every matrix the mix does not raise */
    int mix;       /* 0 plain; 3, 4, 5 for q3_k_m, q4_k_m, q5_k_m */
    int file_type; /* llama_ftype for general.file_type; -1 none */
} gt_quant_preset;

/* "q4_0", "Q4_K", "f16", "bf16", "q4_k_m", "q3_k_m", "q5_k_m" ...
 * GT_ERR_INVALID_ARG with the list of names when unknown. */
gt_status gt_quant_preset_parse(const char *name, gt_quant_preset *out);

typedef struct gt_quant_keep {
    const char *pattern; /* fnmatch glob over the tensor name (malloc'd by the parser) */
    gt_dtype type;
} gt_quant_keep;

/* Parses "PATTERN=TYPE"; the caller frees out->pattern with free(). */
gt_status gt_quant_keep_parse(const char *arg, gt_quant_keep *out);

typedef enum gt_quant_why {
    GT_QUANT_AS_IS,    /* not a matrix / must stay float / no codec: bytes copied */
    GT_QUANT_PRESET,   /* the preset's type */
    GT_QUANT_KEEP,     /* a --keep override */
    GT_QUANT_FALLBACK, /* rows not whole blocks of the wanted type */
} gt_quant_why;

typedef struct gt_quant_choice {
    gt_dtype type;   /* the output type */
    gt_dtype wanted; /* before the fallback */
    gt_quant_why why;
    int keep_index; /* the --keep entry that applied, or -1 */
} gt_quant_choice;

/* True when a tensor is a weight matrix that may be converted. */
bool gt_quant_is_matrix(const gt_tensor_info *t);
/* The mix's type for a matrix (before overrides and fallback); layer is the
 * N of "blk.N." (-1 for none), n_layer the model's layer count. */
gt_dtype gt_quant_preset_type(const gt_quant_preset *p, const char *name, int layer, int n_layer);
/* The whole decision for one tensor. */
gt_quant_choice gt_quant_choose(const gt_quant_preset *p, const gt_tensor_info *t, int n_layer,
                                const gt_quant_keep *keep, int n_keep);

/* ---- importance matrices (llama.cpp's GGUF imatrix layout) ---- */

/* Per weight tensor: in_sum2 [n_in, n_mat] sums of squares of the inputs of
 * every matrix product with it (n_mat: experts of a stacked MoE tensor, else
 * 1) and counts [n_mat] rows summed. Accumulates in double. */
typedef struct gt_imatrix gt_imatrix;

gt_status gt_imatrix_create(gt_imatrix **out);
void gt_imatrix_free(gt_imatrix *im); /* accepts NULL */
/* Adds rows x[n, n_in] that went into matrix `mat` (0 for dense; the expert)
 * of the tensor `name`, which has n_mat matrices. GT_ERR_INVALID_ARG when the
 * shape disagrees with earlier rows of the same name; GT_ERR_NOMEM. Not
 * thread-safe. */
gt_status gt_imatrix_add(gt_imatrix *im, const char *name, int mat, int n_mat, const float *x,
                         int n, int64_t n_in);
/* Writes the GGUF file: general.type "imatrix", imatrix.datasets [dataset],
 * imatrix.chunk_count, imatrix.chunk_size, and per tensor NAME.in_sum2 (F32
 * [n_in, n_mat]) and NAME.counts (F32 [1, n_mat]), names sorted. */
gt_status gt_imatrix_write(const gt_imatrix *im, const char *path, const char *dataset,
                           uint32_t chunk_count, uint32_t chunk_size);
/* Reads such a file: each entry's column weights become in_sum2 / counts
 * (the mean square input; a matrix with count 0 gets none). GT_ERR_FORMAT
 * when a tensor pair is missing or misshapen. */
gt_status gt_imatrix_load(const char *path, gt_imatrix **out);
/* The same over a caller-owned buffer (fuzzing); name is used in sentences. */
gt_status gt_imatrix_load_memory(const void *buf, size_t len, const char *name, gt_imatrix **out);
/* The mean squares of matrix `mat` of `name`: n_in floats (borrowed), or NULL
 * when the file has no entry, its shape differs (n_in, n_mat), or the
 * matrix had no rows. */
const float *gt_imatrix_weights(const gt_imatrix *im, const char *name, int mat, int64_t n_in,
                                int n_mat);
size_t gt_imatrix_n_entries(const gt_imatrix *im);
uint32_t gt_imatrix_chunk_count(const gt_imatrix *im);
const char *gt_imatrix_dataset(const gt_imatrix *im); /* "" when none */

/* ---- the converter ---- */

typedef struct gt_quantize_progress {
    size_t done, total;           /* tensors */
    const char *name;             /* the tensor just written */
    uint64_t bytes_in, bytes_out; /* so far */
} gt_quantize_progress;

typedef struct gt_quantize_config {
    const char *in_path, *out_path;
    gt_quant_preset preset;
    const gt_quant_keep *keep; /* borrowed */
    int n_keep;
    const gt_imatrix *imatrix; /* borrowed, or NULL: round to nearest */
    const char *imatrix_path;  /* recorded in quantize.imatrix.file */
    int n_threads;             /* >= 1 */
    void (*progress)(void *ctx, const gt_quantize_progress *p); /* after each tensor, or NULL */
    void *progress_ctx;
} gt_quantize_config;

typedef struct gt_quantize_report {
    uint64_t bytes_in, bytes_out; /* tensor data */
    uint64_t matrix_bytes_in;     /* of the converted matrices */
    size_t n_tensors, n_converted, n_copied, n_fallback, n_requantized, n_no_imatrix;
} gt_quantize_report;

/* Converts in_path to out_path. Warnings (requantizing, fallbacks, keep
 * patterns that matched nothing, matrices without an imatrix entry) go to
 * the log at WARN level. GT_ERR_IO, GT_ERR_FORMAT, GT_ERR_INVALID_ARG,
 * GT_ERR_NOMEM with one sentence; the output is only renamed into place when
 * complete. */
gt_status gt_quantize_file(const gt_quantize_config *cfg, gt_quantize_report *rep);

#endif
