/* The RPC checks that need the model's numbers (context, vocabulary, the
 * prompt's length once tokenized), and the protocol's names for codes,
 * methods and finish reasons. */
#include <stdio.h>
#include <stdint.h>

#include "coordinator/rpc.h"

const char *gt_rpc_code_name(gt_rpc_code c) {
    static const char *const names[GT_RPC_CODE_COUNT] = {
        [GT_RPC_BAD_FRAME] = "bad_frame",
        [GT_RPC_BAD_REQUEST] = "bad_request",
        [GT_RPC_UNKNOWN_METHOD] = "unknown_method",
        [GT_RPC_INVALID_PARAM] = "invalid_param",
        [GT_RPC_TOO_LONG] = "too_long",
        [GT_RPC_UNAUTHORIZED] = "unauthorized",
        [GT_RPC_DRAINING] = "draining",
        [GT_RPC_QUEUE_FULL] = "queue_full",
        [GT_RPC_INTERNAL] = "internal",
    };
    return (c > 0 && c < GT_RPC_CODE_COUNT) ? names[c] : "internal";
}

const char *gt_rpc_method_name(gt_rpc_method m) {
    static const char *const names[GT_RPC_METHOD_COUNT] = {
        "generate", "tokenize", "detokenize", "cancel", "model_info", "health", "stats", "auth"};
    return ((unsigned)m < GT_RPC_METHOD_COUNT) ? names[m] : "unknown";
}

const char *gt_rpc_finish_name(gt_rpc_finish f) {
    static const char *const names[] = {"stop", "length", "cancelled", "shutdown"};
    return ((unsigned)f < 4) ? names[f] : "stop";
}

bool gt_rpc_token_equal(const char *given, size_t given_len, const char *expected,
                        size_t expected_len) {
    volatile unsigned diff = given_len != expected_len;
    for (size_t i = 0; i < expected_len; i++)
        diff |= (unsigned)(uint8_t)(i < given_len ? given[i] : 0) ^ (uint8_t)expected[i];
    return diff == 0;
}

gt_status gt_rpc_tokens_check(const char *field, const int32_t *ids, uint32_t n, uint32_t n_vocab) {
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= n_vocab)
            return gt_fail(GT_ERR_INVALID_ARG, "%s[%u] is %d, outside the vocabulary of %u tokens",
                           field, i, ids[i], n_vocab);
    return GT_OK;
}

gt_status gt_rpc_generate_check(gt_rpc_generate *g, const gt_rpc_model_limits *m, uint32_t n_prompt,
                                gt_rpc_code *code) {
    *code = GT_RPC_INVALID_PARAM;
    if (g->input == GT_RPC_INPUT_TOKENS) {
        gt_status st = gt_rpc_tokens_check("generate: tokens", g->tokens, g->n_tokens, m->n_vocab);
        if (st != GT_OK) return st;
    }
    if (g->sampling.top_k > 0 && (uint32_t)g->sampling.top_k > m->n_vocab)
        return gt_fail(GT_ERR_INVALID_ARG, "generate: top_k %d exceeds the vocabulary of %u tokens",
                       g->sampling.top_k, m->n_vocab);
    for (uint32_t i = 0; i < g->n_bias; i++)
        if ((uint32_t)g->bias_ids[i] >= m->n_vocab)
            return gt_fail(GT_ERR_INVALID_ARG, "generate: logit_bias token %d is outside the vocabulary of %u "
                           "tokens", g->bias_ids[i], m->n_vocab);
    if (g->logprobs > m->n_vocab)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "generate: logprobs %u exceeds the vocabulary of %u tokens", g->logprobs,
                       m->n_vocab);
    if (n_prompt == 0)
        return gt_fail(GT_ERR_INVALID_ARG, "generate: the prompt is empty once tokenized");
    *code = GT_RPC_TOO_LONG;
    if (g->has_max_tokens) {
        if ((uint64_t)n_prompt + g->max_tokens > m->n_ctx)
            return gt_fail(GT_ERR_RANGE,
                           "generate: prompt of %u tokens plus max_tokens %u exceeds the context "
                           "of %u",
                           n_prompt, g->max_tokens, m->n_ctx);
    } else {
        if (n_prompt >= m->n_ctx)
            return gt_fail(GT_ERR_RANGE,
                           "generate: prompt of %u tokens leaves no room for a token in the "
                           "context of %u",
                           n_prompt, m->n_ctx);
        g->has_max_tokens = true;
        g->max_tokens = m->n_ctx - n_prompt;
    }
    *code = 0;
    return GT_OK;
}
