/* The table of element types: name, block layout and whether Gantry has a
 * codec for it.
 *
 * One static array indexed by the GGUF type id keeps lookups O(1) and makes
 * an id without an entry (a gap in the enum, or anything >= GT_DTYPE_MAX)
 * "unknown" by construction: gt_dtype_get returns NULL and the GGUF reader
 * refuses the tensor. Only the ids in the gt_dtype enum are listed, so that
 * a non-NULL answer always names a layout the rest of the code can size. */
#include "common/dtype.h"

#include <stdio.h>
#include <strings.h>

/* has_codec: the types common/quant.c converts to and from float. */
#define PLAIN(nm, bytes, codec)                                                                    \
    { .name = nm, .block_elems = 1, .block_bytes = bytes, .quantized = false, .has_codec = codec }
#define QUANT(nm, elems, bytes)                                                                    \
    { .name = nm, .block_elems = elems, .block_bytes = bytes, .quantized = true, .has_codec = true }

static const gt_dtype_info g_table[GT_DTYPE_MAX] = {
    [GT_F32] = PLAIN("F32", 4, true),
    [GT_F16] = PLAIN("F16", 2, true),
    [GT_Q4_0] = QUANT("Q4_0", GT_QK4_0, sizeof(gt_block_q4_0)),
    [GT_Q4_1] = QUANT("Q4_1", GT_QK4_1, sizeof(gt_block_q4_1)),
    [GT_Q5_0] = QUANT("Q5_0", GT_QK5_0, sizeof(gt_block_q5_0)),
    [GT_Q5_1] = QUANT("Q5_1", GT_QK5_1, sizeof(gt_block_q5_1)),
    [GT_Q8_0] = QUANT("Q8_0", GT_QK8_0, sizeof(gt_block_q8_0)),
    [GT_Q8_1] = QUANT("Q8_1", GT_QK8_1, sizeof(gt_block_q8_1)),
    [GT_Q2_K] = QUANT("Q2_K", GT_QK_K, sizeof(gt_block_q2_K)),
    [GT_Q3_K] = QUANT("Q3_K", GT_QK_K, sizeof(gt_block_q3_K)),
    [GT_Q4_K] = QUANT("Q4_K", GT_QK_K, sizeof(gt_block_q4_K)),
    [GT_Q5_K] = QUANT("Q5_K", GT_QK_K, sizeof(gt_block_q5_K)),
    [GT_Q6_K] = QUANT("Q6_K", GT_QK_K, sizeof(gt_block_q6_K)),
    [GT_Q8_K] = QUANT("Q8_K", GT_QK_K, sizeof(gt_block_q8_K)),
    [GT_I8] = PLAIN("I8", 1, false),
    [GT_I16] = PLAIN("I16", 2, false),
    [GT_I32] = PLAIN("I32", 4, false),
    [GT_I64] = PLAIN("I64", 8, false),
    [GT_F64] = PLAIN("F64", 8, false),
    [GT_BF16] = PLAIN("BF16", 2, true),
};

const gt_dtype_info *gt_dtype_get(uint32_t type) {
    if (type >= GT_DTYPE_MAX || !g_table[type].name) return NULL;
    return &g_table[type];
}

const char *gt_dtype_name(uint32_t type) {
    const gt_dtype_info *info = gt_dtype_get(type);
    if (info) return info->name;
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "type %u", type);
    return buf;
}

bool gt_dtype_parse(const char *name, gt_dtype *out) {
    if (!name) return false;
    for (uint32_t t = 0; t < GT_DTYPE_MAX; t++) {
        if (g_table[t].name && strcasecmp(g_table[t].name, name) == 0) {
            *out = (gt_dtype)t;
            return true;
        }
    }
    return false;
}

bool gt_dtype_row_bytes(gt_dtype type, int64_t n, size_t *out) {
    const gt_dtype_info *info = gt_dtype_get((uint32_t)type);
    if (!info || n < 0 || n % info->block_elems != 0) return false;
    uint64_t blocks = (uint64_t)(n / info->block_elems), bytes;
    if (__builtin_mul_overflow(blocks, (uint64_t)info->block_bytes, &bytes) || bytes > SIZE_MAX)
        return false;
    *out = (size_t)bytes;
    return true;
}
