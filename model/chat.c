/* Chat template recognition: which family a Jinja chat template belongs to,
 * and the data a formatter needs from its text.
 *
 * Design choice: no Jinja interpreter. Each family is recognised by marker
 * substrings tested in a fixed order (the order of llama.cpp's
 * llm_chat_detect_template, so that a template of a family we do not format
 * — Phi-4, SmolVLM, Command-R, ChatGLM, ... — is refused rather than taken
 * for a neighbour that shares a marker). The only values read from the text
 * are literals: a ChatML default system message and Llama 3.1's fallback
 * date. The formatters themselves are in chat_format.c. */
#include "model/chat.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

static const char *const k_names[GT_CHAT_FORMAT_COUNT] = {
    [GT_CHAT_UNKNOWN] = "unknown",
    [GT_CHAT_CHATML] = "chatml",
    [GT_CHAT_GEMMA] = "gemma",
    [GT_CHAT_LLAMA3] = "llama3",
    [GT_CHAT_LLAMA31] = "llama3.1",
    [GT_CHAT_PHI3] = "phi3",
    [GT_CHAT_LLAMA2] = "llama2",
    [GT_CHAT_LLAMA2_SYS] = "llama2-sys",
    [GT_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [GT_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [GT_CHAT_MISTRAL_V1] = "mistral-v1",
    [GT_CHAT_MISTRAL_V3] = "mistral-v3",
    [GT_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [GT_CHAT_MISTRAL_V7] = "mistral-v7",
    [GT_CHAT_ZEPHYR] = "zephyr",
    [GT_CHAT_VICUNA] = "vicuna",
    [GT_CHAT_VICUNA_ORCA] = "vicuna-orca",
    [GT_CHAT_DEEPSEEK] = "deepseek",
    [GT_CHAT_DEEPSEEK3] = "deepseek3",
};

/* End-of-turn markers per family; each list ends with NULL. */
static const char *const k_stop_none[] = {NULL};
static const char *const k_stop_chatml[] = {"<|im_end|>", NULL};
static const char *const k_stop_gemma[] = {"<end_of_turn>", NULL};
static const char *const k_stop_llama3[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", NULL};
static const char *const k_stop_phi3[] = {"<|end|>", "<|endoftext|>", NULL};
static const char *const k_stop_eos[] = {"</s>", NULL};
static const char *const k_stop_zephyr[] = {"<|endoftext|>", "</s>", NULL};
static const char *const k_stop_deepseek[] = {"<|EOT|>", NULL};
static const char *const k_stop_deepseek3[] = {"<\xef\xbd\x9c"
                                               "end\xe2\x96\x81of\xe2\x96\x81sentence"
                                               "\xef\xbd\x9c>",
                                               NULL};

static const char *const *const k_stops[GT_CHAT_FORMAT_COUNT] = {
    [GT_CHAT_UNKNOWN] = k_stop_none,
    [GT_CHAT_CHATML] = k_stop_chatml,
    [GT_CHAT_GEMMA] = k_stop_gemma,
    [GT_CHAT_LLAMA3] = k_stop_llama3,
    [GT_CHAT_LLAMA31] = k_stop_llama3,
    [GT_CHAT_PHI3] = k_stop_phi3,
    [GT_CHAT_LLAMA2] = k_stop_eos,
    [GT_CHAT_LLAMA2_SYS] = k_stop_eos,
    [GT_CHAT_LLAMA2_SYS_BOS] = k_stop_eos,
    [GT_CHAT_LLAMA2_SYS_STRIP] = k_stop_eos,
    [GT_CHAT_MISTRAL_V1] = k_stop_eos,
    [GT_CHAT_MISTRAL_V3] = k_stop_eos,
    [GT_CHAT_MISTRAL_V3_TEKKEN] = k_stop_eos,
    [GT_CHAT_MISTRAL_V7] = k_stop_eos,
    [GT_CHAT_ZEPHYR] = k_stop_zephyr,
    [GT_CHAT_VICUNA] = k_stop_eos,
    [GT_CHAT_VICUNA_ORCA] = k_stop_eos,
    [GT_CHAT_DEEPSEEK] = k_stop_deepseek,
    [GT_CHAT_DEEPSEEK3] = k_stop_deepseek3,
};

#define GT_CHAT_DEFAULT_DATE "26 Jul 2024" /* the fallback in Meta's Llama 3.1/3.2 templates */

const char *gt_chat_format_name(gt_chat_format f) {
    if ((unsigned)f >= GT_CHAT_FORMAT_COUNT) return k_names[GT_CHAT_UNKNOWN];
    return k_names[f];
}

const char *const *gt_chat_stop_strings(gt_chat_format f) {
    if ((unsigned)f >= GT_CHAT_FORMAT_COUNT) return k_stop_none;
    return k_stops[f];
}

gt_chat_format gt_chat_format_by_name(const char *name) {
    if (!name) return GT_CHAT_UNKNOWN;
    for (int f = GT_CHAT_UNKNOWN + 1; f < GT_CHAT_FORMAT_COUNT; f++)
        if (strcmp(name, k_names[f]) == 0) return (gt_chat_format)f;
    return GT_CHAT_UNKNOWN;
}

void gt_chat_template_init(gt_chat_template *t, gt_chat_format f) {
    memset(t, 0, sizeof *t);
    t->format = f;
    snprintf(t->date_string, sizeof t->date_string, "%s", GT_CHAT_DEFAULT_DATE);
}

gt_status gt_chat_template_by_name(const char *name, gt_chat_template *out) {
    gt_chat_format f = gt_chat_format_by_name(name);
    if (f == GT_CHAT_UNKNOWN) {
        char list[512];
        size_t used = 0;
        list[0] = '\0';
        for (int i = GT_CHAT_UNKNOWN + 1; i < GT_CHAT_FORMAT_COUNT; i++) {
            int w =
                snprintf(list + used, sizeof list - used, "%s%s", i > 1 ? ", " : "", k_names[i]);
            if (w < 0 || (size_t)w >= sizeof list - used) break;
            used += (size_t)w;
        }
        return gt_fail(GT_ERR_INVALID_ARG, "chat format '%s' is not known; known formats: %s",
                       name ? name : "(null)", list);
    }
    gt_chat_template_init(out, f);
    return GT_OK;
}

/* ---- substring tests over a length-counted text ---- */

typedef struct text {
    const char *p;
    size_t n;
} text;

static const char *find_from(text t, size_t from, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0 || from > t.n || t.n - from < m) return NULL;
    return memmem(t.p + from, t.n - from, needle, m);
}
static bool has(text t, const char *needle) { return find_from(t, 0, needle) != NULL; }
static bool starts(text t, const char *prefix) {
    size_t m = strlen(prefix);
    return t.n >= m && memcmp(t.p, prefix, m) == 0;
}

static gt_chat_format detect_inst(text t) {
    if (has(t, "[SYSTEM_PROMPT]")) return GT_CHAT_MISTRAL_V7;
    /* Mistral's official v1 ("' [INST] ' + system_message") and v3 / v3-tekken
     * ([AVAILABLE_TOOLS]) templates. */
    if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
        if (has(t, " [INST]")) return GT_CHAT_MISTRAL_V1;
        if (has(t, "\"[INST]\"")) return GT_CHAT_MISTRAL_V3_TEKKEN;
        return GT_CHAT_MISTRAL_V3;
    }
    if (has(t, "content.strip()")) return GT_CHAT_LLAMA2_SYS_STRIP;
    if (has(t, "bos_token + '[INST]")) return GT_CHAT_LLAMA2_SYS_BOS;
    if (has(t, "<<SYS>>")) return GT_CHAT_LLAMA2_SYS;
    return GT_CHAT_LLAMA2;
}

gt_chat_format gt_chat_detect(const char *tmpl, size_t len) {
    if (!tmpl) return GT_CHAT_UNKNOWN;
    text t = {tmpl, len};
    for (int f = GT_CHAT_UNKNOWN + 1; f < GT_CHAT_FORMAT_COUNT; f++)
        if (strlen(k_names[f]) == len && memcmp(k_names[f], tmpl, len) == 0)
            return (gt_chat_format)f;

    if (has(t, "<|im_start|>")) {
        /* Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) share the marker
         * but are not ChatML; we do not format them. */
        if (has(t, "<|im_sep|>") || has(t, "<end_of_utterance>")) return GT_CHAT_UNKNOWN;
        return GT_CHAT_CHATML;
    }
    if (starts(t, "mistral") || has(t, "[INST]")) return detect_inst(t);
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return GT_CHAT_PHI3;
    if (has(t, "[gMASK]<sop>")) return GT_CHAT_UNKNOWN; /* ChatGLM 4 */
    if (has(t, "<|assistant|>") && has(t, "<|user|>"))
        return GT_CHAT_UNKNOWN; /* Falcon 3, GLM-Edge */
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return GT_CHAT_ZEPHYR;
    if (has(t, "bos_token + message['role']")) return GT_CHAT_UNKNOWN; /* Monarch */
    if (has(t, "<start_of_turn>")) return GT_CHAT_GEMMA;
    if (has(t, "'\\n\\nAssistant: ' + eos_token")) return GT_CHAT_UNKNOWN; /* Orion */
    if (has(t, "GPT4 Correct ")) return GT_CHAT_UNKNOWN;                   /* OpenChat */
    if (has(t, "USER: ") && has(t, "ASSISTANT: "))
        return has(t, "SYSTEM: ") ? GT_CHAT_VICUNA_ORCA : GT_CHAT_VICUNA;
    if (has(t, "### Instruction:") && has(t, "<|EOT|>")) return GT_CHAT_DEEPSEEK;
    if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>")) return GT_CHAT_UNKNOWN;
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>"))
        return has(t, "Cutting Knowledge Date") ? GT_CHAT_LLAMA31 : GT_CHAT_LLAMA3;
    /* <｜Assistant｜>, <｜User｜>, <｜end▁of▁sentence｜> (fullwidth bars, U+2581). */
    if (has(t, "<\xef\xbd\x9c"
               "Assistant\xef\xbd\x9c>") &&
        has(t, "<\xef\xbd\x9c"
               "User\xef\xbd\x9c>") &&
        has(t, "<\xef\xbd\x9c"
               "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"))
        return GT_CHAT_DEEPSEEK3;
    return GT_CHAT_UNKNOWN;
}

/* ---- literals read from the template ---- */

/* Reads a Jinja string-literal body starting at p (end e) up to the marker
 * `stop`, unescaping \n \t \r \\ \' \". Returns false when the span holds
 * template syntax (an unescaped quote or brace), i.e. is not one literal.
 * On success writes the text (NUL-terminated, may be truncated) and its full
 * unescaped length. */
static bool read_literal(const char *p, const char *e, const char *stop, char *dst, size_t cap,
                         size_t *full_len) {
    size_t m = strlen(stop), n = 0;
    while (p < e) {
        if ((size_t)(e - p) >= m && memcmp(p, stop, m) == 0) {
            if (cap) dst[n < cap ? n : cap - 1] = '\0';
            *full_len = n;
            return true;
        }
        char c = *p++;
        if (c == '\'' || c == '"' || c == '{' || c == '}') return false;
        if (c == '\\') {
            if (p >= e) return false;
            char x = *p++;
            switch (x) {
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case '\\':
            case '\'':
            case '"':
                c = x;
                break;
            default:
                if (n + 1 < cap) dst[n] = '\\';
                n++;
                c = x;
                break;
            }
        }
        if (n + 1 < cap) dst[n] = c;
        n++;
    }
    return false;
}

/* ChatML: the first `<|im_start|>system` + newline (a real one or the
 * two-character escape) + literal text + `<|im_end|>`. Templates that build
 * the system turn from messages[0] put a quote right after the newline and
 * are skipped; the literal one is the default (Qwen2.5's non-tool branch,
 * SmolLM2's loop.first branch). */
static gt_status read_default_system(text t, const char *source, gt_chat_template *out) {
    static const char head[] = "<|im_start|>system";
    size_t from = 0;
    const char *hit;
    while ((hit = find_from(t, from, head)) != NULL) {
        const char *p = hit + sizeof head - 1, *e = t.p + t.n;
        from = (size_t)(p - t.p);
        if (p < e && *p == '\n') {
            p += 1;
        } else if (e - p >= 2 && p[0] == '\\' && p[1] == 'n') {
            p += 2;
        } else {
            continue;
        }
        size_t full = 0;
        if (!read_literal(p, e, "<|im_end|>", out->default_system, sizeof out->default_system,
                          &full))
            continue;
        if (full == 0) continue;
        if (full >= sizeof out->default_system) {
            return gt_fail(GT_ERR_RANGE,
                           "%s: the chat template's default system message is %zu bytes, over the "
                           "%d-byte limit",
                           source, full, GT_CHAT_MAX_DEFAULT_SYSTEM - 1);
        }
        out->has_default_system = true;
        return GT_OK;
    }
    out->default_system[0] = '\0';
    return GT_OK;
}

/* Llama 3.1: `set date_string = "26 Jul 2024"` (either quote), and whether
 * the template prefers strftime_now (the current date) when it exists. */
static void read_date(text t, gt_chat_template *out) {
    static const char key[] = "set date_string = ";
    out->date_today = has(t, "strftime_now");
    const char *hit = find_from(t, 0, key);
    if (!hit) return;
    const char *p = hit + sizeof key - 1, *e = t.p + t.n;
    if (p >= e || (*p != '"' && *p != '\'')) return;
    char q = *p++;
    const char *end = memchr(p, q, (size_t)(e - p));
    if (!end || (size_t)(end - p) >= sizeof out->date_string) return;
    memcpy(out->date_string, p, (size_t)(end - p));
    out->date_string[end - p] = '\0';
}

gt_status gt_chat_template_parse(const char *tmpl, size_t len, const char *source,
                                 gt_chat_template *out) {
    if (!source) source = "chat template";
    gt_chat_format f = gt_chat_detect(tmpl, len);
    if (f == GT_CHAT_UNKNOWN) {
        char head[64];
        size_t n = 0;
        for (size_t i = 0; tmpl && i < len && n < 60; i++) {
            unsigned char c = (unsigned char)tmpl[i];
            head[n++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
        }
        head[n] = '\0';
        return gt_fail(
            GT_ERR_UNSUPPORTED,
            "%s: chat template not recognised (starts '%s%s'); send raw text instead, or "
            "name a chat format",
            source, head, len > n ? "..." : "");
    }
    gt_chat_template_init(out, f);
    text t = {tmpl, len};
    if (f == GT_CHAT_CHATML) GT_TRY(read_default_system(t, source, out));
    if (f == GT_CHAT_LLAMA31) read_date(t, out);
    GT_LOG_DEBUG(GT_SUB_TOK, "%s: chat template recognised as %s%s", source, gt_chat_format_name(f),
                 out->has_default_system ? " with a default system message" : "");
    return GT_OK;
}

gt_status gt_chat_template_from_gguf(const gt_gguf *g, gt_chat_template *out) {
    static const char key[] = "tokenizer.chat_template";
    if (!gt_gguf_find(g, key))
        return gt_fail(GT_ERR_NOT_FOUND, "%s: no chat template (%s); send raw text instead",
                       gt_gguf_name(g), key);
    gt_str s;
    GT_TRY(gt_gguf_get_str(g, key, &s));
    return gt_chat_template_parse(s.ptr, (size_t)s.len, gt_gguf_name(g), out);
}

gt_status gt_chat_format_from_gguf(const gt_gguf *g, gt_chat_format *out) {
    gt_chat_template t;
    GT_TRY(gt_chat_template_from_gguf(g, &t));
    *out = t.format;
    return GT_OK;
}
