/* Prompt tokenization and streamed output for the verbs; see text.h. */
#include "coordinator/text.h"

#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/log.h"
#include "model/chat.h"
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

gt_status gt_text_model_template(const gt_gguf *g, gt_chat_template *out) {
    gt_status st = gt_chat_template_from_gguf(g, out);
    /* Some conversions drop the template; the architecture still tells
     * the family's turn format. */
    gt_str arch = {0};
    if (st == GT_ERR_NOT_FOUND && gt_gguf_get_str(g, "general.architecture", &arch) == GT_OK &&
        arch.len >= 5 && memcmp(arch.ptr, "gemma", 5) == 0) {
        GT_LOG_INFO(GT_SUB_TOK, "no chat template in the model; using the gemma turn format");
        gt_chat_template_init(out, GT_CHAT_GEMMA);
        return GT_OK;
    }
    return st;
}

/* Formats one user turn (after an optional system turn) with the chat
 * template and restarts the output stream with the format's stop strings. */
static gt_status chat_wrap(gt_text *t, const gt_gguf *g, const gt_text_prompt_opts *o,
                           const char *user, char **out, size_t *len) {
    gt_chat_template tmpl;
    if (o->chat_format) GT_TRY(gt_chat_template_by_name(o->chat_format, &tmpl));
    else GT_TRY(gt_text_model_template(g, &tmpl));
    gt_chat_msg msgs[2];
    size_t n = 0;
    if (o->system) msgs[n++] = (gt_chat_msg){"system", o->system};
    msgs[n++] = (gt_chat_msg){"user", user};
    GT_TRY(gt_chat_apply(&tmpl, msgs, n, true, out, len));
    const char *const *stops = gt_chat_stop_strings(tmpl.format);
    size_t n_stop = 0;
    while (stops && stops[n_stop]) n_stop++;
    gt_detok_stream_opts so = GT_DETOK_STREAM_OPTS_INIT;
    so.strip_leading_space = false;
    so.stop = stops;
    so.n_stop = n_stop;
    gt_detok_stream *stream;
    GT_TRY(gt_detok_stream_create(t->tok, &so, &stream));
    gt_detok_stream_free(t->stream);
    t->stream = stream;
    return GT_OK;
}

gt_status gt_text_prompt(gt_text *t, const gt_gguf *g, const gt_text_prompt_opts *o,
                         int32_t **ids, int *n) {
    if (!t->tok)
        return gt_fail(GT_ERR_UNSUPPORTED, "the model has no usable tokenizer; give the prompt as "
                       "--tokens IDS");
    char *buf = NULL, *chat = NULL;
    size_t len = o->prompt ? strlen(o->prompt) : 0;
    if (!o->prompt) GT_TRY(gt_read_file(o->file, (size_t)1 << 30, &buf, &len));
    const char *text = o->prompt ? o->prompt : buf;
    gt_status st = GT_OK;
    if (o->chat) {
        if (buf) buf[len] = '\0';
        st = chat_wrap(t, g, o, text, &chat, &len);
        text = chat;
    }
    size_t count = 0;
    unsigned flags = GT_TOK_PARSE_SPECIAL | (o->add_bos ? GT_TOK_ADD_SPECIAL : 0);
    if (st == GT_OK) st = gt_tokenize(t->tok, text, len, flags, ids, &count);
    free(buf);
    free(chat);
    if (st != GT_OK) return st;
    if (count > 0x7fffffff) return gt_fail(GT_ERR_RANGE, "prompt of %zu tokens is too long", count);
    *n = (int)count;
    return GT_OK;
}

bool gt_text_print(gt_text *t, int32_t id, FILE *f) {
    if (!t->tok) {
        if (f) fprintf(f, "%d ", id);
        return false;
    }
    gt_str piece = {0};
    bool stopped = false;
    if (gt_detok_stream_push(t->stream, id, &piece, &stopped) == GT_OK && piece.len && f)
        fwrite(piece.ptr, 1, piece.len, f);
    return stopped;
}

void gt_text_flush(gt_text *t, FILE *f) {
    if (!t->tok) return;
    gt_str piece = {0};
    if (gt_detok_stream_finish(t->stream, &piece) == GT_OK && piece.len) fwrite(piece.ptr, 1, piece.len, f);
}

const gt_tokenizer *gt_text_tokenizer(const gt_text *t) { return t->tok; }

bool gt_text_is_eog(const gt_text *t, int32_t id) {
    return t->tok && gt_tokenizer_is_eog(t->tok, id);
}
