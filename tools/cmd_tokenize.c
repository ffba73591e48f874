/* `gantry tokenize -m FILE (TEXT | --file PATH)`: turns text into token ids
 * with a model's vocabulary.
 *
 * Works on any GGUF with tokenizer.ggml.* metadata, vocabulary-only files
 * (no tensors) included. The default output is one line per token,
 * `id<TAB>'piece'`, with the piece's control bytes and invalid UTF-8 escaped;
 * --ids prints just the ids on one line, which is the convention of the
 * published test vectors: no BOS/EOS unless --add-special, special-token text
 * taken as plain text unless --parse-special. --file reads the text exactly
 * as stored (a trailing newline is part of it). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "model/gguf.h"
#include "model/tokenizer/tokenizer.h"
#include "tools/cmds.h"
#include "tools/flags.h"

#define MAX_TEXT_BYTES (256u << 20)

typedef struct tokenize_opts {
    const char *model, *file, *text;
    bool ids_only, add_special, parse_special;
} tokenize_opts;

#define O(f) offsetof(tokenize_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(model), .metavar = "FILE",
     .help = "a GGUF file with a tokenizer (vocabulary-only files work)", .required = "-m FILE is required"},
    {"-f", "--file", GT_FLAG_STR, O(file), .metavar = "PATH",
     .help = "read the text from PATH (exactly, newlines included)"},
    {NULL, "--ids", GT_FLAG_BOOL, O(ids_only), .help = "print only the ids, space-separated on one line"},
    {NULL, "--add-special", GT_FLAG_BOOL, O(add_special),
     .help = "add BOS/EOS as the model asks (tokenizer.ggml.add_*_token)"},
    {NULL, "--parse-special", GT_FLAG_BOOL, O(parse_special),
     .help = "turn control-token text such as <|im_end|> into that token"},
};
#undef O

static gt_status positional(const char *arg, void *opts) {
    tokenize_opts *o = opts;
    if (o->text) return gt_fail(GT_ERR_INVALID_ARG, "more than one TEXT given ('%s'); quote the text", arg);
    o->text = arg;
    return GT_OK;
}

static gt_status validate(void *opts) {
    tokenize_opts *o = opts;
    if ((!o->text && !o->file) || (o->text && o->file))
        return gt_fail(GT_ERR_INVALID_ARG, "give either TEXT or --file PATH");
    return GT_OK;
}

static const gt_flag_spec k_spec = {
    .verb = "tokenize",
    .synopsis = "-m FILE (TEXT | --file PATH) [--ids] [--add-special] [--parse-special]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .positional = positional,
    .validate = validate,
    .usage_on_error = GT_USAGE_BEFORE,
};

/* The piece between quotes: printable UTF-8 as is, the rest escaped. */
static void print_piece(gt_str p) {
    putchar('\'');
    for (size_t i = 0; i < p.len;) {
        unsigned char c = (unsigned char)p.ptr[i];
        if (c < 0x80) {
            if (c == '\n')
                fputs("\\n", stdout);
            else if (c == '\t')
                fputs("\\t", stdout);
            else if (c == '\r')
                fputs("\\r", stdout);
            else if (c == '\\' || c == '\'')
                printf("\\%c", c);
            else if (c < 0x20 || c == 0x7f)
                printf("\\x%02x", c);
            else
                putchar(c);
            i++;
        } else {
            /* A whole valid UTF-8 character, or \xNN for a stray byte. */
            size_t l = c >= 0xF5 ? 0 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
            bool ok = l > 0 && i + l <= p.len;
            for (size_t k = 1; ok && k < l; k++) ok = ((unsigned char)p.ptr[i + k] & 0xC0) == 0x80;
            if (ok) {
                fwrite(p.ptr + i, 1, l, stdout);
                i += l;
            } else {
                printf("\\x%02x", c);
                i++;
            }
        }
    }
    putchar('\'');
}

int gt_cmd_tokenize(int argc, char **argv) {
    tokenize_opts o = {0};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    const char *model = o.model, *file = o.file, *text = o.text;
    bool ids_only = o.ids_only;
    unsigned flags = (o.add_special ? GT_TOK_ADD_SPECIAL : 0u) | (o.parse_special ? GT_TOK_PARSE_SPECIAL : 0u);
    gt_status st;
    char *buf = NULL;
    size_t len = 0;
    if (file) {
        st = gt_read_file(file, MAX_TEXT_BYTES, &buf, &len);
        if (st != GT_OK) return gt_flags_report("tokenize", st);
    } else {
        len = strlen(text);
    }
    gt_gguf *g = NULL;
    gt_tokenizer *t = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    st = gt_gguf_open(model, &g);
    if (st == GT_OK) st = gt_tokenizer_load(g, &t);
    if (st == GT_OK) st = gt_tokenize(t, file ? buf : text, len, flags, &ids, &n);
    if (st == GT_OK) {
        if (ids_only) {
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
        } else {
            for (size_t i = 0; i < n; i++) {
                printf("%d\t", ids[i]);
                print_piece(gt_token_piece(t, ids[i], true));
                putchar('\n');
            }
        }
    }
    free(ids);
    gt_tokenizer_free(t);
    gt_gguf_close(g);
    free(buf);
    if (st != GT_OK) return gt_flags_report("tokenize", st);
    return fflush(stdout) == 0 ? 0 : 1;
}
