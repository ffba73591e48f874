/* Tokenizer tests against the published llama.cpp / Hugging Face vectors in
 * shared/vocab/ (every case must match exactly), plus round trips on random
 * text and bytes, special-token parsing, end-of-generation ids, the streaming
 * detokenizer with stop strings, load errors and a speed check.
 *
 * Vector convention (shared/vocab/README.md): NAME.gguf.inp holds the cases,
 * each followed by "\n__ggml_vocab_test__\n"; NAME.gguf.out one line of ids
 * per case, produced without BOS/EOS and with special-token text taken as
 * plain text, i.e. gt_tokenize(..., flags = 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/file.h"

#include "model/gguf.h"
#include "model/tokenizer/tok_internal.h"
#include "model/tokenizer/tokenizer.h"
#include "util/test_util.h"

static const char *const k_vocabs[] = {"llama-spm",      "phi-3",     "gpt-2", "mpt",
                                       "deepseek-coder", "llama-bpe", "qwen2"};

/* The whole file, NUL-terminated, or NULL when it cannot be read. */
static char *read_all(const char *path, size_t *len) {
    char *b = NULL;
    if (gt_read_file(path, 0, &b, len) != GT_OK) return NULL;
    return b;
}

static const char *vocab_path(const char *name, const char *ext) {
    static char buf[4][1024];
    static int slot;
    slot = (slot + 1) & 3;
    snprintf(buf[slot], sizeof buf[0], "%s/vocab/ggml-vocab-%s.gguf%s", gt_test_shared_dir(), name,
             ext);
    return buf[slot];
}

static gt_tokenizer *load_vocab(const char *name) {
    gt_gguf *g = NULL;
    if (gt_gguf_open(vocab_path(name, ""), &g) != GT_OK) return NULL;
    gt_tokenizer *t = NULL;
    gt_status st = gt_tokenizer_load(g, &t);
    if (st != GT_OK) fprintf(stderr, "load %s: %s\n", name, gt_last_error());
    gt_gguf_close(g);
    return t;
}

static void print_escaped(const char *label, const char *s, size_t n) {
    fprintf(stderr, "%s\"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fprintf(stderr, "\\n");
        else if (c == '\t')
            fprintf(stderr, "\\t");
        else if (c < 32)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "\"\n");
}

static void print_ids(const char *label, const int32_t *v, size_t n) {
    fprintf(stderr, "%s", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "\n");
}

/* Runs every vector of `name` through t; returns the number of failing
 * cases (printing the first), or -1 when the vector files are missing. */
static int check_vectors(const gt_tokenizer *t, const char *name, bool quiet) {
    size_t inp_len;
    char *inp = read_all(vocab_path(name, ".inp"), &inp_len);
    char *outf = read_all(vocab_path(name, ".out"), NULL);
    if (!inp || !outf) {
        free(inp);
        free(outf);
        return -1;
    }
    static const char sep[] = "\n__ggml_vocab_test__\n";
    int n_fail = 0, n_case = 0;
    char *p = inp, *line = outf;
    for (;;) {
        char *e = strstr(p, sep);
        if (!e) break;
        size_t case_len = (size_t)(e - p);
        char *nl = strchr(line, '\n');
        if (!nl) {
            fprintf(stderr, "%s: .out has fewer lines than .inp has cases\n", name);
            n_fail++;
            break;
        }
        *nl = 0;
        int32_t want[4096];
        size_t n_want = 0;
        for (char *q = line; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            if (n_want < 4096) want[n_want++] = (int32_t)v;
            q = end;
        }
        int32_t *got = NULL;
        size_t n_got = 0;
        gt_status st = gt_tokenize(t, p, case_len, 0, &got, &n_got);
        bool ok = st == GT_OK && n_got == n_want &&
                  (n_got == 0 || memcmp(got, want, n_got * sizeof *got) == 0);
        if (!ok) {
            if (n_fail == 0 && !quiet) {
                fprintf(stderr, "%s: case %d differs\n", name, n_case);
                print_escaped("  input: ", p, case_len);
                print_ids("  want:", want, n_want);
                print_ids("  got: ", got, n_got);
            }
            n_fail++;
        }
        free(got);
        n_case++;
        p = e + sizeof sep - 1;
        line = nl + 1;
    }
    if (!quiet) fprintf(stderr, "%s: %d cases, %d differ\n", name, n_case, n_fail);
    free(inp);
    free(outf);
    return n_case == 0 ? 1 : n_fail;
}

static void test_vectors(void **state) {
    (void)state;
    int n_loaded = 0;
    for (size_t i = 0; i < sizeof k_vocabs / sizeof k_vocabs[0]; i++) {
        gt_tokenizer *t = load_vocab(k_vocabs[i]);
        if (!t) {
            fprintf(stderr, "%s: no vocabulary file, vectors not checked\n", k_vocabs[i]);
            continue;
        }
        n_loaded++;
        assert_int_equal(check_vectors(t, k_vocabs[i], false), 0);
        gt_tokenizer_free(t);
    }
    assert_true(n_loaded >= 5);
}

/* The comparison can fail: GPT-2's tokenizer on MPT's vectors differs. */
static void test_vectors_can_fail(void **state) {
    (void)state;
    gt_tokenizer *t = load_vocab("gpt-2");
    if (!t) skip();
    assert_true(check_vectors(t, "mpt", true) > 0);
    gt_tokenizer_free(t);
}

/* Random text: ASCII words, punctuation, whitespace runs, Latin-1, Cyrillic,
 * CJK and emoji, never "<" (no special-token text) nor U+2581. */
static size_t random_text(gt_test_rng *r, char *buf, size_t max) {
    static const char *const pieces[] = {
        "a",   "the",  " ",    "  ",   "\n", "\t",           "Hello", "world", ",",     ".",
        "!",   "?",    "'s",   "'ll",  "3",  "1234",         "ü",     "é",     "Äpfel", "н",
        "ещо", "你好", "世界", "🦙", "😀",  "\xe2\x80\x8d", " (",    ")",     "\r\n",  "   ",
        "ſ",   "K",    "ﬀ",    "Ⅻ",    "½",  "\xc2\xa0"};
    size_t n = 0, np = sizeof pieces / sizeof pieces[0];
    size_t k = (size_t)(gt_test_rng_u64(r) % 40);
    for (size_t i = 0; i < k; i++) {
        const char *s = pieces[gt_test_rng_u64(r) % np];
        size_t l = strlen(s);
        if (n + l >= max) break;
        memcpy(buf + n, s, l);
        n += l;
    }
    return n;
}

static void round_trip(const gt_tokenizer *t, const char *name, const char *s, size_t n) {
    int32_t *ids;
    size_t n_ids;
    assert_int_equal(gt_tokenize(t, s, n, 0, &ids, &n_ids), GT_OK);
    char *back;
    size_t back_len;
    assert_int_equal(gt_detokenize(t, ids, n_ids, GT_DETOK_STRIP_SPACE, &back, &back_len), GT_OK);
    if (back_len != n || memcmp(back, s, n) != 0) {
        fprintf(stderr, "%s: round trip differs\n", name);
        print_escaped("  in:  ", s, n);
        print_escaped("  out: ", back, back_len);
    }
    assert_int_equal(back_len, n);
    assert_memory_equal(back, s, n);
    free(ids);
    free(back);
}

static void test_round_trip(void **state) {
    (void)state;
    gt_test_rng r;
    gt_test_rng_seed(&r, 42);
    char buf[512];
    for (size_t i = 0; i < 5; i++) {
        gt_tokenizer *t = load_vocab(k_vocabs[i]);
        if (!t) continue;
        for (int k = 0; k < 300; k++) {
            size_t n = random_text(&r, buf, sizeof buf);
            round_trip(t, k_vocabs[i], buf, n);
        }
        /* Arbitrary bytes, invalid UTF-8 included: byte fallback (SPM) and
         * byte-level BPE both give the bytes back exactly, except bytes that
         * valid UTF-8 never holds and the vocabulary cannot carry: MPT has no
         * token for C0, F7, ... (dropped, as in llama.cpp), and
         * DeepSeek-Coder's user-defined "þ" stands for the text "þ", not the
         * byte FE. */
        bool usable[256];
        int n_usable = 0;
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            int32_t *ids;
            size_t n_ids;
            assert_int_equal(gt_tokenize(t, &c, 1, 0, &ids, &n_ids), GT_OK);
            char *back;
            size_t back_len;
            assert_int_equal(gt_detokenize(t, ids, n_ids, GT_DETOK_STRIP_SPACE, &back, &back_len),
                             GT_OK);
            usable[b] = back_len == 1 && back[0] == c && b != '<';
            n_usable += usable[b];
            free(back);
            free(ids);
        }
        fprintf(stderr, "%s: %d of 256 bytes have tokens\n", k_vocabs[i], n_usable);
        assert_true(n_usable >= 240);
        for (int k = 0; k < 300; k++) {
            size_t n = (size_t)(gt_test_rng_u64(&r) % 64);
            for (size_t j = 0; j < n; j++) {
                do buf[j] = (char)(gt_test_rng_u64(&r) & 0xff);
                while (!usable[(unsigned char)buf[j]]);
            }
            round_trip(t, k_vocabs[i], buf, n);
        }
        gt_tokenizer_free(t);
    }
}

static void expect_ids(const gt_tokenizer *t, const char *text, unsigned flags, const int32_t *want,
                       size_t n_want) {
    int32_t *ids;
    size_t n;
    assert_int_equal(gt_tokenize(t, text, strlen(text), flags, &ids, &n), GT_OK);
    if (n != n_want || memcmp(ids, want, n * sizeof *ids) != 0) {
        print_escaped("input: ", text, strlen(text));
        print_ids("want:", want, n_want);
        print_ids("got: ", ids, n);
        fail();
    }
    free(ids);
}

static void test_special(void **state) {
    (void)state;
    gt_tokenizer *t = load_vocab("phi-3");
    if (!t) skip();
    assert_int_equal(gt_tokenizer_type(t), GT_VOCAB_SPM);
    assert_int_equal(gt_tokenizer_bos(t), 1);
    assert_int_equal(gt_tokenizer_eos(t), 32000);
    assert_true(gt_tokenizer_add_bos(t));
    assert_false(gt_tokenizer_add_eos(t));
    assert_int_equal(gt_tokenizer_eot(t), 32007); /* <|end|>, found by text */
    assert_true(gt_tokenizer_is_eog(t, 32000));
    assert_true(gt_tokenizer_is_eog(t, 32007));
    assert_false(gt_tokenizer_is_eog(t, 32010));
    assert_false(gt_tokenizer_is_eog(t, -1));
    assert_false(gt_tokenizer_is_eog(t, 1 << 30));
    assert_int_equal(gt_tokenizer_nl(t), 13); /* <0x0A> */
    /* <|user|> and <|end|> become single tokens only when parsed; Phi-3's
     * special tokens eat the whitespace to their right. */
    int32_t *ids;
    size_t n;
    const char *chat = "<|user|>\nHi<|end|>";
    assert_int_equal(
        gt_tokenize(t, chat, strlen(chat), GT_TOK_PARSE_SPECIAL | GT_TOK_ADD_SPECIAL, &ids, &n),
        GT_OK);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 32010);
    assert_int_equal(ids[n - 1], 32007);
    free(ids);
    assert_int_equal(gt_tokenize(t, chat, strlen(chat), 0, &ids, &n), GT_OK);
    for (size_t i = 0; i < n; i++) assert_true(ids[i] < 32000);
    free(ids);
    /* Control tokens render only when asked. */
    assert_int_equal(gt_token_piece(t, 32007, false).len, 0);
    assert_int_equal(gt_token_piece(t, 32007, true).len, 7);
    gt_tokenizer_free(t);

    t = load_vocab("gpt-2");
    if (!t) skip();
    assert_int_equal(gt_tokenizer_type(t), GT_VOCAB_BPE);
    assert_false(gt_tokenizer_add_bos(t));
    assert_true(gt_tokenizer_is_eog(t, 50256));
    static const int32_t eot[] = {50256};
    expect_ids(t, "<|endoftext|>", GT_TOK_PARSE_SPECIAL, eot, 1);
    static const int32_t plain[] = {27, 91, 437, 1659, 5239, 91, 29};
    expect_ids(t, "<|endoftext|>", 0, plain, 7);
    static const int32_t hello[] = {15496, 995};
    expect_ids(t, "Hello world", GT_TOK_ADD_SPECIAL, hello, 2); /* GPT-2 adds no BOS */
    assert_int_equal(gt_tokenizer_nl(t), 198);
    gt_tokenizer_free(t);

    t = load_vocab("llama-spm");
    if (!t) skip();
    static const int32_t bos_hello[] = {1, 15043, 3186};
    expect_ids(t, "Hello world", GT_TOK_ADD_SPECIAL, bos_hello, 3);
    gt_tokenizer_free(t);

    /* MPT: user-defined whitespace tokens are cut out even without parsing. */
    t = load_vocab("mpt");
    if (!t) skip();
    assert_true(gt_tokenizer_attr(t, 50276) & GT_TOKEN_ATTR_USER_DEFINED);
    static const int32_t two_sp[] = {50276, 12092};
    expect_ids(t, "  Hello", 0, two_sp, 2);
    gt_tokenizer_free(t);
}

/* Streams ids one at a time; checks every chunk is valid UTF-8 and returns the
 * concatenation. */
static size_t stream_all(const gt_tokenizer *t, const int32_t *ids, size_t n,
                         const gt_detok_stream_opts *o, char *out, bool *stopped, int *stop_idx) {
    gt_detok_stream *s;
    assert_int_equal(gt_detok_stream_create(t, o, &s), GT_OK);
    size_t len = 0;
    *stopped = false;
    for (size_t i = 0; i < n; i++) {
        gt_str chunk;
        bool stop;
        assert_int_equal(gt_detok_stream_push(s, ids[i], &chunk, &stop), GT_OK);
        /* Whole characters only: no chunk ends inside a UTF-8 sequence. */
        if (chunk.len) {
            size_t j = chunk.len;
            size_t back = 0;
            while (j > 0 && ((unsigned char)chunk.ptr[j - 1] & 0xC0) == 0x80) j--, back++;
            if (j > 0) {
                unsigned char lead = (unsigned char)chunk.ptr[j - 1];
                size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
                assert_int_equal(back, need);
            }
        }
        memcpy(out + len, chunk.ptr, chunk.len);
        len += chunk.len;
        if (stop) {
            *stopped = true;
            break;
        }
    }
    gt_str tail;
    assert_int_equal(gt_detok_stream_finish(s, &tail), GT_OK);
    memcpy(out + len, tail.ptr, tail.len);
    len += tail.len;
    *stop_idx = gt_detok_stream_stop_index(s);
    gt_detok_stream_free(s);
    return len;
}

static void test_stream(void **state) {
    (void)state;
    gt_tokenizer *t = load_vocab("llama-spm");
    if (!t) skip();
    /* The llama emoji has no token: four byte-fallback tokens. */
    const char *text = "Hello 🦙 world, stop here please";
    int32_t *ids;
    size_t n;
    assert_int_equal(gt_tokenize(t, text, strlen(text), 0, &ids, &n), GT_OK);
    char out[256];
    bool stopped;
    int idx;
    gt_detok_stream_opts o = GT_DETOK_STREAM_OPTS_INIT;
    size_t len = stream_all(t, ids, n, &o, out, &stopped, &idx);
    assert_false(stopped);
    assert_int_equal(idx, -1);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(out, text, len);

    /* A stop string split over several tokens ("stop" | " here"). */
    const char *stops[] = {"zzz", "p here"};
    o.stop = stops;
    o.n_stop = 2;
    len = stream_all(t, ids, n, &o, out, &stopped, &idx);
    assert_true(stopped);
    assert_int_equal(idx, 1);
    assert_int_equal(len, strlen("Hello 🦙 world, sto"));
    assert_memory_equal(out, "Hello 🦙 world, sto", len);

    /* A stop string starting inside the emoji's bytes ("🦙 w"). */
    const char *stops2[] = {"\xf0\x9f\xa6\x99 w"};
    o.stop = stops2;
    o.n_stop = 1;
    len = stream_all(t, ids, n, &o, out, &stopped, &idx);
    assert_true(stopped);
    assert_int_equal(len, 6);
    assert_memory_equal(out, "Hello ", 6);

    /* A held prefix that never completes is released at the end. */
    const char *stops3[] = {"please!"};
    o.stop = stops3;
    len = stream_all(t, ids, n, &o, out, &stopped, &idx);
    assert_false(stopped);
    assert_int_equal(len, strlen(text));
    assert_memory_equal(out, text, len);
    free(ids);

    /* Invalid bytes become U+FFFD, one per maximal invalid subpart (F0 80
     * is two: 80 cannot follow F0), and so does an incomplete character at
     * the end. */
    int32_t bytes[] = {gt_tokenizer_find(t, "<0xF0>", 6), gt_tokenizer_find(t, "<0x80>", 6),
                       gt_tokenizer_find(t, "<0x41>", 6), gt_tokenizer_find(t, "<0xF0>", 6),
                       gt_tokenizer_find(t, "<0x9F>", 6)};
    for (int i = 0; i < 5; i++) assert_true(bytes[i] >= 0);
    o.n_stop = 0;
    len = stream_all(t, bytes, 5, &o, out, &stopped, &idx);
    assert_int_equal(len, 10);
    assert_memory_equal(out,
                        "\xef\xbf\xbd\xef\xbf\xbd"
                        "A"
                        "\xef\xbf\xbd",
                        10);

    /* Bad arguments. */
    gt_detok_stream *s;
    const char *empty[] = {""};
    o.stop = empty;
    o.n_stop = 1;
    assert_int_equal(gt_detok_stream_create(t, &o, &s), GT_ERR_INVALID_ARG);
    o.n_stop = 0;
    assert_int_equal(gt_detok_stream_create(t, &o, &s), GT_OK);
    gt_str chunk;
    assert_int_equal(gt_detok_stream_push(s, 99999, &chunk, &stopped), GT_ERR_RANGE);
    gt_detok_stream_free(s);
    char *txt;
    size_t tl;
    int32_t bad[] = {5, -3};
    assert_int_equal(gt_detokenize(t, bad, 2, 0, &txt, &tl), GT_ERR_RANGE);
    gt_tokenizer_free(t);
}

static void test_load_errors(void **state) {
    (void)state;
    const char *path = gt_test_tmp_path(0, "tok_no_vocab.gguf");
    gt_gguf_writer *w;
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    assert_int_equal(gt_gguf_writer_set_str(w, "general.architecture", "llama"), GT_OK);
    assert_int_equal(gt_gguf_writer_write(w, path), GT_OK);
    gt_gguf_writer_destroy(w);
    gt_gguf *g;
    gt_tokenizer *t;
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    assert_int_equal(gt_tokenizer_load(g, &t), GT_ERR_NOT_FOUND);
    assert_null(t);
    gt_gguf_close(g);

    /* A copy of GPT-2's metadata with an unknown pre-tokenizer, then with a
     * tokenizer model Gantry lacks. */
    gt_gguf *src;
    if (gt_gguf_open(vocab_path("gpt-2", ""), &src) != GT_OK) skip();
    for (int round = 0; round < 2; round++) {
        assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
        for (size_t i = 0; i < gt_gguf_n_kv(src); i++)
            assert_int_equal(gt_gguf_writer_copy_kv(w, gt_gguf_kv_at(src, i)), GT_OK);
        if (round == 0)
            assert_int_equal(gt_gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre"), GT_OK);
        else
            assert_int_equal(gt_gguf_writer_set_str(w, "tokenizer.ggml.model", "t5"), GT_OK);
        path = gt_test_tmp_path(1, "tok_bad.gguf");
        assert_int_equal(gt_gguf_writer_write(w, path), GT_OK);
        gt_gguf_writer_destroy(w);
        assert_int_equal(gt_gguf_open(path, &g), GT_OK);
        assert_int_equal(gt_tokenizer_load(g, &t), GT_ERR_UNSUPPORTED);
        assert_non_null(strstr(gt_last_error(), round == 0 ? "no-such-pre" : "t5"));
        gt_gguf_close(g);
    }
    /* The copy with the right metadata loads and tokenizes the same. */
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    for (size_t i = 0; i < gt_gguf_n_kv(src); i++)
        assert_int_equal(gt_gguf_writer_copy_kv(w, gt_gguf_kv_at(src, i)), GT_OK);
    assert_int_equal(gt_gguf_writer_write(w, path), GT_OK);
    gt_gguf_writer_destroy(w);
    gt_gguf_close(src);
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    assert_int_equal(gt_tokenizer_load(g, &t), GT_OK);
    gt_gguf_close(g); /* the tokenizer owns its strings */
    assert_int_equal(check_vectors(t, "gpt-2", false), 0);
    gt_tokenizer_free(t);
}

/* Splits text with a named pre-tokenizer and compares the words with a
 * "|"-separated expectation worked out by hand from the pattern. */
static void expect_split(const char *pre, const char *text, const char *want) {
    gt__pretok *p;
    gt__pretok_info info;
    assert_int_equal(gt__pretok_create(pre, &p, &info), GT_OK);
    size_t *ends, n;
    assert_int_equal(gt__pretok_split(p, text, strlen(text), &ends, &n), GT_OK);
    char got[512];
    size_t o = 0, start = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) got[o++] = '|';
        memcpy(got + o, text + start, ends[i] - start);
        o += ends[i] - start;
        start = ends[i];
    }
    got[o] = 0;
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "pre-tokenizer %s:\n  want %s\n  got  %s\n", pre, want, got);
        fail();
    }
    free(ends);
    gt__pretok_free(p);
}

/* Pre-tokenizers whose vocabularies are not here (llama-bpe, qwen2 vectors
 * have no .gguf): every pattern compiles, and the main ones split as their
 * regular expressions say. */
static void test_pretok(void **state) {
    (void)state;
    static const char *const names[] = {
        "default",        "llama-bpe",   "llama3",    "dbrx",        "chatglm-bpe", "deepseek-llm",
        "deepseek-coder", "deepseek-v3", "falcon",    "gpt-2",       "mpt",         "olmo",
        "jais",           "starcoder",   "refact",    "command-r",   "smollm",      "qwen2",
        "stablelm2",      "qwen35",      "bloom",     "viking",      "tekken",      "gpt-4o",
        "llama4",         "chameleon",   "superbpe",  "bailingmoe",  "seed-coder",  "exaone",
        "minerva-7b",     "codeshell",   "poro-chat", "gpt3-finnish"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        gt__pretok *p;
        gt__pretok_info info;
        assert_int_equal(gt__pretok_create(names[i], &p, &info), GT_OK);
        const char *text = "Hello, y'all! 1234567 \xff\xfe  \n\n  x\xe4\xbd\xa0\xe5\xa5\xbd";
        size_t *ends, n;
        assert_int_equal(gt__pretok_split(p, text, strlen(text), &ends, &n), GT_OK);
        assert_true(n > 0);
        assert_int_equal(ends[n - 1], strlen(text));
        for (size_t k = 1; k < n; k++) assert_true(ends[k] > ends[k - 1]);
        free(ends);
        gt__pretok_free(p);
    }
    gt__pretok *p;
    gt__pretok_info info;
    assert_int_equal(gt__pretok_create("llama-bpe", &p, &info), GT_OK);
    assert_true(info.ignore_merges && info.add_bos);
    gt__pretok_free(p);
    assert_int_equal(gt__pretok_create("nonesuch", &p, &info), GT_ERR_UNSUPPORTED);

    expect_split("llama-bpe", "Hello, y'all! 1234567 I'M  x\n\n y",
                 "Hello|,| y|'all|!| |123|456|7| I|'M| | x|\n\n| y");
    expect_split("qwen2", "Hello, 1234  \n", "Hello|,| |1|2|3|4|  \n");
    expect_split("gpt-2", "Hello   world's 42!!  ", "Hello|  | world|'s| 42|!!|  ");
    expect_split("superbpe", "x1234567y", "x|1|234|567|y");
    expect_split("deepseek-coder", "ab12\ncd", "ab|1|2|\n|cd");
    /* Invalid bytes never match a pattern character: they fall between
     * words and reach BPE unchanged. */
    expect_split("gpt-2",
                 "ab\xff"
                 "cd",
                 "ab|\xff|"
                 "cd");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_speed(void **state) {
    (void)state;
    static const char para[] =
        "The quick brown fox jumps over the lazy dog. It's a sentence that's been used for "
        "typing practice since the 1880s, and it contains every letter of the alphabet.\n"
        "Tokenizers split text into words, then merge characters by rank or score; a good "
        "implementation never rescans the whole text for each merge.\n";
    size_t target = 100 * 1024, plen = sizeof para - 1;
    char *text = malloc(target + plen);
    size_t n = 0;
    while (n < target) {
        memcpy(text + n, para, plen);
        n += plen;
    }
    const char *names[] = {"gpt-2", "llama-spm"};
    for (int i = 0; i < 2; i++) {
        gt_tokenizer *t = load_vocab(names[i]);
        if (!t) continue;
        int32_t *ids;
        size_t n_ids;
        double t0 = now_s();
        assert_int_equal(gt_tokenize(t, text, n, 0, &ids, &n_ids), GT_OK);
        double dt = now_s() - t0;
        fprintf(stderr, "%s: %zu bytes -> %zu tokens in %.1f ms (%.1f MB/s)\n", names[i], n, n_ids,
                dt * 1e3, (double)n / dt / 1e6);
        assert_true(dt < 1.0);
        char *back;
        size_t back_len;
        assert_int_equal(gt_detokenize(t, ids, n_ids, GT_DETOK_STRIP_SPACE, &back, &back_len),
                         GT_OK);
        assert_int_equal(back_len, n);
        assert_memory_equal(back, text, n);
        free(back);
        free(ids);
        gt_tokenizer_free(t);
    }
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),    cmocka_unit_test(test_vectors_can_fail),
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_special),
        cmocka_unit_test(test_stream),     cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_pretok),     cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
