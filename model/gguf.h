/* GGUF v3 model files: a reader over mmap and a writer.
 *
 * The reader maps the file read-only, validates every length, count, offset
 * and size against the file and fixed limits before allocating, and then
 * hands out borrowed views into the mapping: strings and numeric arrays are
 * not copied. Tensor data stays in the page cache until a rank touches the
 * part it owns. A malformed file is refused with one sentence (gt_last_error)
 * naming the file and the defect.
 *
 * The writer collects metadata and tensors in memory and writes a complete,
 * aligned v3 file in one pass. */
#ifndef GT_GGUF_H
#define GT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/status.h"

#define GT_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GT_GGUF_DEFAULT_ALIGNMENT 32
#define GT_GGUF_MAX_DIMS 4

typedef enum gt_gguf_type {
    GT_GGUF_UINT8 = 0,
    GT_GGUF_INT8 = 1,
    GT_GGUF_UINT16 = 2,
    GT_GGUF_INT16 = 3,
    GT_GGUF_UINT32 = 4,
    GT_GGUF_INT32 = 5,
    GT_GGUF_FLOAT32 = 6,
    GT_GGUF_BOOL = 7,
    GT_GGUF_STRING = 8,
    GT_GGUF_ARRAY = 9,
    GT_GGUF_UINT64 = 10,
    GT_GGUF_INT64 = 11,
    GT_GGUF_FLOAT64 = 12,
    GT_GGUF_TYPE_COUNT
} gt_gguf_type;

/* A length-counted string; not NUL-terminated when borrowed from a file. */
typedef struct gt_str {
    const char *ptr;
    uint64_t len;
} gt_str;

typedef struct gt_gguf_value gt_gguf_value;
struct gt_gguf_value {
    gt_gguf_type type;
    union {
        uint64_t u64; /* every unsigned integer type and bool */
        int64_t i64;  /* every signed integer type */
        double f64;   /* FLOAT32 and FLOAT64 */
    } num;
    gt_str str; /* STRING: borrowed from the mapping */
    struct {
        gt_gguf_type type;    /* element type */
        uint64_t n;           /* element count */
        const void *data;     /* numeric elements: borrowed, little-endian, unaligned */
        gt_str *strs;         /* STRING elements: owned by the gt_gguf */
        gt_gguf_value *items; /* ARRAY elements (nested arrays): owned */
    } arr;
};

typedef struct gt_gguf_kv {
    gt_str key;
    gt_gguf_value value;
} gt_gguf_kv;

typedef struct gt_tensor_info {
    const char *name;  /* NUL-terminated copy, owned by the gt_gguf */
    gt_dtype type;
    int n_dims;
    int64_t ne[GT_GGUF_MAX_DIMS]; /* ne[0] varies fastest (row length); unused dims are 1 */
    uint64_t offset;   /* from the start of the data section */
    size_t nbytes;
    const void *data;  /* borrowed: inside the mapping */
} gt_tensor_info;

typedef struct gt_gguf gt_gguf;

/* Opens and validates a GGUF file. GT_ERR_IO, GT_ERR_FORMAT, GT_ERR_UNSUPPORTED
 * (a tensor type whose layout is unknown), GT_ERR_NOMEM. *out is NULL on
 * failure. The handle is immutable afterwards and may be read from any
 * thread. */
gt_status gt_gguf_open(const char *path, gt_gguf **out);
/* Same over a caller-owned buffer that must outlive the handle (fuzzing,
 * tests). `name` is used in error sentences. */
gt_status gt_gguf_open_memory(const void *buf, size_t len, const char *name, gt_gguf **out);
void gt_gguf_close(gt_gguf *g); /* accepts NULL */

const char *gt_gguf_name(const gt_gguf *g);
uint32_t gt_gguf_version(const gt_gguf *g);
size_t gt_gguf_alignment(const gt_gguf *g);
size_t gt_gguf_file_bytes(const gt_gguf *g);
/* Start of the data section; a file without tensors may end before it. */
size_t gt_gguf_data_offset(const gt_gguf *g);

size_t gt_gguf_n_kv(const gt_gguf *g);
const gt_gguf_kv *gt_gguf_kv_at(const gt_gguf *g, size_t i);
/* NULL when absent. */
const gt_gguf_value *gt_gguf_find(const gt_gguf *g, const char *key);

/* Typed getters. GT_ERR_NOT_FOUND when absent (with a sentence naming the key
 * and file), GT_ERR_FORMAT when the stored type does not convert (integers
 * convert between widths when the value fits; floats accept any number). */
gt_status gt_gguf_get_u32(const gt_gguf *g, const char *key, uint32_t *out);
gt_status gt_gguf_get_u64(const gt_gguf *g, const char *key, uint64_t *out);
gt_status gt_gguf_get_i64(const gt_gguf *g, const char *key, int64_t *out);
gt_status gt_gguf_get_f32(const gt_gguf *g, const char *key, float *out);
gt_status gt_gguf_get_bool(const gt_gguf *g, const char *key, bool *out);
gt_status gt_gguf_get_str(const gt_gguf *g, const char *key, gt_str *out);
/* Getters with a default for optional keys; a present key of the wrong type
 * still fails. */
gt_status gt_gguf_get_u32_or(const gt_gguf *g, const char *key, uint32_t def, uint32_t *out);
gt_status gt_gguf_get_f32_or(const gt_gguf *g, const char *key, float def, float *out);
gt_status gt_gguf_get_bool_or(const gt_gguf *g, const char *key, bool def, bool *out);
/* Array element accessors (element i of a numeric array as double / int64). */
double gt_gguf_arr_f64(const gt_gguf_value *v, uint64_t i);
int64_t gt_gguf_arr_i64(const gt_gguf_value *v, uint64_t i);
size_t gt_gguf_type_size(gt_gguf_type t); /* 0 for STRING/ARRAY/unknown */
const char *gt_gguf_type_name(gt_gguf_type t);

size_t gt_gguf_n_tensors(const gt_gguf *g);
const gt_tensor_info *gt_gguf_tensor_at(const gt_gguf *g, size_t i);
const gt_tensor_info *gt_gguf_find_tensor(const gt_gguf *g, const char *name);

/* ---- writer ---- */
typedef struct gt_gguf_writer gt_gguf_writer;

gt_status gt_gguf_writer_create(gt_gguf_writer **out);
void gt_gguf_writer_destroy(gt_gguf_writer *w); /* accepts NULL */
/* Setting a key twice replaces the value. Strings and arrays are copied. */
gt_status gt_gguf_writer_set_u32(gt_gguf_writer *w, const char *key, uint32_t v);
gt_status gt_gguf_writer_set_i32(gt_gguf_writer *w, const char *key, int32_t v);
gt_status gt_gguf_writer_set_u64(gt_gguf_writer *w, const char *key, uint64_t v);
gt_status gt_gguf_writer_set_f32(gt_gguf_writer *w, const char *key, float v);
gt_status gt_gguf_writer_set_bool(gt_gguf_writer *w, const char *key, bool v);
gt_status gt_gguf_writer_set_str(gt_gguf_writer *w, const char *key, const char *v);
/* A numeric array of n elements of `type` (host little-endian layout). */
gt_status gt_gguf_writer_set_arr(gt_gguf_writer *w, const char *key, gt_gguf_type type,
                                 const void *data, uint64_t n);
gt_status gt_gguf_writer_set_arr_str(gt_gguf_writer *w, const char *key, const gt_str *strs,
                                     uint64_t n);
/* Copies one key/value (any type, nested arrays included) from a reader. */
gt_status gt_gguf_writer_copy_kv(gt_gguf_writer *w, const gt_gguf_kv *kv);
/* Adds a tensor. The writer takes ownership of `data` (allocated with
 * gt_alloc) when `take` is true, else copies it; a taken buffer is the
 * writer's even when the call fails. nbytes must equal the size implied by
 * type and ne. GT_ERR_INVALID_ARG (bad shape, size, type or a name added
 * twice), GT_ERR_NOMEM. */
gt_status gt_gguf_writer_add_tensor(gt_gguf_writer *w, const char *name, gt_dtype type, int n_dims,
                                    const int64_t *ne, void *data, size_t nbytes, bool take);
/* Writes the file (v3, general.alignment honoured if set, else 32). */
gt_status gt_gguf_writer_write(gt_gguf_writer *w, const char *path);

/* Streaming: a tensor declared by name, type and shape (nbytes checked as in
 * add_tensor) whose bytes come from the fill callback of
 * gt_gguf_writer_write_stream, called once per deferred tensor in file order
 * with a writer-owned buffer of nbytes (reused: memory stays about the
 * largest tensor). A failing fill aborts the write (the partial file is
 * removed) and its status is returned. */
typedef gt_status (*gt_gguf_fill_fn)(void *ctx, size_t index, void *buf, size_t nbytes);
gt_status gt_gguf_writer_add_tensor_deferred(gt_gguf_writer *w, const char *name, gt_dtype type,
                                             int n_dims, const int64_t *ne, size_t nbytes);
gt_status gt_gguf_writer_write_stream(gt_gguf_writer *w, const char *path, gt_gguf_fill_fn fill,
                                      void *ctx);

#endif
