/* OpenAI request bodies into gt_rpc_generate (jansson); see http.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "coordinator/http.h"

typedef struct octx {
    const char **param;
    gt_rpc_code *code;
    const gt_rpc_limits *lim;
} octx;

#define BAD(c, field, ...) (*(c)->param = (field), *(c)->code = GT_RPC_INVALID_PARAM, gt_fail(GT_ERR_INVALID_ARG, __VA_ARGS__))
#define LONG(c, field, ...) (*(c)->param = (field), *(c)->code = GT_RPC_TOO_LONG, gt_fail(GT_ERR_RANGE, __VA_ARGS__))

static const char *jtype(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

static gt_status load(octx *c, const char *body, size_t len, json_t **out) {
    json_error_t err;
    *out = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!*out) return BAD(c, NULL, "the body is not valid JSON: %s (line %d, column %d)", err.text, err.line, err.column);
    if (!json_is_object(*out)) {
        gt_status st = BAD(c, NULL, "the body must be a JSON object, not %s", jtype(*out));
        json_decref(*out);
        *out = NULL;
        return st;
    }
    return GT_OK;
}

static gt_status get_text(octx *c, const char *field, const json_t *v, size_t min, size_t max, char **out, size_t *len) {
    if (!json_is_string(v)) return BAD(c, field, "%s must be a string, not %s", field, jtype(v));
    size_t n = json_string_length(v);
    const char *p = json_string_value(v);
    if (memchr(p, '\0', n)) return BAD(c, field, "%s holds a NUL character", field);
    if (n > max) return LONG(c, field, "%s is %zu bytes, over the limit of %zu", field, n, max);
    if (n < min) return BAD(c, field, "%s is empty", field);
    *out = malloc(n + 1);
    if (!*out) return gt_fail(GT_ERR_NOMEM, "cannot copy %s of %zu bytes", field, n);
    memcpy(*out, p, n + 1);
    if (len) *len = n;
    return GT_OK;
}

static gt_status get_uint(octx *c, const char *field, const json_t *v, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (!json_is_integer(v)) return BAD(c, field, "%s must be an integer, not %s", field, jtype(v));
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < lo || (uint64_t)i > hi)
        return BAD(c, field, "%s is %lld; it must be in [%llu, %llu]", field, (long long)i, (unsigned long long)lo,
                   (unsigned long long)hi);
    *out = (uint64_t)i;
    return GT_OK;
}

static gt_status get_float(octx *c, const char *field, const json_t *v, double lo, double hi, bool lo_open, float *out) {
    if (!json_is_number(v)) return BAD(c, field, "%s must be a number, not %s", field, jtype(v));
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d <= lo))
        return BAD(c, field, "%s is %g; it must be in %s%g, %g]", field, d, lo_open ? "(" : "[", lo, hi);
    *out = (float)d;
    return GT_OK;
}

static gt_status get_bool(octx *c, const char *field, const json_t *v, bool *out) {
    if (!json_is_boolean(v)) return BAD(c, field, "%s must be true or false, not %s", field, jtype(v));
    *out = json_is_true(v);
    return GT_OK;
}

static gt_status get_tokens(octx *c, const char *field, const json_t *v, uint32_t max, int32_t **out, uint32_t *n) {
    size_t k = json_array_size(v);
    if (k > max) return LONG(c, field, "%s holds %zu tokens, over the limit of %u", field, k, max);
    if (k == 0) return BAD(c, field, "%s is empty", field);
    *out = malloc(k * sizeof **out);
    if (!*out) return gt_fail(GT_ERR_NOMEM, "cannot hold %zu tokens", k);
    *n = (uint32_t)k;
    for (size_t i = 0; i < k; i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > INT32_MAX)
            return BAD(c, field, "%s[%zu] must be a token id (an integer in [0, 2^31)), not %s", field, i, jtype(e));
        (*out)[i] = (int32_t)json_integer_value(e);
    }
    return GT_OK;
}

static gt_status get_prompt(octx *c, const json_t *v, gt_rpc_generate *g) {
    const json_t *s = v;
    if (json_is_array(v)) {
        const json_t *e0 = json_array_get(v, 0);
        if (e0 && json_is_integer(e0)) {
            g->input = GT_RPC_INPUT_TOKENS;
            return get_tokens(c, "prompt", v, c->lim->max_tokens_in, &g->tokens, &g->n_tokens);
        }
        if (json_array_size(v) != 1)
            return BAD(c, "prompt", "prompt must be a string, one string in an array, or token ids "
                       "(an array of %zu elements holds several prompts; send one per request)", json_array_size(v));
        s = e0;
    }
    g->input = GT_RPC_INPUT_PROMPT;
    return get_text(c, "prompt", s, 1, c->lim->max_text_bytes, &g->prompt, &g->prompt_len);
}

/* content: a string, or an array of {"type": "text", "text": str} parts. */
static gt_status get_content(octx *c, const json_t *v, char **out) {
    if (json_is_string(v) || json_is_null(v)) {
        if (json_is_null(v)) v = json_string("");
        else json_incref((json_t *)v);
        gt_status st = get_text(c, "messages.content", v, 0, c->lim->max_text_bytes, out, NULL);
        json_decref((json_t *)v);
        return st;
    }
    if (!json_is_array(v))
        return BAD(c, "messages.content", "a message's content must be a string or an array of text parts, not %s", jtype(v));
    size_t len = 0, i;
    const json_t *part;
    json_array_foreach(v, i, part) {
        const json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(json_object_get(part, "type")) ||
            strcmp(json_string_value(json_object_get(part, "type")), "text") || !json_is_string(t))
            return BAD(c, "messages.content", "content part %zu must be {\"type\": \"text\", \"text\": str}", i);
        len += json_string_length(t);
    }
    if (len > c->lim->max_text_bytes)
        return LONG(c, "messages.content", "a message's content is %zu bytes, over the limit of %zu", len, c->lim->max_text_bytes);
    char *s = malloc(len + 1);
    if (!s) return gt_fail(GT_ERR_NOMEM, "cannot copy content of %zu bytes", len);
    size_t at = 0;
    json_array_foreach(v, i, part) {
        const json_t *t = json_object_get(part, "text");
        memcpy(s + at, json_string_value(t), json_string_length(t));
        at += json_string_length(t);
    }
    s[at] = '\0';
    if (strlen(s) != at) {
        free(s);
        return BAD(c, "messages.content", "a message's content holds a NUL character");
    }
    *out = s;
    return GT_OK;
}

static gt_status get_messages(octx *c, const json_t *v, gt_rpc_generate *g) {
    if (!json_is_array(v)) return BAD(c, "messages", "messages must be an array of {role, content} objects, not %s", jtype(v));
    size_t n = json_array_size(v);
    if (n > c->lim->max_messages) return LONG(c, "messages", "messages holds %zu messages, over the limit of %u", n, c->lim->max_messages);
    if (n == 0) return BAD(c, "messages", "messages is empty");
    g->input = GT_RPC_INPUT_MESSAGES;
    g->messages = calloc(n, sizeof *g->messages);
    if (!g->messages) return gt_fail(GT_ERR_NOMEM, "cannot hold %zu messages", n);
    g->n_messages = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(v, i);
        if (!json_is_object(m)) return BAD(c, "messages", "messages[%zu] must be an object, not %s", i, jtype(m));
        const json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        if (!role || !content) return BAD(c, "messages", "messages[%zu] needs a role and a content", i);
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)m, key, val) {
            if (strcmp(key, "role") && strcmp(key, "content") && strcmp(key, "name"))
                return BAD(c, "messages", "messages[%zu] has the field '%.40s' Gantry does not take (known: role, content, name)", i, key);
        }
        GT_TRY(get_text(c, "messages.role", role, 1, 32, &g->messages[i].role, NULL));
        const char *r = g->messages[i].role;
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "developer"))
            return BAD(c, "messages.role", "messages[%zu].role is '%.32s'; it must be system, user or assistant", i, r);
        if (!strcmp(r, "developer")) strcpy(g->messages[i].role, "system"); /* fits: "developer" is longer */
        GT_TRY(get_content(c, content, &g->messages[i].content));
    }
    return GT_OK;
}

static gt_status get_stop(octx *c, const json_t *v, gt_rpc_generate *g) {
    if (json_is_null(v)) return GT_OK;
    size_t n = json_is_string(v) ? 1 : json_array_size(v);
    if (!json_is_string(v) && !json_is_array(v))
        return BAD(c, "stop", "stop must be a string or an array of strings, not %s", jtype(v));
    if (n > c->lim->max_stop) return LONG(c, "stop", "stop holds %zu strings, over the limit of %u", n, c->lim->max_stop);
    g->stop = calloc(n ? n : 1, sizeof *g->stop);
    if (!g->stop) return gt_fail(GT_ERR_NOMEM, "cannot hold %zu stop strings", n);
    g->n_stop = (uint32_t)n;
    for (size_t i = 0; i < n; i++)
        GT_TRY(get_text(c, "stop", json_is_string(v) ? v : json_array_get(v, i), 1, c->lim->max_stop_bytes, &g->stop[i], NULL));
    return GT_OK;
}

static const char *const k_keys[] = {"model", "prompt", "messages", "max_tokens", "max_completion_tokens",
                                     "temperature", "top_p", "top_k", "min_p", "seed", "stop", "n",
                                     "logprobs", "top_logprobs", "stream", "stream_options",
                                     "presence_penalty", "frequency_penalty", "repetition_penalty", "user",
                                     "typical_p", "logit_bias", "response_format", "grammar", "speculate",
                                     "use_beam_search", "best_of", "length_penalty", NULL};

/* logit_bias {"id": bias} (OpenAI: bias in [-100, 100], -100 bans the
 * token, here -inf), response_format (json_object, json_schema, text) and
 * the `grammar` extension (GBNF text). */
static gt_status get_constraint(octx *c, const json_t *o, gt_rpc_generate *g) {
    const json_t *v;
    if ((v = json_object_get(o, "logit_bias")) && !json_is_null(v)) {
        if (!json_is_object(v)) return BAD(c, "logit_bias", "logit_bias must be an object of token id to bias, not %s", jtype(v));
        size_t n = json_object_size(v);
        if (n > 1024) return BAD(c, "logit_bias", "logit_bias holds %zu entries; at most 1024", n);
        g->bias_ids = malloc((n ? n : 1) * sizeof *g->bias_ids);
        g->bias = malloc((n ? n : 1) * sizeof *g->bias);
        if (!g->bias_ids || !g->bias) return gt_fail(GT_ERR_NOMEM, "cannot hold %zu logit biases", n);
        const char *key;
        const json_t *b;
        json_object_foreach((json_t *)v, key, b) {
            char *end;
            long id = strtol(key, &end, 10);
            if (!*key || *end || id < 0 || id > INT32_MAX)
                return BAD(c, "logit_bias", "logit_bias key '%.20s' is not a token id", key);
            float f;
            GT_TRY(get_float(c, "logit_bias", b, -100, 100, false, &f));
            g->bias_ids[g->n_bias] = (int32_t)id;
            g->bias[g->n_bias++] = f <= -100 ? -INFINITY : f;
        }
    }
    const json_t *gr = json_object_get(o, "grammar"), *rf = json_object_get(o, "response_format");
    if (gr && json_is_null(gr)) gr = NULL;
    if (rf && json_is_null(rf)) rf = NULL;
    if (gr) {
        GT_TRY(get_text(c, "grammar", gr, 1, c->lim->max_text_bytes, &g->grammar, &g->grammar_len));
        g->grammar_kind = 0; /* GT_GRAMMAR_GBNF */
    }
    if (!rf) return GT_OK;
    const json_t *type = json_object_get(rf, "type");
    if (!json_is_object(rf) || !json_is_string(type))
        return BAD(c, "response_format", "response_format must be an object with a string 'type'");
    const char *t = json_string_value(type);
    if (!strcmp(t, "text")) return GT_OK;
    if (gr) return BAD(c, "response_format", "give grammar or a JSON response_format, not both");
    if (!strcmp(t, "json_object")) {
        g->grammar = strdup("{}");
        g->grammar_len = 2;
        g->grammar_kind = 2; /* GT_GRAMMAR_JSON_OBJECT */
        return g->grammar ? GT_OK : gt_fail(GT_ERR_NOMEM, "cannot hold a response format");
    }
    if (strcmp(t, "json_schema"))
        return BAD(c, "response_format", "response_format type '%.40s' is not text, json_object or json_schema", t);
    const json_t *js = json_object_get(rf, "json_schema");
    const json_t *schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
    if (!schema) return BAD(c, "response_format", "response_format json_schema needs json_schema.schema");
    g->grammar = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!g->grammar) return gt_fail(GT_ERR_NOMEM, "cannot hold a JSON schema");
    g->grammar_len = strlen(g->grammar);
    if (g->grammar_len > c->lim->max_text_bytes)
        return LONG(c, "response_format", "the JSON schema is %zu bytes, over the limit of %zu", g->grammar_len,
                    c->lim->max_text_bytes);
    g->grammar_kind = 1; /* GT_GRAMMAR_JSON_SCHEMA */
    return GT_OK;
}

/* Beam search as vLLM's completions take it: use_beam_search with best_of
 * beams and length_penalty (default 1); best_of alone would mean sampling
 * several and keeping the best, which Gantry does not do. */
static gt_status get_beam(octx *c, const json_t *o, gt_rpc_generate *g) {
    const json_t *v;
    bool use = false;
    uint64_t w = 1;
    g->length_penalty = 1.0f;
    if ((v = json_object_get(o, "use_beam_search")) && !json_is_null(v)) GT_TRY(get_bool(c, "use_beam_search", v, &use));
    if ((v = json_object_get(o, "best_of")) && !json_is_null(v)) {
        GT_TRY(get_uint(c, "best_of", v, 1, 64, &w));
        if (!use && w > 1)
            return BAD(c, "best_of", "best_of %llu needs use_beam_search: true (Gantry keeps the best of several "
                       "only by beam search)", (unsigned long long)w);
    } else if (use) {
        return BAD(c, "best_of", "use_beam_search needs best_of, the number of beams");
    }
    if ((v = json_object_get(o, "length_penalty")) && !json_is_null(v)) {
        if (!use) return BAD(c, "length_penalty", "length_penalty applies only with use_beam_search: true");
        GT_TRY(get_float(c, "length_penalty", v, -10, 10, false, &g->length_penalty));
    }
    if (use) g->beams = (uint32_t)w;
    return GT_OK;
}

/* Gantry's extension: speculate {lookup: 0..64, draft: bool, tokens:
 * 1..64}, as the RPC's (absent fields: the server's defaults). */
static gt_status get_speculate(octx *c, const json_t *v, gt_rpc_generate *g) {
    if (!json_is_object(v))
        return BAD(c, "speculate", "speculate must be an object {lookup, draft, tokens}, not %s", jtype(v));
    const char *key;
    const json_t *e;
    uint64_t u;
    json_object_foreach((json_t *)v, key, e) {
        if (!strcmp(key, "lookup")) {
            GT_TRY(get_uint(c, "speculate.lookup", e, 0, 64, &u));
            g->spec_lookup = (uint32_t)u;
            g->spec_has_lookup = true;
        } else if (!strcmp(key, "tokens")) {
            GT_TRY(get_uint(c, "speculate.tokens", e, 1, 64, &u));
            g->spec_tokens = (uint32_t)u;
        } else if (!strcmp(key, "draft")) {
            GT_TRY(get_bool(c, "speculate.draft", e, &g->spec_draft));
            g->spec_has_draft = true;
        } else {
            return BAD(c, "speculate", "speculate has the field '%.40s' Gantry does not take (known: lookup, draft, "
                       "tokens)", key);
        }
    }
    if (g->spec_draft && g->spec_lookup > 0)
        return BAD(c, "speculate", "speculate asks for both prompt lookup (lookup %u) and the draft model; a request "
                   "speculates with one of them", g->spec_lookup);
    g->has_speculate = true;
    return GT_OK;
}

static gt_status parse(octx *c, gt_oai_kind kind, const json_t *o, gt_oai_request *r) {
    gt_rpc_generate *g = &r->g;
    const gt_rpc_limits *lim = c->lim;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        int k = 0;
        while (k_keys[k] && strcmp(k_keys[k], key)) k++;
        bool wrong = !k_keys[k] || (kind == GT_OAI_CHAT && !strcmp(key, "prompt")) ||
                     (kind == GT_OAI_COMPLETIONS && (!strcmp(key, "messages") || !strcmp(key, "top_logprobs") ||
                                                     !strcmp(key, "max_completion_tokens")));
        if (wrong) return BAD(c, NULL, "the field '%.40s' is not one Gantry takes on %s", key,
                              kind == GT_OAI_CHAT ? "/v1/chat/completions" : "/v1/completions");
    }
    gt_sampler_config def = GT_SAMPLER_CONFIG_INIT;
    g->sampling = def;
    g->repetition_penalty = 1.0f;
    if ((v = json_object_get(o, "model")) && !json_is_string(v)) return BAD(c, "model", "model must be a string, not %s", jtype(v));
    if (kind == GT_OAI_CHAT) {
        if (!(v = json_object_get(o, "messages"))) return BAD(c, "messages", "messages is missing");
        GT_TRY(get_messages(c, v, g));
    } else {
        if (!(v = json_object_get(o, "prompt"))) return BAD(c, "prompt", "prompt is missing");
        GT_TRY(get_prompt(c, v, g));
    }
    uint64_t u;
    const char *mt = kind == GT_OAI_CHAT && json_object_get(o, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if ((v = json_object_get(o, mt)) && !json_is_null(v)) {
        GT_TRY(get_uint(c, mt, v, 1, lim->max_new, &u));
        g->has_max_tokens = true;
        g->max_tokens = (uint32_t)u;
    } else if (kind == GT_OAI_COMPLETIONS) {
        g->has_max_tokens = true;
        g->max_tokens = 16 < lim->max_new ? 16 : lim->max_new;
    }
    if ((v = json_object_get(o, "temperature")) && !json_is_null(v)) GT_TRY(get_float(c, "temperature", v, 0, 100, false, &g->sampling.temperature));
    if ((v = json_object_get(o, "top_p")) && !json_is_null(v)) GT_TRY(get_float(c, "top_p", v, 0, 1, true, &g->sampling.top_p));
    if ((v = json_object_get(o, "min_p")) && !json_is_null(v)) GT_TRY(get_float(c, "min_p", v, 0, 1, false, &g->sampling.min_p));
    if ((v = json_object_get(o, "top_k")) && !json_is_null(v)) {
        GT_TRY(get_uint(c, "top_k", v, 0, INT32_MAX, &u));
        g->sampling.top_k = (int)u;
    }
    if ((v = json_object_get(o, "repetition_penalty")) && !json_is_null(v)) GT_TRY(get_float(c, "repetition_penalty", v, 0, 10, true, &g->repetition_penalty));
    if ((v = json_object_get(o, "presence_penalty")) && !json_is_null(v)) GT_TRY(get_float(c, "presence_penalty", v, -2, 2, false, &g->presence_penalty));
    if ((v = json_object_get(o, "frequency_penalty")) && !json_is_null(v)) GT_TRY(get_float(c, "frequency_penalty", v, -2, 2, false, &g->frequency_penalty));
    if ((v = json_object_get(o, "seed")) && !json_is_null(v)) GT_TRY(get_uint(c, "seed", v, 0, INT64_MAX, &g->sampling.seed));
    if ((v = json_object_get(o, "stop"))) GT_TRY(get_stop(c, v, g));
    uint64_t n_choices = 1;
    if ((v = json_object_get(o, "n")) && !json_is_null(v))
        GT_TRY(get_uint(c, "n", v, 1, 64, &n_choices));
    if ((v = json_object_get(o, "stream")) && !json_is_null(v)) GT_TRY(get_bool(c, "stream", v, &g->stream));
    if ((v = json_object_get(o, "stream_options")) && !json_is_null(v)) {
        if (!json_is_object(v)) return BAD(c, "stream_options", "stream_options must be an object, not %s", jtype(v));
        const json_t *iu;
        json_object_foreach((json_t *)v, key, iu) {
            if (strcmp(key, "include_usage")) return BAD(c, "stream_options", "stream_options has the field '%.40s' Gantry does not take (known: include_usage)", key);
            GT_TRY(get_bool(c, "stream_options.include_usage", iu, &r->include_usage));
        }
    }
    if (kind == GT_OAI_COMPLETIONS) {
        if ((v = json_object_get(o, "logprobs")) && !json_is_null(v)) {
            GT_TRY(get_uint(c, "logprobs", v, 0, lim->max_logprobs, &u));
            r->want_logprobs = true;
            r->top_logprobs = (uint32_t)u;
        }
    } else {
        if ((v = json_object_get(o, "logprobs")) && !json_is_null(v)) GT_TRY(get_bool(c, "logprobs", v, &r->want_logprobs));
        if ((v = json_object_get(o, "top_logprobs")) && !json_is_null(v)) {
            GT_TRY(get_uint(c, "top_logprobs", v, 0, lim->max_logprobs, &u));
            if (!r->want_logprobs) return BAD(c, "top_logprobs", "top_logprobs needs logprobs: true");
            r->top_logprobs = (uint32_t)u;
        }
    }
    if (r->want_logprobs) g->logprobs = r->top_logprobs ? r->top_logprobs : 1;
    if ((v = json_object_get(o, "typical_p")) && !json_is_null(v)) GT_TRY(get_float(c, "typical_p", v, 0, 1, false, &g->sampling.typical_p));
    if ((v = json_object_get(o, "speculate")) && !json_is_null(v)) GT_TRY(get_speculate(c, v, g));
    GT_TRY(get_beam(c, o, g));
    /* n choices: the beam search's n best hypotheses (n <= best_of, as vLLM's
     * beam search); sampling answers one. */
    if (n_choices > 1 && !g->beams)
        return BAD(
            c, "n",
            "n %llu asks for several choices, which Gantry returns only as a beam search's best "
            "hypotheses (use_beam_search: true, best_of >= n)",
            (unsigned long long)n_choices);
    if (n_choices > g->beams && g->beams)
        return BAD(c, "n", "n %llu asks for more choices than the best_of %u beams search",
                   (unsigned long long)n_choices, g->beams);
    g->n_best = (uint32_t)n_choices;
    return get_constraint(c, o, g);
}

gt_status gt_oai_parse(gt_oai_kind kind, const char *body, size_t len, const gt_rpc_limits *lim,
                       gt_oai_request *out, const char **param, gt_rpc_code *code) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    *param = NULL;
    *code = GT_RPC_INVALID_PARAM;
    octx c = {param, code, lim};
    json_t *o;
    GT_TRY(load(&c, body, len, &o));
    gt_status st = parse(&c, kind, o, out);
    json_decref(o);
    if (st != GT_OK) {
        if (st == GT_ERR_NOMEM) *code = GT_RPC_INTERNAL;
        gt_oai_request_free(out);
        out->kind = kind;
    }
    return st;
}

void gt_oai_request_free(gt_oai_request *r) {
    gt_rpc_generate_free(&r->g);
    memset(r, 0, sizeof *r);
}

gt_status gt_oai_parse_tokenize(const char *body, size_t len, const gt_rpc_limits *lim, char **text,
                                size_t *text_len, bool *add_special, const char **param) {
    gt_rpc_code code;
    octx c = {param, &code, lim};
    *param = NULL;
    *text = NULL;
    *add_special = false;
    json_t *o;
    GT_TRY(load(&c, body, len, &o));
    gt_status st = GT_OK;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "text") && strcmp(key, "add_special") && strcmp(key, "model")) {
            st = BAD(&c, NULL, "the field '%.40s' is not one /tokenize takes (known: text, add_special)", key);
            break;
        }
    }
    if (st == GT_OK && !(v = json_object_get(o, "text"))) st = BAD(&c, "text", "text is missing");
    if (st == GT_OK) st = get_text(&c, "text", v, 0, lim->max_text_bytes, text, text_len);
    if (st == GT_OK && (v = json_object_get(o, "add_special"))) st = get_bool(&c, "add_special", v, add_special);
    json_decref(o);
    if (st != GT_OK) {
        free(*text);
        *text = NULL;
    }
    return st;
}

gt_status gt_oai_parse_detokenize(const char *body, size_t len, const gt_rpc_limits *lim,
                                  int32_t **tokens, uint32_t *n, const char **param) {
    gt_rpc_code code;
    octx c = {param, &code, lim};
    *param = NULL;
    *tokens = NULL;
    *n = 0;
    json_t *o;
    GT_TRY(load(&c, body, len, &o));
    gt_status st = GT_OK;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (strcmp(key, "tokens") && strcmp(key, "model")) {
            st = BAD(&c, NULL, "the field '%.40s' is not one /detokenize takes (known: tokens)", key);
            break;
        }
    }
    if (st == GT_OK && !json_is_array(v = json_object_get(o, "tokens")))
        st = BAD(&c, "tokens", "tokens must be an array of token ids");
    if (st == GT_OK && json_array_size(v) == 0) {
        *tokens = malloc(sizeof **tokens);
        if (!*tokens) st = gt_fail(GT_ERR_NOMEM, "cannot hold tokens");
    } else if (st == GT_OK) {
        st = get_tokens(&c, "tokens", v, lim->max_tokens_in, tokens, n);
    }
    json_decref(o);
    if (st != GT_OK) {
        free(*tokens);
        *tokens = NULL;
        *n = 0;
    }
    return st;
}
