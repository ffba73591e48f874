/* Whole files into memory; see file.h. */
#include "common/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

gt_status gt_read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    if (max_bytes && max_bytes < cap) cap = max_bytes + 1;
    char *b = malloc(cap); /* [cap] bytes, n used, one kept for the NUL */
    gt_status st = GT_OK;
    while (b) {
        if (n + 1 == cap) {
            if (max_bytes && n >= max_bytes) {
                /* Full at the limit: one more byte means the file is larger. */
                if (fgetc(f) != EOF) st = gt_fail(GT_ERR_RANGE, "%s: larger than %zu bytes", path, max_bytes);
                break;
            }
            size_t ncap = cap * 2;
            if (max_bytes && ncap > max_bytes + 1) ncap = max_bytes + 1;
            char *nb = realloc(b, ncap);
            if (!nb) {
                free(b);
                b = NULL;
                cap = ncap;
                break;
            }
            b = nb;
            cap = ncap;
        }
        size_t r = fread(b + n, 1, cap - 1 - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) st = gt_fail(GT_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!b) return gt_fail(GT_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap);
    if (st != GT_OK) {
        free(b);
        return st;
    }
    b[n] = '\0';
    *out = b;
    if (len) *len = n;
    return GT_OK;
}
