/* JSON schema -> GBNF grammar (coordinator/grammar.h), for structured
 * output.
 *
 * The common subset: `type` (object, array, string, number, integer,
 * boolean, null, or a list of them), `properties`, `required`, `enum`,
 * `const`, `items`, `minItems`/`maxItems`, `anyOf`/`oneOf`, nested to any
 * depth up to 64. Objects with `properties` allow exactly those keys
 * (additionalProperties false, whatever the schema says), required ones
 * first in schema order, then the optional ones in schema order; an object
 * without `properties` and a schema without `type` allow any JSON value of
 * that kind. Whitespace between tokens is optional and bounded (as
 * llama.cpp's: nothing, one space, or a newline and at most 20 spaces or
 * tabs), numbers have at most 16 digits before and after the point.
 * The schema text is parsed with jansson. */
#ifndef GT_JSON_SCHEMA_H
#define GT_JSON_SCHEMA_H

#include <stddef.h>

#include "common/status.h"

/* *gbnf: a new NUL-terminated grammar the caller frees. GT_ERR_FORMAT (the
 * text is not JSON, with jansson's line and column), GT_ERR_UNSUPPORTED (a
 * keyword outside the subset, e.g. $ref, named with its path),
 * GT_ERR_INVALID_ARG (a malformed schema, e.g. `required` that is not a
 * list of strings), GT_ERR_NOMEM. */
gt_status gt_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf);
/* The grammar of any JSON object ({"type": "json_object"} in OpenAI's
 * response_format); a static string. */
const char *gt_json_object_gbnf(void);

#endif
