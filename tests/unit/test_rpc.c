/* The msgpack-RPC codec (coordinator/rpc.h): frames built by msgpack-c from
 * a short notation in the tests ("[0, 1, 'generate', [{'prompt': 'hi'}]]")
 * and bytes written out by hand, fed whole, byte by byte and several in one
 * piece; every refusal with its code and sentence; the checks that need the
 * model's numbers; the encoders read back with msgpack-c and against bytes
 * written by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <msgpack.h>

#include "coordinator/rpc.h"

/* ---- a notation for frames, packed with msgpack-c ----
 * [a, b], {k: v}, 'str', b'bin', 12, -3, 1.5, nil, true, false; inside
 * quotes \0, \n, \xHH and \' (written \\0 ... in C strings). */
static const char *skip_ws(const char *s) {
    while (*s == ' ' || *s == ',' || *s == ':') s++;
    return s;
}

static const char *pack_value(msgpack_packer *pk, const char *s);

static int count_items(const char *s, char close) {
    int depth = 0, n = 0;
    bool in_str = false, item = false;
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\')
                s++;
            else if (*s == '\'')
                in_str = false;
            continue;
        }
        if (*s == '\'') in_str = true;
        if (depth == 0 && *s == close) break;
        if (*s == '[' || *s == '{') depth++;
        if (*s == ']' || *s == '}') depth--;
        if (depth == 0 && *s == ',') n++;
        if (*s != ' ') item = true;
    }
    return item ? n + 1 : 0;
}

static const char *pack_string(msgpack_packer *pk, const char *s, bool bin) {
    char buf[4096];
    size_t n = 0;
    for (s++; *s != '\''; s++) {
        if (*s != '\\') {
            buf[n++] = *s;
            continue;
        }
        s++;
        if (*s == '0')
            buf[n++] = 0;
        else if (*s == 'n')
            buf[n++] = '\n';
        else if (*s == 'x') {
            char hex[3] = {s[1], s[2], 0};
            buf[n++] = (char)strtol(hex, NULL, 16);
            s += 2;
        } else
            buf[n++] = *s;
    }
    if (bin) {
        msgpack_pack_bin(pk, n);
        msgpack_pack_bin_body(pk, buf, n);
    } else {
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, buf, n);
    }
    return s + 1;
}

static const char *pack_value(msgpack_packer *pk, const char *s) {
    s = skip_ws(s);
    if (*s == '[' || *s == '{') {
        char close = *s == '[' ? ']' : '}';
        int n = count_items(s + 1, close);
        if (close == ']')
            msgpack_pack_array(pk, (size_t)n);
        else
            msgpack_pack_map(pk, (size_t)n); /* items are pairs */
        s = skip_ws(s + 1);
        while (*s != close) s = skip_ws(pack_value(pk, s));
        return s + 1;
    }
    if (*s == '\'') return pack_string(pk, s, false);
    if (s[0] == 'b' && s[1] == '\'') return pack_string(pk, s + 1, true);
    if (!strncmp(s, "nil", 3)) return msgpack_pack_nil(pk), s + 3;
    if (!strncmp(s, "true", 4)) return msgpack_pack_true(pk), s + 4;
    if (!strncmp(s, "false", 5)) return msgpack_pack_false(pk), s + 5;
    char *end;
    size_t len = strspn(s, "-+0123456789.eE");
    if (memchr(s, '.', len) || memchr(s, 'e', len)) {
        msgpack_pack_double(pk, strtod(s, &end));
    } else if (*s == '-') {
        msgpack_pack_int64(pk, strtoll(s, &end, 10));
    } else {
        msgpack_pack_uint64(pk, strtoull(s, &end, 10));
    }
    assert_true(end > s);
    return end;
}

/* The notation packed into sb (msgpack_sbuffer_destroy it). */
static void frame(msgpack_sbuffer *sb, const char *text) {
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    const char *end = skip_ws(pack_value(&pk, text));
    assert_true(*end == 0);
}

static const gt_rpc_limits LIMITS = GT_RPC_LIMITS_INIT;

/* Decodes exactly one message from bytes and parses it. */
static gt_status parse_bytes(const void *p, size_t n, const gt_rpc_limits *lim, gt_rpc_request *req,
                             gt_rpc_refusal *ref) {
    gt_rpc_decoder *d;
    assert_int_equal(gt_rpc_decoder_create(lim->max_frame_bytes, &d), GT_OK);
    assert_int_equal(gt_rpc_decoder_feed(d, p, n), GT_OK);
    gt_rpc_msg *m;
    gt_status st = gt_rpc_decoder_next(d, &m, ref);
    if (st == GT_OK) {
        assert_non_null(m);
        st = gt_rpc_request_parse(m, lim, req, ref);
        gt_rpc_msg_free(m);
        gt_rpc_msg *again;
        gt_rpc_refusal r2;
        assert_int_equal(gt_rpc_decoder_next(d, &again, &r2), GT_OK);
        assert_null(again);
    }
    gt_rpc_decoder_destroy(d);
    return st;
}

static gt_status parse_text(const char *text, gt_rpc_request *req, gt_rpc_refusal *ref) {
    msgpack_sbuffer sb;
    frame(&sb, text);
    gt_status st = parse_bytes(sb.data, sb.size, &LIMITS, req, ref);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

/* ---- requests ---- */

static void test_hand_written_request(void **state) {
    (void)state;
    /* [0, 7, "health", [{}]] */
    static const uint8_t bytes[] = {0x94, 0x00, 0x07, 0xa6, 'h',  'e',
                                    'a',  'l',  't',  'h',  0x91, 0x80};
    gt_rpc_request r;
    gt_rpc_refusal ref;
    assert_int_equal(parse_bytes(bytes, sizeof bytes, &LIMITS, &r, &ref), GT_OK);
    assert_int_equal(r.kind, GT_RPC_KIND_REQUEST);
    assert_int_equal(r.msgid, 7);
    assert_int_equal(r.method, GT_RPC_HEALTH);
    gt_rpc_request_free(&r);
    /* [0, 0x10000, bin "cancel", {"id": 300}]: msgid as uint32, method as bin,
     * params as a bare map, id as uint16 */
    static const uint8_t b2[] = {0x94, 0x00, 0xce, 0x00, 0x01, 0x00, 0x00, 0xc4, 0x06, 'c',  'a',
                                 'n',  'c',  'e',  'l',  0x81, 0xa2, 'i',  'd',  0xcd, 0x01, 0x2c};
    assert_int_equal(parse_bytes(b2, sizeof b2, &LIMITS, &r, &ref), GT_OK);
    assert_int_equal(r.msgid, 0x10000);
    assert_int_equal(r.method, GT_RPC_CANCEL);
    assert_int_equal(r.cancel.id, 300);
    gt_rpc_request_free(&r);
}

static void test_generate_all_params(void **state) {
    (void)state;
    gt_rpc_request r;
    gt_rpc_refusal ref;
    assert_int_equal(
        parse_text(
            "[0, 42, 'generate', [{'prompt': 'Hello', 'max_tokens': 16, 'temperature': 0.5,"
            " 'top_k': 7, 'top_p': 0.9, 'min_p': 0.05, 'repetition_penalty': 1.1,"
            " 'presence_penalty': -0.5, 'frequency_penalty': 2, 'seed': 18446744073709551615,"
            " 'stop': ['\\n\\n', 'END'], 'logprobs': 3, 'stream': true}]]",
            &r, &ref),
        GT_OK);
    gt_rpc_generate *g = &r.generate;
    assert_int_equal(r.msgid, 42);
    assert_int_equal(r.method, GT_RPC_GENERATE);
    assert_int_equal(g->input, GT_RPC_INPUT_PROMPT);
    assert_string_equal(g->prompt, "Hello");
    assert_int_equal(g->prompt_len, 5);
    assert_true(g->has_max_tokens);
    assert_int_equal(g->max_tokens, 16);
    assert_true(g->sampling.temperature == 0.5f);
    assert_int_equal(g->sampling.top_k, 7);
    assert_true(g->sampling.top_p == 0.9f && g->sampling.min_p == 0.05f);
    assert_true(g->repetition_penalty == 1.1f && g->presence_penalty == -0.5f);
    assert_true(g->frequency_penalty == 2.0f);
    assert_true(g->sampling.seed == UINT64_MAX);
    assert_int_equal(g->n_stop, 2);
    assert_string_equal(g->stop[0], "\n\n");
    assert_string_equal(g->stop[1], "END");
    assert_int_equal(g->logprobs, 3);
    assert_true(g->stream);
    assert_false(g->has_speculate);
    gt_rpc_request_free(&r);

    /* speculate: both fields, or none (the server's defaults) */
    assert_int_equal(parse_text("[0, 3, 'generate', [{'prompt': 'a', 'speculate': {'lookup': 3, 'tokens': 8}}]]",
                                &r, &ref),
                     GT_OK);
    assert_true(g->has_speculate && g->spec_has_lookup);
    assert_int_equal(g->spec_lookup, 3);
    assert_int_equal(g->spec_tokens, 8);
    gt_rpc_request_free(&r);
    assert_int_equal(parse_text("[0, 3, 'generate', [{'prompt': 'a', 'speculate': {}}]]", &r, &ref), GT_OK);
    assert_true(g->has_speculate && !g->spec_has_lookup && !g->spec_has_draft);
    assert_int_equal(g->spec_tokens, 0);
    assert_int_equal(g->beams, 0);
    assert_true(g->length_penalty == 1.0f); /* the default */
    gt_rpc_request_free(&r);

    /* beam search: beams and length_penalty */
    assert_int_equal(parse_text("[0, 3, 'generate', [{'prompt': 'a', 'beams': 4, 'length_penalty': -0.5}]]", &r, &ref),
                     GT_OK);
    assert_int_equal(g->beams, 4);
    assert_true(g->length_penalty == -0.5f);
    assert_int_equal(g->n_best, 0); /* the default: the winner alone */
    gt_rpc_request_free(&r);
    assert_int_equal(
        parse_text("[0, 3, 'generate', [{'prompt': 'a', 'beams': 4, 'n_best': 4}]]", &r, &ref),
        GT_OK);
    assert_int_equal(g->n_best, 4);
    gt_rpc_request_free(&r);
    /* speculate.draft: the draft model (with lookup 0 or absent), or off */
    assert_int_equal(parse_text("[0, 3, 'generate', [{'prompt': 'a', 'speculate': {'draft': true, 'lookup': 0, "
                                "'tokens': 5}}]]", &r, &ref), GT_OK);
    assert_true(g->has_speculate && g->spec_has_draft && g->spec_draft && g->spec_lookup == 0);
    assert_int_equal(g->spec_tokens, 5);
    gt_rpc_request_free(&r);
    assert_int_equal(parse_text("[0, 3, 'generate', [{'prompt': 'a', 'speculate': {'draft': false}}]]", &r, &ref),
                     GT_OK);
    assert_true(g->has_speculate && g->spec_has_draft && !g->spec_draft);
    gt_rpc_request_free(&r);

    /* Defaults: the sampler's (greedy), no max_tokens, nil means absent. */
    assert_int_equal(
        parse_text("[0, 1, 'generate', [{'tokens': [1, 2, 2147483647], 'seed': nil}]]", &r, &ref),
        GT_OK);
    gt_sampler_config def = GT_SAMPLER_CONFIG_INIT;
    assert_int_equal(g->input, GT_RPC_INPUT_TOKENS);
    assert_int_equal(g->n_tokens, 3);
    assert_int_equal(g->tokens[2], 2147483647);
    assert_false(g->has_max_tokens);
    assert_true(g->sampling.temperature == def.temperature && g->sampling.top_k == def.top_k);
    assert_true(g->sampling.seed == def.seed && g->repetition_penalty == 1.0f);
    assert_false(g->stream);
    gt_rpc_request_free(&r);

    assert_int_equal(
        parse_text("[0, 2, 'generate', {'messages': [{'role': 'system', 'content': ''},"
                   " {'content': 'Hi', 'role': 'user'}]}]",
                   &r, &ref),
        GT_OK);
    assert_int_equal(g->input, GT_RPC_INPUT_MESSAGES);
    assert_int_equal(g->n_messages, 2);
    assert_string_equal(g->messages[0].role, "system");
    assert_string_equal(g->messages[0].content, "");
    assert_string_equal(g->messages[1].role, "user");
    assert_string_equal(g->messages[1].content, "Hi");
    gt_rpc_request_free(&r);
}

static void test_other_methods(void **state) {
    (void)state;
    gt_rpc_request r;
    gt_rpc_refusal ref;
    assert_int_equal(
        parse_text("[0, 3, 'tokenize', [{'text': 'a b', 'add_special': true}]]", &r, &ref), GT_OK);
    assert_int_equal(r.method, GT_RPC_TOKENIZE);
    assert_string_equal(r.tokenize.text, "a b");
    assert_true(r.tokenize.add_special);
    gt_rpc_request_free(&r);
    assert_int_equal(parse_text("[0, 4, 'detokenize', [{'tokens': []}]]", &r, &ref), GT_OK);
    assert_int_equal(r.detokenize.n_tokens, 0);
    gt_rpc_request_free(&r);
    assert_int_equal(parse_text("[0, 5, 'auth', [{'token': 'sesame'}]]", &r, &ref), GT_OK);
    assert_string_equal(r.auth.token, "sesame");
    gt_rpc_request_free(&r);
    const char *plain[] = {"[0, 6, 'model_info', []]", "[0, 6, 'stats', nil]",
                           "[0, 6, 'health', [nil]]", "[0, 4294967295, 'stats', {}]"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        assert_int_equal(parse_text(plain[i], &r, &ref), GT_OK);
        gt_rpc_request_free(&r);
    }
    /* Notifications are accepted and ignored, whatever their method. */
    assert_int_equal(parse_text("[2, 'nvim_set_client_info', ['x', {}, 3]]", &r, &ref), GT_OK);
    assert_int_equal(r.kind, GT_RPC_KIND_NOTIFICATION);
    assert_string_equal(r.notification, "nvim_set_client_info");
    gt_rpc_request_free(&r);
}

/* ---- refusals ---- */

typedef struct refusal_case {
    const char *frame;
    gt_rpc_code code;
    bool has_msgid;
    const char *sentence; /* exact */
} refusal_case;

static const refusal_case REFUSALS[] = {
    /* shape */
    {"{'a': 1}", GT_RPC_BAD_REQUEST, false, "a message must be an array [type, ...], not a map"},
    {"[]", GT_RPC_BAD_REQUEST, false, "a message must start with 0 (request) or 2 (notification)"},
    {"[1, 5, nil, nil]", GT_RPC_BAD_REQUEST, false,
     "a message must start with 0 (request) or 2 (notification)"},
    {"[0, 5, 'health']", GT_RPC_BAD_REQUEST, true,
     "a request is [0, msgid, method, params], not an array of 3"},
    {"[0, -1, 'health', []]", GT_RPC_BAD_REQUEST, false,
     "a request's msgid must be an integer in [0, 4294967295]"},
    {"[0, 4294967296, 'health', []]", GT_RPC_BAD_REQUEST, false,
     "a request's msgid must be an integer in [0, 4294967295]"},
    {"[0, 5, 7, []]", GT_RPC_BAD_REQUEST, true, "the method must be a string, not an integer"},
    {"[2, 'x']", GT_RPC_BAD_REQUEST, false,
     "a notification is [2, method, params], not an array of 2"},
    {"[0, 5, 'health', [{}, {}]]", GT_RPC_BAD_REQUEST, true,
     "health: params holds 2 elements; it must hold one map"},
    {"[0, 5, 'health', 'x']", GT_RPC_BAD_REQUEST, true,
     "health: params must be an array holding one map, not a string"},
    {"[0, 5, 'health', [3]]", GT_RPC_BAD_REQUEST, true,
     "health: params must hold one map, not an integer"},
    {"[0, 5, 'generat', [{}]]", GT_RPC_UNKNOWN_METHOD, true,
     "unknown method 'generat' (known: generate, tokenize, detokenize, cancel, model_info, health, "
     "stats, auth)"},
    /* keys */
    {"[0, 5, 'health', [{'verbose': true}]]", GT_RPC_INVALID_PARAM, true,
     "health: health takes no params, got 'verbose'"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'temprature': 1}]]", GT_RPC_INVALID_PARAM, true,
     "generate: generate has no key 'temprature' (known: prompt, messages, tokens, max_tokens, "
     "temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty, "
     "seed, stop, logprobs, stream, typical_p, logit_bias, grammar, json_schema, speculate, beams, "
     "length_penalty, n_best)"},
    /* beam search (the width's upper bound is the server's: it knows --seqs) */
    {"[0, 5, 'generate', [{'prompt': 'a', 'beams': 65}]]", GT_RPC_INVALID_PARAM, true,
     "generate: beams 65 is outside [0, 64]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'beams': 2, 'length_penalty': 'x'}]]",
     GT_RPC_INVALID_PARAM, true, "generate: length_penalty must be a number, not a string"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'beams': 2, 'n_best': 3}]]", GT_RPC_INVALID_PARAM, true,
     "generate: n_best 3 asks for more hypotheses than the 2 beams search (one per beam at most)"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'n_best': 2}]]", GT_RPC_INVALID_PARAM, true,
     "generate: n_best 2 needs beam search (beams >= n_best); sampling answers one hypothesis"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'beams': 2, 'n_best': 65}]]", GT_RPC_INVALID_PARAM, true,
     "generate: n_best 65 is outside [0, 64]"},
    /* speculate */
    {"[0, 5, 'generate', [{'prompt': 'a', 'speculate': 4}]]", GT_RPC_INVALID_PARAM, true,
     "generate: speculate must be a map {lookup, draft, tokens}, not an integer"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'speculate': {'lookup': 65}}]]", GT_RPC_INVALID_PARAM,
     true, "generate: speculate.lookup 65 is outside [0, 64]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'speculate': {'lookup': 2, 'tokens': 0}}]]",
     GT_RPC_INVALID_PARAM, true, "generate: speculate.tokens 0 is outside [1, 64]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'speculate': {'draft': 'x.gguf'}}]]",
     GT_RPC_INVALID_PARAM, true, "generate: speculate.draft must be a boolean, not a string"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'speculate': {'model': 'x.gguf'}}]]",
     GT_RPC_INVALID_PARAM, true,
     "generate: speculate has no key 'model' (known: lookup, tokens, draft)"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'speculate': {'draft': true, 'lookup': 2}}]]",
     GT_RPC_INVALID_PARAM, true,
     "generate: speculate asks for both prompt lookup (lookup 2) and the draft model; a request "
     "speculates with "
     "one of them"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'seed': 1, 'seed': 2}]]", GT_RPC_INVALID_PARAM, true,
     "generate: generate gives 'seed' twice"},
    {"[0, 5, 'generate', [{1: 'a'}]]", GT_RPC_INVALID_PARAM, true,
     "generate: generate keys must be strings, not an integer"},
    /* the input */
    {"[0, 5, 'generate', [{}]]", GT_RPC_INVALID_PARAM, true,
     "generate: give exactly one of prompt, messages or tokens (got none)"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'tokens': [1]}]]", GT_RPC_INVALID_PARAM, true,
     "generate: give exactly one of prompt, messages or tokens (got prompt and tokens)"},
    {"[0, 5, 'generate', [{'prompt': ''}]]", GT_RPC_INVALID_PARAM, true,
     "generate: prompt is empty"},
    {"[0, 5, 'generate', [{'prompt': 12}]]", GT_RPC_INVALID_PARAM, true,
     "generate: prompt must be a string, not an integer"},
    {"[0, 5, 'generate', [{'prompt': 'a\\0b'}]]", GT_RPC_INVALID_PARAM, true,
     "generate: prompt holds a NUL byte at offset 1"},
    {"[0, 5, 'generate', [{'tokens': []}]]", GT_RPC_INVALID_PARAM, true,
     "generate: tokens is empty"},
    {"[0, 5, 'generate', [{'tokens': [1, -2]}]]", GT_RPC_INVALID_PARAM, true,
     "generate: tokens[1] is not a token id (it must be in [0, 2147483647])"},
    {"[0, 5, 'generate', [{'tokens': [2147483648]}]]", GT_RPC_INVALID_PARAM, true,
     "generate: tokens[0] is not a token id (it must be in [0, 2147483647])"},
    {"[0, 5, 'generate', [{'tokens': [1.5]}]]", GT_RPC_INVALID_PARAM, true,
     "generate: tokens[0] must be an integer, not a float"},
    {"[0, 5, 'generate', [{'tokens': 'abc'}]]", GT_RPC_INVALID_PARAM, true,
     "generate: tokens must be an array of token ids, not a string"},
    {"[0, 5, 'generate', [{'messages': []}]]", GT_RPC_INVALID_PARAM, true,
     "generate: messages is empty"},
    {"[0, 5, 'generate', [{'messages': ['hi']}]]", GT_RPC_INVALID_PARAM, true,
     "generate: messages[0] must be a map with role and content, not a string"},
    {"[0, 5, 'generate', [{'messages': [{'role': 'user'}]}]]", GT_RPC_INVALID_PARAM, true,
     "generate: messages[0] has no content"},
    {"[0, 5, 'generate', [{'messages': [{'role': 'tool', 'content': 'x'}]}]]", GT_RPC_INVALID_PARAM,
     true, "generate: messages[0].role is 'tool'; it must be system, user or assistant"},
    {"[0, 5, 'generate', [{'messages': [{'role': 'user', 'content': 'x', 'name': 'n'}]}]]",
     GT_RPC_INVALID_PARAM, true, "generate: messages[0] has no key 'name' (known: role, content)"},
    {"[0, 5, 'generate', [{'messages': [{'role': 'user', 'content': 3}]}]]", GT_RPC_INVALID_PARAM,
     true, "generate: messages[0].content must be a string, not an integer"},
    /* sampling and the rest */
    {"[0, 5, 'generate', [{'prompt': 'a', 'max_tokens': 0}]]", GT_RPC_INVALID_PARAM, true,
     "generate: max_tokens 0 is outside [1, 1048576]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'max_tokens': -5}]]", GT_RPC_INVALID_PARAM, true,
     "generate: max_tokens -5 is outside [1, 1048576]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'max_tokens': 10.0}]]", GT_RPC_INVALID_PARAM, true,
     "generate: max_tokens must be an integer, not a float"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'temperature': -0.1}]]", GT_RPC_INVALID_PARAM, true,
     "generate: temperature -0.1 is outside [0, 100]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'temperature': 'hot'}]]", GT_RPC_INVALID_PARAM, true,
     "generate: temperature must be a number, not a string"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'top_p': 0}]]", GT_RPC_INVALID_PARAM, true,
     "generate: top_p 0 is outside (0, 1]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'top_p': 1.5}]]", GT_RPC_INVALID_PARAM, true,
     "generate: top_p 1.5 is outside (0, 1]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'min_p': 2}]]", GT_RPC_INVALID_PARAM, true,
     "generate: min_p 2 is outside [0, 1]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'top_k': -1}]]", GT_RPC_INVALID_PARAM, true,
     "generate: top_k -1 is outside [0, 2147483647]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'repetition_penalty': 0}]]", GT_RPC_INVALID_PARAM, true,
     "generate: repetition_penalty 0 is outside (0, 10]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'presence_penalty': 2.5}]]", GT_RPC_INVALID_PARAM, true,
     "generate: presence_penalty 2.5 is outside [-2, 2]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'frequency_penalty': -3}]]", GT_RPC_INVALID_PARAM, true,
     "generate: frequency_penalty -3 is outside [-2, 2]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'seed': -1}]]", GT_RPC_INVALID_PARAM, true,
     "generate: seed -1 is outside [0, 18446744073709551615]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'stop': 'x'}]]", GT_RPC_INVALID_PARAM, true,
     "generate: stop must be an array of strings, not a string"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'stop': ['']}]]", GT_RPC_INVALID_PARAM, true,
     "generate: stop[0] is empty"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'stop': ['a','b','c','d','e','f','g','h','i','j','k','l',"
     "'m','n','o','p','q']}]]",
     GT_RPC_TOO_LONG, true, "generate: stop holds 17 strings, over the limit of 16"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'logprobs': 21}]]", GT_RPC_INVALID_PARAM, true,
     "generate: logprobs 21 is outside [0, 20]"},
    {"[0, 5, 'generate', [{'prompt': 'a', 'stream': 1}]]", GT_RPC_INVALID_PARAM, true,
     "generate: stream must be a boolean, not an integer"},
    /* other methods */
    {"[0, 5, 'tokenize', [{}]]", GT_RPC_INVALID_PARAM, true, "tokenize: param 'text' is missing"},
    {"[0, 5, 'tokenize', [{'text': 'x', 'add_special': 'yes'}]]", GT_RPC_INVALID_PARAM, true,
     "tokenize: add_special must be a boolean, not a string"},
    {"[0, 5, 'detokenize', [{'tokens': nil}]]", GT_RPC_INVALID_PARAM, true,
     "detokenize: param 'tokens' is missing"},
    {"[0, 5, 'cancel', [{'id': 4294967296}]]", GT_RPC_INVALID_PARAM, true,
     "cancel: id 4294967296 is outside [0, 4294967295]"},
    {"[0, 5, 'auth', [{'token': ''}]]", GT_RPC_INVALID_PARAM, true, "auth: token is empty"},
    {"[0, 5, 'auth', [{}]]", GT_RPC_INVALID_PARAM, true, "auth: param 'token' is missing"},
};

static void test_refusals(void **state) {
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof REFUSALS / sizeof REFUSALS[0]; i++) {
        const refusal_case *rc = &REFUSALS[i];
        gt_rpc_request r;
        gt_rpc_refusal ref;
        gt_clear_error();
        gt_status st = parse_text(rc->frame, &r, &ref);
        if (st == GT_OK || ref.code != rc->code || ref.has_msgid != rc->has_msgid ||
            (ref.has_msgid && ref.msgid != 5) || strcmp(gt_last_error(), rc->sentence) != 0) {
            printf("case %zu %s\n  status %d code %s has_msgid %d\n  got  '%s'\n  want '%s'\n", i,
                   rc->frame, st, gt_rpc_code_name(ref.code), ref.has_msgid, gt_last_error(),
                   rc->sentence);
            bad++;
        }
        /* A refused request holds nothing to free, but freeing is safe. */
        gt_rpc_request_free(&r);
    }
    assert_int_equal(bad, 0);
}

/* Length limits: a string or array one over its limit is refused before
 * anything is copied; one at the limit passes. */
static void test_length_limits(void **state) {
    (void)state;
    gt_rpc_limits lim = GT_RPC_LIMITS_INIT;
    lim.max_text_bytes = 10;
    lim.max_tokens_in = 3;
    lim.max_messages = 2;
    lim.max_stop_bytes = 4;
    struct {
        const char *frame;
        gt_status st;
        const char *sentence;
    } cases[] = {
        {"[0, 5, 'generate', [{'prompt': '0123456789'}]]", GT_OK, ""},
        {"[0, 5, 'generate', [{'prompt': '0123456789A'}]]", GT_ERR_RANGE,
         "generate: prompt of 11 bytes exceeds the limit of 10"},
        {"[0, 5, 'generate', [{'tokens': [1, 2, 3, 4]}]]", GT_ERR_RANGE,
         "generate: tokens holds 4 ids, over the limit of 3"},
        {"[0, 5, 'detokenize', [{'tokens': [1, 2, 3, 4]}]]", GT_ERR_RANGE,
         "detokenize: tokens holds 4 ids, over the limit of 3"},
        {"[0, 5, 'generate', [{'messages': [{'role': 'user', 'content': 'a'}, {'role': 'user', "
         "'content': 'b'}, {'role': 'user', 'content': 'c'}]}]]",
         GT_ERR_RANGE, "generate: messages holds 3 messages, over the limit of 2"},
        {"[0, 5, 'generate', [{'messages': [{'role': 'user', 'content': '0123456789AB'}]}]]",
         GT_ERR_RANGE, "generate: messages[0].content of 12 bytes exceeds the limit of 10"},
        {"[0, 5, 'generate', [{'prompt': 'a', 'stop': ['abcde']}]]", GT_ERR_RANGE,
         "generate: stop[0] of 5 bytes exceeds the limit of 4"},
        {"[0, 5, 'tokenize', [{'text': '0123456789ABC'}]]", GT_ERR_RANGE,
         "tokenize: text of 13 bytes exceeds the limit of 10"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb;
        frame(&sb, cases[i].frame);
        gt_rpc_request r;
        gt_rpc_refusal ref;
        gt_clear_error();
        gt_status st = parse_bytes(sb.data, sb.size, &lim, &r, &ref);
        msgpack_sbuffer_destroy(&sb);
        if (st != cases[i].st || strcmp(gt_last_error(), cases[i].sentence) != 0)
            fail_msg("case %zu: status %d, '%s'", i, st, gt_last_error());
        if (st != GT_OK) assert_int_equal(ref.code, GT_RPC_TOO_LONG);
        gt_rpc_request_free(&r);
    }
}

/* ---- the frame decoder ---- */

static const char *const STREAM[] = {
    "[0, 1, 'health', []]",
    "[0, 2, 'generate', [{'prompt': 'The capital of Germany is', 'max_tokens': 8}]]",
    "[2, 'nvim_client_info', []]",
    "[0, 3, 'tokenize', [{'text': 'h\\xc3\\xa9llo'}]]",
    "[0, 4, 'detokenize', [{'tokens': [1, 2, 65535, 65536, 4294967295]}]]",
};

/* All of STREAM in one buffer. */
static size_t stream_bytes(uint8_t *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < sizeof STREAM / sizeof STREAM[0]; i++) {
        msgpack_sbuffer sb;
        frame(&sb, STREAM[i]);
        assert_true(n + sb.size <= cap);
        memcpy(out + n, sb.data, sb.size);
        n += sb.size;
        msgpack_sbuffer_destroy(&sb);
    }
    return n;
}

/* Feeds `bytes` in pieces of `step` bytes (0: all at once) and returns
 * the messages' first elements (type) and second (msgid or 0). */
static int decode_all(const uint8_t *bytes, size_t n, size_t step, uint64_t *kinds) {
    gt_rpc_decoder *d;
    assert_int_equal(gt_rpc_decoder_create(4096, &d), GT_OK);
    int got = 0;
    for (size_t off = 0; off < n;) {
        size_t take = step ? (n - off < step ? n - off : step) : n;
        assert_int_equal(gt_rpc_decoder_feed(d, bytes + off, take), GT_OK);
        off += take;
        for (;;) {
            gt_rpc_msg *m;
            gt_rpc_refusal ref;
            assert_int_equal(gt_rpc_decoder_next(d, &m, &ref), GT_OK);
            if (!m) break;
            gt_rpc_request r;
            gt_status st = gt_rpc_request_parse(m, &LIMITS, &r, &ref);
            kinds[got++] = st == GT_OK ? (uint64_t)r.kind * 100 + r.msgid : 999;
            gt_rpc_request_free(&r);
            gt_rpc_msg_free(m);
        }
        if (off < n && step) assert_true(gt_rpc_decoder_pending(d) > 0 || got > 0);
    }
    assert_int_equal(gt_rpc_decoder_pending(d), 0);
    assert_int_equal(gt_rpc_decoder_finish(d), GT_OK);
    gt_rpc_decoder_destroy(d);
    return got;
}

static void test_stream_splits(void **state) {
    (void)state;
    uint8_t bytes[1024];
    size_t n = stream_bytes(bytes, sizeof bytes);
    /* 4's tokens hold 4294967295, which refuses the request: 999 */
    const uint64_t want[] = {1, 2, 200, 3, 999};
    size_t steps[] = {0, 1, 2, 3, 7, 64};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        uint64_t kinds[8];
        int got = decode_all(bytes, n, steps[s], kinds);
        assert_int_equal(got, 5);
        for (int i = 0; i < 5; i++) assert_int_equal(kinds[i], want[i]);
    }
}

static void test_truncated_stream(void **state) {
    (void)state;
    uint8_t bytes[1024];
    size_t n = stream_bytes(bytes, sizeof bytes);
    gt_rpc_decoder *d;
    assert_int_equal(gt_rpc_decoder_create(4096, &d), GT_OK);
    assert_int_equal(gt_rpc_decoder_feed(d, bytes, n - 3), GT_OK);
    int got = 0;
    gt_rpc_msg *m;
    gt_rpc_refusal ref;
    while (gt_rpc_decoder_next(d, &m, &ref) == GT_OK && m) {
        got++;
        gt_rpc_msg_free(m);
    }
    assert_int_equal(got, 4);
    assert_int_equal(gt_rpc_decoder_finish(d), GT_ERR_FORMAT);
    char want[96];
    snprintf(want, sizeof want, "the connection closed %zu bytes into a frame",
             gt_rpc_decoder_pending(d));
    assert_string_equal(gt_last_error(), want);
    gt_rpc_decoder_destroy(d);
}

/* A fatal frame comes after the whole frames before it; it repeats. */
static void expect_fatal(const uint8_t *bytes, size_t n, size_t max_frame, int good_before,
                         gt_status st, bool has_msgid, uint32_t msgid, const char *sentence) {
    gt_rpc_decoder *d;
    assert_int_equal(gt_rpc_decoder_create(max_frame, &d), GT_OK);
    assert_int_equal(gt_rpc_decoder_feed(d, bytes, n), GT_OK);
    gt_rpc_msg *m;
    gt_rpc_refusal ref;
    for (int i = 0; i < good_before; i++) {
        assert_int_equal(gt_rpc_decoder_next(d, &m, &ref), GT_OK);
        assert_non_null(m);
        gt_rpc_msg_free(m);
    }
    for (int again = 0; again < 2; again++) {
        gt_clear_error();
        assert_int_equal(gt_rpc_decoder_next(d, &m, &ref), st);
        assert_null(m);
        assert_string_equal(gt_last_error(), sentence);
        assert_int_equal(ref.code, st == GT_ERR_RANGE ? GT_RPC_TOO_LONG : GT_RPC_BAD_FRAME);
        assert_int_equal(ref.has_msgid, has_msgid);
        if (has_msgid) assert_int_equal(ref.msgid, msgid);
    }
    assert_int_equal(gt_rpc_decoder_feed(d, "\x90", 1), st);
    gt_rpc_decoder_destroy(d);
}

static void test_fatal_frames(void **state) {
    (void)state;
    /* [0, 1, 'health', []] then the byte 0xc1 */
    static const uint8_t c1[] = {0x94, 0x00, 0x01, 0xa6, 'h', 'e', 'a', 'l', 't', 'h', 0x90, 0xc1};
    expect_fatal(c1, sizeof c1, 4096, 1, GT_ERR_FORMAT, false, 0,
                 "byte 0xc1 at offset 0 of a frame is not msgpack");
    /* [0, 9, str32 of 2^32-1 bytes ...: refused from the header, with its msgid */
    static const uint8_t huge_str[] = {0x94, 0x00, 0x09, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    expect_fatal(huge_str, sizeof huge_str, 4096, 0, GT_ERR_RANGE, true, 9,
                 "a frame of at least 4294967304 bytes exceeds the limit of 4096 bytes "
                 "(--max-frame-bytes)");
    /* array32 of 2^32-1 elements as the first thing: no msgid */
    static const uint8_t huge_arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    expect_fatal(huge_arr, sizeof huge_arr, 4096, 0, GT_ERR_RANGE, false, 0,
                 "a frame of at least 4294967300 bytes exceeds the limit of 4096 bytes "
                 "(--max-frame-bytes)");
    /* map16 promising 40000 pairs: 80000 elements */
    static const uint8_t huge_map[] = {0x94, 0x00, 0xcd, 0x01, 0x00, 0xa1, 'x', 0xde, 0x9c, 0x40};
    expect_fatal(huge_map, sizeof huge_map, 4096, 0, GT_ERR_RANGE, true, 256,
                 "a frame of at least 80010 bytes exceeds the limit of 4096 bytes "
                 "(--max-frame-bytes)");
    /* 17 nested arrays */
    uint8_t deep[20];
    memset(deep, 0x91, sizeof deep);
    expect_fatal(deep, sizeof deep, 4096, 0, GT_ERR_FORMAT, false, 0,
                 "a frame nests arrays and maps deeper than 16 levels");
}

/* A frame of exactly max_frame_bytes passes; one more byte is refused. */
static void test_frame_limit_exact(void **state) {
    (void)state;
    msgpack_sbuffer sb;
    frame(&sb, "[0, 1, 'tokenize', [{'text': 'abcdefghijklmnopqrstuvwxyz'}]]");
    size_t n = sb.size;
    for (int extra = 0; extra < 2; extra++) {
        gt_rpc_decoder *d;
        assert_int_equal(gt_rpc_decoder_create(n - (size_t)extra, &d), GT_OK);
        assert_int_equal(gt_rpc_decoder_feed(d, sb.data, n), GT_OK);
        gt_rpc_msg *m;
        gt_rpc_refusal ref;
        gt_status st = gt_rpc_decoder_next(d, &m, &ref);
        assert_int_equal(st, extra ? GT_ERR_RANGE : GT_OK);
        if (extra) assert_true(ref.has_msgid && ref.msgid == 1);
        gt_rpc_msg_free(m);
        gt_rpc_decoder_destroy(d);
    }
    msgpack_sbuffer_destroy(&sb);
    gt_rpc_decoder *d;
    assert_int_equal(gt_rpc_decoder_create(15, &d), GT_ERR_INVALID_ARG);
}

/* ---- model-dependent checks ---- */

static void test_model_checks(void **state) {
    (void)state;
    gt_rpc_model_limits ml = {4096, 1000};
    gt_rpc_request r;
    gt_rpc_refusal ref;
    gt_rpc_code code;
    assert_int_equal(
        parse_text("[0, 1, 'generate', [{'prompt': 'x', 'max_tokens': 100}]]", &r, &ref), GT_OK);
    assert_int_equal(gt_rpc_generate_check(&r.generate, &ml, 5000, &code), GT_ERR_RANGE);
    assert_int_equal(code, GT_RPC_TOO_LONG);
    assert_string_equal(
        gt_last_error(),
        "generate: prompt of 5000 tokens plus max_tokens 100 exceeds the context of 4096");
    assert_int_equal(gt_rpc_generate_check(&r.generate, &ml, 3997, &code), GT_ERR_RANGE);
    assert_int_equal(gt_rpc_generate_check(&r.generate, &ml, 3996, &code), GT_OK);
    assert_int_equal(r.generate.max_tokens, 100);
    assert_int_equal(gt_rpc_generate_check(&r.generate, &ml, 0, &code), GT_ERR_INVALID_ARG);
    assert_int_equal(code, GT_RPC_INVALID_PARAM);
    assert_string_equal(gt_last_error(), "generate: the prompt is empty once tokenized");
    gt_rpc_request_free(&r);

    /* Without max_tokens: what remains of the context. */
    assert_int_equal(parse_text("[0, 1, 'generate', [{'prompt': 'x'}]]", &r, &ref), GT_OK);
    assert_int_equal(gt_rpc_generate_check(&r.generate, &ml, 4096, &code), GT_ERR_RANGE);
    assert_string_equal(
        gt_last_error(),
        "generate: prompt of 4096 tokens leaves no room for a token in the context of 4096");
    assert_int_equal(gt_rpc_generate_check(&r.generate, &ml, 4000, &code), GT_OK);
    assert_true(r.generate.has_max_tokens);
    assert_int_equal(r.generate.max_tokens, 96);
    gt_rpc_request_free(&r);

    assert_int_equal(parse_text("[0, 1, 'generate', [{'tokens': [0, 999, 1000]}]]", &r, &ref),
                     GT_OK);
    assert_int_equal(gt_rpc_generate_check(&r.generate, &ml, 3, &code), GT_ERR_INVALID_ARG);
    assert_int_equal(code, GT_RPC_INVALID_PARAM);
    assert_string_equal(gt_last_error(),
                        "generate: tokens[2] is 1000, outside the vocabulary of 1000 tokens");
    gt_rpc_request_free(&r);

    assert_int_equal(parse_text("[0, 1, 'generate', [{'prompt': 'x', 'top_k': 1001}]]", &r, &ref),
                     GT_OK);
    assert_int_equal(gt_rpc_generate_check(&r.generate, &ml, 1, &code), GT_ERR_INVALID_ARG);
    assert_string_equal(gt_last_error(),
                        "generate: top_k 1001 exceeds the vocabulary of 1000 tokens");
    gt_rpc_request_free(&r);

    assert_true(gt_rpc_token_equal("sesame", 6, "sesame", 6));
    assert_false(gt_rpc_token_equal("sesamE", 6, "sesame", 6));
    assert_false(gt_rpc_token_equal("sesam", 5, "sesame", 6));
    assert_false(gt_rpc_token_equal("sesame!", 7, "sesame", 6));
    assert_false(gt_rpc_token_equal("", 0, "sesame", 6));
    int32_t ids[] = {3, 5, 1000};
    assert_int_equal(gt_rpc_tokens_check("detokenize: tokens", ids, 2, 1000), GT_OK);
    assert_int_equal(gt_rpc_tokens_check("detokenize: tokens", ids, 3, 1000), GT_ERR_INVALID_ARG);
    assert_string_equal(gt_last_error(),
                        "detokenize: tokens[2] is 1000, outside the vocabulary of 1000 tokens");
}

/* ---- encoders ---- */

static void expect_bytes(const gt_rpc_buf *b, const uint8_t *want, size_t n) {
    if (b->len != n || memcmp(b->data, want, n) != 0) {
        for (size_t i = 0; i < b->len; i++) printf("%02x ", (uint8_t)b->data[i]);
        printf("\n");
        fail_msg("encoded %zu bytes, expected %zu", b->len, n);
    }
}

static void test_encode_hand_written(void **state) {
    (void)state;
    gt_rpc_buf b;
    gt_rpc_buf_init(&b);
    assert_int_equal(gt_rpc_encode_ok(&b, 7), GT_OK);
    static const uint8_t ok[] = {0x94, 0x01, 0x07, 0xc0, 0xc3};
    expect_bytes(&b, ok, sizeof ok);
    gt_rpc_buf_consume(&b, b.len);
    assert_int_equal(gt_rpc_encode_error(&b, 300, GT_RPC_TOO_LONG, "x"), GT_OK);
    static const uint8_t err[] = {0x94, 0x01, 0xcd, 0x01, 0x2c, 0x82, 0xa4, 'c', 'o', 'd',  'e',
                                  0xa8, 't',  'o',  'o',  '_',  'l',  'o',  'n', 'g', 0xa7, 'm',
                                  'e',  's',  's',  'a',  'g',  'e',  0xa1, 'x', 0xc0};
    expect_bytes(&b, err, sizeof err);
    gt_rpc_buf_consume(&b, b.len);
    gt_rpc_token_event ev = {5, "hi", 2, 17, NULL};
    assert_int_equal(gt_rpc_encode_token(&b, &ev), GT_OK);
    static const uint8_t tok[] = {0x93, 0x02, 0xa5, 't',  'o',  'k', 'e', 'n', 0x91, 0x83,
                                  0xa2, 'i',  'd',  0x05, 0xa4, 't', 'e', 'x', 't',  0xa2,
                                  'h',  'i',  0xa5, 't',  'o',  'k', 'e', 'n', 0x11};
    expect_bytes(&b, tok, sizeof tok);
    /* Invalid UTF-8 in a str becomes U+FFFD; consume keeps the rest. */
    gt_rpc_buf_consume(&b, b.len);
    assert_int_equal(gt_rpc_encode_detokenize(&b, 1,
                                              "a\xff"
                                              "b\xe2\x82",
                                              5),
                     GT_OK);
    static const uint8_t detok[] = {0x94, 0x01, 0x01, 0xc0, 0x81, 0xa4, 't',  'e',
                                    'x',  't',  0xab, 'a',  0xef, 0xbf, 0xbd, 'b',
                                    0xef, 0xbf, 0xbd, 0xef, 0xbf, 0xbd};
    expect_bytes(&b, detok, sizeof detok);
    gt_rpc_buf_consume(&b, 4);
    assert_int_equal(b.len, sizeof detok - 4);
    assert_memory_equal(b.data, detok + 4, b.len);
    gt_rpc_buf_free(&b);
}

/* Reads b back with msgpack-c's one-shot unpacker. */
static const msgpack_object *unpack(const gt_rpc_buf *b, msgpack_unpacked *u) {
    msgpack_unpacked_init(u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(u, b->data, b->len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, b->len);
    return &u->data;
}

static const msgpack_object *get(const msgpack_object *map, const char *key) {
    assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            !memcmp(k->via.str.ptr, key, k->via.str.size))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static void test_encode_results(void **state) {
    (void)state;
    gt_rpc_buf b;
    gt_rpc_buf_init(&b);
    int32_t toks[] = {10, 11};
    gt_rpc_logprob top[] = {{10, -0.25f}, {3, -2.5f}};
    gt_rpc_token_logprobs lp[] = {{10, -0.25f, top, 2}, {11, -1.0f, NULL, 0}};
    gt_rpc_generate_result r = {"Berlin.", 7,    toks,  2,   GT_RPC_FINISH_LENGTH,
                                9,         2,    4,     lp,  1.5,
                                20.25,     40.0, false, 0,   0,
                                0,         NULL, 0,     0.0, NULL,
                                0};
    assert_int_equal(gt_rpc_encode_generate(&b, 77, &r), GT_OK);
    msgpack_unpacked u;
    const msgpack_object *o = unpack(&b, &u);
    assert_int_equal(o->via.array.size, 4);
    assert_int_equal(o->via.array.ptr[1].via.u64, 77);
    assert_int_equal(o->via.array.ptr[2].type, MSGPACK_OBJECT_NIL);
    const msgpack_object *res = &o->via.array.ptr[3];
    assert_int_equal(res->via.map.size, 6);
    assert_memory_equal(get(res, "text")->via.str.ptr, "Berlin.", 7);
    assert_int_equal(get(res, "tokens")->via.array.ptr[1].via.u64, 11);
    assert_memory_equal(get(res, "finish_reason")->via.str.ptr, "length", 6);
    assert_int_equal(get(get(res, "usage"), "cached_tokens")->via.u64, 4);
    assert_true(get(get(res, "timing"), "ttft_ms")->via.f64 == 20.25);
    const msgpack_object *l0 = &get(res, "logprobs")->via.array.ptr[0];
    assert_true(get(l0, "logprob")->via.f64 == -0.25);
    assert_int_equal(get(l0, "top")->via.array.ptr[1].via.array.ptr[0].via.u64, 3);
    msgpack_unpacked_destroy(&u);

    gt_rpc_buf_consume(&b, b.len);
    gt_rpc_model_info mi = {"llama", "SmolLM2", NULL, 8192, 49152, 2, 1, 1, 2};
    assert_int_equal(gt_rpc_encode_model_info(&b, 3, &mi), GT_OK);
    o = unpack(&b, &u);
    res = &o->via.array.ptr[3];
    assert_int_equal(res->via.map.size, 6);
    assert_null(get(res, "chat_format"));
    assert_int_equal(get(res, "vocabulary")->via.u64, 49152);
    assert_int_equal(get(get(res, "layout"), "tp")->via.u64, 2);
    msgpack_unpacked_destroy(&u);

    gt_rpc_buf_consume(&b, b.len);
    double bounds[] = {1, 10};
    uint64_t counts[] = {4, 5, 6};
    gt_rpc_counter ctr[] = {{"requests", 15}, {"tokens", 300}};
    gt_rpc_histogram h[] = {{"ttft", bounds, counts, 2, 15, 123.5}};
    gt_rpc_stats st = {ctr, 2, h, 1};
    assert_int_equal(gt_rpc_encode_stats(&b, 4, &st), GT_OK);
    o = unpack(&b, &u);
    res = &o->via.array.ptr[3];
    assert_int_equal(get(get(res, "counters"), "tokens")->via.u64, 300);
    const msgpack_object *ttft = get(get(res, "histograms"), "ttft");
    assert_int_equal(get(ttft, "counts")->via.array.size, 3);
    assert_int_equal(get(ttft, "counts")->via.array.ptr[2].via.u64, 6);
    msgpack_unpacked_destroy(&u);

    gt_rpc_buf_consume(&b, b.len);
    const char *pieces[] = {"a", "\xe2"};
    size_t plen[] = {1, 1};
    assert_int_equal(gt_rpc_encode_tokenize(&b, 5, toks, 2, pieces, plen), GT_OK);
    o = unpack(&b, &u);
    res = &o->via.array.ptr[3];
    assert_int_equal(get(res, "pieces")->via.array.ptr[1].type, MSGPACK_OBJECT_BIN);
    msgpack_unpacked_destroy(&u);

    gt_rpc_buf_consume(&b, b.len);
    assert_int_equal(gt_rpc_encode_health(&b, 6, "serving"), GT_OK);
    assert_int_equal(gt_rpc_encode_cancel(&b, 7, false), GT_OK);
    assert_int_equal(gt_rpc_encode_ok(&b, 8), GT_OK);
    /* Three frames in one buffer decode one after the other. */
    gt_rpc_decoder *d;
    assert_int_equal(gt_rpc_decoder_create(1024, &d), GT_OK);
    assert_int_equal(gt_rpc_decoder_feed(d, b.data, b.len), GT_OK);
    for (int i = 0; i < 3; i++) {
        gt_rpc_msg *m;
        gt_rpc_refusal ref;
        assert_int_equal(gt_rpc_decoder_next(d, &m, &ref), GT_OK);
        assert_non_null(m);
        gt_rpc_msg_free(m);
    }
    gt_rpc_decoder_destroy(d);
    gt_rpc_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_written_request), cmocka_unit_test(test_generate_all_params),
        cmocka_unit_test(test_other_methods),        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_length_limits),        cmocka_unit_test(test_stream_splits),
        cmocka_unit_test(test_truncated_stream),     cmocka_unit_test(test_fatal_frames),
        cmocka_unit_test(test_frame_limit_exact),    cmocka_unit_test(test_model_checks),
        cmocka_unit_test(test_encode_hand_written),  cmocka_unit_test(test_encode_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
