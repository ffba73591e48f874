/* Text in and out on the coordinator, on rank 0 only: the prompt is
 * tokenized once (with the chat template when asked) and generated tokens
 * are detokenized as a stream. Uses the model's tokenizer when its GGUF
 * carries one, plain token ids otherwise (synthetic models written with
 * --vocab N, or a tokenizer type Gantry lacks; a warning says so). */
#ifndef GT_TEXT_H
#define GT_TEXT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/status.h"
#include "model/chat.h"
#include "model/gguf.h"
#include "model/tokenizer/tokenizer.h"

typedef struct gt_text gt_text;

gt_status gt_text_open(const gt_gguf *g, gt_text **out);
void gt_text_close(gt_text *t); /* accepts NULL */
typedef struct gt_text_prompt_opts {
    const char *prompt;      /* the text, or NULL to read `file` */
    const char *file;
    bool add_bos;            /* add BOS when the model asks for it */
    bool chat;               /* wrap the text as a user turn in the model's chat format */
    const char *system;      /* optional system message (chat only) */
    const char *chat_format; /* override the format found in the GGUF ("chatml", ...) */
} gt_text_prompt_opts;

/* Tokenizes the prompt (control-token text becomes control tokens). With
 * chat, the prompt is formatted with the model's template and generation
 * later stops at the format's end-of-turn strings. *ids is freed with
 * free(). GT_ERR_UNSUPPORTED when the model has no usable tokenizer or the
 * chat template is not recognised. */
gt_status gt_text_prompt(gt_text *t, const gt_gguf *g, const gt_text_prompt_opts *o,
                         int32_t **ids, int *n);
/* Prints a generated token: its text (whole UTF-8 characters only), or its
 * id; f may be NULL to only follow the stream (ranks that do not print).
 * Returns true when a stop string has been completed. */
bool gt_text_print(gt_text *t, int32_t id, FILE *f);
/* Prints whatever the streaming detokenizer still holds. */
void gt_text_flush(gt_text *t, FILE *f);
bool gt_text_is_eog(const gt_text *t, int32_t id);
/* The model's tokenizer (borrowed); NULL when it has none. */
const gt_tokenizer *gt_text_tokenizer(const gt_text *t);
/* The model's chat template: the GGUF's, or for a Gemma model whose file
 * carries none, the Gemma turn format. */
gt_status gt_text_model_template(const gt_gguf *g, gt_chat_template *out);

#endif
