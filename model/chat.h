/* Chat formatting: a list of (role, content) messages becomes the prompt text
 * a chat model was trained on.
 *
 * A GGUF file carries the Hugging Face chat template as a Jinja2 string
 * (`tokenizer.chat_template`). Gantry does not run Jinja: it recognises the
 * common template families by distinctive substrings of the template text
 * (the approach of llama.cpp's llm_chat_detect_template) and formats with
 * hand-written C per family. Two things that vary inside a family are read
 * from the template text as data: a literal default system message (ChatML
 * templates of Qwen2/2.5 and SmolLM2 insert one when the conversation has
 * none) and Llama 3.1's "Today Date" (a fixed fallback, or the current date
 * when the template calls strftime_now, as Llama 3.2's does).
 *
 * BOS: the formatter never writes the BOS token. Templates that start with
 * `{{ bos_token }}` (Llama 3, Gemma, Phi-3, Mistral) rely on the tokenizer
 * adding it, as llama.cpp does: tokenize the result with the model's
 * add_bos flag (GT_TOK_ADD_SPECIAL) and with special-token text recognised.
 *
 * Everything here is pure and thread-safe; a gt_chat_template is a plain
 * value (no heap memory) that may be copied and shared read-only. */
#ifndef GT_CHAT_H
#define GT_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/status.h"
#include "model/gguf.h"

typedef enum gt_chat_format {
    GT_CHAT_UNKNOWN = 0,
    GT_CHAT_CHATML,            /* <|im_start|>role\n...<|im_end|>\n (Qwen2/2.5/3, SmolLM2) */
    GT_CHAT_GEMMA,             /* <start_of_turn>user\n...<end_of_turn>\n; assistant is "model" */
    GT_CHAT_LLAMA3,            /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    GT_CHAT_LLAMA31,           /* Llama 3 plus the "Cutting Knowledge Date" system header */
    GT_CHAT_PHI3,              /* <|role|>\n...<|end|>\n */
    GT_CHAT_LLAMA2,            /* [INST] ... [/INST]; system text folded into the turn */
    GT_CHAT_LLAMA2_SYS,        /* [INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] */
    GT_CHAT_LLAMA2_SYS_BOS,    /* as above, "<s>" before each later [INST] */
    GT_CHAT_LLAMA2_SYS_STRIP,  /* as LLAMA2_SYS, contents stripped of outer whitespace */
    GT_CHAT_MISTRAL_V1,        /* " [INST] ... [/INST] ...</s>" */
    GT_CHAT_MISTRAL_V3,        /* "[INST] ...[/INST] ...</s>" */
    GT_CHAT_MISTRAL_V3_TEKKEN, /* "[INST]...[/INST]...</s>" */
    GT_CHAT_MISTRAL_V7,        /* [SYSTEM_PROMPT] ...[/SYSTEM_PROMPT][INST] ...[/INST] */
    GT_CHAT_ZEPHYR,            /* <|role|>\n...<|endoftext|>\n */
    GT_CHAT_VICUNA,            /* USER: ...\nASSISTANT: ...</s>\n */
    GT_CHAT_VICUNA_ORCA,       /* as Vicuna with "SYSTEM: " */
    GT_CHAT_DEEPSEEK,          /* deepseek-coder: ### Instruction:\n...\n### Response:\n */
    GT_CHAT_DEEPSEEK3,         /* <｜User｜>...<｜Assistant｜>...<｜end▁of▁sentence｜> */
    GT_CHAT_FORMAT_COUNT
} gt_chat_format;

#define GT_CHAT_MAX_DEFAULT_SYSTEM 1024 /* bytes, NUL included */

/* A recognised template: its family plus the data read from its text. */
typedef struct gt_chat_template {
    gt_chat_format format;
    /* The literal system message the template inserts when the conversation
     * does not start with one (ChatML only); "" and false when none. */
    bool has_default_system;
    char default_system[GT_CHAT_MAX_DEFAULT_SYSTEM];
    /* LLAMA31: the "Today Date: ..." text. date_today means the template asks
     * for the current local date ("%d %b %Y", e.g. "05 Mar 2025"), computed
     * when gt_chat_apply runs; otherwise date_string is used as is. */
    bool date_today;
    char date_string[32];
} gt_chat_template;

/* One message. Both strings are borrowed and NUL-terminated. */
typedef struct gt_chat_msg {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} gt_chat_msg;

/* The family of a template text (len bytes, need not be NUL-terminated), or
 * GT_CHAT_UNKNOWN. A format name ("chatml", see gt_chat_format_name) is also
 * accepted as the whole text, as llama.cpp does. */
gt_chat_format gt_chat_detect(const char *tmpl, size_t len);

/* Detects the family and reads the data above from a template text.
 * `source` names where it came from ("model.gguf") in error sentences.
 * GT_ERR_UNSUPPORTED when no family matches (the sentence quotes the start of
 * the template and suggests sending raw text), GT_ERR_RANGE when a literal
 * default system message exceeds GT_CHAT_MAX_DEFAULT_SYSTEM. */
gt_status gt_chat_template_parse(const char *tmpl, size_t len, const char *source,
                                 gt_chat_template *out);

/* Reads `tokenizer.chat_template` from a model file and parses it.
 * GT_ERR_NOT_FOUND when the file has no template, GT_ERR_FORMAT when the key
 * is not a string, and the statuses of gt_chat_template_parse. */
gt_status gt_chat_template_from_gguf(const gt_gguf *g, gt_chat_template *out);
/* Same, returning only the family. */
gt_status gt_chat_format_from_gguf(const gt_gguf *g, gt_chat_format *out);

/* A user override by name ("chatml", "gemma", "llama3", ...): the family with
 * no default system message and Llama 3.1's fixed date "26 Jul 2024".
 * GT_ERR_INVALID_ARG (the sentence lists the known names) when unknown. */
gt_status gt_chat_template_by_name(const char *name, gt_chat_template *out);
/* The family of a name, GT_CHAT_UNKNOWN when none. */
gt_chat_format gt_chat_format_by_name(const char *name);
/* A template of family f with no data read from a text (as by_name). */
void gt_chat_template_init(gt_chat_template *t, gt_chat_format f);

/* Short name ("chatml"); "unknown" for GT_CHAT_UNKNOWN or out of range. */
const char *gt_chat_format_name(gt_chat_format f);

/* The strings that end an assistant turn in family f (end-of-turn markers
 * such as "<|im_end|>"), for a detokenizer to stop at. A NULL-terminated
 * static array; empty (first element NULL) for GT_CHAT_UNKNOWN. */
const char *const *gt_chat_stop_strings(gt_chat_format f);

/* Formats n messages. With add_generation_prompt the text ends with the
 * opening of an assistant turn, ready for generation. *out is allocated with
 * malloc and NUL-terminated (free with free()); *len is its length without
 * the NUL (len may be NULL). Roles must be "system", "user" or "assistant":
 * otherwise GT_ERR_INVALID_ARG names the role and the message index. Also
 * GT_ERR_INVALID_ARG for a NULL role or content, an unknown format, and a
 * Gemma system message not followed by a user message (Gemma has no system
 * role: the text is prepended to the next user turn); GT_ERR_NOMEM. *out is
 * NULL on failure. */
gt_status gt_chat_apply(const gt_chat_template *t, const gt_chat_msg *msgs, size_t n,
                        bool add_generation_prompt, char **out, size_t *len);

#endif
