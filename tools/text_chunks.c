/* The text cut into chunks for perplexity, imatrix and eval (text_chunks.h). */
#include "tools/text_chunks.h"

#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "model/tokenizer/tokenizer.h"

gt_status gt_text_chunks_load(const gt_gguf *g, const char *path, int ctx, long max_chunks,
                              gt_text_chunks *out) {
    memset(out, 0, sizeof *out);
    out->ctx = ctx;
    gt_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    gt_status st;
    GT_TRY_GOTO(gt_tokenizer_load(g, &tok), st, done);
    GT_TRY_GOTO(gt_read_file(path, (size_t)1 << 30, &out->text, &out->text_len), st, done);
    GT_TRY_GOTO(gt_tokenize(tok, out->text, out->text_len, 0, &ids, &out->n_ids), st, done);
    int32_t bos = gt_tokenizer_add_bos(tok) ? gt_tokenizer_bos(tok) : GT_TOKEN_NULL;
    int body = bos != GT_TOKEN_NULL ? ctx - 1 : ctx; /* text tokens per chunk */
    long n = (long)(out->n_ids / (size_t)body);
    if (max_chunks > 0 && n > max_chunks) n = max_chunks;
    if (n < 1) {
        st = gt_fail(GT_ERR_RANGE, "%s: %zu tokens is less than one chunk of %d; use a smaller --ctx", path,
                     out->n_ids, body);
        goto done;
    }
    out->tok = malloc((size_t)n * (size_t)ctx * sizeof *out->tok);
    if (!out->tok) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate %ld chunks of %d tokens", n, ctx);
        goto done;
    }
    for (long ci = 0; ci < n; ci++) {
        int32_t *ch = out->tok + (size_t)ci * (size_t)ctx;
        int k = 0;
        if (bos != GT_TOKEN_NULL) ch[k++] = bos;
        memcpy(ch + k, ids + (size_t)ci * (size_t)body, (size_t)body * sizeof *ch);
    }
    out->n = n;
    st = GT_OK;
done:
    free(ids);
    gt_tokenizer_free(tok);
    return st;
}

void gt_text_chunks_free(gt_text_chunks *t) {
    free(t->tok);
    free(t->text);
    memset(t, 0, sizeof *t);
}
