/* Request validation: one decoded msgpack-RPC message into a gt_rpc_request.
 *
 * The message's shape is checked first ([0, msgid, method, params] or
 * [2, method, params]), then the method's params, key by key from a table:
 * an unknown key, a key given twice, a wrong type or a value out of range
 * is refused with a sentence naming the method, the field and the limit.
 * Every array count and string length is compared with its limit before
 * anything is allocated; the request then owns copies, so the decoded
 * message may be freed at once. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/rpc_internal.h"

typedef struct ctx {
    const gt_rpc_limits *lim;
    gt_rpc_refusal *ref;
    const char *method;
} ctx;

static gt_status refuse(ctx *c, gt_status st, gt_rpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static gt_status refuse(ctx *c, gt_status st, gt_rpc_code code, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->ref->code = code;
    return c->method ? gt_fail(st, "%s: %s", c->method, msg) : gt_fail(st, "%s", msg);
}
#define INVALID(c, ...)  refuse(c, GT_ERR_INVALID_ARG, GT_RPC_INVALID_PARAM, __VA_ARGS__)
#define TOO_LONG(c, ...) refuse(c, GT_ERR_RANGE, GT_RPC_TOO_LONG, __VA_ARGS__)
#define NOMEM(c)         refuse(c, GT_ERR_NOMEM, GT_RPC_INTERNAL, "out of memory copying the params")

static const char *type_name(const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "a boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "a float";
    case MSGPACK_OBJECT_STR:
        return "a string";
    case MSGPACK_OBJECT_BIN:
        return "a bin";
    case MSGPACK_OBJECT_ARRAY:
        return "an array";
    case MSGPACK_OBJECT_MAP:
        return "a map";
    default:
        return "an extension";
    }
}

/* str or bin: the bytes. */
static bool text_of(const msgpack_object *o, const char **p, size_t *n) {
    if (o->type == MSGPACK_OBJECT_STR) {
        *p = o->via.str.ptr;
        *n = o->via.str.size;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_BIN) {
        *p = o->via.bin.ptr;
        *n = o->via.bin.size;
        return true;
    }
    return false;
}

/* Client text quoted in a sentence: at most 32 bytes, printable ASCII. */
static const char *quote(const char *p, size_t n, char out[48]) {
    size_t k = 0;
    for (size_t i = 0; i < n && i < 32; i++)
        out[k++] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\'') ? p[i] : '?';
    if (n > 32) out[k++] = '.', out[k++] = '.', out[k++] = '.';
    out[k] = 0;
    return out;
}

static bool text_is(const char *p, size_t n, const char *s) {
    return strlen(s) == n && memcmp(p, s, n) == 0;
}

/* ---- typed values ---- */

static gt_status get_uint(ctx *c, const char *name, const msgpack_object *o, uint64_t lo,
                          uint64_t hi, uint64_t *out) {
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return INVALID(c, "%s %lld is outside [%llu, %llu]", name, (long long)o->via.i64,
                       (unsigned long long)lo, (unsigned long long)hi);
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return INVALID(c, "%s must be an integer, not %s", name, type_name(o));
    if (o->via.u64 < lo || o->via.u64 > hi)
        return INVALID(c, "%s %llu is outside [%llu, %llu]", name, (unsigned long long)o->via.u64,
                       (unsigned long long)lo, (unsigned long long)hi);
    *out = o->via.u64;
    return GT_OK;
}

/* A number in [lo, hi] (or (lo, hi] with lo_open); integers are accepted. */
static gt_status get_float(ctx *c, const char *name, const msgpack_object *o, double lo, double hi,
                           bool lo_open, float *out) {
    double v;
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        v = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        v = (double)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        v = (double)o->via.i64;
    else
        return INVALID(c, "%s must be a number, not %s", name, type_name(o));
    if (!isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
        return INVALID(c, "%s %g is outside %s%g, %g]", name, v, lo_open ? "(" : "[", lo, hi);
    *out = (float)v;
    return GT_OK;
}

static gt_status get_bool(ctx *c, const char *name, const msgpack_object *o, bool *out) {
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return INVALID(c, "%s must be a boolean, not %s", name, type_name(o));
    *out = o->via.boolean;
    return GT_OK;
}

/* A str or bin of min..max bytes without NUL, copied NUL-terminated. */
static gt_status get_text(ctx *c, const char *name, const msgpack_object *o, size_t min, size_t max,
                          char **out, size_t *len) {
    const char *p;
    size_t n;
    if (!text_of(o, &p, &n)) return INVALID(c, "%s must be a string, not %s", name, type_name(o));
    if (n > max) return TOO_LONG(c, "%s of %zu bytes exceeds the limit of %zu", name, n, max);
    if (n < min) return INVALID(c, "%s is empty", name);
    const char *nul = memchr(p, 0, n);
    if (nul) return INVALID(c, "%s holds a NUL byte at offset %zu", name, (size_t)(nul - p));
    char *s = malloc(n + 1);
    if (!s) return NOMEM(c);
    memcpy(s, p, n);
    s[n] = 0;
    *out = s;
    if (len) *len = n;
    return GT_OK;
}

/* An array of 0..max token ids in [0, 2^31). */
static gt_status get_tokens(ctx *c, const char *name, const msgpack_object *o, uint32_t max,
                            int32_t **out, uint32_t *n_out) {
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return INVALID(c, "%s must be an array of token ids, not %s", name, type_name(o));
    uint32_t n = o->via.array.size;
    if (n > max) return TOO_LONG(c, "%s holds %u ids, over the limit of %u", name, n, max);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        if (e->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
            (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER && e->via.u64 > INT32_MAX))
            return INVALID(c, "%s[%u] is not a token id (it must be in [0, 2147483647])", name, i);
        if (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return INVALID(c, "%s[%u] must be an integer, not %s", name, i, type_name(e));
    }
    int32_t *ids = malloc(n ? (size_t)n * sizeof *ids : 1);
    if (!ids) return NOMEM(c);
    for (uint32_t i = 0; i < n; i++) ids[i] = (int32_t)o->via.array.ptr[i].via.u64;
    *out = ids;
    *n_out = n;
    return GT_OK;
}

/* ---- params maps ---- */

/* Walks map m against keys[n_keys]: refuses unknown and repeated keys and
 * puts each value (NULL when absent or nil) in vals[]. */
static gt_status match_keys(ctx *c, const char *what, const msgpack_object *m,
                            const char *const *keys, int n_keys, const msgpack_object **vals) {
    for (int k = 0; k < n_keys; k++) vals[k] = NULL;
    uint32_t seen = 0;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        const char *p;
        size_t n;
        char q[48];
        if (!text_of(&kv->key, &p, &n))
            return INVALID(c, "%s keys must be strings, not %s", what, type_name(&kv->key));
        int k = 0;
        while (k < n_keys && !text_is(p, n, keys[k])) k++;
        if (k == n_keys) {
            char known[256] = "";
            for (int j = 0; j < n_keys; j++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", j ? ", " : "",
                         keys[j]);
            if (n_keys == 0)
                return INVALID(c, "%s takes no params, got '%s'", what, quote(p, n, q));
            return INVALID(c, "%s has no key '%s' (known: %s)", what, quote(p, n, q), known);
        }
        if (seen & (1u << k)) return INVALID(c, "%s gives '%s' twice", what, keys[k]);
        seen |= 1u << k;
        vals[k] = kv->val.type == MSGPACK_OBJECT_NIL ? NULL : &kv->val;
    }
    return GT_OK;
}

static gt_status get_messages(ctx *c, const msgpack_object *o, gt_rpc_generate *g) {
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return INVALID(c, "messages must be an array of {role, content} maps, not %s",
                       type_name(o));
    uint32_t n = o->via.array.size;
    if (n > c->lim->max_messages)
        return TOO_LONG(c, "messages holds %u messages, over the limit of %u", n,
                        c->lim->max_messages);
    if (n == 0) return INVALID(c, "messages is empty");
    g->messages = calloc(n, sizeof *g->messages);
    if (!g->messages) return NOMEM(c);
    g->n_messages = n;
    static const char *const keys[] = {"role", "content"};
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        char what[48], field[64];
        snprintf(what, sizeof what, "messages[%u]", i);
        if (e->type != MSGPACK_OBJECT_MAP)
            return INVALID(c, "%s must be a map with role and content, not %s", what, type_name(e));
        const msgpack_object *v[2];
        GT_TRY(match_keys(c, what, e, keys, 2, v));
        for (int k = 0; k < 2; k++)
            if (!v[k]) return INVALID(c, "%s has no %s", what, keys[k]);
        snprintf(field, sizeof field, "%s.role", what);
        GT_TRY(get_text(c, field, v[0], 1, 32, &g->messages[i].role, NULL));
        const char *r = g->messages[i].role;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            char q[48];
            return INVALID(c, "%s is '%s'; it must be system, user or assistant", field,
                           quote(r, strlen(r), q));
        }
        snprintf(field, sizeof field, "%s.content", what);
        GT_TRY(get_text(c, field, v[1], 0, c->lim->max_text_bytes, &g->messages[i].content, NULL));
    }
    return GT_OK;
}

static gt_status get_stop(ctx *c, const msgpack_object *o, gt_rpc_generate *g) {
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return INVALID(c, "stop must be an array of strings, not %s", type_name(o));
    uint32_t n = o->via.array.size;
    if (n > c->lim->max_stop)
        return TOO_LONG(c, "stop holds %u strings, over the limit of %u", n, c->lim->max_stop);
    g->stop = calloc(n ? n : 1, sizeof *g->stop);
    if (!g->stop) return NOMEM(c);
    g->n_stop = n;
    for (uint32_t i = 0; i < n; i++) {
        char field[32];
        snprintf(field, sizeof field, "stop[%u]", i);
        GT_TRY(
            get_text(c, field, &o->via.array.ptr[i], 1, c->lim->max_stop_bytes, &g->stop[i], NULL));
    }
    return GT_OK;
}

enum {
    G_PROMPT,
    G_MESSAGES,
    G_TOKENS,
    G_MAX_TOKENS,
    G_TEMPERATURE,
    G_TOP_K,
    G_TOP_P,
    G_MIN_P,
    G_REPETITION,
    G_PRESENCE,
    G_FREQUENCY,
    G_SEED,
    G_STOP,
    G_LOGPROBS,
    G_STREAM,
    G_TYPICAL_P,
    G_LOGIT_BIAS,
    G_GRAMMAR,
    G_JSON_SCHEMA,
    G_SPECULATE,
    G_BEAMS,
    G_LENGTH_PENALTY,
    G_N_BEST,
    G_COUNT
};
static const char *const generate_keys[G_COUNT] = {"prompt",
                                                   "messages",
                                                   "tokens",
                                                   "max_tokens",
                                                   "temperature",
                                                   "top_k",
                                                   "top_p",
                                                   "min_p",
                                                   "repetition_penalty",
                                                   "presence_penalty",
                                                   "frequency_penalty",
                                                   "seed",
                                                   "stop",
                                                   "logprobs",
                                                   "stream",
                                                   "typical_p",
                                                   "logit_bias",
                                                   "grammar",
                                                   "json_schema",
                                                   "speculate",
                                                   "beams",
                                                   "length_penalty",
                                                   "n_best"};

enum { MAX_LOGIT_BIAS = 1024 };

/* logit_bias: a map of token id (an integer, or a string of digits as
 * JSON clients send) to a bias (a number; -inf bans). */
static gt_status get_logit_bias(ctx *c, const msgpack_object *o, gt_rpc_generate *g) {
    if (o->type != MSGPACK_OBJECT_MAP)
        return INVALID(c, "logit_bias must be a map of token id to bias, not %s", type_name(o));
    uint32_t n = o->via.map.size;
    if (n > MAX_LOGIT_BIAS) return INVALID(c, "logit_bias holds %u entries; at most %d", n, MAX_LOGIT_BIAS);
    g->bias_ids = malloc((n ? n : 1) * sizeof *g->bias_ids);
    g->bias = malloc((n ? n : 1) * sizeof *g->bias);
    if (!g->bias_ids || !g->bias) return refuse(c, GT_ERR_NOMEM, GT_RPC_INTERNAL, "cannot allocate logit_bias");
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        uint64_t id = 0;
        const char *p;
        size_t len;
        if (kv->key.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            id = kv->key.via.u64;
        } else if (text_of(&kv->key, &p, &len) && len > 0 && len <= 10) {
            for (size_t k = 0; k < len; k++) {
                if (p[k] < '0' || p[k] > '9') return INVALID(c, "logit_bias key %u is not a token id", i);
                id = id * 10 + (uint64_t)(p[k] - '0');
            }
        } else {
            return INVALID(c, "logit_bias key %u must be a token id, not %s", i, type_name(&kv->key));
        }
        if (id > INT32_MAX) return INVALID(c, "logit_bias key %llu is not a token id", (unsigned long long)id);
        float b;
        char name[40];
        snprintf(name, sizeof name, "logit_bias[%llu]", (unsigned long long)id);
        if (kv->val.type == MSGPACK_OBJECT_FLOAT32 || kv->val.type == MSGPACK_OBJECT_FLOAT64) {
            if (kv->val.via.f64 == -INFINITY) b = -INFINITY;
            else GT_TRY(get_float(c, name, &kv->val, -1e6, 1e6, false, &b));
        } else {
            GT_TRY(get_float(c, name, &kv->val, -1e6, 1e6, false, &b));
        }
        g->bias_ids[i] = (int32_t)id;
        g->bias[i] = b;
        g->n_bias = i + 1;
    }
    return GT_OK;
}

/* speculate: {lookup: 0..64, draft: bool, tokens: 1..64}, all optional
 * (absent: the server's defaults); draft true with lookup > 0 is refused. */
static gt_status get_speculate(ctx *c, const msgpack_object *o, gt_rpc_generate *g) {
    if (o->type != MSGPACK_OBJECT_MAP)
        return INVALID(c, "speculate must be a map {lookup, draft, tokens}, not %s", type_name(o));
    static const char *const keys[] = {"lookup", "tokens", "draft"};
    const msgpack_object *v[3];
    GT_TRY(match_keys(c, "speculate", o, keys, 3, v));
    uint64_t u;
    g->has_speculate = true;
    if (v[0]) {
        GT_TRY(get_uint(c, "speculate.lookup", v[0], 0, 64, &u));
        g->spec_lookup = (uint32_t)u;
    }
    if (v[1]) {
        GT_TRY(get_uint(c, "speculate.tokens", v[1], 1, 64, &u));
        g->spec_tokens = (uint32_t)u;
    }
    g->spec_has_lookup = v[0] != NULL;
    if (v[2]) {
        GT_TRY(get_bool(c, "speculate.draft", v[2], &g->spec_draft));
        g->spec_has_draft = true;
    }
    if (g->spec_draft && g->spec_lookup > 0)
        return INVALID(c, "speculate asks for both prompt lookup (lookup %u) and the draft model; a request "
                       "speculates with one of them", g->spec_lookup);
    return GT_OK;
}

static gt_status parse_generate(ctx *c, const msgpack_object *m, gt_rpc_generate *g) {
    const msgpack_object *v[G_COUNT];
    GT_TRY(match_keys(c, "generate", m, generate_keys, G_COUNT, v));
    int n_inputs = !!v[G_PROMPT] + !!v[G_MESSAGES] + !!v[G_TOKENS];
    if (n_inputs != 1) {
        char got[64] = "";
        for (int k = G_PROMPT; k <= G_TOKENS; k++)
            if (v[k])
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", *got ? " and " : "",
                         generate_keys[k]);
        return INVALID(c, "give exactly one of prompt, messages or tokens (got %s)",
                       n_inputs ? got : "none");
    }
    const gt_rpc_limits *lim = c->lim;
    if (v[G_PROMPT]) {
        g->input = GT_RPC_INPUT_PROMPT;
        GT_TRY(
            get_text(c, "prompt", v[G_PROMPT], 1, lim->max_text_bytes, &g->prompt, &g->prompt_len));
    } else if (v[G_MESSAGES]) {
        g->input = GT_RPC_INPUT_MESSAGES;
        GT_TRY(get_messages(c, v[G_MESSAGES], g));
    } else {
        g->input = GT_RPC_INPUT_TOKENS;
        GT_TRY(get_tokens(c, "tokens", v[G_TOKENS], lim->max_tokens_in, &g->tokens, &g->n_tokens));
        if (g->n_tokens == 0) return INVALID(c, "tokens is empty");
    }
    gt_sampler_config def = GT_SAMPLER_CONFIG_INIT;
    g->sampling = def;
    g->repetition_penalty = 1.0f;
    uint64_t u;
    if (v[G_MAX_TOKENS]) {
        GT_TRY(get_uint(c, "max_tokens", v[G_MAX_TOKENS], 1, lim->max_new, &u));
        g->has_max_tokens = true;
        g->max_tokens = (uint32_t)u;
    }
    if (v[G_TEMPERATURE])
        GT_TRY(
            get_float(c, "temperature", v[G_TEMPERATURE], 0, 100, false, &g->sampling.temperature));
    if (v[G_TOP_K]) {
        GT_TRY(get_uint(c, "top_k", v[G_TOP_K], 0, INT32_MAX, &u));
        g->sampling.top_k = (int)u;
    }
    if (v[G_TOP_P]) GT_TRY(get_float(c, "top_p", v[G_TOP_P], 0, 1, true, &g->sampling.top_p));
    if (v[G_MIN_P]) GT_TRY(get_float(c, "min_p", v[G_MIN_P], 0, 1, false, &g->sampling.min_p));
    if (v[G_REPETITION])
        GT_TRY(get_float(c, "repetition_penalty", v[G_REPETITION], 0, 10, true,
                         &g->repetition_penalty));
    if (v[G_PRESENCE])
        GT_TRY(get_float(c, "presence_penalty", v[G_PRESENCE], -2, 2, false, &g->presence_penalty));
    if (v[G_FREQUENCY])
        GT_TRY(
            get_float(c, "frequency_penalty", v[G_FREQUENCY], -2, 2, false, &g->frequency_penalty));
    if (v[G_SEED]) GT_TRY(get_uint(c, "seed", v[G_SEED], 0, UINT64_MAX, &g->sampling.seed));
    if (v[G_STOP]) GT_TRY(get_stop(c, v[G_STOP], g));
    if (v[G_LOGPROBS]) {
        GT_TRY(get_uint(c, "logprobs", v[G_LOGPROBS], 0, lim->max_logprobs, &u));
        g->logprobs = (uint32_t)u;
    }
    if (v[G_STREAM]) GT_TRY(get_bool(c, "stream", v[G_STREAM], &g->stream));
    if (v[G_TYPICAL_P]) GT_TRY(get_float(c, "typical_p", v[G_TYPICAL_P], 0, 1, false, &g->sampling.typical_p));
    if (v[G_LOGIT_BIAS]) GT_TRY(get_logit_bias(c, v[G_LOGIT_BIAS], g));
    if (v[G_GRAMMAR] && v[G_JSON_SCHEMA]) return INVALID(c, "give at most one of grammar and json_schema");
    if (v[G_GRAMMAR] || v[G_JSON_SCHEMA]) {
        bool gbnf = v[G_GRAMMAR] != NULL;
        GT_TRY(get_text(c, gbnf ? "grammar" : "json_schema", gbnf ? v[G_GRAMMAR] : v[G_JSON_SCHEMA], 1,
                        lim->max_text_bytes, &g->grammar, &g->grammar_len));
        g->grammar_kind = gbnf ? 0 : 1; /* GT_GRAMMAR_GBNF, GT_GRAMMAR_JSON_SCHEMA */
    }
    if (v[G_SPECULATE]) GT_TRY(get_speculate(c, v[G_SPECULATE], g));
    g->length_penalty = 1.0f;
    if (v[G_BEAMS]) {
        GT_TRY(get_uint(c, "beams", v[G_BEAMS], 0, 64, &u));
        g->beams = (uint32_t)u;
    }
    if (v[G_LENGTH_PENALTY])
        GT_TRY(get_float(c, "length_penalty", v[G_LENGTH_PENALTY], -10, 10, false, &g->length_penalty));
    if (v[G_N_BEST]) {
        GT_TRY(get_uint(c, "n_best", v[G_N_BEST], 0, 64, &u));
        g->n_best = (uint32_t)u;
    }
    if (g->n_best > 1 && !g->beams)
        return INVALID(
            c, "n_best %u needs beam search (beams >= n_best); sampling answers one hypothesis",
            g->n_best);
    if (g->n_best > g->beams && g->beams)
        return INVALID(
            c, "n_best %u asks for more hypotheses than the %u beams search (one per beam at most)",
            g->n_best, g->beams);
    return GT_OK;
}

static gt_status parse_params(ctx *c, gt_rpc_method method, const msgpack_object *m,
                              gt_rpc_request *r) {
    const msgpack_object *v[2];
    uint64_t u;
    switch (method) {
    case GT_RPC_GENERATE:
        return parse_generate(c, m, &r->generate);
    case GT_RPC_TOKENIZE: {
        static const char *const keys[] = {"text", "add_special"};
        GT_TRY(match_keys(c, "tokenize", m, keys, 2, v));
        if (!v[0]) return INVALID(c, "param 'text' is missing");
        GT_TRY(get_text(c, "text", v[0], 0, c->lim->max_text_bytes, &r->tokenize.text,
                        &r->tokenize.text_len));
        if (v[1]) GT_TRY(get_bool(c, "add_special", v[1], &r->tokenize.add_special));
        return GT_OK;
    }
    case GT_RPC_DETOKENIZE: {
        static const char *const keys[] = {"tokens"};
        GT_TRY(match_keys(c, "detokenize", m, keys, 1, v));
        if (!v[0]) return INVALID(c, "param 'tokens' is missing");
        return get_tokens(c, "tokens", v[0], c->lim->max_tokens_in, &r->detokenize.tokens,
                          &r->detokenize.n_tokens);
    }
    case GT_RPC_CANCEL: {
        static const char *const keys[] = {"id"};
        GT_TRY(match_keys(c, "cancel", m, keys, 1, v));
        if (!v[0]) return INVALID(c, "param 'id' is missing");
        GT_TRY(get_uint(c, "id", v[0], 0, UINT32_MAX, &u));
        r->cancel.id = (uint32_t)u;
        return GT_OK;
    }
    case GT_RPC_AUTH: {
        static const char *const keys[] = {"token"};
        GT_TRY(match_keys(c, "auth", m, keys, 1, v));
        if (!v[0]) return INVALID(c, "param 'token' is missing");
        return get_text(c, "token", v[0], 1, c->lim->max_auth_bytes, &r->auth.token,
                        &r->auth.token_len);
    }
    default: /* model_info, health, stats */
        return match_keys(c, gt_rpc_method_name(method), m, NULL, 0, v);
    }
}

/* The params element: [map], map, [] or nil; *map is `none` (an empty map
 * the caller owns) for the last three. */
static gt_status params_map(ctx *c, const msgpack_object *p, const msgpack_object *none,
                            const msgpack_object **map) {
    *map = none;
    if (p->type == MSGPACK_OBJECT_NIL) return GT_OK;
    if (p->type == MSGPACK_OBJECT_MAP) {
        *map = p;
        return GT_OK;
    }
    if (p->type != MSGPACK_OBJECT_ARRAY)
        return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST,
                      "params must be an array holding one map, not %s", type_name(p));
    if (p->via.array.size == 0) return GT_OK;
    if (p->via.array.size > 1)
        return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST,
                      "params holds %u elements; it must hold one map", p->via.array.size);
    const msgpack_object *e = &p->via.array.ptr[0];
    if (e->type == MSGPACK_OBJECT_NIL) return GT_OK;
    if (e->type != MSGPACK_OBJECT_MAP)
        return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST, "params must hold one map, not %s",
                      type_name(e));
    *map = e;
    return GT_OK;
}

static gt_status parse(const msgpack_object *root, ctx *c, gt_rpc_request *r) {
    gt_rpc_refusal *ref = c->ref;
    if (root->type != MSGPACK_OBJECT_ARRAY)
        return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST,
                      "a message must be an array [type, ...], not %s", type_name(root));
    uint32_t n = root->via.array.size;
    const msgpack_object *a = root->via.array.ptr;
    if (n == 0 || a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        (a[0].via.u64 != 0 && a[0].via.u64 != 2))
        return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST,
                      "a message must start with 0 (request) or 2 (notification)");
    const msgpack_object *method_obj, *params;
    if (a[0].via.u64 == 0) {
        if (n >= 2 && a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && a[1].via.u64 <= UINT32_MAX) {
            ref->has_msgid = true;
            ref->msgid = r->msgid = (uint32_t)a[1].via.u64;
        }
        if (n != 4)
            return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST,
                          "a request is [0, msgid, method, params], not an array of %u", n);
        if (!ref->has_msgid)
            return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST,
                          "a request's msgid must be an integer in [0, 4294967295]");
        r->kind = GT_RPC_KIND_REQUEST;
        method_obj = &a[2];
        params = &a[3];
    } else {
        if (n != 3)
            return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST,
                          "a notification is [2, method, params], not an array of %u", n);
        r->kind = GT_RPC_KIND_NOTIFICATION;
        method_obj = &a[1];
        params = &a[2];
    }
    const char *p;
    size_t len;
    if (!text_of(method_obj, &p, &len))
        return refuse(c, GT_ERR_FORMAT, GT_RPC_BAD_REQUEST, "the method must be a string, not %s",
                      type_name(method_obj));
    if (r->kind == GT_RPC_KIND_NOTIFICATION) {
        quote(p, len, r->notification);
        return GT_OK; /* no notification is known: each is ignored */
    }
    int m = 0;
    while (m < GT_RPC_METHOD_COUNT && !text_is(p, len, gt_rpc_method_name((gt_rpc_method)m))) m++;
    if (m == GT_RPC_METHOD_COUNT) {
        char q[48];
        return refuse(c, GT_ERR_NOT_FOUND, GT_RPC_UNKNOWN_METHOD,
                      "unknown method '%s' (known: generate, tokenize, detokenize, cancel, "
                      "model_info, health, stats, auth)",
                      quote(p, len, q));
    }
    r->method = (gt_rpc_method)m;
    c->method = gt_rpc_method_name(r->method);
    msgpack_object none;
    memset(&none, 0, sizeof none);
    none.type = MSGPACK_OBJECT_MAP;
    const msgpack_object *map;
    GT_TRY(params_map(c, params, &none, &map));
    return parse_params(c, r->method, map, r);
}

gt_status gt_rpc_request_parse(const gt_rpc_msg *m, const gt_rpc_limits *lim, gt_rpc_request *req,
                               gt_rpc_refusal *ref) {
    memset(req, 0, sizeof *req);
    memset(ref, 0, sizeof *ref);
    ctx c = {lim, ref, NULL};
    gt_status st = parse(&m->up.data, &c, req);
    if (st != GT_OK) {
        uint32_t msgid = req->msgid;
        gt_rpc_request_free(req);
        req->msgid = msgid;
    }
    return st;
}

void gt_rpc_generate_free(gt_rpc_generate *g) {
    free(g->prompt);
    for (uint32_t i = 0; g->messages && i < g->n_messages; i++) {
        free(g->messages[i].role);
        free(g->messages[i].content);
    }
    free(g->messages);
    free(g->tokens);
    for (uint32_t i = 0; g->stop && i < g->n_stop; i++) free(g->stop[i]);
    free(g->stop);
    free(g->bias_ids);
    free(g->bias);
    free(g->grammar);
    memset(g, 0, sizeof *g);
}

void gt_rpc_request_free(gt_rpc_request *r) {
    gt_rpc_generate_free(&r->generate);
    free(r->tokenize.text);
    free(r->detokenize.tokens);
    free(r->auth.token);
    memset(r, 0, sizeof *r);
}
