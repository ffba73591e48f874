/* The one piece of JSON that hand-written output needs: a string literal
 * with quotes, backslashes and control characters escaped. */
#ifndef GT_JSON_H
#define GT_JSON_H

#include <stdio.h>

/* Writes s as a JSON string, quotes included: '"' and '\\' escaped, \n \r
 * \t \b \f by name, other bytes below 0x20 and 0x7f as \u00XX; everything
 * else (UTF-8 included) as is. NULL writes null. */
void gt_json_write_str(FILE *f, const char *s);

#endif
