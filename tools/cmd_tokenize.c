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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/tokenizer/tokenizer.h"
#include "tools/args.h"
#include "tools/cmds.h"

#define MAX_TEXT_BYTES (256u << 20)

static void usage(FILE *f) {
    fprintf(f, "usage: gantry tokenize -m FILE (TEXT | --file PATH) [--ids] [--add-special]\n"
               "                       [--parse-special]\n"
               "  -m, --model FILE   a GGUF file with a tokenizer (vocabulary-only files work)\n"
               "  -f, --file PATH    read the text from PATH (exactly, newlines included)\n"
               "  --ids              print only the ids, space-separated on one line\n"
               "  --add-special      add BOS/EOS as the model asks (tokenizer.ggml.add_*_token)\n"
               "  --parse-special    turn control-token text such as <|im_end|> into that token\n");
}

static gt_status read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open the text file", path);
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    gt_status st = GT_OK;
    while (b) {
        if (n == cap) {
            if (cap >= MAX_TEXT_BYTES) {
                st =
                    gt_fail(GT_ERR_RANGE, "%s: text is larger than %u bytes", path, MAX_TEXT_BYTES);
                break;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) break;
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) st = gt_fail(GT_ERR_IO, "%s: read failed", path);
            break;
        }
    }
    fclose(f);
    if (!b) return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap);
    if (st != GT_OK) {
        free(b);
        return st;
    }
    *out = b;
    *len = n;
    return GT_OK;
}

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
    const char *model = NULL, *file = NULL, *text = NULL;
    bool ids_only = false;
    unsigned flags = 0;
    gt_args a;
    gt_args_init(&a, argc, argv);
    const char *arg;
    gt_status st = GT_OK;
    while (gt_args_next(&a, &arg)) {
        if (gt_args_is(&a, "-h", "--help")) {
            usage(stdout);
            return 0;
        } else if (gt_args_is(&a, "-m", "--model")) {
            st = gt_args_str(&a, &model);
        } else if (gt_args_is(&a, "-f", "--file")) {
            st = gt_args_str(&a, &file);
        } else if (gt_args_is(&a, NULL, "--ids")) {
            ids_only = true;
        } else if (gt_args_is(&a, NULL, "--add-special")) {
            flags |= GT_TOK_ADD_SPECIAL;
        } else if (gt_args_is(&a, NULL, "--parse-special")) {
            flags |= GT_TOK_PARSE_SPECIAL;
        } else if (arg[0] == '-' && arg[1] != 0) {
            st = gt_args_unknown(&a);
        } else if (!text) {
            text = arg;
        } else {
            st =
                gt_fail(GT_ERR_INVALID_ARG, "more than one TEXT given ('%s'); quote the text", arg);
        }
        if (st != GT_OK) {
            usage(stderr);
            return gt_args_report("tokenize", st);
        }
    }
    if (!model || (!text && !file) || (text && file)) {
        usage(stderr);
        return gt_args_report(
            "tokenize", gt_fail(GT_ERR_INVALID_ARG, !model ? "-m FILE is required"
                                                           : "give either TEXT or --file PATH"));
    }

    char *buf = NULL;
    size_t len = 0;
    if (file) {
        st = read_file(file, &buf, &len);
        if (st != GT_OK) return gt_args_report("tokenize", st);
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
    if (st != GT_OK) return gt_args_report("tokenize", st);
    return fflush(stdout) == 0 ? 0 : 1;
}
