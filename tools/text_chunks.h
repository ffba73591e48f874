/* A text file cut into chunks of ctx tokens with a model's tokenizer, as
 * `gantry perplexity`, `imatrix` and `eval` all read it: the text tokenized
 * once (no BOS), then each chunk is BOS (when the model adds one) followed by
 * the next ctx - 1 (or ctx) text tokens; a partial last chunk is dropped. */
#ifndef GT_TOOLS_TEXT_CHUNKS_H
#define GT_TOOLS_TEXT_CHUNKS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "model/gguf.h"

typedef struct gt_text_chunks {
    int32_t *tok;    /* [n, ctx] */
    long n;          /* chunks */
    int ctx;         /* tokens per chunk */
    size_t n_ids;    /* tokens of the whole text */
    char *text;      /* the file's bytes */
    size_t text_len;
} gt_text_chunks;

/* At most max_chunks chunks (<= 0: all); fewer than one is refused with the
 * numbers. Free with gt_text_chunks_free, also after a failure. */
gt_status gt_text_chunks_load(const gt_gguf *g, const char *path, int ctx, long max_chunks,
                              gt_text_chunks *out);
void gt_text_chunks_free(gt_text_chunks *t);

#endif
