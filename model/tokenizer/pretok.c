/* Pre-tokenizers for byte-level BPE: the split patterns named by
 * `tokenizer.ggml.pre`, compiled with PCRE2 (UTF + UCP, JIT when available).
 *
 * Design: a pre-tokenizer is a sequence of patterns applied one after the
 * other, as llama.cpp and Hugging Face's Sequence/Split(Isolated) do: each
 * pattern cuts every current segment into its matches and the text between
 * them, and a pattern only ever sees one segment (lookarounds and `$` stop at
 * its edges). Where the model's tokenizer.json pattern is known it is used
 * as is (PCRE2 supports \p{Lu}, possessive quantifiers and lookaheads, unlike
 * std::regex), with (?i:'s|...) spelled as explicit case pairs so that no
 * Unicode case folding (ſ, K) sneaks in. Invalid UTF-8 is matched with
 * PCRE2_MATCH_INVALID_UTF: bad bytes never match a pattern character, end up
 * in the text between matches, and still reach BPE byte by byte. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "model/tokenizer/tok_internal.h"

#define MAX_PATTERNS 6

/* Contractions without case folding. */
#define CONTR "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

static const char *const p_gpt2[] = {
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", NULL};
static const char *const p_llama3[] = {
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
          "\\s+(?!\\S)|\\s+",
    NULL};
static const char *const p_qwen2[] = {
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
          "\\s+(?!\\S)|\\s+",
    NULL};
static const char *const p_qwen35[] = {
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
          "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const p_starcoder[] = {
    "\\p{N}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL};
static const char *const p_falcon[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|`]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    "[0-9][0-9][0-9]", NULL};
static const char *const p_deepseek_coder[] = {
    "[\\r\\n]",    "\\s?\\p{L}+",
    "\\s?\\p{P}+", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
    "\\p{N}",      NULL};
static const char *const p_deepseek_llm[] = {
    "[\\r\\n]",
    /* Letters of the cased scripts (the list from DeepSeek's tokenizer.json). */
    "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf"
    "\xc7\x84-\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf"
    "\xce\x86\xce\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81"
    "\xd2\x8a-\xd4\xaf\xd4\xb1-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5"
    "\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf"
    "\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5\xb9-\xe1\xb6\x9a"
    "\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85"
    "\xe1\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d"
    "\xe1\xbd\x9f-\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe"
    "\xe1\xbf\x82-\xe1\xbf\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93"
    "\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4"
    "\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-\xe2\x84\x93\xe2\x84\x95"
    "\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa-\xe2\x84\xad"
    "\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85\x89"
    "\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4"
    "\xe2\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad"
    "\xea\x9a\x80-\xea\x9a\x9b\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87"
    "\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae\xbf\xef\xac\x80-\xef\xac\x86"
    "\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef\xbd\x9a"
    "\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93"
    "\xf0\x90\x93\x98-\xf0\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2"
    "\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-\xf0\x91\xa3\x9f"
    "\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+",
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f"
    "\xe3\x80\x80-\xe3\x80\x82]+",
    "\\s+$", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+",
    "\\p{N}+", NULL};
static const char *const p_deepseek3[] = {
    "\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    "[!\"#$%&'()*+,\\-./"
    ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const p_bloom[] = {
    " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+",
    NULL};
static const char *const p_viking[] = {
    " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+",
    "\\p{N}", NULL};
static const char *const p_tekken[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const p_gpt4o[] = {
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"
    "+" CONTR "?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}"
              "\\p{M}]*" CONTR
    "?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const p_chameleon[] = {
    "<sentinel:[0-9]+>",
    "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z",
    "([\\t\\n]|    |  )",
    "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
    NULL};
static const char *const p_superbpe[] = {"\\p{N}+", "(?=(\\d{3})+(?!\\d))", NULL};
static const char *const p_bailing[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const p_seed_coder[] = {
    CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|"
          "\\s+(?!\\S)|\\s+",
    NULL};
static const char *const p_default[] = {
    "[\\p{P}\\$\\+<=>\\^~\\|]+",
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", "\\p{N}+",
    "[0-9][0-9][0-9]", NULL};

enum { F_IGNORE_MERGES = 1, F_ADD_BOS = 2, F_NO_BOS = 4 };

/* tokenizer.ggml.pre names (llama.cpp's list) and their patterns. */
static const struct {
    const char *names; /* space-separated */
    const char *const *pat;
    unsigned flags;
} k_pre[] = {
    {"default", p_default, 0},
    {"llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano", p_llama3,
     F_IGNORE_MERGES | F_ADD_BOS},
    {"dbrx smaug-bpe", p_llama3, 0},
    {"glm4 chatglm-bpe", p_llama3, F_NO_BOS},
    {"deepseek-llm", p_deepseek_llm, 0},
    {"deepseek-coder", p_deepseek_coder, 0},
    {"deepseek-v3 hunyuan-dense joyai-llm hy_v4", p_deepseek3, 0},
    {"falcon", p_falcon, 0},
    {"mpt gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum modern-bert "
     "jina-v1-en jina-v2-code roberta-bpe exaone4 olmo jais trillion granite-docling",
     p_gpt2, 0},
    {"starcoder refact command-r smollm codeshell exaone minerva-7b mellum2", p_starcoder, 0},
    {"qwen2 deepseek-r1-qwen kormo f2llmv2 megrez stablelm2 hunyuan solar-open grok-2", p_qwen2, 0},
    {"qwen35", p_qwen35, 0},
    {"poro-chat bloom gpt3-finnish", p_bloom, 0},
    {"viking", p_viking, 0},
    {"tekken", p_tekken, F_IGNORE_MERGES | F_ADD_BOS},
    {"gpt-4o llama4 kanana2 talkie minimax-m2", p_gpt4o, 0},
    {"chameleon", p_chameleon, F_ADD_BOS},
    {"superbpe", p_superbpe, 0},
    {"bailingmoe bailingmoe2 llada-moe", p_bailing, 0},
    {"seed-coder", p_seed_coder, 0},
};

struct gt__pretok {
    int n;
    pcre2_code *code[MAX_PATTERNS];
    bool jit[MAX_PATTERNS];
};

static bool name_in(const char *names, const char *name) {
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

gt_status gt__pretok_create(const char *pre, gt__pretok **out, gt__pretok_info *info) {
    *out = NULL;
    memset(info, 0, sizeof *info);
    size_t k = 0, n_pre = sizeof k_pre / sizeof k_pre[0];
    while (k < n_pre && !name_in(k_pre[k].names, pre)) k++;
    if (k == n_pre)
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "pre-tokenizer '%s' (tokenizer.ggml.pre) is not one "
                       "Gantry knows",
                       pre);
    info->ignore_merges = k_pre[k].flags & F_IGNORE_MERGES;
    info->add_bos = k_pre[k].flags & F_ADD_BOS;
    info->no_bos = k_pre[k].flags & F_NO_BOS;

    gt__pretok *p = calloc(1, sizeof *p);
    if (!p) return gt_fail(GT_ERR_NOMEM, "cannot allocate a pre-tokenizer");
    for (const char *const *pat = k_pre[k].pat; *pat; pat++) {
        int err;
        PCRE2_SIZE at;
        pcre2_code *c =
            pcre2_compile((PCRE2_SPTR)*pat, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, NULL);
        if (!c) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            int idx = p->n;
            gt__pretok_free(p);
            return gt_fail(GT_ERR_INTERNAL,
                           "pre-tokenizer '%s': pattern %d does not compile at "
                           "offset %zu: %s",
                           pre, idx, (size_t)at, (char *)msg);
        }
        p->jit[p->n] = pcre2_jit_compile(c, PCRE2_JIT_COMPLETE) == 0;
        p->code[p->n++] = c;
    }
    *out = p;
    return GT_OK;
}

void gt__pretok_free(gt__pretok *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) pcre2_code_free(p->code[i]);
    free(p);
}

typedef struct ends_vec {
    size_t *v;
    size_t n, cap;
} ends_vec;

static gt_status push_end(ends_vec *e, size_t x) {
    if (e->n && e->v[e->n - 1] == x) return GT_OK; /* no empty words */
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        size_t *v = realloc(e->v, cap * sizeof *v);
        if (!v) return gt_fail(GT_ERR_NOMEM, "cannot grow the word list to %zu words", cap);
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = x;
    return GT_OK;
}

static int match(const pcre2_code *c, bool jit, const char *s, size_t n, size_t at, uint32_t opt,
                 pcre2_match_data *md) {
    int rc = pcre2_match(c, (PCRE2_SPTR)s, n, at, opt | (jit ? 0 : PCRE2_NO_JIT), md, NULL);
    /* The JIT's machine stack is small; very long runs fall back to the
     * interpreter, which uses the heap. */
    if (jit && rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(c, (PCRE2_SPTR)s, n, at, opt | PCRE2_NO_JIT, md, NULL);
    return rc;
}

/* Cuts segment s[0..n) (at text offset base) into matches and gaps. */
static gt_status split_one(const pcre2_code *c, bool jit, const char *s, size_t n, size_t base,
                           pcre2_match_data *md, ends_vec *out) {
    size_t at = 0;
    uint32_t opt = 0;
    while (at <= n) {
        int rc = match(c, jit, s, n, at, opt, md);
        if (rc == PCRE2_ERROR_NOMATCH) {
            if (opt == 0) break;
            /* An empty match here and no other: step one character on. */
            at += at < n ? gt__utf8_len((unsigned char)s[at]) : 1;
            if (at > n) break;
            opt = 0;
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return gt_fail(GT_ERR_INTERNAL,
                           "pre-tokenizer pattern failed on a %zu-byte segment: "
                           "%s",
                           n, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (ms > 0) GT_TRY(push_end(out, base + ms)); /* the gap before */
        GT_TRY(push_end(out, base + me));
        at = me;
        opt = ms == me ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
        if (ms == me && at >= n) break;
    }
    return push_end(out, base + n);
}

gt_status gt__pretok_split(const gt__pretok *p, const char *text, size_t len, size_t **ends,
                           size_t *n_words) {
    *ends = NULL;
    *n_words = 0;
    ends_vec cur = {0}, next = {0};
    gt_status st = GT_OK;
    pcre2_match_data *md = NULL;
    if (len == 0) return GT_OK;
    GT_TRY_GOTO(push_end(&cur, len), st, done);
    md = pcre2_match_data_create(1, NULL);
    if (!md) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate PCRE2 match data");
        goto done;
    }
    for (int k = 0; k < p->n; k++) {
        next.n = 0;
        size_t start = 0;
        for (size_t i = 0; i < cur.n; i++) {
            GT_TRY_GOTO(
                split_one(p->code[k], p->jit[k], text + start, cur.v[i] - start, start, md, &next),
                st, done);
            start = cur.v[i];
        }
        ends_vec tmp = cur;
        cur = next;
        next = tmp;
    }
    *ends = cur.v;
    *n_words = cur.n;
    cur.v = NULL;
done:
    pcre2_match_data_free(md);
    free(cur.v);
    free(next.v);
    return st;
}
