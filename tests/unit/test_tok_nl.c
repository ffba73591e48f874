/* The newline token found at load (looked up, not tokenized) against running
 * the tokenizer on "\n", for every vocabulary in shared/vocab/ and every
 * cached real model. SPM keeps its rule: the byte token <0x0A> (or a raw
 * "\n" byte token), else PAD; BPE: the first id gt_tokenize gives for "\n"
 * without special parsing, else PAD. Four small hand-made BPE vocabularies
 * reach each branch of the look-up: a user-defined "\n" token, a normal one
 * (not cut out, so "Ċ" wins), no "Ċ" (the one-byte fallback), and nothing
 * at all (PAD). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/gguf.h"
#include "model/tokenizer/tokenizer.h"
#include "util/test_util.h"

/* Checks one file; 1 when it held a tokenizer that was checked. */
static int check_file(const char *path) {
    gt_gguf *g = NULL;
    if (gt_gguf_open(path, &g) != GT_OK) return 0;
    gt_tokenizer *t = NULL;
    gt_status st = gt_tokenizer_load(g, &t);
    gt_gguf_close(g);
    if (st != GT_OK) {
        fprintf(stderr, "%s: no tokenizer (%s)\n", path, gt_last_error());
        return 0;
    }
    int32_t want;
    if (gt_tokenizer_type(t) == GT_VOCAB_SPM) {
        want = gt_tokenizer_find(t, "<0x0A>", 6);
        if (want < 0) want = gt_tokenizer_find(t, "\n", 1);
        if (want < 0) want = gt_tokenizer_pad(t);
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        assert_int_equal(gt_tokenize(t, "\n", 1, 0, &ids, &n), GT_OK);
        want = n ? ids[0] : gt_tokenizer_pad(t);
        free(ids);
    }
    int32_t nl = gt_tokenizer_nl(t);
    fprintf(stderr, "%s: newline token %d (want %d)\n", path, nl, want);
    assert_int_equal(nl, want);
    if (gt_tokenizer_type(t) == GT_VOCAB_SPM && nl != gt_tokenizer_pad(t)) {
        gt_str p = gt_token_piece(t, nl, true);
        assert_int_equal(p.len, 1);
        assert_int_equal(p.ptr[0], '\n');
    }
    gt_tokenizer_free(t);
    return 1;
}

/* A byte-level BPE vocabulary of the given texts and types (one merge, "a
 * a"); pad < 0 sets no padding id. Returns gt_tokenizer_nl after checking it
 * against the tokenizer. */
static int32_t tiny_bpe(const char *const *texts, const int32_t *types, size_t n, int32_t pad) {
    gt_str strs[8];
    for (size_t i = 0; i < n; i++) strs[i] = (gt_str){texts[i], strlen(texts[i])};
    gt_str merge = {"a a", 3};
    gt_gguf_writer *w;
    assert_int_equal(gt_gguf_writer_create(&w), GT_OK);
    assert_int_equal(gt_gguf_writer_set_str(w, "general.architecture", "llama"), GT_OK);
    assert_int_equal(gt_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), GT_OK);
    assert_int_equal(gt_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default"), GT_OK);
    assert_int_equal(gt_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n), GT_OK);
    assert_int_equal(
        gt_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GT_GGUF_INT32, types, n), GT_OK);
    assert_int_equal(gt_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", &merge, 1), GT_OK);
    assert_int_equal(gt_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 0), GT_OK);
    assert_int_equal(gt_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 0), GT_OK);
    if (pad >= 0)
        assert_int_equal(
            gt_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad), GT_OK);
    const char *path = gt_test_tmp_path(0, "tok_nl.gguf");
    assert_int_equal(gt_gguf_writer_write(w, path), GT_OK);
    gt_gguf_writer_destroy(w);
    assert_int_equal(check_file(path), 1);
    gt_gguf *g;
    gt_tokenizer *t;
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    assert_int_equal(gt_tokenizer_load(g, &t), GT_OK);
    gt_gguf_close(g);
    int32_t nl = gt_tokenizer_nl(t);
    gt_tokenizer_free(t);
    return nl;
}

static void test_nl_branches(void **state) {
    (void)state;
    enum { NORMAL = 1, CONTROL = 3, USER = 4 };
    /* "\xc4\x8a" is "Ċ", GPT-2's character for the byte '\n'. */
    static const char *const user[] = {"a", "\xc4\x8a", "\n"};
    assert_int_equal(tiny_bpe(user, (const int32_t[]){NORMAL, NORMAL, USER}, 3, -1), 2);
    assert_int_equal(tiny_bpe(user, (const int32_t[]){NORMAL, NORMAL, NORMAL}, 3, -1), 1);
    assert_int_equal(tiny_bpe(user, (const int32_t[]){NORMAL, NORMAL, CONTROL}, 3, -1), 1);
    static const char *const fallback[] = {"a", "\n", "\x8a"};
    assert_int_equal(tiny_bpe(fallback, (const int32_t[]){NORMAL, CONTROL, NORMAL}, 3, -1), 2);
    static const char *const none[] = {"a", "b"};
    assert_int_equal(tiny_bpe(none, (const int32_t[]){NORMAL, NORMAL}, 2, 1), 1);
    assert_int_equal(tiny_bpe(none, (const int32_t[]){NORMAL, NORMAL}, 2, -1), GT_TOKEN_NULL);
}

static int check_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".gguf") != 0) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        n += check_file(path);
    }
    closedir(d);
    return n;
}

static void test_nl_matches_tokenizer(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/vocab", gt_test_shared_dir());
    int n = check_dir(dir);
    const char *models = getenv("GANTRY_MODELS");
    const char *home = getenv("HOME");
    if (models) {
        snprintf(dir, sizeof dir, "%s", models);
    } else {
        snprintf(dir, sizeof dir, "%s/.cache/gantry/models", home ? home : ".");
    }
    n += check_dir(dir);
    if (n == 0) skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nl_matches_tokenizer),
        cmocka_unit_test(test_nl_branches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
