/* Prompt tokenization and streamed output for the verbs; see text.h. */
#include "tools/text.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "model/tokenizer/tokenizer.h"

struct gt_text {
    gt_tokenizer *tok;      /* NULL: ids only */
    gt_detok_stream *stream;
};

gt_status gt_text_open(const gt_gguf *g, gt_text **out) {
    *out = NULL;
    gt_text *t = calloc(1, sizeof *t);
    if (!t) return gt_fail(GT_ERR_NOMEM, "cannot allocate the text adapter");
    if (gt_gguf_find(g, "tokenizer.ggml.model")) {
        gt_status st = gt_tokenizer_load(g, &t->tok);
        if (st != GT_OK) {
            GT_LOG_WARN(GT_SUB_TOK, "%s; printing token ids instead of text", gt_last_error());
            t->tok = NULL;
        } else {
            gt_detok_stream_opts o = GT_DETOK_STREAM_OPTS_INIT;
            o.strip_leading_space = false;
            st = gt_detok_stream_create(t->tok, &o, &t->stream);
            if (st != GT_OK) {
                gt_text_close(t);
                return st;
            }
        }
    }
    *out = t;
    return GT_OK;
}

void gt_text_close(gt_text *t) {
    if (!t) return;
    gt_detok_stream_free(t->stream);
    gt_tokenizer_free(t->tok);
    free(t);
}

static gt_status read_file(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open the prompt file", path);
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) {
            fclose(f);
            return gt_fail(GT_ERR_NOMEM, "%s: cannot hold the prompt file in memory", path);
        }
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap > (1u << 30)) {
            free(b);
            fclose(f);
            return gt_fail(GT_ERR_RANGE, "%s: prompt file is larger than 1 GiB", path);
        }
        cap *= 2;
        b = realloc(b, cap);
    }
    fclose(f);
    *buf = b;
    *len = n;
    return GT_OK;
}

gt_status gt_text_prompt(gt_text *t, const char *prompt, const char *file, bool add_bos,
                         int32_t **ids, int *n) {
    if (!t->tok)
        return gt_fail(GT_ERR_UNSUPPORTED, "the model has no usable tokenizer; give the prompt as "
                       "--tokens IDS");
    char *buf = NULL;
    size_t len = prompt ? strlen(prompt) : 0;
    if (!prompt) GT_TRY(read_file(file, &buf, &len));
    size_t count = 0;
    unsigned flags = GT_TOK_PARSE_SPECIAL | (add_bos ? GT_TOK_ADD_SPECIAL : 0);
    gt_status st = gt_tokenize(t->tok, prompt ? prompt : buf, len, flags, ids, &count);
    free(buf);
    if (st != GT_OK) return st;
    if (count > 0x7fffffff) return gt_fail(GT_ERR_RANGE, "prompt of %zu tokens is too long", count);
    *n = (int)count;
    return GT_OK;
}

void gt_text_print(gt_text *t, int32_t id, FILE *f) {
    if (!t->tok) {
        fprintf(f, "%d ", id);
        return;
    }
    gt_str piece = {0};
    bool stopped = false;
    if (gt_detok_stream_push(t->stream, id, &piece, &stopped) == GT_OK && piece.len)
        fwrite(piece.ptr, 1, piece.len, f);
}

void gt_text_flush(gt_text *t, FILE *f) {
    if (!t->tok) return;
    gt_str piece = {0};
    if (gt_detok_stream_finish(t->stream, &piece) == GT_OK && piece.len) fwrite(piece.ptr, 1, piece.len, f);
}

bool gt_text_is_eog(const gt_text *t, int32_t id) {
    return t->tok && gt_tokenizer_is_eog(t->tok, id);
}
