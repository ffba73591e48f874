/* `gantry imatrix -m MODEL -f TEXT`: the importance matrix of a model over a
 * text, for `gantry quantize --imatrix`.
 *
 * The text is tokenized once and cut into chunks of --ctx tokens as
 * perplexity does (BOS in front when the model uses one, each chunk from an
 * empty cache); the engine's matrix-input hook (gt_engine_set_mm_hook) adds
 * the squares of every row that goes into every weight matrix to a
 * gt_imatrix, per routed expert for stacked MoE tensors, and the result is
 * written in llama.cpp's GGUF imatrix layout (model/imatrix.c). One rank
 * only: on a grid each rank sees only its shard's inputs. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/timer.h"
#include "model/quantize.h"
#include "tools/cmds.h"
#include "tools/flags.h"
#include "tools/text_chunks.h"
#include "tools/verb.h"

typedef struct imat_opts {
    gt_rank_config job;
    const char *file;
    const char *out;
    long ctx;
    long max_chunks;
} imat_opts;

#define O(f) offsetof(imat_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(job.eng.model_path), .metavar = "FILE", .help = "GGUF model",
     .required = "imatrix needs a model (-m FILE) and a text (-f FILE)"},
    {"-f", "--file", GT_FLAG_STR, O(file), .metavar = "TEXT", .help = "the text file",
     .required = "imatrix needs a model (-m FILE) and a text (-f FILE)"},
    {"-o", "--output", GT_FLAG_STR, O(out), .metavar = "FILE",
     .help = "the imatrix GGUF to write (default imatrix.gguf)"},
    {"-c", "--ctx", GT_FLAG_LONG, O(ctx), .lo = 8, .hi = 1 << 20, .metavar = "N",
     .help = "tokens per chunk (default 512)"},
    {NULL, "--chunks", GT_FLAG_LONG, O(max_chunks), .lo = 1, .hi = 1 << 30, .metavar = "N",
     .help = "evaluate at most N chunks (default: all)"},
    GT_JOB_FLAGS(imat_opts),
};
#undef O

static gt_status validate(void *opts) {
    imat_opts *o = opts;
    if (o->job.tp > 1 || o->job.pp > 1 || o->job.ep > 1)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "imatrix runs on one rank (--tp %d --pp %d --ep %d asks for a grid): each "
                       "rank of a grid sees only its shard's inputs",
                       o->job.tp, o->job.pp, o->job.ep);
    return GT_OK;
}

static const gt_flag_spec k_spec = {
    .verb = "imatrix",
    .synopsis = "-m FILE -f TEXT [-o OUT] [--ctx N] [--chunks N] [--threads N]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .validate = validate,
};

typedef struct collect {
    gt_imatrix *im;
    int n_expert;
    gt_status st; /* the first failure of the hook */
} collect;

static void on_matmul(void *ctx, const char *name, int expert, const float *x, int n,
                      int64_t n_in) {
    collect *c = ctx;
    if (c->st != GT_OK) return;
    int n_mat = expert >= 0 ? c->n_expert : 1;
    c->st = gt_imatrix_add(c->im, name, expert >= 0 ? expert : 0, n_mat, x, n, n_in);
}

static gt_status imat_lead(gt_coord *c, void *opts) {
    const imat_opts *o = opts;
    gt_rank *rank = gt_coord_rank(c);
    if (gt_rank_world_size(rank) > 1)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "imatrix runs on one rank, not %d: each rank of a grid sees only its "
                       "shard's inputs",
                       gt_rank_world_size(rank));
    gt_text_chunks tc = {0};
    float *logits = NULL; /* every position's: the head then sees every row, as in llama.cpp */
    collect col = {.n_expert = (int)gt_rank_hparams(rank)->n_expert, .st = GT_OK};
    gt_engine *e = gt_rank_engine(rank);
    gt_status st;
    int C = (int)o->ctx;
    GT_TRY_GOTO(gt_imatrix_create(&col.im), st, done);
    GT_TRY_GOTO(gt_text_chunks_load(gt_rank_gguf(rank), o->file, C, o->max_chunks, &tc), st, done);
    long n_chunks = tc.n;
    logits = malloc((size_t)C * gt_rank_hparams(rank)->n_vocab * sizeof *logits);
    if (!logits) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate a chunk of %d tokens", C);
        goto done;
    }
    fprintf(stderr, "imatrix: %s: %zu tokens, %ld chunks of %d\n", o->file, tc.n_ids, n_chunks, C);
    uint64_t t0 = gt_now_ns();
    gt_engine_set_mm_hook(e, on_matmul, &col);
    for (long ci = 0; ci < n_chunks; ci++) {
        GT_TRY_GOTO(gt_coord_free_seq(c, 0), st, done);
        GT_TRY_GOTO(gt_coord_prefill(c, 0, tc.tok + (size_t)ci * (size_t)C, C, logits), st, done);
        GT_TRY_GOTO(col.st, st, done);
        fprintf(stderr, "imatrix: chunk %ld/%ld, %.1f s\n", ci + 1, n_chunks,
                (double)(gt_now_ns() - t0) * 1e-9);
    }
    gt_engine_set_mm_hook(e, NULL, NULL);
    const char *out = o->out ? o->out : "imatrix.gguf";
    GT_TRY_GOTO(gt_imatrix_write(col.im, out, o->file, (uint32_t)n_chunks, (uint32_t)C), st, done);
    printf("imatrix: %zu tensors over %ld chunks of %d tokens in %.2f s -> %s\n",
           gt_imatrix_n_entries(col.im), n_chunks, C, (double)(gt_now_ns() - t0) * 1e-9, out);
done:
    gt_engine_set_mm_hook(e, NULL, NULL);
    free(logits);
    gt_text_chunks_free(&tc);
    gt_imatrix_free(col.im);
    return st;
}

int gt_cmd_imatrix(int argc, char **argv) {
    imat_opts o = {.job = GT_RANK_CONFIG_INIT, .ctx = 512};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    gt_rank_config rk = o.job;
    rk.eng.n_ctx = (uint32_t)o.ctx;
    rk.eng.max_batch_tokens = (int)(o.ctx < 512 ? o.ctx : 512);
    rk.max_out_rows = rk.eng.max_batch_tokens;
    return gt_verb_run("imatrix", &rk, &o, imat_lead);
}
