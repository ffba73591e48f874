/* libFuzzer target for the importance-matrix reader (model/imatrix.c) and
 * the --keep PATTERN=TYPE parser of `gantry quantize`.
 *
 * The input is read as an imatrix GGUF with gt_imatrix_load_memory; when it
 * is accepted, every entry's weights are looked up under a few shapes (the
 * lookups must never read outside what was loaded). A refusal must come
 * with a sentence. The input, cut at its first NUL or at 200 bytes, is also
 * given to gt_quant_keep_parse: accepted or refused with a sentence, never
 * a crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/quantize.h"

static volatile float g_sink;

static void walk(const gt_imatrix *im, const uint8_t *data, size_t size) {
    /* The names are the GGUF's tensor names less ".in_sum2"; open the buffer
     * again to enumerate them. */
    gt_gguf *g = NULL;
    if (gt_gguf_open_memory(data, size, "fuzz.imatrix.gguf", &g) != GT_OK) abort();
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        size_t n = strlen(t->name);
        if (n < 8 || strcmp(t->name + n - 8, ".in_sum2") != 0 || n - 8 >= 512) continue;
        char name[512];
        memcpy(name, t->name, n - 8);
        name[n - 8] = '\0';
        for (int m = -1; m <= 2; m++) {
            const float *w = gt_imatrix_weights(im, name, m, t->ne[0], (int)t->ne[1]);
            if (w) g_sink += w[0] + w[t->ne[0] - 1];
            w = gt_imatrix_weights(im, name, m, t->ne[0] + 1, (int)t->ne[1]);
            if (w) abort(); /* a wrong shape finds nothing */
        }
    }
    g_sink += (float)gt_imatrix_n_entries(im) + (float)gt_imatrix_chunk_count(im) +
              (float)strlen(gt_imatrix_dataset(im));
    gt_gguf_close(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gt_imatrix *im = NULL;
    gt_status st = gt_imatrix_load_memory(data, size, "fuzz.imatrix.gguf", &im);
    if (st != GT_OK) {
        if (im || !gt_last_error()[0]) abort(); /* a refusal says why */
    } else {
        walk(im, data, size);
        gt_imatrix_free(im);
    }
    char arg[201];
    size_t n = size < 200 ? size : 200;
    memcpy(arg, data, n);
    arg[n] = '\0';
    gt_quant_keep keep = {0};
    st = gt_quant_keep_parse(arg, &keep);
    if (st == GT_OK) {
        if (!keep.pattern || strlen(keep.pattern) == 0) abort();
        free((char *)keep.pattern);
    } else if (!gt_last_error()[0]) {
        abort();
    }
    return 0;
}
