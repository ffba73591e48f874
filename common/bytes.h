/* Byte counts as people write and read them: "2G" in, "1.50 GiB" out. */
#ifndef GT_BYTES_H
#define GT_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* "2G", "512M", "1.5GiB", "123456" (K/M/G/T are powers of 1024, whether
 * written K, KB or KiB, any case) into bytes. GT_ERR_INVALID_ARG with a
 * sentence naming the text for "", "-1", "12Q" or a count beyond 2^63. */
gt_status gt_parse_bytes(const char *text, uint64_t *out);
/* "512 B", "1.50 GiB" style; returns buf. */
const char *gt_format_bytes(uint64_t bytes, char *buf, size_t cap);

#endif
