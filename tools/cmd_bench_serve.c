/* `gantry bench serve`: load for a running `gantry serve` through the C
 * client. Requests arrive as a Poisson process at --rate per second (or all
 * at once with rate 0), each from one of --concurrency client connections,
 * with prompts of about --prompt-len words (uniform in half to one and a
 * half times that) and --output-len tokens; every request streams, so the
 * time to its first piece and between pieces is measured. Reports requests
 * and output tokens per second over the run and p50/p90/p99 of the time to
 * first token, the inter-token latency and the end-to-end latency.
 * --api openai drives `POST /v1/completions` with `stream: true` over
 * HTTP/1.1 keep-alive instead (client/http_client.h), one connection per
 * concurrent request as well; a piece is then one server-sent event. */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "client/http_client.h"
#include "common/json.h"
#include "common/timer.h"
#include "tools/cmds.h"
#include "tools/flags.h"

typedef struct bs_opts {
    const char *host, *unix_path, *auth, *json;
    int port, n, conc, prompt_len, output_len, api;
    double rate;
    long seed;
} bs_opts;

enum { API_RPC, API_OPENAI };
static const int k_apis[] = {API_RPC, API_OPENAI};

#define O(f) offsetof(bs_opts, f)
static const gt_flag k_flags[] = {
    {NULL, "--host", GT_FLAG_STR, O(host), .metavar = "ADDR", .help = "server address (default 127.0.0.1)"},
    {NULL, "--port", GT_FLAG_INT, O(port), .lo = 1, .hi = 65535, .metavar = "N", .help = "server port (default 7733)"},
    {NULL, "--api", GT_FLAG_CHOICE, O(api), .choices = "rpc|openai", .choice_values = k_apis,
     .help = "msgpack-RPC (default) or the OpenAI HTTP API's streaming /v1/completions"},
    {NULL, "--unix", GT_FLAG_STR, O(unix_path), .metavar = "PATH", .help = "connect to a Unix socket instead"},
    {NULL, "--auth-token", GT_FLAG_STR, O(auth), .metavar = "TOKEN", .help = "the server's --auth-token"},
    {NULL, "--rate", GT_FLAG_DOUBLE, O(rate), .flo = 0, .fhi = 1e6, .metavar = "R",
     .help = "requests per second, Poisson arrivals (default 0: all at once)"},
    {NULL, "--num-prompts", GT_FLAG_INT, O(n), .lo = 1, .hi = 1 << 20, .metavar = "N", .help = "requests (default 64)"},
    {NULL, "--concurrency", GT_FLAG_INT, O(conc), .lo = 1, .hi = 1024, .metavar = "C",
     .help = "client connections, each with one request in flight (default 16)"},
    {NULL, "--prompt-len", GT_FLAG_INT, O(prompt_len), .lo = 1, .hi = 100000, .metavar = "W",
     .help = "prompt words, uniform in [W/2, 3W/2] (default 32)"},
    {NULL, "--output-len", GT_FLAG_INT, O(output_len), .lo = 1, .hi = 1 << 20, .metavar = "T",
     .help = "tokens per answer (default 64)"},
    {NULL, "--seed", GT_FLAG_LONG, O(seed), .lo = 0, .hi = 0x7fffffffl, .metavar = "S", .help = "seed (default 1)"},
    {NULL, "--json", GT_FLAG_STR, O(json), .metavar = "FILE", .help = "also write the results as JSON"},
};
#undef O

static const gt_flag_spec k_spec = {
    .verb = "bench serve",
    .synopsis = "[--api rpc|openai] [--host ADDR --port N | --unix PATH] [--rate R] [--num-prompts N] [--concurrency C]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
};

typedef struct sample {
    double start_s, ttft_ms, e2e_ms;
    int tokens;
} sample;

typedef struct shared {
    const bs_opts *o;
    pthread_mutex_t mu;
    int next;             /* the next request to send */
    double *arrival_s;    /* [n] from the start */
    char **prompts;       /* [n] */
    sample *samples;      /* [n] */
    double *itl_ms;       /* [n * output_len] */
    size_t n_itl;
    uint64_t t0;
    int errors;
    char first_error[600];
} shared;

typedef struct piece_clock {
    shared *sh;
    uint64_t last;
    int pieces;
    double first_ms;
    uint64_t t_send;
} piece_clock;

static void on_piece(void *user, const char *text, size_t len) {
    (void)text;
    (void)len;
    piece_clock *pc = user;
    uint64_t now = gt_now_ns();
    if (pc->pieces == 0) {
        pc->first_ms = (double)(now - pc->t_send) * 1e-6;
    } else {
        pthread_mutex_lock(&pc->sh->mu);
        pc->sh->itl_ms[pc->sh->n_itl++] = (double)(now - pc->last) * 1e-6;
        pthread_mutex_unlock(&pc->sh->mu);
    }
    pc->last = now;
    pc->pieces++;
}

/* Waits for request i's arrival time. */
static void arrive(shared *sh, int i) {
    double wait = sh->arrival_s[i] - (double)(gt_now_ns() - sh->t0) * 1e-9;
    if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void record(shared *sh, int i, int rc, const char *why, const piece_clock *pc, uint64_t done, int tokens) {
    pthread_mutex_lock(&sh->mu);
    if (rc != 0) {
        if (!sh->errors++) snprintf(sh->first_error, sizeof sh->first_error, "%s", why);
    } else {
        sh->samples[i] = (sample){(double)(pc->t_send - sh->t0) * 1e-9, pc->first_ms,
                                  (double)(done - pc->t_send) * 1e-6, tokens};
    }
    pthread_mutex_unlock(&sh->mu);
}

/* The next request to send, once its arrival time has come; -1 when all
 * are taken. */
static int next_request(shared *sh) {
    pthread_mutex_lock(&sh->mu);
    int i = sh->next < sh->o->n ? sh->next++ : -1;
    pthread_mutex_unlock(&sh->mu);
    if (i >= 0) arrive(sh, i);
    return i;
}

static void *worker_openai(shared *sh) {
    const bs_opts *o = sh->o;
    char err[512];
    gt_http_client *c = gt_http_connect(o->host, o->port, o->auth, err, sizeof err);
    for (;;) {
        int i = next_request(sh);
        if (i < 0) break;
        piece_clock pc = {sh, 0, 0, 0, gt_now_ns()};
        gt_http_result r;
        int rc = c ? gt_http_complete(c, sh->prompts[i], o->output_len, on_piece, &pc, &r) : -1;
        record(sh, i, rc, c ? gt_http_error(c) : err, &pc, gt_now_ns(), rc ? 0 : r.completion_tokens);
    }
    gt_http_close(c);
    return NULL;
}

static void *worker(void *arg) {
    shared *sh = arg;
    const bs_opts *o = sh->o;
    if (o->api == API_OPENAI) return worker_openai(sh);
    char err[256];
    gt_client *c = gt_client_connect(o->host, o->port, o->unix_path, err, sizeof err);
    if (c && o->auth && gt_client_auth(c, o->auth) != 0) snprintf(err, sizeof err, "%s", gt_client_error(c));
    for (;;) {
        int i = next_request(sh);
        if (i < 0) break;
        piece_clock pc = {sh, 0, 0, 0, gt_now_ns()};
        gt_client_params p = {.prompt = sh->prompts[i], .max_tokens = o->output_len};
        gt_client_result r;
        int rc = c ? gt_client_generate(c, &p, on_piece, &pc, &r) : -1;
        record(sh, i, rc, c ? gt_client_error(c) : err, &pc, gt_now_ns(), rc ? 0 : r.completion_tokens);
        if (rc == 0) gt_client_result_free(&r);
    }
    gt_client_close(c);
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p) {
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_d);
    size_t i = (size_t)(p / 100.0 * (double)n);
    return v[i < n ? i : n - 1];
}

int gt_cmd_bench_serve(int argc, char **argv) {
    bs_opts o = {.host = "127.0.0.1", .port = 7733, .n = 64, .conc = 16, .prompt_len = 32, .output_len = 64,
                 .seed = 1};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.api == API_OPENAI && o.unix_path) {
        fprintf(stderr, "gantry bench serve: --api openai speaks HTTP over TCP; drop --unix %s\n", o.unix_path);
        return 2;
    }
    shared sh = {.o = &o};
    pthread_mutex_init(&sh.mu, NULL);
    sh.arrival_s = calloc((size_t)o.n, sizeof *sh.arrival_s);
    sh.prompts = calloc((size_t)o.n, sizeof *sh.prompts);
    sh.samples = calloc((size_t)o.n, sizeof *sh.samples);
    sh.itl_ms = calloc((size_t)o.n * (size_t)o.output_len + 1, sizeof *sh.itl_ms);
    if (!sh.arrival_s || !sh.prompts || !sh.samples || !sh.itl_ms) {
        fprintf(stderr, "gantry bench serve: out of memory\n");
        return 1;
    }
    static const char *words[] = {"the", "river", "city", "light", "of", "old", "stone", "and", "quiet", "a"};
    uint64_t rng = (uint64_t)o.seed * 0x9e3779b97f4a7c15ull + 1;
    double t = 0;
    for (int i = 0; i < o.n; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int nw = o.prompt_len / 2 + (int)(rng % (uint64_t)(o.prompt_len + 1));
        if (nw < 1) nw = 1;
        size_t cap = (size_t)nw * 8 + 32, len = 0;
        sh.prompts[i] = malloc(cap);
        if (!sh.prompts[i]) return 1;
        len += (size_t)snprintf(sh.prompts[i], cap, "Request %d:", i);
        for (int w = 0; w < nw && len + 8 < cap; w++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            len += (size_t)snprintf(sh.prompts[i] + len, cap - len, " %s", words[rng % 10]);
        }
        if (o.rate > 0) { /* exponential gaps: a Poisson process */
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            double u = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
            t += -log(u) / o.rate;
        }
        sh.arrival_s[i] = t;
    }
    pthread_t *th = malloc((size_t)o.conc * sizeof *th);
    sh.t0 = gt_now_ns();
    for (int i = 0; i < o.conc; i++) pthread_create(&th[i], NULL, worker, &sh);
    for (int i = 0; i < o.conc; i++) pthread_join(th[i], NULL);
    double secs = (double)(gt_now_ns() - sh.t0) * 1e-9;
    double *ttft = malloc((size_t)o.n * sizeof *ttft), *e2e = malloc((size_t)o.n * sizeof *e2e);
    size_t ok = 0;
    long tokens = 0;
    for (int i = 0; i < o.n; i++) {
        if (sh.samples[i].e2e_ms <= 0) continue;
        ttft[ok] = sh.samples[i].ttft_ms;
        e2e[ok++] = sh.samples[i].e2e_ms;
        tokens += sh.samples[i].tokens;
    }
    double r[9] = {pct(ttft, ok, 50), pct(ttft, ok, 90), pct(ttft, ok, 99),
                   pct(sh.itl_ms, sh.n_itl, 50), pct(sh.itl_ms, sh.n_itl, 90), pct(sh.itl_ms, sh.n_itl, 99),
                   pct(e2e, ok, 50), pct(e2e, ok, 90), pct(e2e, ok, 99)};
    printf("%s: %zu of %d requests in %.2f s (rate %s, %d connections): %.2f requests/s, %.1f output tokens/s\n",
           o.api == API_OPENAI ? "openai" : "rpc", ok,
           o.n, secs, o.rate > 0 ? "Poisson" : "all at once", o.conc, (double)ok / secs, (double)tokens / secs);
    printf("time to first token p50/p90/p99: %.1f / %.1f / %.1f ms\n", r[0], r[1], r[2]);
    printf("inter-token latency p50/p90/p99: %.1f / %.1f / %.1f ms\n", r[3], r[4], r[5]);
    printf("end-to-end latency  p50/p90/p99: %.0f / %.0f / %.0f ms\n", r[6], r[7], r[8]);
    if (sh.errors) fprintf(stderr, "gantry bench serve: %d requests failed; the first: %s\n", sh.errors, sh.first_error);
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (f) {
            fprintf(f, "{\"api\": \"%s\", \"requests\": %zu, \"output_tokens\": %ld, \"failed\": %d, \"seconds\": %.3f, \"rate\": %g, \"concurrency\": %d, "
                       "\"requests_per_s\": %.3f, \"output_tokens_per_s\": %.2f, "
                       "\"ttft_ms\": [%.2f, %.2f, %.2f], \"itl_ms\": [%.2f, %.2f, %.2f], \"e2e_ms\": [%.1f, %.1f, %.1f]}\n",
                    o.api == API_OPENAI ? "openai" : "rpc", ok, tokens, sh.errors, secs, o.rate, o.conc, (double)ok / secs, (double)tokens / secs, r[0], r[1], r[2],
                    r[3], r[4], r[5], r[6], r[7], r[8]);
            fclose(f);
        }
    }
    for (int i = 0; i < o.n; i++) free(sh.prompts[i]);
    free(sh.prompts);
    free(sh.arrival_s);
    free(sh.samples);
    free(sh.itl_ms);
    free(ttft);
    free(e2e);
    free(th);
    return sh.errors ? 1 : 0;
}
