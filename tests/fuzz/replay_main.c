/* Runs a libFuzzer target without libFuzzer: every file of the seed corpus,
 * then a fixed number of deterministic mutations of each (byte flips,
 * truncations, overwritten length fields). It keeps the corpus exercised in
 * every ctest run, under the sanitizer build too; real coverage-guided
 * fuzzing uses -DGANTRY_FUZZ=ON with clang.
 *
 * Usage: fuzz_X_replay CORPUS_DIR [MUTATIONS_PER_FILE] */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t g_rng = 0x1234567;
static uint64_t next_rand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static void mutate(uint8_t *buf, size_t *size, size_t cap) {
    size_t n = *size;
    switch (next_rand() % 5) {
    case 0: /* flip a few bytes */
        for (int i = 0; i < 4 && n; i++) buf[next_rand() % n] ^= (uint8_t)(1u << (next_rand() % 8));
        break;
    case 1: /* truncate */
        if (n) *size = next_rand() % n;
        break;
    case 2: /* overwrite 8 bytes with an extreme value (lengths, counts) */
        if (n >= 8) {
            static const uint64_t extremes[] = {0, 1, 0xffffffffull, 0x7fffffffffffffffull,
                                                0xffffffffffffffffull, 0x100000000ull, 4096};
            uint64_t v = extremes[next_rand() % (sizeof extremes / sizeof extremes[0])];
            memcpy(buf + (next_rand() % (n - 7)), &v, 8);
        }
        break;
    case 3: /* random byte values */
        for (int i = 0; i < 16 && n; i++) buf[next_rand() % n] = (uint8_t)next_rand();
        break;
    default: /* append garbage */
        while (*size < cap && *size < n + 64) buf[(*size)++] = (uint8_t)next_rand();
        break;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS_PER_FILE]\n", argv[0]);
        return 2;
    }
    int mutations = argc > 2 ? atoi(argv[2]) : 300;
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "%s: cannot open the corpus folder\n", argv[1]);
        return 1;
    }
    int files = 0;
    long runs = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        char *text = NULL;
        size_t got = 0;
        if (gt_read_file(path, (size_t)64 << 20, &text, &got) != GT_OK) continue;
        size_t cap = got + 64; /* room for mutations that insert bytes */
        uint8_t *orig = realloc(text, cap), *buf = malloc(cap);
        if (!orig || !buf) {
            free(orig ? orig : (uint8_t *)text);
            free(buf);
            continue;
        }
        LLVMFuzzerTestOneInput(orig, got);
        runs++;
        for (int m = 0; m < mutations; m++) {
            size_t size = got;
            memcpy(buf, orig, got);
            int rounds = 1 + (int)(next_rand() % 3);
            for (int r = 0; r < rounds; r++) mutate(buf, &size, cap);
            /* A private copy of exactly `size` bytes so ASan sees overreads. */
            uint8_t *exact = malloc(size ? size : 1);
            memcpy(exact, buf, size);
            LLVMFuzzerTestOneInput(exact, size);
            free(exact);
            runs++;
        }
        free(orig);
        free(buf);
        files++;
    }
    closedir(d);
    printf("%d corpus files, %ld runs, no crash\n", files, runs);
    return files > 0 ? 0 : 1;
}
