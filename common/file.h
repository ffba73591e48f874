/* Whole files into memory: one reader for prompts, texts and test data. */
#ifndef GT_FILE_H
#define GT_FILE_H

#include <stddef.h>

#include "common/status.h"

/* Reads all of path (a regular file or a pipe) into a new NUL-terminated
 * buffer *out of *len bytes (the NUL not counted; free with free()).
 * max_bytes 0 means no limit. Sentences: "PATH: cannot open: REASON",
 * "PATH: read failed: REASON", "PATH: larger than N bytes" (GT_ERR_RANGE),
 * "PATH: cannot allocate N bytes" (GT_ERR_NOMEM). */
gt_status gt_read_file(const char *path, size_t max_bytes, char **out, size_t *len);

#endif
