/* `gantry perplexity`: perplexity of a model over a text file.
 *
 * The text is tokenized once (no BOS) and cut into chunks of --ctx tokens;
 * each chunk is evaluated from an empty cache with BOS in front (when the
 * model uses one), and only the second half of each chunk is scored, so that
 * every scored token has at least ctx/2 tokens of context — the same
 * convention as llama.cpp's perplexity tool, which makes figures comparable. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/timer.h"
#include "tools/cmds.h"
#include "tools/flags.h"
#include "tools/text_chunks.h"
#include "tools/verb.h"

typedef struct ppl_opts {
    gt_rank_config job; /* the model, engine, grid and limits of the job */
    const char *file;
    long ctx;
    long max_chunks;
} ppl_opts;

#define O(f) offsetof(ppl_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(job.eng.model_path), .metavar = "FILE", .help = "GGUF model",
     .required = "perplexity needs a model (-m FILE) and a text (-f FILE)"},
    {"-f", "--file", GT_FLAG_STR, O(file), .metavar = "TEXT", .help = "the text file",
     .required = "perplexity needs a model (-m FILE) and a text (-f FILE)"},
    {"-c", "--ctx", GT_FLAG_LONG, O(ctx), .lo = 8, .hi = 1 << 20, .metavar = "N",
     .help = "tokens per chunk (default 512); the second half of each is scored"},
    {NULL, "--chunks", GT_FLAG_LONG, O(max_chunks), .lo = 1, .hi = 1 << 30, .metavar = "N",
     .help = "evaluate at most N chunks (default: all)"},
    GT_JOB_FLAGS(ppl_opts),
};
#undef O

static const gt_flag_spec k_spec = {
    .verb = "perplexity",
    .synopsis = "-m FILE -f TEXT [--ctx N] [--chunks N] [--threads N] [--isa NAME] [--tp N --pp N]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
};

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
    gt_text_chunks tc = {0};
    float *logits = NULL;
    gt_status st;
    int C = (int)o->ctx, V = (int)gt_rank_hparams(gt_coord_rank(c))->n_vocab;
    GT_TRY_GOTO(gt_text_chunks_load(gt_rank_gguf(gt_coord_rank(c)), o->file, C, o->max_chunks, &tc), st, done);
    long n_chunks = tc.n;
    logits = malloc((size_t)C * (size_t)V * sizeof *logits);
    if (!logits) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate logits for a chunk of %d tokens", C);
        goto done;
    }
    printf("%s: %zu tokens, %ld chunks of %d, scoring the second half of each\n", o->file, tc.n_ids,
           n_chunks, C);
    double nll = 0;
    long scored = 0;
    uint64_t t0 = gt_now_ns();
    for (long ci = 0; ci < n_chunks; ci++) {
        const int32_t *chunk = tc.tok + (size_t)ci * (size_t)C;
        GT_TRY_GOTO(gt_coord_free_seq(c, 0), st, done);
        GT_TRY_GOTO(gt_coord_prefill(c, 0, chunk, C, logits), st, done);
        for (int j = C / 2; j < C - 1; j++) {
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
    free(logits);
    gt_text_chunks_free(&tc);
    return st;
}

int gt_cmd_perplexity(int argc, char **argv) {
    ppl_opts o = {.job = GT_RANK_CONFIG_INIT, .ctx = 512};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    gt_rank_config rk = o.job;
    rk.eng.n_ctx = (uint32_t)o.ctx;
    rk.eng.max_batch_tokens = (int)(o.ctx < 512 ? o.ctx : 512);
    rk.max_out_rows = rk.eng.max_batch_tokens;
    return gt_verb_run("perplexity", &rk, &o, ppl_lead);
}
