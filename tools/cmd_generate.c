/* `gantry generate` and `gantry chat`: clients of a running `gantry serve`
 * through the C client library (client/). generate sends one prompt and
 * streams the answer to stdout; chat keeps a conversation, one user turn per
 * line read from stdin, and streams each reply. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "tools/cmds.h"
#include "tools/flags.h"

typedef struct gen_opts {
    const char *host, *unix_path, *auth, *prompt, *system;
    int port;
    int cancel_after; /* pieces before cancelling from a second connection (0: never) */
    bool chat, quiet;
    gt_client_params p;
} gen_opts;

#define O(f) offsetof(gen_opts, f)
#define GT_CLIENT_FLAGS                                                                            \
    {NULL, "--host", GT_FLAG_STR, O(host), .metavar = "ADDR", .help = "server address (default 127.0.0.1)"}, \
    {NULL, "--port", GT_FLAG_INT, O(port), .lo = 1, .hi = 65535, .metavar = "N",                   \
     .help = "server port (default 7733)"},                                                        \
    {NULL, "--unix", GT_FLAG_STR, O(unix_path), .metavar = "PATH", .help = "connect to a Unix socket instead"}, \
    {NULL, "--auth-token", GT_FLAG_STR, O(auth), .metavar = "TOKEN", .help = "the server's --auth-token"}, \
    {"-n", "--max-tokens", GT_FLAG_INT, O(p.max_tokens), .lo = 1, .hi = 1 << 24, .metavar = "N",   \
     .help = "tokens to generate at most (default: what the context leaves)"},                     \
    {NULL, "--temp", GT_FLAG_FLOAT, O(p.temperature), .flo = 0, .fhi = 100, .metavar = "T",        \
     .help = "temperature (default 0: greedy)"},                                                   \
    {NULL, "--top-k", GT_FLAG_INT, O(p.top_k), .lo = 0, .hi = 1 << 24, .metavar = "K",             \
     .help = "keep the K most likely tokens"},                                                     \
    {NULL, "--top-p", GT_FLAG_FLOAT, O(p.top_p), .flo = 0, .fhi = 1, .metavar = "P",               \
     .help = "nucleus sampling threshold"},                                                        \
    {NULL, "--system", GT_FLAG_STR, O(system), .metavar = "TEXT", .help = "a system message (chat)"}, \
    {"-q", "--quiet", GT_FLAG_BOOL, O(quiet), .help = "no timing line on stderr"}

static const gt_flag k_gen_flags[] = {
    {"-p", "--prompt", GT_FLAG_STR, O(prompt), .metavar = "TEXT", .help = "the prompt",
     .required = "give the prompt with -p TEXT"},
    {NULL, "--chat", GT_FLAG_BOOL, O(chat), .help = "send the prompt as a user turn (the model's chat template)"},
    {NULL, "--cancel-after", GT_FLAG_INT, O(cancel_after), .lo = 1, .hi = 1 << 24, .metavar = "N",
     .help = "cancel the request from a second connection after N pieces (a check of cancel)"},
    GT_CLIENT_FLAGS,
};
static const gt_flag k_chat_flags[] = {GT_CLIENT_FLAGS};
#undef O

static const gt_flag_spec k_gen_spec = {
    .verb = "generate",
    .synopsis = "-p TEXT [--chat] [--host ADDR --port N | --unix PATH] [-n N] [--temp T]",
    .flags = k_gen_flags,
    .n_flags = GT_FLAGS_COUNT(k_gen_flags),
};
static const gt_flag_spec k_chat_spec = {
    .verb = "chat",
    .synopsis = "[--host ADDR --port N | --unix PATH] [--system TEXT] [-n N] [--temp T]  (one turn per line)",
    .flags = k_chat_flags,
    .n_flags = GT_FLAGS_COUNT(k_chat_flags),
};

typedef struct piece_ctx {
    const gen_opts *o;
    gt_client *c;
    int pieces;
} piece_ctx;

static gt_client *open_client(const char *verb, const gen_opts *o);

static void print_piece(void *user, const char *text, size_t len) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    piece_ctx *pc = user;
    if (!pc || !pc->o->cancel_after || ++pc->pieces != pc->o->cancel_after) return;
    gt_client *other = open_client("generate", pc->o);
    bool found = false;
    if (other && gt_client_cancel(other, gt_client_last_msgid(pc->c), &found) != 0)
        fprintf(stderr, "gantry generate: cancel: %s\n", gt_client_error(other));
    gt_client_close(other);
}

static gt_client *open_client(const char *verb, const gen_opts *o) {
    char err[512];
    gt_client *c = gt_client_connect(o->host, o->port, o->unix_path, err, sizeof err);
    if (!c) {
        fprintf(stderr, "gantry %s: %s\n", verb, err);
        return NULL;
    }
    if (o->auth && gt_client_auth(c, o->auth) != 0) {
        fprintf(stderr, "gantry %s: %s\n", verb, gt_client_error(c));
        gt_client_close(c);
        return NULL;
    }
    return c;
}

static void report(const gen_opts *o, const gt_client_result *r) {
    fflush(stdout);
    if (!o->quiet)
        fprintf(stderr, "finish: %s; prompt %d tokens (%d cached), completion %d; first token %.0f ms, total %.0f ms\n",
                r->finish_reason, r->prompt_tokens, r->cached_tokens, r->completion_tokens, r->ttft_ms,
                r->total_ms);
}

int gt_cmd_generate(int argc, char **argv) {
    gen_opts o = {.host = "127.0.0.1", .port = 7733};
    int rc = gt_flags_parse(&k_gen_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    gt_client *c = open_client("generate", &o);
    if (!c) return 1;
    const char *roles[2], *contents[2];
    int n = 0;
    if (o.chat || o.system) {
        if (o.system) roles[n] = "system", contents[n++] = o.system;
        roles[n] = "user", contents[n++] = o.prompt;
        o.p.roles = roles;
        o.p.contents = contents;
        o.p.n_messages = n;
    } else {
        o.p.prompt = o.prompt;
    }
    gt_client_result r;
    piece_ctx pc = {&o, c, 0};
    rc = gt_client_generate(c, &o.p, print_piece, &pc, &r);
    if (rc == 0) {
        printf("\n");
        report(&o, &r);
    } else {
        fprintf(stderr, "gantry generate: %s%s%s\n", gt_client_error_code(c), *gt_client_error_code(c) ? ": " : "",
                gt_client_error(c));
    }
    gt_client_result_free(&r);
    gt_client_close(c);
    return rc == 0 ? 0 : 1;
}

int gt_cmd_chat(int argc, char **argv) {
    gen_opts o = {.host = "127.0.0.1", .port = 7733};
    int rc = gt_flags_parse(&k_chat_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    gt_client *c = open_client("chat", &o);
    if (!c) return 1;
    /* The conversation: roles and owned contents, grown per turn. */
    size_t cap = 16, n = 0;
    const char **roles = malloc(cap * sizeof *roles);
    char **contents = malloc(cap * sizeof *contents);
    if (!roles || !contents) return 1;
    if (o.system) roles[n] = "system", contents[n++] = strdup(o.system);
    char line[8192];
    rc = 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (!*line) continue;
        if (strcmp(line, "/exit") == 0) break;
        if (n + 2 > cap) {
            cap *= 2;
            const char **nr = realloc(roles, cap * sizeof *roles);
            char **nc = realloc(contents, cap * sizeof *contents);
            if (!nr || !nc) break;
            roles = nr;
            contents = nc;
        }
        roles[n] = "user";
        contents[n++] = strdup(line);
        o.p.roles = roles;
        o.p.contents = (const char *const *)contents;
        o.p.n_messages = (int)n;
        gt_client_result r;
        if (gt_client_generate(c, &o.p, print_piece, NULL, &r) != 0) {
            fprintf(stderr, "gantry chat: %s\n", gt_client_error(c));
            rc = 1;
            break;
        }
        printf("\n");
        report(&o, &r);
        roles[n] = "assistant";
        contents[n++] = r.text; /* kept in the conversation */
        r.text = NULL;
        gt_client_result_free(&r);
    }
    for (size_t i = 0; i < n; i++) free(contents[i]);
    free(roles);
    free(contents);
    gt_client_close(c);
    return rc;
}
