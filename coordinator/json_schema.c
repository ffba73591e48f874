/* JSON schema -> GBNF; see json_schema.h.
 *
 * One rule per schema node (`s3 ::= ...`), written into a growing string,
 * then the shared rules (ws, string, number, any value) once at the end.
 * The grammar is checked by the same compiler as a user's, so this file
 * only has to produce text. */
#include "coordinator/json_schema.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DEPTH = 64, MAX_ITEMS_BOUND = 100 };

#define GT_JSON_COMMON                                                                             \
    "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n"                                                      \
    "jstring ::= \"\\\"\" jchar* \"\\\"\"\n"                                                       \
    "jchar ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n"          \
    "jinteger ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n"                                            \
    "jnumber ::= jinteger (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?\n"                         \
    "jboolean ::= \"true\" | \"false\"\n"                                                          \
    "jnull ::= \"null\"\n"                                                                         \
    "jvalue ::= jobject | jarray | jstring | jnumber | jboolean | jnull\n"                         \
    "jobject ::= \"{\" ws (jstring ws \":\" ws jvalue ws (\",\" ws jstring ws \":\" ws jvalue "    \
    "ws)*)? \"}\"\n"                                                                               \
    "jarray ::= \"[\" ws (jvalue ws (\",\" ws jvalue ws)*)? \"]\"\n"

const char *gt_json_object_gbnf(void) { return "root ::= jobject\n" GT_JSON_COMMON; }

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool failed;
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->failed = true;
            return;
        }
        if (b->s && b->n + (size_t)w < b->cap) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)w;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* A GBNF string literal for bytes[0..n). */
static void sb_literal(sbuf *b, const char *bytes, size_t n) {
    sb_printf(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c == '\n')
            sb_printf(b, "\\n");
        else if (c < 0x20)
            sb_printf(b, "\\x%02x", c);
        else
            sb_printf(b, "%c", c);
    }
    sb_printf(b, "\"");
}

/* A literal matching v's compact JSON text. */
static gt_status sb_json_literal(sbuf *b, const json_t *v) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t) return gt_fail(GT_ERR_NOMEM, "cannot encode a JSON schema value");
    sb_literal(b, t, strlen(t));
    free(t);
    return GT_OK;
}

typedef struct ctx {
    sbuf out;
    int n_rules;
} ctx;

static gt_status node(ctx *c, const json_t *s, const char *path, int depth, int *rule);

static const char *k_known[] = {"type",
                                "properties",
                                "required",
                                "enum",
                                "const",
                                "items",
                                "minItems",
                                "maxItems",
                                "anyOf",
                                "oneOf",
                                "additionalProperties",
                                "title",
                                "description",
                                "$schema",
                                "$id",
                                "default",
                                "examples",
                                "format",
                                "minLength",
                                "maxLength",
                                "minimum",
                                "maximum",
                                "strict",
                                "name",
                                NULL};

static gt_status check_keys(const json_t *s, const char *path) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s, key, v) {
        bool known = false;
        for (int i = 0; k_known[i]; i++) known = known || strcmp(key, k_known[i]) == 0;
        if (!known)
            return gt_fail(GT_ERR_UNSUPPORTED,
                           "JSON schema %s: the keyword \"%.60s\" is not supported (the "
                           "subset: type, properties, required, enum, const, items, anyOf, oneOf)",
                           path, key);
    }
    return GT_OK;
}

static gt_status type_rule(ctx *c, const json_t *s, const char *type, const char *path, int depth,
                           sbuf *b);

static gt_status object_rule(ctx *c, const json_t *s, const char *path, int depth, sbuf *b) {
    const json_t *props = json_object_get(s, "properties");
    if (!props) {
        sb_printf(b, "jobject");
        return GT_OK;
    }
    if (!json_is_object(props))
        return gt_fail(GT_ERR_INVALID_ARG, "JSON schema %s: \"properties\" is not an object", path);
    const json_t *req = json_object_get(s, "required");
    if (req && !json_is_array(req))
        return gt_fail(GT_ERR_INVALID_ARG, "JSON schema %s: \"required\" is not a list", path);
    size_t n = json_object_size(props);
    int *kv = malloc((n ? n : 1) * sizeof *kv);
    bool *is_req = calloc(n ? n : 1, sizeof *is_req);
    gt_status st = GT_OK;
    if (!kv || !is_req) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate a schema object of %zu properties", n);
        goto done;
    }
    size_t i = 0;
    const char *key;
    json_t *v;
    for (size_t r = 0; req && r < json_array_size(req); r++) {
        const json_t *name = json_array_get(req, r);
        if (!json_is_string(name)) {
            st = gt_fail(GT_ERR_INVALID_ARG,
                         "JSON schema %s: \"required\" item %zu is not a string", path, r);
            goto done;
        }
        if (!json_object_get(props, json_string_value(name))) {
            st = gt_fail(GT_ERR_INVALID_ARG,
                         "JSON schema %s: required property \"%.60s\" is not in "
                         "\"properties\"",
                         path, json_string_value(name));
            goto done;
        }
    }
    /* One rule per property: "key" ws ":" ws value. */
    json_object_foreach((json_t *)props, key, v) {
        char sub[256];
        snprintf(sub, sizeof sub, "%.150s.%.60s", path, key);
        int vr;
        GT_TRY_GOTO(node(c, v, sub, depth + 1, &vr), st, done);
        kv[i] = c->n_rules++;
        sb_printf(&c->out, "s%d ::= ", kv[i]);
        json_t *ks = json_string(key);
        if (!ks) {
            st = gt_fail(GT_ERR_NOMEM, "cannot encode a property name");
            goto done;
        }
        st = sb_json_literal(&c->out, ks);
        json_decref(ks);
        if (st != GT_OK) goto done;
        sb_printf(&c->out, " ws \":\" ws s%d\n", vr);
        for (size_t r = 0; req && r < json_array_size(req); r++)
            if (strcmp(json_string_value(json_array_get(req, r)), key) == 0) is_req[i] = true;
        i++;
    }
    sb_printf(b, "\"{\" ws");
    bool any = false;
    for (size_t k = 0; k < n; k++)
        if (is_req[k]) {
            sb_printf(b, any ? " \",\" ws s%d ws" : " s%d ws", kv[k]);
            any = true;
        }
    if (any) {
        for (size_t k = 0; k < n; k++)
            if (!is_req[k]) sb_printf(b, " (\",\" ws s%d ws)?", kv[k]);
    } else {
        /* No required key: the first present optional one has no comma. */
        bool first = true;
        for (size_t k = 0; k < n; k++) {
            sb_printf(b, first ? " (s%d ws" : " | s%d ws", kv[k]);
            first = false;
            for (size_t j = k + 1; j < n; j++) sb_printf(b, " (\",\" ws s%d ws)?", kv[j]);
        }
        if (!first) sb_printf(b, ")?");
    }
    sb_printf(b, " \"}\"");
done:
    free(kv);
    free(is_req);
    return st;
}

static gt_status array_rule(ctx *c, const json_t *s, const char *path, int depth, sbuf *b) {
    const json_t *items = json_object_get(s, "items");
    int item = -1;
    if (items) {
        char sub[256];
        snprintf(sub, sizeof sub, "%.200s[]", path);
        GT_TRY(node(c, items, sub, depth + 1, &item));
    }
    const json_t *jmin = json_object_get(s, "minItems"), *jmax = json_object_get(s, "maxItems");
    json_int_t lo = jmin ? json_integer_value(jmin) : 0, hi = jmax ? json_integer_value(jmax) : -1;
    if ((jmin && (!json_is_integer(jmin) || lo < 0 || lo > MAX_ITEMS_BOUND)) ||
        (jmax && (!json_is_integer(jmax) || hi < lo || hi > MAX_ITEMS_BOUND)))
        return gt_fail(GT_ERR_UNSUPPORTED,
                       "JSON schema %s: minItems and maxItems must be integers with "
                       "0 <= minItems <= maxItems <= %d",
                       path, MAX_ITEMS_BOUND);
    char it[32];
    if (item >= 0)
        snprintf(it, sizeof it, "s%d", item);
    else
        snprintf(it, sizeof it, "jvalue");
    if (hi == 0) {
        sb_printf(b, "\"[\" ws \"]\"");
        return GT_OK;
    }
    /* "[" ws (item ws ("," ws item ws){lo-1, hi-1})? "]" */
    int rest = c->n_rules++;
    sb_printf(&c->out, "s%d ::= \",\" ws %s ws\n", rest, it);
    long rlo = lo > 0 ? (long)lo - 1 : 0;
    sb_printf(b, "\"[\" ws (%s ws s%d{%ld,", it, rest, rlo);
    if (hi > 0) sb_printf(b, "%ld", (long)hi - 1);
    sb_printf(b, "})%s \"]\"", lo > 0 ? "" : "?");
    return GT_OK;
}

static gt_status type_rule(ctx *c, const json_t *s, const char *type, const char *path, int depth,
                           sbuf *b) {
    if (strcmp(type, "object") == 0) return object_rule(c, s, path, depth, b);
    if (strcmp(type, "array") == 0) return array_rule(c, s, path, depth, b);
    static const char *prim[][2] = {{"string", "jstring"},
                                    {"number", "jnumber"},
                                    {"integer", "jinteger"},
                                    {"boolean", "jboolean"},
                                    {"null", "jnull"}};
    for (size_t i = 0; i < sizeof prim / sizeof *prim; i++)
        if (strcmp(type, prim[i][0]) == 0) {
            sb_printf(b, "%s", prim[i][1]);
            return GT_OK;
        }
    return gt_fail(GT_ERR_UNSUPPORTED,
                   "JSON schema %s: type \"%.40s\" is not one of object, array, string, "
                   "number, integer, boolean, null",
                   path, type);
}

/* Writes rule s<N> for schema s and returns N in *rule. */
static gt_status node(ctx *c, const json_t *s, const char *path, int depth, int *rule) {
    if (depth > MAX_DEPTH)
        return gt_fail(GT_ERR_UNSUPPORTED, "JSON schema %s: nested deeper than %d levels", path,
                       MAX_DEPTH);
    sbuf b = {0};
    gt_status st = GT_OK;
    if (json_is_true(s)) {
        sb_printf(&b, "jvalue");
    } else if (!json_is_object(s)) {
        return gt_fail(GT_ERR_INVALID_ARG, "JSON schema %s: a schema must be an object", path);
    } else {
        GT_TRY(check_keys(s, path));
        const json_t *cst = json_object_get(s, "const"), *en = json_object_get(s, "enum");
        const json_t *type = json_object_get(s, "type");
        const json_t *any = json_object_get(s, "anyOf");
        if (!any) any = json_object_get(s, "oneOf");
        if (cst) {
            st = sb_json_literal(&b, cst);
        } else if (en) {
            if (!json_is_array(en) || json_array_size(en) == 0) {
                st = gt_fail(GT_ERR_INVALID_ARG, "JSON schema %s: \"enum\" is not a non-empty list",
                             path);
            } else {
                for (size_t i = 0; i < json_array_size(en) && st == GT_OK; i++) {
                    if (i) sb_printf(&b, " | ");
                    st = sb_json_literal(&b, json_array_get(en, i));
                }
            }
        } else if (any) {
            if (!json_is_array(any) || json_array_size(any) == 0) {
                st = gt_fail(GT_ERR_INVALID_ARG,
                             "JSON schema %s: \"anyOf\" is not a non-empty list", path);
            } else {
                for (size_t i = 0; i < json_array_size(any) && st == GT_OK; i++) {
                    char sub[256];
                    snprintf(sub, sizeof sub, "%.200s/anyOf[%zu]", path, i);
                    int r;
                    st = node(c, json_array_get(any, i), sub, depth + 1, &r);
                    sb_printf(&b, i ? " | s%d" : "s%d", r);
                }
            }
        } else if (json_is_string(type)) {
            st = type_rule(c, s, json_string_value(type), path, depth, &b);
        } else if (json_is_array(type) && json_array_size(type) > 0) {
            for (size_t i = 0; i < json_array_size(type) && st == GT_OK; i++) {
                const json_t *t = json_array_get(type, i);
                if (!json_is_string(t)) {
                    st = gt_fail(GT_ERR_INVALID_ARG,
                                 "JSON schema %s: \"type\" item %zu is not a string", path, i);
                    break;
                }
                if (i) sb_printf(&b, " | ");
                sb_printf(&b, "(");
                st = type_rule(c, s, json_string_value(t), path, depth, &b);
                sb_printf(&b, ")");
            }
        } else if (type) {
            st = gt_fail(GT_ERR_INVALID_ARG,
                         "JSON schema %s: \"type\" is neither a string nor a list", path);
        } else if (json_object_get(s, "properties")) {
            st = object_rule(c, s, path, depth, &b);
        } else {
            sb_printf(&b, "jvalue");
        }
    }
    if (st == GT_OK && b.failed) st = gt_fail(GT_ERR_NOMEM, "cannot grow the schema's grammar");
    if (st == GT_OK) {
        *rule = c->n_rules++;
        sb_printf(&c->out, "s%d ::= %s\n", *rule, b.s ? b.s : "");
    }
    free(b.s);
    return st;
}

gt_status gt_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf) {
    *gbnf = NULL;
    json_error_t err;
    json_t *s = json_loadb(schema, len, JSON_DECODE_ANY, &err);
    if (!s)
        return gt_fail(GT_ERR_FORMAT, "JSON schema line %d, column %d: %.120s", err.line,
                       err.column, err.text);
    ctx c = {0};
    int root;
    gt_status st = node(&c, s, "$", 0, &root);
    json_decref(s);
    if (st == GT_OK) {
        sb_printf(&c.out, "root ::= s%d\n%s", root, GT_JSON_COMMON);
        if (c.out.failed) st = gt_fail(GT_ERR_NOMEM, "cannot grow the schema's grammar");
    }
    if (st != GT_OK) {
        free(c.out.s);
        return st;
    }
    *gbnf = c.out.s;
    return GT_OK;
}
