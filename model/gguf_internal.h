/* Private to model/gguf_*.c: the reader's handle and the hash shared by the
 * reader's indexes and the writer's name check.
 *
 * Lookups go through open-addressing tables of indexes (slot value i+1, 0 for
 * empty) sized to a power of two at least twice the entry count, so that
 * gt_gguf_find and gt_gguf_find_tensor cost one hash and a probe or two even
 * for files with thousands of tensors. */
#ifndef GT_GGUF_INTERNAL_H
#define GT_GGUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "model/gguf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader and writer copy little-endian values as they are: little-endian hosts only"
#endif

/* Limits on what a file may declare, checked before anything is allocated. */
#define GT__GGUF_MAX_KEY_BYTES  (1ull << 20)   /* a metadata key */
#define GT__GGUF_MAX_STR_BYTES  (256ull << 20) /* a string value or array element */
#define GT__GGUF_MAX_NAME_BYTES (64ull << 10)  /* a tensor name */
#define GT__GGUF_MAX_DEPTH      8              /* arrays nested in arrays */
#define GT__GGUF_MAX_DIM        (1ll << 40)    /* one tensor dimension */

struct gt_gguf {
    char *name;          /* owned copy of the path or buffer name, for sentences */
    const uint8_t *base; /* the mapping or the caller's buffer */
    size_t len;
    int mapped; /* base came from mmap and is unmapped on close */
    uint32_t version;
    size_t alignment;
    size_t data_offset;

    gt_gguf_kv *kvs; /* [n_kv], values own their strs/items arrays */
    size_t n_kv;
    gt_tensor_info *tensors; /* [n_tensors], names owned */
    size_t n_tensors;

    uint32_t *kv_slots; /* [kv_cap] open addressing, index + 1 */
    size_t kv_cap;
    uint32_t *t_slots; /* [t_cap] */
    size_t t_cap;
};

/* FNV-1a over the bytes; good enough for key and tensor names. */
static inline uint64_t gt__gguf_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The smallest power of two >= 2 * n and >= 16. */
static inline size_t gt__gguf_slots_for(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

/* Frees the arrays a parsed value owns (not the value itself). */
void gt__gguf_value_free(gt_gguf_value *v);

#endif
