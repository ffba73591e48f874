/* Chat formatters: one hand-written function per template family.
 *
 * Design choice: each formatter reproduces what the family's published Jinja
 * template renders for plain string contents (and, where llama.cpp's
 * llama_chat_apply_template deviates to keep a system message that the
 * template would refuse, what llama.cpp renders), appending to one growing
 * buffer. Where the templates trim contents (Llama 3, Gemma, Mistral v3) the
 * formatter trims the same ASCII whitespace that Python's str.strip() removes
 * for ASCII text. No BOS is written: the tokenizer adds it (see chat.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "model/chat.h"

/* ---- a growing NUL-terminated buffer ---- */

typedef struct sb {
    char *p;
    size_t n, cap;
    bool oom;
} sb;

static void sb_put(sb *b, const char *s, size_t len) {
    if (b->oom || len == 0) return;
    size_t need;
    if (!gt_size_add(b->n, len + 1, &need)) {
        b->oom = true;
        return;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < need) {
            if (!gt_size_mul(cap, 2, &cap)) {
                b->oom = true;
                return;
            }
        }
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}
static void sb_puts(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
/* Appends s without leading and trailing whitespace (Jinja's trim, Python's strip). */
static void sb_put_trim(sb *b, const char *s) {
    size_t len = strlen(s), i = 0;
    while (i < len && is_space(s[i])) i++;
    while (len > i && is_space(s[len - 1])) len--;
    sb_put(b, s + i, len - i);
}
static void sb_put_maybe_trim(sb *b, const char *s, bool trim) {
    if (trim)
        sb_put_trim(b, s);
    else
        sb_puts(b, s);
}

/* ---- roles ---- */

typedef enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role;

static role role_of(const gt_chat_msg *m) {
    if (strcmp(m->role, "system") == 0) return ROLE_SYSTEM;
    if (strcmp(m->role, "user") == 0) return ROLE_USER;
    return ROLE_ASSISTANT;
}

static gt_status check_messages(const gt_chat_msg *msgs, size_t n) {
    if (n && !msgs)
        return gt_fail(GT_ERR_INVALID_ARG, "chat: %zu messages given as a NULL array", n);
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r) return gt_fail(GT_ERR_INVALID_ARG, "chat message %zu has no role", i);
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0) {
            char shown[48];
            snprintf(shown, sizeof shown, "%s", r);
            return gt_fail(GT_ERR_INVALID_ARG,
                           "chat message %zu has role '%s'%s; roles must be system, user or "
                           "assistant",
                           i, shown, strlen(r) >= sizeof shown ? "..." : "");
        }
        if (!msgs[i].content)
            return gt_fail(GT_ERR_INVALID_ARG, "chat message %zu has no content", i);
    }
    return GT_OK;
}

/* ---- families ---- */

static void fmt_chatml(sb *b, const gt_chat_template *t, const gt_chat_msg *m, size_t n, bool gen) {
    if (t->has_default_system && (n == 0 || role_of(&m[0]) != ROLE_SYSTEM)) {
        sb_puts(b, "<|im_start|>system\n");
        sb_puts(b, t->default_system);
        sb_puts(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|im_start|>");
        sb_puts(b, m[i].role);
        sb_puts(b, "\n");
        sb_puts(b, m[i].content);
        sb_puts(b, "<|im_end|>\n");
    }
    if (gen) sb_puts(b, "<|im_start|>assistant\n");
}

/* Gemma has no system role: Gemma 3's template writes the system text and
 * "\n\n" at the start of the first user turn (untrimmed); the turn contents
 * are trimmed. A run of system messages all go before the next user turn. */
static gt_status fmt_gemma(sb *b, const gt_chat_msg *m, size_t n, bool gen) {
    size_t sys_from = SIZE_MAX; /* first system message not yet written */
    for (size_t i = 0; i < n; i++) {
        role r = role_of(&m[i]);
        if (r == ROLE_SYSTEM) {
            if (sys_from == SIZE_MAX) sys_from = i;
            continue;
        }
        if (sys_from != SIZE_MAX && r != ROLE_USER)
            return gt_fail(GT_ERR_INVALID_ARG,
                           "chat message %zu (system) is followed by an assistant message; Gemma "
                           "has no system role, so a system message must precede a user message",
                           sys_from);
        sb_puts(b, r == ROLE_ASSISTANT ? "<start_of_turn>model\n" : "<start_of_turn>user\n");
        if (sys_from != SIZE_MAX) {
            for (size_t j = sys_from; j < i; j++) {
                sb_puts(b, m[j].content);
                sb_puts(b, "\n\n");
            }
            sys_from = SIZE_MAX;
        }
        sb_put_trim(b, m[i].content);
        sb_puts(b, "<end_of_turn>\n");
    }
    if (sys_from != SIZE_MAX)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "chat message %zu (system) ends the conversation; Gemma has no system role, "
                       "so a system message must precede a user message",
                       sys_from);
    if (gen) sb_puts(b, "<start_of_turn>model\n");
    return GT_OK;
}

static void llama3_turn(sb *b, const char *role_name, const char *content) {
    sb_puts(b, "<|start_header_id|>");
    sb_puts(b, role_name);
    sb_puts(b, "<|end_header_id|>\n\n");
    sb_put_trim(b, content);
    sb_puts(b, "<|eot_id|>");
}

static void today(char *dst, size_t cap) {
    static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm) || tm.tm_mon < 0 || tm.tm_mon > 11) {
        snprintf(dst, cap, "26 Jul 2024");
        return;
    }
    snprintf(dst, cap, "%02d %s %d", tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900);
}

static void fmt_llama3(sb *b, const gt_chat_template *t, const gt_chat_msg *m, size_t n, bool gen) {
    size_t first = 0;
    if (t->format == GT_CHAT_LLAMA31) {
        /* Meta's 3.1/3.2 templates always open with this system turn; a leading
         * system message's (trimmed) text goes at its end. */
        char date[32];
        if (t->date_today)
            today(date, sizeof date);
        else
            snprintf(date, sizeof date, "%s", t->date_string);
        sb_puts(b, "<|start_header_id|>system<|end_header_id|>\n\n");
        sb_puts(b, "Cutting Knowledge Date: December 2023\nToday Date: ");
        sb_puts(b, date);
        sb_puts(b, "\n\n");
        if (n && role_of(&m[0]) == ROLE_SYSTEM) {
            sb_put_trim(b, m[0].content);
            first = 1;
        }
        sb_puts(b, "<|eot_id|>");
    }
    for (size_t i = first; i < n; i++) llama3_turn(b, m[i].role, m[i].content);
    if (gen) sb_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Phi-3 ("<|end|>") and Zephyr ("<|endoftext|>"): <|role|>\ncontent + end. */
static void fmt_tagged(sb *b, const char *end, const gt_chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|");
        sb_puts(b, m[i].role);
        sb_puts(b, "|>\n");
        sb_puts(b, m[i].content);
        sb_puts(b, end);
    }
    if (gen) sb_puts(b, "<|assistant|>\n");
}

/* Llama 2 and its variants. The turn always ends with " [/INST]", so the
 * generation prompt is implicit. A system message without <<SYS>> support
 * is kept as a plain first line, as llama.cpp does. */
static void fmt_llama2(sb *b, gt_chat_format f, const gt_chat_msg *m, size_t n) {
    bool sys = f != GT_CHAT_LLAMA2;
    bool bos_inside = f == GT_CHAT_LLAMA2_SYS_BOS;
    bool strip = f == GT_CHAT_LLAMA2_SYS_STRIP;
    bool inside = true; /* the first "[INST] " follows the tokenizer's BOS */
    sb_puts(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        role r = role_of(&m[i]);
        if (!inside) {
            inside = true;
            sb_puts(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (r == ROLE_SYSTEM) {
            sb_puts(b, sys ? "<<SYS>>\n" : "");
            sb_put_maybe_trim(b, m[i].content, strip);
            sb_puts(b, sys ? "\n<</SYS>>\n\n" : "\n");
        } else if (r == ROLE_USER) {
            sb_put_maybe_trim(b, m[i].content, strip);
            sb_puts(b, " [/INST]");
        } else {
            sb_put_maybe_trim(b, m[i].content, strip);
            sb_puts(b, "</s>");
            inside = false;
        }
    }
}

/* Mistral v1 / v3 / v3-tekken: the spacing around [INST] is the difference;
 * a system message joins the next user turn followed by "\n\n". */
static void fmt_mistral(sb *b, gt_chat_format f, const gt_chat_msg *m, size_t n) {
    const char *lead = f == GT_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = f == GT_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool trim_assistant = f == GT_CHAT_MISTRAL_V3;
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        role r = role_of(&m[i]);
        if (!inside) {
            sb_puts(b, lead);
            sb_puts(b, "[INST]");
            sb_puts(b, trail);
            inside = true;
        }
        if (r == ROLE_SYSTEM) {
            sb_puts(b, m[i].content);
            sb_puts(b, "\n\n");
        } else if (r == ROLE_USER) {
            sb_puts(b, m[i].content);
            sb_puts(b, lead);
            sb_puts(b, "[/INST]");
        } else {
            sb_puts(b, trail);
            sb_put_maybe_trim(b, m[i].content, trim_assistant);
            sb_puts(b, "</s>");
            inside = false;
        }
    }
}

static void fmt_mistral_v7(sb *b, const gt_chat_msg *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        role r = role_of(&m[i]);
        if (r == ROLE_SYSTEM) {
            sb_puts(b, "[SYSTEM_PROMPT] ");
            sb_puts(b, m[i].content);
            sb_puts(b, "[/SYSTEM_PROMPT]");
        } else if (r == ROLE_USER) {
            sb_puts(b, "[INST] ");
            sb_puts(b, m[i].content);
            sb_puts(b, "[/INST]");
        } else {
            sb_puts(b, " ");
            sb_puts(b, m[i].content);
            sb_puts(b, "</s>");
        }
    }
}

/* Families written as a prefix and suffix per role plus a generation prompt. */
typedef struct affix {
    const char *pre[3], *post[3]; /* by role: system, user, assistant */
    const char *gen;
} affix;

#define DS_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define DS_ASSISTANT                                                                               \
    "<\xef\xbd\x9c"                                                                                \
    "Assistant\xef\xbd\x9c>"
#define DS_EOS                                                                                     \
    "<\xef\xbd\x9c"                                                                                \
    "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

static const affix k_vicuna = {
    {"", "USER: ", "ASSISTANT: "}, {"\n\n", "\n", "</s>\n"}, "ASSISTANT:"};
static const affix k_vicuna_orca = {
    {"SYSTEM: ", "USER: ", "ASSISTANT: "}, {"\n", "\n", "</s>\n"}, "ASSISTANT:"};
static const affix k_deepseek = {
    {"", "### Instruction:\n", "### Response:\n"}, {"", "\n", "\n<|EOT|>\n"}, "### Response:\n"};

static void fmt_affix(sb *b, const affix *a, const gt_chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        role r = role_of(&m[i]);
        sb_puts(b, a->pre[r]);
        sb_puts(b, m[i].content);
        sb_puts(b, a->post[r]);
    }
    if (gen) sb_puts(b, a->gen);
}

/* DeepSeek V3's template gathers every system message at the front, joined
 * by "\n\n" (llama.cpp instead writes each in place followed by "\n\n"). */
static void fmt_deepseek3(sb *b, const gt_chat_msg *m, size_t n, bool gen) {
    bool first_sys = true;
    for (size_t i = 0; i < n; i++) {
        if (role_of(&m[i]) != ROLE_SYSTEM) continue;
        if (!first_sys) sb_puts(b, "\n\n");
        sb_puts(b, m[i].content);
        first_sys = false;
    }
    for (size_t i = 0; i < n; i++) {
        role r = role_of(&m[i]);
        if (r == ROLE_USER) {
            sb_puts(b, DS_USER);
            sb_puts(b, m[i].content);
        } else if (r == ROLE_ASSISTANT) {
            sb_puts(b, DS_ASSISTANT);
            sb_puts(b, m[i].content);
            sb_puts(b, DS_EOS);
        }
    }
    if (gen) sb_puts(b, DS_ASSISTANT);
}

gt_status gt_chat_apply(const gt_chat_template *t, const gt_chat_msg *msgs, size_t n,
                        bool add_generation_prompt, char **out, size_t *len) {
    if (!out) return gt_fail(GT_ERR_INVALID_ARG, "chat: no output pointer given");
    *out = NULL;
    if (len) *len = 0;
    if (!t) return gt_fail(GT_ERR_INVALID_ARG, "chat: no template given");
    GT_TRY(check_messages(msgs, n));
    bool gen = add_generation_prompt;
    gt_status st = GT_OK;
    sb b = {0};
    switch (t->format) {
    case GT_CHAT_CHATML:
        fmt_chatml(&b, t, msgs, n, gen);
        break;
    case GT_CHAT_GEMMA:
        st = fmt_gemma(&b, msgs, n, gen);
        break;
    case GT_CHAT_LLAMA3:
    case GT_CHAT_LLAMA31:
        fmt_llama3(&b, t, msgs, n, gen);
        break;
    case GT_CHAT_PHI3:
        fmt_tagged(&b, "<|end|>\n", msgs, n, gen);
        break;
    case GT_CHAT_ZEPHYR:
        fmt_tagged(&b, "<|endoftext|>\n", msgs, n, gen);
        break;
    case GT_CHAT_LLAMA2:
    case GT_CHAT_LLAMA2_SYS:
    case GT_CHAT_LLAMA2_SYS_BOS:
    case GT_CHAT_LLAMA2_SYS_STRIP:
        fmt_llama2(&b, t->format, msgs, n);
        break;
    case GT_CHAT_MISTRAL_V1:
    case GT_CHAT_MISTRAL_V3:
    case GT_CHAT_MISTRAL_V3_TEKKEN:
        fmt_mistral(&b, t->format, msgs, n);
        break;
    case GT_CHAT_MISTRAL_V7:
        fmt_mistral_v7(&b, msgs, n);
        break;
    case GT_CHAT_VICUNA:
        fmt_affix(&b, &k_vicuna, msgs, n, gen);
        break;
    case GT_CHAT_VICUNA_ORCA:
        fmt_affix(&b, &k_vicuna_orca, msgs, n, gen);
        break;
    case GT_CHAT_DEEPSEEK:
        fmt_affix(&b, &k_deepseek, msgs, n, gen);
        break;
    case GT_CHAT_DEEPSEEK3:
        fmt_deepseek3(&b, msgs, n, gen);
        break;
    default:
        free(b.p);
        return gt_fail(GT_ERR_INVALID_ARG, "chat: cannot format with chat format %d (%s)",
                       (int)t->format, gt_chat_format_name(t->format));
    }
    if (st != GT_OK) {
        free(b.p);
        return st;
    }
    if (!b.p) { /* nothing was written: return an empty string */
        b.p = malloc(1);
        if (b.p)
            b.p[0] = '\0';
        else
            b.oom = true;
    }
    if (b.oom) {
        free(b.p);
        return gt_fail(GT_ERR_NOMEM, "chat: out of memory formatting %zu messages", n);
    }
    *out = b.p;
    if (len) *len = b.n;
    return GT_OK;
}
