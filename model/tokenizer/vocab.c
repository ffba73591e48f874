/* Loads a tokenizer from GGUF metadata: tokens, scores, types, merges,
 * special ids and flags, and the per-token attributes and end-of-generation
 * set that llama.cpp derives from token text.
 *
 * Design: the defaults and text-based adjustments follow llama.cpp's
 * llama_vocab::load exactly (BOS 1 / EOS 2 / UNK 0 for SPM, add_bos by model
 * and pre-tokenizer, EOT found by text when no id is given), because model
 * files are written against that behaviour. Everything is copied into arenas
 * so the tokenizer outlives the gt_gguf. Look-ups are open-addressing hash
 * tables sized to a power of two at least twice the entries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "model/tokenizer/tok_internal.h"

#define GT_TOK_MAX_VOCAB  (1 << 24)
#define GT_TOK_MAX_MERGES (1 << 24)

static size_t table_size(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

/* A string array value, or NULL with a sentence. */
static gt_status get_str_array(const gt_gguf *g, const char *key, bool required,
                               const gt_gguf_value **out) {
    const gt_gguf_value *v = gt_gguf_find(g, key);
    *out = NULL;
    if (!v) {
        if (!required) return GT_OK;
        return gt_fail(GT_ERR_NOT_FOUND, "%s: no %s: the file has no tokenizer vocabulary",
                       gt_gguf_name(g), key);
    }
    if (v->type != GT_GGUF_ARRAY || v->arr.type != GT_GGUF_STRING)
        return gt_fail(GT_ERR_FORMAT, "%s: %s is a %s, not an array of strings", gt_gguf_name(g),
                       key, gt_gguf_type_name(v->type));
    *out = v;
    return GT_OK;
}

static gt_status load_tokens(gt_tokenizer *t, const gt_gguf *g) {
    const gt_gguf_value *toks;
    GT_TRY(get_str_array(g, "tokenizer.ggml.tokens", true, &toks));
    if (toks->arr.n == 0 || toks->arr.n > GT_TOK_MAX_VOCAB)
        return gt_fail(GT_ERR_FORMAT, "%s: tokenizer.ggml.tokens holds %llu tokens (limit 1..%d)",
                       gt_gguf_name(g), (unsigned long long)toks->arr.n, GT_TOK_MAX_VOCAB);
    size_t n = (size_t)toks->arr.n;
    t->n_vocab = (int32_t)n;

    const gt_gguf_value *scores = gt_gguf_find(g, "tokenizer.ggml.scores");
    if (scores && (scores->type != GT_GGUF_ARRAY ||
                   (scores->arr.type != GT_GGUF_FLOAT32 && scores->arr.type != GT_GGUF_INT32) ||
                   scores->arr.n < n))
        return gt_fail(GT_ERR_FORMAT,
                       "%s: tokenizer.ggml.scores must be %zu float32 or int32 values",
                       gt_gguf_name(g), n);
    const gt_gguf_value *types = gt_gguf_find(g, "tokenizer.ggml.token_type");
    if (types &&
        (types->type != GT_GGUF_ARRAY || types->arr.type != GT_GGUF_INT32 || types->arr.n < n))
        return gt_fail(GT_ERR_FORMAT, "%s: tokenizer.ggml.token_type must be %zu int32 values",
                       gt_gguf_name(g), n);

    /* Empty texts become "[EMPTY_i]" as in llama.cpp: at most 20 bytes. */
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = (size_t)toks->arr.strs[i].len;
        if (!gt_size_add(bytes, l ? l : 20, &bytes))
            return gt_fail(GT_ERR_NOMEM, "%s: token texts overflow", gt_gguf_name(g));
    }
    t->text_arena = malloc(bytes + 1);
    t->texts = calloc(n, sizeof *t->texts);
    t->scores = calloc(n, sizeof *t->scores);
    t->attr = calloc(n, sizeof *t->attr);
    t->eog = calloc(n, 1);
    t->tok_mask = table_size(n) - 1;
    t->tok_map = malloc((t->tok_mask + 1) * sizeof *t->tok_map);
    if (!t->text_arena || !t->texts || !t->scores || !t->attr || !t->eog || !t->tok_map)
        return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate a %zu-token vocabulary", gt_gguf_name(g),
                       n);
    memset(t->tok_map, 0xff, (t->tok_mask + 1) * sizeof *t->tok_map);

    char *p = t->text_arena;
    for (size_t i = 0; i < n; i++) {
        gt_str s = toks->arr.strs[i];
        size_t l = (size_t)s.len;
        if (l == 0) {
            l = (size_t)snprintf(p, 21, "[EMPTY_%zu]", i);
            GT_LOG_WARN(GT_SUB_TOK, "%s: empty token at index %zu", gt_gguf_name(g), i);
        } else {
            memcpy(p, s.ptr, l);
        }
        t->texts[i].ptr = p;
        t->texts[i].len = l;
        p += l;

        size_t h = gt__hash_bytes(GT__HASH_SEED, t->texts[i].ptr, l) & t->tok_mask;
        while (t->tok_map[h] >= 0) {
            int32_t o = t->tok_map[h];
            if (t->texts[o].len == l && memcmp(t->texts[o].ptr, t->texts[i].ptr, l) == 0)
                return gt_fail(GT_ERR_FORMAT,
                               "%s: duplicate token in vocabulary: '%.*s' has ids %d and %zu",
                               gt_gguf_name(g), (int)(l > 64 ? 64 : l), t->texts[i].ptr, o, i);
            h = (h + 1) & t->tok_mask;
        }
        t->tok_map[h] = (int32_t)i;

        if (scores)
            t->scores[i] =
                (float)(scores->arr.type == GT_GGUF_FLOAT32 ? gt_gguf_arr_f64(scores, i)
                                                            : (double)gt_gguf_arr_i64(scores, i));
        uint32_t a = GT_TOKEN_ATTR_NORMAL;
        if (types) {
            switch (gt_gguf_arr_i64(types, i)) {
            case 1:
                a = GT_TOKEN_ATTR_NORMAL;
                break;
            case 2:
                a = GT_TOKEN_ATTR_UNKNOWN;
                break;
            case 3:
                a = GT_TOKEN_ATTR_CONTROL;
                break;
            case 4:
                a = GT_TOKEN_ATTR_USER_DEFINED;
                break;
            case 5:
                a = GT_TOKEN_ATTR_UNUSED;
                break;
            case 6:
                a = GT_TOKEN_ATTR_BYTE;
                break;
            default:
                a = 0;
                break; /* undefined */
            }
        }
        t->attr[i] = a;
    }
    return GT_OK;
}

static gt_status load_merges(gt_tokenizer *t, const gt_gguf *g) {
    const gt_gguf_value *m;
    GT_TRY(get_str_array(g, "tokenizer.ggml.merges", true, &m));
    if (m->arr.n > GT_TOK_MAX_MERGES)
        return gt_fail(GT_ERR_FORMAT, "%s: tokenizer.ggml.merges holds %llu merges (limit %d)",
                       gt_gguf_name(g), (unsigned long long)m->arr.n, GT_TOK_MAX_MERGES);
    size_t n = (size_t)m->arr.n, bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (!gt_size_add(bytes, (size_t)m->arr.strs[i].len, &bytes))
            return gt_fail(GT_ERR_NOMEM, "%s: merge texts overflow", gt_gguf_name(g));
    t->n_merges = n;
    t->merge_arena = malloc(bytes + 1);
    t->merge_l = calloc(n ? n : 1, sizeof *t->merge_l);
    t->merge_r = calloc(n ? n : 1, sizeof *t->merge_r);
    t->merge_mask = table_size(n) - 1;
    t->merge_map = malloc((t->merge_mask + 1) * sizeof *t->merge_map);
    if (!t->merge_arena || !t->merge_l || !t->merge_r || !t->merge_map)
        return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %zu merges", gt_gguf_name(g), n);
    memset(t->merge_map, 0xff, (t->merge_mask + 1) * sizeof *t->merge_map);

    char *p = t->merge_arena;
    for (size_t i = 0; i < n; i++) {
        gt_str s = m->arr.strs[i];
        size_t l = (size_t)s.len;
        memcpy(p, s.ptr, l);
        /* The first space at index >= 1 separates the halves ("Ġ t"). */
        const char *sp = l > 1 ? memchr(p + 1, ' ', l - 1) : NULL;
        if (!sp) { /* no separator: llama.cpp keeps an unusable ("","") pair */
            p += l;
            continue;
        }
        size_t ln = (size_t)(sp - p);
        t->merge_l[i] = (gt_str){p, ln};
        t->merge_r[i] = (gt_str){sp + 1, l - ln - 1};
        p += l;
        size_t h =
            gt__merge_hash(t->merge_l[i].ptr, ln, t->merge_r[i].ptr, l - ln - 1) & t->merge_mask;
        bool dup = false;
        while (t->merge_map[h] >= 0) {
            int32_t o = t->merge_map[h];
            if (t->merge_l[o].len == ln && t->merge_r[o].len == l - ln - 1 &&
                memcmp(t->merge_l[o].ptr, t->merge_l[i].ptr, ln) == 0 &&
                memcmp(t->merge_r[o].ptr, t->merge_r[i].ptr, l - ln - 1) == 0) {
                dup = true; /* the first (lowest rank) wins */
                break;
            }
            h = (h + 1) & t->merge_mask;
        }
        if (!dup) t->merge_map[h] = (int32_t)i;
    }
    return GT_OK;
}

/* Reads an optional token id key into *id; ids outside the vocabulary are
 * ignored with a warning, as llama.cpp does. */
static gt_status read_id(gt_tokenizer *t, const gt_gguf *g, const char *key, int32_t *id) {
    if (*id >= t->n_vocab) *id = GT_TOKEN_NULL;
    const gt_gguf_value *v = gt_gguf_find(g, key);
    if (!v) return GT_OK;
    int64_t x;
    switch (v->type) {
    case GT_GGUF_UINT8:
    case GT_GGUF_UINT16:
    case GT_GGUF_UINT32:
    case GT_GGUF_UINT64:
        x = v->num.u64 > INT32_MAX ? -1 : (int64_t)v->num.u64;
        break;
    case GT_GGUF_INT8:
    case GT_GGUF_INT16:
    case GT_GGUF_INT32:
    case GT_GGUF_INT64:
        x = v->num.i64;
        break;
    default:
        return gt_fail(GT_ERR_FORMAT, "%s: %s is a %s, not an integer token id", gt_gguf_name(g),
                       key, gt_gguf_type_name(v->type));
    }
    if (x < 0 || x >= t->n_vocab) {
        GT_LOG_WARN(GT_SUB_TOK, "%s: %s = %lld is outside the %d-token vocabulary; ignored",
                    gt_gguf_name(g), key, (long long)x, t->n_vocab);
        return GT_OK;
    }
    *id = (int32_t)x;
    return GT_OK;
}

static bool text_is(const gt_tokenizer *t, int32_t id, const char *s) {
    size_t n = strlen(s);
    return t->texts[id].len == n && memcmp(t->texts[id].ptr, s, n) == 0;
}

static bool text_in(const gt_tokenizer *t, int32_t id, const char *const *list) {
    for (; *list; list++)
        if (text_is(t, id, *list)) return true;
    return false;
}

/* Ids found by text when the file names none, as llama.cpp does; the
 * earlier names in the list win (<|end|> before <|endoftext|>). */
static void find_by_text(gt_tokenizer *t, int32_t *id, const char *const *list) {
    if (*id != GT_TOKEN_NULL) return;
    for (; *list; list++) {
        int32_t i = gt__tok_find(t, *list, strlen(*list));
        if (i >= 0) {
            *id = i;
            t->attr[i] |= GT_TOKEN_ATTR_CONTROL;
            return;
        }
    }
}

static void build_eog(gt_tokenizer *t) {
    static const char *const k_eot[] = {"<|eot_id|>",
                                        "<|im_end|>",
                                        "<|end|>",
                                        "<end_of_turn>",
                                        "<|endoftext|>",
                                        "<|end_of_text|>",
                                        "<EOT>",
                                        "_<EOT>",
                                        "[EOT]",
                                        "<\xef\xbd\x9c"
                                        "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        "<end_of_utterance>",
                                        NULL};
    static const char *const k_eom[] = {"<|eom_id|>", NULL};
    static const char *const k_fim_pre[] = {"<|fim_prefix|>",
                                            "<fim-prefix>",
                                            "<fim_prefix>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "begin\xef\xbd\x9c>",
                                            "<PRE>",
                                            "\xe2\x96\x81<PRE>",
                                            "<|code_prefix|>",
                                            NULL};
    static const char *const k_fim_suf[] = {"<|fim_suffix|>",
                                            "<fim-suffix>",
                                            "<fim_suffix>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81hole\xef\xbd\x9c>",
                                            "<SUF>",
                                            "\xe2\x96\x81<SUF>",
                                            "<|code_suffix|>",
                                            NULL};
    static const char *const k_fim_mid[] = {"<|fim_middle|>",
                                            "<fim-middle>",
                                            "<fim_middle>",
                                            "<\xef\xbd\x9c"
                                            "fim\xe2\x96\x81"
                                            "end\xef\xbd\x9c>",
                                            "<MID>",
                                            "\xe2\x96\x81<MID>",
                                            "<|code_middle|>",
                                            NULL};
    static const char *const k_fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", NULL};
    static const char *const k_fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                            "<REPO>",       "<reponame>",    NULL};
    static const char *const k_fim_sep[] = {"<|file_sep|>", "<file_sep>", "<fim-sep>", NULL};
    static const char *const k_eog[] = {"<|eot_id|>",
                                        "<|im_end|>",
                                        "<|end|>",
                                        "<|return|>",
                                        "<|call|>",
                                        "<|flush|>",
                                        "<|calls|>",
                                        "<end_of_turn>",
                                        "<|endoftext|>",
                                        "<|eom_id|>",
                                        "<EOT>",
                                        "_<EOT>",
                                        "[EOT]",
                                        "[EOS]",
                                        "<|end_of_text|>",
                                        "<end_of_utterance>",
                                        "<eos>",
                                        "<turn|>",
                                        "<\xef\xbd\x9c"
                                        "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                        NULL};

    find_by_text(t, &t->eot, k_eot);
    find_by_text(t, &t->eom, k_eom);
    find_by_text(t, &t->fim_pre, k_fim_pre);
    find_by_text(t, &t->fim_suf, k_fim_suf);
    find_by_text(t, &t->fim_mid, k_fim_mid);
    find_by_text(t, &t->fim_pad, k_fim_pad);
    find_by_text(t, &t->fim_rep, k_fim_rep);
    find_by_text(t, &t->fim_sep, k_fim_sep);

    /* Control tokens whose text says "unused" are unused. */
    for (int32_t i = 0; i < t->n_vocab; i++)
        if ((t->attr[i] & GT_TOKEN_ATTR_CONTROL) &&
            memmem(t->texts[i].ptr, t->texts[i].len, "unused", 6))
            t->attr[i] |= GT_TOKEN_ATTR_UNUSED;

    int32_t fixed[] = {t->fim_pad, t->fim_rep, t->fim_sep, t->eos, t->eot, t->eom};
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
        if (fixed[k] >= 0) t->eog[fixed[k]] = 1;
    int32_t end_id = GT_TOKEN_NULL;
    bool has_return = false, has_call = false, has_flush = false;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (!text_in(t, i, k_eog)) continue;
        t->eog[i] = 1;
        t->attr[i] |= GT_TOKEN_ATTR_CONTROL;
        if (text_is(t, i, "<|end|>")) end_id = i;
        if (text_is(t, i, "<|return|>")) has_return = true;
        if (text_is(t, i, "<|call|>") || text_is(t, i, "<|calls|>")) has_call = true;
        if (text_is(t, i, "<|flush|>")) has_flush = true;
    }
    /* Harmony-style chats use <|end|> between messages, not at the end. */
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush)) && end_id != t->eos &&
        end_id != t->eot) {
        t->eog[end_id] = 0;
        t->attr[end_id] = GT_TOKEN_ATTR_USER_DEFINED;
    }
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const gt_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (t->texts[x].len != t->texts[y].len) return t->texts[x].len > t->texts[y].len ? -1 : 1;
    return x < y ? -1 : x > y;
}

static gt_status build_special(gt_tokenizer *t, const gt_gguf *g) {
    const uint32_t want =
        GT_TOKEN_ATTR_CONTROL | GT_TOKEN_ATTR_USER_DEFINED | GT_TOKEN_ATTR_UNKNOWN;
    /* Per-model attributes llama.cpp sets by name: Phi-3's special tokens eat
     * the whitespace to their right. */
    gt_str name = {0};
    const gt_gguf_value *nv = gt_gguf_find(g, "general.name");
    if (nv && nv->type == GT_GGUF_STRING) name = nv->str;
    char lname[128] = {0};
    for (size_t i = 0; i < name.len && i + 1 < sizeof lname; i++)
        lname[i] =
            (char)(name.ptr[i] >= 'A' && name.ptr[i] <= 'Z' ? name.ptr[i] + 32 : name.ptr[i]);
    bool phi3 = strstr(lname, "phi-3") || strstr(lname, "phi3");

    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) n += (t->attr[i] & want) != 0;
    t->special = malloc((n ? n : 1) * sizeof *t->special);
    if (!t->special) return gt_fail(GT_ERR_NOMEM, "cannot allocate %zu special tokens", n);
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & want) t->special[t->n_special++] = i;
    qsort_r(t->special, t->n_special, sizeof *t->special, cmp_special, t);

    if (phi3) {
        for (size_t k = 0; k < t->n_special; k++) t->attr[t->special[k]] |= GT_TOKEN_ATTR_RSTRIP;
        int32_t id = gt__tok_find(t, "</s>", 4);
        if (id >= 0) t->attr[id] |= GT_TOKEN_ATTR_RSTRIP;
        static const char *const k_no[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t k = 0; k < 3; k++) {
            id = gt__tok_find(t, k_no[k], strlen(k_no[k]));
            if (id >= 0) t->attr[id] &= ~(uint32_t)GT_TOKEN_ATTR_RSTRIP;
        }
    }
    return GT_OK;
}

static void build_byte_tokens(gt_tokenizer *t) {
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int32_t id;
        if (t->type == GT_VOCAB_SPM) {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            id = gt__tok_find(t, buf, 6);
            if (id < 0) {
                buf[0] = (char)b;
                id = gt__tok_find(t, buf, 1);
            }
        } else {
            id = gt__tok_find(t, buf, gt__bpe_byte_utf8((uint8_t)b, buf));
        }
        t->byte_tok[b] = id;
    }
}

/* The newline token, looked up without running the tokenizer. SPM: the
 * byte token of '\n' ("<0x0A>"). BPE: what gt_tokenize(t, "\n", 0) gives
 * first, found directly: a user-defined token "\n" (cut out before BPE; a
 * control or unknown one is not without GT_TOK_PARSE_SPECIAL); else the
 * byte-level word "\xc4\x8a" ("Ċ", one symbol, so no merge applies); else,
 * as bpe.c's fallback for a symbol that is no token, the first of its bytes
 * that is a one-byte token. PAD when none is. */
static int32_t find_nl(const gt_tokenizer *t) {
    if (t->type == GT_VOCAB_SPM) return t->byte_tok['\n'] >= 0 ? t->byte_tok['\n'] : t->pad;
    int32_t id = gt__tok_find(t, "\n", 1);
    const uint32_t skip = GT_TOKEN_ATTR_CONTROL | GT_TOKEN_ATTR_UNKNOWN;
    if (id >= 0 && (t->attr[id] & GT_TOKEN_ATTR_USER_DEFINED) && !(t->attr[id] & skip)) return id;
    if (t->byte_tok['\n'] >= 0) return t->byte_tok['\n'];
    char w[2];
    size_t n = gt__bpe_byte_utf8('\n', w);
    for (size_t i = 0; i < n; i++) {
        id = gt__tok_find(t, w + i, 1);
        if (id >= 0) return id;
    }
    return t->pad;
}

static gt_status read_model(gt_tokenizer *t, const gt_gguf *g) {
    gt_str model;
    GT_TRY(gt_gguf_get_str(g, "tokenizer.ggml.model", &model));
    snprintf(t->model, sizeof t->model, "%.*s", (int)(model.len < 31 ? model.len : 31), model.ptr);
    strcpy(t->pre, "default");
    const gt_gguf_value *pre = gt_gguf_find(g, "tokenizer.ggml.pre");
    if (pre && pre->type == GT_GGUF_STRING) {
        if (pre->str.len >= sizeof t->pre)
            return gt_fail(GT_ERR_UNSUPPORTED, "%s: unknown pre-tokenizer '%.*s'", gt_gguf_name(g),
                           64, pre->str.ptr);
        memcpy(t->pre, pre->str.ptr, pre->str.len);
        t->pre[pre->str.len] = 0;
    }
    if (strcmp(t->model, "llama") == 0) {
        t->type = GT_VOCAB_SPM;
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_bos = true, t->add_space_prefix = true;
    } else if (strcmp(t->model, "gpt2") == 0) {
        t->type = GT_VOCAB_BPE;
        t->bos = 11, t->eos = 11; /* llama.cpp's defaults, overridden by every real file */
    } else {
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "%s: tokenizer.ggml.model '%s' is not supported (Gantry reads 'llama' "
                       "and 'gpt2')",
                       gt_gguf_name(g), t->model);
    }
    return GT_OK;
}

gt_status gt_tokenizer_load(const gt_gguf *g, gt_tokenizer **out) {
    *out = NULL;
    gt_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return gt_fail(GT_ERR_NOMEM, "cannot allocate a tokenizer");
    gt_status st;
    t->bos = t->eos = t->eot = t->eom = t->unk = t->sep = t->pad = t->mask = t->nl = GT_TOKEN_NULL;
    t->fim_pre = t->fim_suf = t->fim_mid = t->fim_pad = t->fim_rep = t->fim_sep = GT_TOKEN_NULL;
    GT_TRY_GOTO(read_model(t, g), st, fail);
    GT_TRY_GOTO(load_tokens(t, g), st, fail);
    if (t->type == GT_VOCAB_BPE) {
        gt__pretok_info info;
        GT_TRY_GOTO(load_merges(t, g), st, fail);
        st = gt__pretok_create(t->pre, &t->pretok, &info);
        if (st != GT_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", gt_last_error());
            gt_fail(st, "%s: %s", gt_gguf_name(g), why);
            goto fail;
        }
        t->ignore_merges = info.ignore_merges;
        t->add_bos = info.add_bos;
        if (info.no_bos) t->bos = GT_TOKEN_NULL;
    }
    /* Only SPM prefixes a space; llama.cpp's BPE ignores the key. */
    const gt_gguf_value *v = gt_gguf_find(g, "tokenizer.ggml.add_space_prefix");
    if (v && v->type == GT_GGUF_BOOL && t->type == GT_VOCAB_SPM)
        t->add_space_prefix = v->num.u64 != 0;

    static const struct {
        const char *key;
        size_t off;
    } k_ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(gt_tokenizer, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(gt_tokenizer, eos)},
        {"tokenizer.ggml.eot_token_id", offsetof(gt_tokenizer, eot)},
        {"tokenizer.ggml.eom_token_id", offsetof(gt_tokenizer, eom)},
        {"tokenizer.ggml.unknown_token_id", offsetof(gt_tokenizer, unk)},
        {"tokenizer.ggml.seperator_token_id", offsetof(gt_tokenizer, sep)},
        {"tokenizer.ggml.padding_token_id", offsetof(gt_tokenizer, pad)},
        {"tokenizer.ggml.mask_token_id", offsetof(gt_tokenizer, mask)},
        {"tokenizer.ggml.fim_pre_token_id", offsetof(gt_tokenizer, fim_pre)},
        {"tokenizer.ggml.fim_suf_token_id", offsetof(gt_tokenizer, fim_suf)},
        {"tokenizer.ggml.fim_mid_token_id", offsetof(gt_tokenizer, fim_mid)},
        {"tokenizer.ggml.fim_pad_token_id", offsetof(gt_tokenizer, fim_pad)},
        {"tokenizer.ggml.fim_rep_token_id", offsetof(gt_tokenizer, fim_rep)},
        {"tokenizer.ggml.fim_sep_token_id", offsetof(gt_tokenizer, fim_sep)},
        {"tokenizer.ggml.prefix_token_id", offsetof(gt_tokenizer, fim_pre)},
        {"tokenizer.ggml.suffix_token_id", offsetof(gt_tokenizer, fim_suf)},
        {"tokenizer.ggml.middle_token_id", offsetof(gt_tokenizer, fim_mid)},
    };
    for (size_t k = 0; k < sizeof k_ids / sizeof k_ids[0]; k++)
        GT_TRY_GOTO(read_id(t, g, k_ids[k].key, (int32_t *)((char *)t + k_ids[k].off)), st, fail);

    v = gt_gguf_find(g, "tokenizer.ggml.add_bos_token");
    if (v && v->type == GT_GGUF_BOOL) t->add_bos = v->num.u64 != 0;
    v = gt_gguf_find(g, "tokenizer.ggml.add_eos_token");
    if (v && v->type == GT_GGUF_BOOL) t->add_eos = v->num.u64 != 0;
    if (t->add_bos && t->bos == GT_TOKEN_NULL) {
        st = gt_fail(GT_ERR_FORMAT,
                     "%s: tokenizer.ggml.add_bos_token is true, but no BOS token "
                     "id is set",
                     gt_gguf_name(g));
        goto fail;
    }
    if (t->add_eos && t->eos == GT_TOKEN_NULL) {
        st = gt_fail(GT_ERR_FORMAT,
                     "%s: tokenizer.ggml.add_eos_token is true, but no EOS token "
                     "id is set",
                     gt_gguf_name(g));
        goto fail;
    }

    build_eog(t);
    GT_TRY_GOTO(build_special(t, g), st, fail);
    build_byte_tokens(t);
    GT_TRY_GOTO(gt__build_pieces(t), st, fail);

    t->nl = find_nl(t);
    *out = t;
    return GT_OK;
fail:
    gt_tokenizer_free(t);
    return st;
}

void gt_tokenizer_free(gt_tokenizer *t) {
    if (!t) return;
    free(t->text_arena);
    free(t->texts);
    free(t->scores);
    free(t->attr);
    free(t->eog);
    free(t->tok_map);
    free(t->piece_arena);
    free(t->pieces);
    free(t->merge_arena);
    free(t->merge_l);
    free(t->merge_r);
    free(t->merge_map);
    free(t->special);
    gt__pretok_free(t->pretok);
    free(t);
}

gt_vocab_type gt_tokenizer_type(const gt_tokenizer *t) { return t->type; }
const char *gt_tokenizer_pre(const gt_tokenizer *t) { return t->pre; }
int32_t gt_tokenizer_n_vocab(const gt_tokenizer *t) { return t->n_vocab; }
int32_t gt_tokenizer_bos(const gt_tokenizer *t) { return t->bos; }
int32_t gt_tokenizer_eos(const gt_tokenizer *t) { return t->eos; }
int32_t gt_tokenizer_eot(const gt_tokenizer *t) { return t->eot; }
int32_t gt_tokenizer_unk(const gt_tokenizer *t) { return t->unk; }
int32_t gt_tokenizer_pad(const gt_tokenizer *t) { return t->pad; }
int32_t gt_tokenizer_nl(const gt_tokenizer *t) { return t->nl; }
bool gt_tokenizer_add_bos(const gt_tokenizer *t) { return t->add_bos; }
bool gt_tokenizer_add_eos(const gt_tokenizer *t) { return t->add_eos; }
bool gt_tokenizer_add_space_prefix(const gt_tokenizer *t) { return t->add_space_prefix; }

bool gt_tokenizer_is_eog(const gt_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

uint32_t gt_tokenizer_attr(const gt_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab ? t->attr[id] : 0;
}

gt_str gt_tokenizer_text(const gt_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return (gt_str){NULL, 0};
    return t->texts[id];
}

int32_t gt_tokenizer_find(const gt_tokenizer *t, const char *text, size_t len) {
    return gt__tok_find(t, text, len);
}
