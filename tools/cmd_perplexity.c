/* `gantry perplexity`: perplexity of a model over a text file.
 *
 * The text is tokenized once (no BOS) and cut into chunks of --ctx tokens;
 * each chunk is evaluated from an empty cache with BOS in front (when the
 * model uses one), and only the second half of each chunk is scored, so that
 * every scored token has at least ctx/2 tokens of context — the same
 * convention as llama.cpp's perplexity tool, which makes figures comparable. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timer.h"
#include "model/tokenizer/tokenizer.h"
#include "tools/args.h"
#include "tools/cmds.h"
#include "tools/verb.h"

typedef struct ppl_opts {
    gt_engine_config eng;
    const char *file;
    long ctx;
    long max_chunks;
    long tp, pp;
    double comm_timeout;
} ppl_opts;

static void usage(void) {
    printf("usage: gantry perplexity -m FILE -f TEXT [--ctx N] [--chunks N] [--threads N] [--isa NAME]\n"
           "  --ctx N      tokens per chunk (default 512); the second half of each is scored\n"
           "  --chunks N   evaluate at most N chunks (default: all)\n"
           "  --tp N, --pp N     tensor and pipeline parallel sizes under mpirun (default: tp = ranks)\n"
           "  --comm-timeout S   end the job when a collective or receive waits longer (default 300)\n");
}

static gt_status read_all(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open the text file", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0 || n > (1l << 30)) {
        fclose(f);
        return gt_fail(GT_ERR_RANGE, "%s: text file of %ld bytes is not readable or over 1 GiB", path, n);
    }
    *buf = malloc((size_t)n + 1);
    if (!*buf) {
        fclose(f);
        return gt_fail(GT_ERR_NOMEM, "cannot hold %ld bytes of text", n);
    }
    *len = fread(*buf, 1, (size_t)n, f);
    fclose(f);
    return GT_OK;
}

/* log p(target) from one row of logits, in double precision. */
static double log_prob(const float *logits, int n, int target) {
    double max = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - max);
    return (double)logits[target] - max - log(sum);
}

static gt_status ppl_lead(gt_coord *c, void *opts) {
    const ppl_opts *o = opts;
    gt_tokenizer *tok = NULL;
    char *text = NULL;
    int32_t *ids = NULL, *chunk = NULL;
    float *logits = NULL;
    gt_status st;
    const gt_gguf *g = gt_rank_gguf(gt_coord_rank(c));
    GT_TRY_GOTO(gt_tokenizer_load(g, &tok), st, done);
    size_t len = 0, n_ids = 0;
    GT_TRY_GOTO(read_all(o->file, &text, &len), st, done);
    GT_TRY_GOTO(gt_tokenize(tok, text, len, 0, &ids, &n_ids), st, done);
    int C = (int)o->ctx, V = (int)gt_rank_hparams(gt_coord_rank(c))->n_vocab;
    int32_t bos = gt_tokenizer_add_bos(tok) ? gt_tokenizer_bos(tok) : GT_TOKEN_NULL;
    int body = bos != GT_TOKEN_NULL ? C - 1 : C; /* text tokens per chunk */
    long n_chunks = (long)(n_ids / (size_t)body);
    if (o->max_chunks > 0 && n_chunks > o->max_chunks) n_chunks = o->max_chunks;
    if (n_chunks < 1) {
        st = gt_fail(GT_ERR_RANGE, "%s: %zu tokens is less than one chunk of %d; use a smaller --ctx",
                     o->file, n_ids, body);
        goto done;
    }
    chunk = malloc((size_t)C * sizeof *chunk);
    logits = malloc((size_t)C * (size_t)V * sizeof *logits);
    if (!chunk || !logits) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate logits for a chunk of %d tokens", C);
        goto done;
    }
    printf("%s: %zu tokens, %ld chunks of %d, scoring the second half of each\n", o->file, n_ids,
           n_chunks, C);
    double nll = 0;
    long scored = 0;
    uint64_t t0 = gt_now_ns();
    for (long ci = 0; ci < n_chunks; ci++) {
        int n = 0;
        if (bos != GT_TOKEN_NULL) chunk[n++] = bos;
        memcpy(chunk + n, ids + (size_t)ci * (size_t)body, (size_t)body * sizeof *chunk);
        n += body;
        GT_TRY_GOTO(gt_coord_free_seq(c, 0), st, done);
        GT_TRY_GOTO(gt_coord_prefill(c, 0, chunk, n, logits), st, done);
        for (int j = C / 2; j < n - 1; j++) {
            nll -= log_prob(logits + (size_t)j * V, V, chunk[j + 1]);
            scored++;
        }
        printf("[%ld] %.4f\n", ci + 1, exp(nll / (double)scored));
        fflush(stdout);
    }
    double secs = (double)(gt_now_ns() - t0) * 1e-9;
    printf("perplexity: %.4f over %ld scored tokens (%.1f tok/s evaluated)\n", exp(nll / (double)scored),
           scored, (double)n_chunks * C / secs);
done:
    free(chunk);
    free(logits);
    free(ids);
    free(text);
    gt_tokenizer_free(tok);
    return st;
}

int gt_cmd_perplexity(int argc, char **argv) {
    ppl_opts o = {.eng = GT_ENGINE_CONFIG_INIT, .ctx = 512};
    gt_args a;
    gt_args_init(&a, argc, argv);
    const char *arg;
    long v;
    gt_status st = GT_OK;
    while (st == GT_OK && gt_args_next(&a, &arg)) {
        if (gt_args_is(&a, "-h", "--help")) {
            usage();
            return 0;
        } else if (gt_args_is(&a, "-m", "--model")) st = gt_args_str(&a, &o.eng.model_path);
        else if (gt_args_is(&a, "-f", "--file")) st = gt_args_str(&a, &o.file);
        else if (gt_args_is(&a, "-c", "--ctx")) st = gt_args_long(&a, 8, 1 << 20, &o.ctx);
        else if (gt_args_is(&a, NULL, "--chunks")) st = gt_args_long(&a, 1, 1 << 30, &o.max_chunks);
        else if (gt_args_is(&a, "-t", "--threads")) {
            st = gt_args_long(&a, 1, 1024, &v);
            o.eng.n_threads = (int)v;
        } else if (gt_args_is(&a, NULL, "--isa")) st = gt_args_str(&a, &o.eng.isa);
        else if (gt_args_is(&a, NULL, "--tp")) st = gt_args_long(&a, 1, 4096, &o.tp);
        else if (gt_args_is(&a, NULL, "--pp")) st = gt_args_long(&a, 1, 4096, &o.pp);
        else if (gt_args_is(&a, NULL, "--comm-timeout")) st = gt_args_double(&a, 0.1, 1e6, &o.comm_timeout);
        else st = gt_args_unknown(&a);
    }
    if (st == GT_OK && (!o.eng.model_path || !o.file))
        st = gt_fail(GT_ERR_INVALID_ARG, "perplexity needs a model (-m FILE) and a text (-f FILE)");
    if (st != GT_OK) return gt_args_report("perplexity", st);
    gt_rank_config rc = GT_RANK_CONFIG_INIT;
    rc.eng = o.eng;
    rc.eng.n_ctx = (uint32_t)o.ctx;
    rc.eng.max_batch_tokens = (int)(o.ctx < 512 ? o.ctx : 512);
    rc.tp = (int)o.tp;
    rc.pp = (int)o.pp;
    rc.comm_timeout_s = o.comm_timeout;
    rc.max_out_rows = rc.eng.max_batch_tokens;
    return gt_verb_run("perplexity", &rc, &o, ppl_lead);
}
