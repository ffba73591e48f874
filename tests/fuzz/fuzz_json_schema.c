/* libFuzzer target for the JSON schema compiler (coordinator/
 * json_schema.h): any input is refused with a sentence or becomes a
 * grammar that the GBNF compiler accepts (a schema the compiler takes must
 * never produce a grammar that matches nothing), and whose matcher starts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/grammar.h"
#include "coordinator/json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *gbnf = NULL;
    gt_clear_error();
    if (gt_json_schema_to_gbnf((const char *)data, size, &gbnf) != GT_OK) {
        if (!*gt_last_error() || gbnf) abort();
        return 0;
    }
    gt_grammar *g = NULL;
    if (gt_grammar_compile(gbnf, strlen(gbnf), &g) != GT_OK) abort();
    gt_gmatch *m = NULL;
    if (gt_gmatch_create(g, &m) != GT_OK) abort();
    /* Some JSON must be able to start: '{', '[', '"', a digit, '-', t, f, n. */
    static const char *starts[] = {"{", "[", "\"", "0", "1", "-", "t", "f", "n", " "};
    bool any = false;
    for (size_t i = 0; i < sizeof starts / sizeof *starts; i++)
        any = any || gt_gmatch_try(m, (const uint8_t *)starts[i], 1);
    if (!any) abort();
    gt_gmatch_free(m);
    gt_grammar_free(g);
    free(gbnf);
    return 0;
}
