/* The newline token found at load (looked up, not tokenized) against running
 * the tokenizer on "\n", for every vocabulary in shared/vocab/ and every
 * cached real model. SPM keeps its rule: the byte token <0x0A> (or a raw
 * "\n" byte token), else PAD; BPE: the first id gt_tokenize gives for "\n"
 * without special parsing, else PAD. */
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
    fprintf(stderr, "%s: newline token %d (want %d)\n", path, gt_tokenizer_nl(t), want);
    assert_int_equal(gt_tokenizer_nl(t), want);
    gt_tokenizer_free(t);
    return 1;
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
