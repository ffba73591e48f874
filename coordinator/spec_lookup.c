/* Prompt lookup (n-gram) speculation: the guesses are the tokens that
 * followed the latest earlier occurrence of the context's last n-gram,
 * trying the longest n-gram first. Text that quotes or repeats itself
 * (summaries, code edits, extraction) continues what it repeats, so the
 * guesses cost one scan of the context and no model. */
#include "coordinator/spec.h"

#include <string.h>

int gt_spec_lookup(const int32_t *ctx, int n, int max_ngram, int k, int32_t *out) {
    if (k < 1 || n < 2) return 0;
    int g = max_ngram < n - 1 ? max_ngram : n - 1;
    for (; g >= 1; g--) {
        const int32_t *pat = ctx + n - g;
        /* The latest occurrence that ends before the last token, so at
         * least one token follows it. */
        for (int i = n - g - 1; i >= 0; i--) {
            if (ctx[i] != pat[0] || memcmp(ctx + i, pat, (size_t)g * sizeof *pat) != 0) continue;
            int from = i + g, m = n - from < k ? n - from : k;
            memcpy(out, ctx + from, (size_t)m * sizeof *out);
            return m;
        }
    }
    return 0;
}
