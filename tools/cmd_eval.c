/* `gantry eval`: how far a model's next-token distributions are from a base
 * model's over a text — the perplexity of both, KL(P_base || P_file), top-1
 * agreement and the logits' largest differences (tools/eval_stats.h).
 *
 * The text is cut exactly as `gantry perplexity` cuts it (chunks of --ctx
 * tokens with BOS in front when the model uses one, each from an empty
 * cache, the second half of each chunk scored), so the perplexities printed
 * here are the ones `gantry perplexity` prints.
 *
 * Design choice: the two models run one after the other on the same grid,
 * never side by side: first the base, whose scored logits rows go to a file
 * (--save-base, or a temporary file; tools/eval_logits.h), then the model,
 * which reads them back row by row. So one model's memory is needed at a
 * time, and --base-logits replaces the first run by an earlier file. Under
 * mpirun MPI is started once here and outlives both ranks' lives. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file.h"
#include "common/json.h"
#include "tools/cmds.h"
#include "tools/eval_logits.h"
#include "tools/eval_stats.h"
#include "tools/flags.h"
#include "tools/text_chunks.h"
#include "tools/verb.h"
#include "transport/comm.h"

typedef struct eval_opts {
    gt_rank_config job; /* the job; eng.model_path is FILE, then swapped per run */
    const char *file_model, *base, *text, *save_base, *base_logits, *json;
    long ctx, max_chunks;
    uint64_t max_bytes;
    bool force;
    const char *logits_path; /* where the base run writes and the model run reads */
    int tp, pp, world;       /* the grid, for the JSON */
} eval_opts;

#define O(f) offsetof(eval_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(file_model), .metavar = "FILE",
     .help = "the GGUF model to measure",
     .required = "eval needs a model (-m FILE) and a text (-f TEXT)"},
    {NULL, "--base", GT_FLAG_STR, O(base), .metavar = "BASE.gguf",
     .help = "the base model FILE is compared with (same vocabulary and tokenizer)"},
    {"-f", "--file", GT_FLAG_STR, O(text), .metavar = "TEXT", .help = "the text file",
     .required = "eval needs a model (-m FILE) and a text (-f TEXT)"},
    {"-c", "--ctx", GT_FLAG_LONG, O(ctx), .lo = 8, .hi = 1 << 20, .metavar = "N",
     .help = "tokens per chunk (default 512); the second half of each is scored,\n"
             "as in `gantry perplexity`"},
    {NULL, "--chunks", GT_FLAG_LONG, O(max_chunks), .lo = 1, .hi = 1 << 30, .metavar = "N",
     .help = "evaluate at most N chunks (default: all)"},
    {NULL, "--save-base", GT_FLAG_STR, O(save_base), .metavar = "LOGITS",
     .help = "also keep the base's scored logits in LOGITS (float32 rows, with the\n"
             "tokens and the text's hash) for a later --base-logits"},
    {NULL, "--base-logits", GT_FLAG_STR, O(base_logits), .metavar = "LOGITS",
     .help = "compare with the logits saved by --save-base instead of running a base;\n"
             "refused when the text, --ctx, --chunks, vocabulary or tokens differ"},
    {NULL, "--max-bytes", GT_FLAG_BYTES, O(max_bytes), .lo = 1, .metavar = "B",
     .help = "refuse to write a base logits file (saved or temporary) larger than B\n"
             "(default 4G)"},
    {NULL, "--force", GT_FLAG_BOOL, O(force),
     .help = "write the base logits file whatever its size"},
    {NULL, "--json", GT_FLAG_STR, O(json), .metavar = "OUT",
     .help = "write every number to OUT as JSON ('-': stdout)"},
    GT_JOB_FLAGS(eval_opts),
};
#undef O

static gt_status eval_validate(void *opts) {
    eval_opts *o = opts;
    if (o->base_logits && o->base)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "--base-logits replaces running --base; give one of them");
    if (o->base_logits && o->save_base)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "--save-base writes what --base-logits reads; give one of them");
    if (!o->base_logits && !o->base)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "eval needs a base: --base BASE.gguf or --base-logits LOGITS");
    return GT_OK;
}

static const gt_flag_spec k_spec = {
    .verb = "eval",
    .synopsis = "-m FILE (--base BASE.gguf | --base-logits LOGITS) -f TEXT [--ctx N] [--chunks N]\n"
                "       [--save-base LOGITS] [--json OUT] [--threads N] [--tp N --pp N]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .validate = eval_validate,
    .footer = "Over every scored position (row j of a chunk predicting token j + 1):\n"
              "  KL        KL(P_base || P_file) in nats: mean, median, p99, max\n"
              "  top-1     fraction of positions where argmax base == argmax FILE\n"
              "  |dlogit|  per position, max over the vocabulary of |logit_FILE - logit_base|\n"
              "            (raw logits); printed as p99 and max over the positions\n"
              "  dp        p_FILE(next) - p_base(next) of the text's next token: mean, rms\n"
              "Median and p99 are nearest-rank: the value at sorted index ceil(q n) - 1.\n",
};

/* The text cut into chunks with this model's tokenizer, as perplexity
 * does (tools/text_chunks.h): tokens [n_chunks, ctx], the caller's to
 * free, and the header that describes them. */
static gt_status eval_chunks(gt_coord *c, const eval_opts *o, int32_t **chunks,
                             gt_evlog_header *h) {
    gt_text_chunks tc = {0};
    *chunks = NULL;
    int C = (int)o->ctx;
    gt_status st = gt_text_chunks_load(gt_rank_gguf(gt_coord_rank(c)), o->text, C, o->max_chunks, &tc);
    if (st != GT_OK) {
        gt_text_chunks_free(&tc);
        return st;
    }
    uint64_t n_chunks = (uint64_t)tc.n;
    memset(h, 0, sizeof *h);
    h->n_vocab = gt_rank_hparams(gt_coord_rank(c))->n_vocab;
    h->ctx = (uint32_t)C;
    h->chunk_tokens = (uint32_t)C;
    h->first_scored = (uint32_t)(C / 2);
    h->n_scored = h->chunk_tokens - 1 - h->first_scored;
    h->n_chunks = n_chunks;
    h->n_positions = n_chunks * h->n_scored;
    h->text_bytes = tc.text_len;
    h->text_hash = gt_evlog_fnv1a(GT_FNV_OFFSET, tc.text, tc.text_len);
    h->token_hash = gt_evlog_fnv1a(GT_FNV_OFFSET, tc.tok, (size_t)n_chunks * (size_t)C * sizeof *tc.tok);
    *chunks = tc.tok;
    tc.tok = NULL;
    gt_text_chunks_free(&tc);
    return GT_OK;
}

/* The base run: every chunk's scored rows into the logits file. */
static gt_status base_lead(gt_coord *c, void *opts) {
    const eval_opts *o = opts;
    gt_evlog_header h;
    int32_t *chunks = NULL;
    float *logits = NULL;
    gt_evlog_writer w = {0};
    gt_status st;
    GT_TRY_GOTO(eval_chunks(c, o, &chunks, &h), st, done);
    size_t C = h.chunk_tokens, V = h.n_vocab;
    logits = malloc(C * V * sizeof *logits);
    if (!logits) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate logits for a chunk of %zu tokens", C);
        goto done;
    }
    GT_TRY_GOTO(gt_evlog_writer_open(&w, o->logits_path, &h, chunks, o->force ? 0 : o->max_bytes),
                st, done);
    printf(
        "base %s: %llu chunks of %zu tokens, %llu scored positions (second half of each chunk)\n",
        o->base, (unsigned long long)h.n_chunks, C, (unsigned long long)h.n_positions);
    for (uint64_t ci = 0; ci < h.n_chunks; ci++) {
        GT_TRY_GOTO(gt_coord_free_seq(c, 0), st, done);
        GT_TRY_GOTO(gt_coord_prefill(c, 0, chunks + ci * C, (int)C, logits), st, done);
        GT_TRY_GOTO(gt_evlog_write_rows(&w, logits + (size_t)h.first_scored * V, h.n_scored), st,
                    done);
    }
    st = gt_evlog_writer_close(&w);
done:
    if (st != GT_OK && w.f) { /* the file this run created or truncated goes: it is incomplete */
        gt_status keep = st;
        (void)gt_evlog_writer_close(&w);
        unlink(o->logits_path);
        st = keep;
    }
    free(logits);
    free(chunks);
    return st;
}

/* The model's chunks must be the base's, token for token. */
static gt_status check_same(const eval_opts *o, const gt_evlog_header *b, const int32_t *btok,
                            const gt_evlog_header *m, const int32_t *mtok) {
    const char *lp = o->base_logits ? o->base_logits : o->base;
    if (b->n_vocab != m->n_vocab)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s has a vocabulary of %u tokens but %s one of %u: the "
                       "distributions cannot be compared",
                       o->file_model, m->n_vocab, lp, b->n_vocab);
    if (b->text_bytes != m->text_bytes || b->text_hash != m->text_hash)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s was computed over a text of %llu bytes (FNV-1a %016llx), not "
                       "%s (%llu bytes, %016llx)",
                       lp, (unsigned long long)b->text_bytes, (unsigned long long)b->text_hash,
                       o->text, (unsigned long long)m->text_bytes,
                       (unsigned long long)m->text_hash);
    if (b->ctx != m->ctx || b->n_chunks != m->n_chunks)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s holds %llu chunks of --ctx %u, this run evaluates %llu chunks "
                       "of --ctx %u",
                       lp, (unsigned long long)b->n_chunks, b->ctx, (unsigned long long)m->n_chunks,
                       m->ctx);
    size_t n = (size_t)b->n_chunks * b->chunk_tokens;
    for (size_t i = 0; i < n; i++)
        if (btok[i] != mtok[i])
            return gt_fail(GT_ERR_INVALID_ARG,
                           "token %zu of chunk %zu is %d with %s's tokenizer but %d in %s: "
                           "the models tokenize the text differently",
                           i % b->chunk_tokens, i / b->chunk_tokens, mtok[i], o->file_model,
                           btok[i], lp);
    return GT_OK;
}

static uint64_t file_size(const char *path) {
    struct stat sb;
    return path && stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static gt_status write_json(const eval_opts *o, const gt_evlog_header *h, const gt_evsummary *s) {
    FILE *f = strcmp(o->json, "-") == 0 ? stdout : fopen(o->json, "w");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open for writing", o->json);
    fputs("{\"model\": ", f);
    gt_json_write_str(f, o->file_model);
    fputs(", \"base\": ", f);
    gt_json_write_str(f, o->base);
    fputs(", \"base_logits\": ", f);
    gt_json_write_str(f, o->base_logits);
    fputs(", \"text\": ", f);
    gt_json_write_str(f, o->text);
    fprintf(f,
            ", \"model_bytes\": %llu, \"base_bytes\": %llu, \"ranks\": %d, \"tp\": %d, \"pp\": %d, "
            "\"ctx\": %u, \"chunks\": %llu, \"first_scored\": %u, \"positions\": %llu, "
            "\"n_vocab\": %u, "
            "\"perplexity\": {\"model\": %.17g, \"base\": %.17g}, "
            "\"kl\": {\"mean\": %.17g, \"median\": %.17g, \"p99\": %.17g, \"max\": %.17g}, "
            "\"top1_agreement\": %.17g, \"top1_same\": %llu, "
            "\"max_abs_dlogit\": {\"p99\": %.17g, \"max\": %.17g}, "
            "\"dp_next_token\": {\"mean\": %.17g, \"rms\": %.17g}}\n",
            (unsigned long long)file_size(o->file_model), (unsigned long long)file_size(o->base),
            o->world, o->tp, o->pp, h->ctx, (unsigned long long)h->n_chunks, h->first_scored,
            (unsigned long long)s->n, h->n_vocab, s->ppl_file, s->ppl_base, s->kl_mean,
            s->kl_median, s->kl_p99, s->kl_max, s->top1, (unsigned long long)s->top1_same,
            s->dlogit_p99, s->dlogit_max, s->dp_mean, s->dp_rms);
    if (f != stdout && fclose(f) != 0) return gt_fail(GT_ERR_IO, "%s: write failed", o->json);
    return GT_OK;
}

static void print_summary(const eval_opts *o, const gt_evsummary *s) {
    printf("perplexity: %s %.4f, base %.4f (ratio %.4f) over %llu scored tokens\n", o->file_model,
           s->ppl_file, s->ppl_base, s->ppl_file / s->ppl_base, (unsigned long long)s->n);
    printf("KL(base || model): mean %.6g, median %.6g, p99 %.6g, max %.6g\n", s->kl_mean,
           s->kl_median, s->kl_p99, s->kl_max);
    printf("top-1 agreement: %.6f (%llu of %llu positions)\n", s->top1,
           (unsigned long long)s->top1_same, (unsigned long long)s->n);
    printf("max |dlogit| per position: p99 %.6g, max %.6g\n", s->dlogit_p99, s->dlogit_max);
    printf("next-token probability change: mean %.6g, rms %.6g\n", s->dp_mean, s->dp_rms);
}

/* The model run: each chunk's logits against the base's rows. */
static gt_status file_lead(gt_coord *c, void *opts) {
    const eval_opts *o = opts;
    gt_evlog_reader r = {0};
    gt_evlog_header h;
    int32_t *btok = NULL, *chunks = NULL;
    float *logits = NULL, *base = NULL;
    gt_evstats acc = {0};
    gt_status st;
    GT_TRY_GOTO(gt_evlog_reader_open(&r, o->logits_path, &btok), st, done);
    GT_TRY_GOTO(eval_chunks(c, o, &chunks, &h), st, done);
    GT_TRY_GOTO(check_same(o, &r.h, btok, &h, chunks), st, done);
    size_t C = h.chunk_tokens, V = h.n_vocab;
    logits = malloc(C * V * sizeof *logits);
    base = malloc((size_t)h.n_scored * V * sizeof *base);
    if (!logits || !base) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate logits for a chunk of %zu tokens", C);
        goto done;
    }
    GT_TRY_GOTO(gt_evstats_init(&acc, h.n_positions), st, done);
    printf(
        "model %s: %llu chunks of %zu tokens, %llu scored positions (second half of each chunk)\n",
        o->file_model, (unsigned long long)h.n_chunks, C, (unsigned long long)h.n_positions);
    for (uint64_t ci = 0; ci < h.n_chunks; ci++) {
        const int32_t *ch = chunks + ci * C;
        GT_TRY_GOTO(gt_coord_free_seq(c, 0), st, done);
        GT_TRY_GOTO(gt_coord_prefill(c, 0, ch, (int)C, logits), st, done);
        GT_TRY_GOTO(gt_evlog_read_rows(&r, base, h.n_scored), st, done);
        for (uint32_t k = 0; k < h.n_scored; k++) {
            size_t j = h.first_scored + k;
            GT_TRY_GOTO(gt_evstats_add(&acc, base + k * V, logits + j * V, (int)V, ch[j + 1]), st,
                        done);
        }
    }
    gt_evsummary s;
    gt_evstats_summary(&acc, &s);
    print_summary(o, &s);
    fflush(stdout);
    if (o->json) GT_TRY_GOTO(write_json(o, &h, &s), st, done);
    st = GT_OK;
done:
    gt_evstats_free(&acc);
    gt_evlog_reader_close(&r);
    free(base);
    free(logits);
    free(chunks);
    free(btok);
    return st;
}

/* Both models' vocabularies, from metadata, before either is loaded: every
 * rank reads the same files, so all give the same verdict. */
static gt_status check_vocabs(const eval_opts *o) {
    const char *paths[2] = {o->file_model, o->base};
    uint32_t nv[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        gt_gguf *g = NULL;
        gt_hparams hp;
        GT_TRY(gt_gguf_open(paths[i], &g));
        gt_status st = gt_hparams_load(g, &hp);
        gt_gguf_close(g);
        GT_TRY(st);
        nv[i] = hp.n_vocab;
    }
    if (nv[0] != nv[1])
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s has a vocabulary of %u tokens but %s one of %u: the "
                       "distributions cannot be compared",
                       paths[0], nv[0], paths[1], nv[1]);
    return GT_OK;
}

/* Rank 0's exit code after the base run, to every rank, so that all of them
 * go on to the model run or none. */
static int agree(gt_comm *world, int rc) {
    if (!world) return rc;
    int32_t v = rc;
    if (gt_comm_broadcast(world, &v, 1, GT_I32, 0, "eval: the base run's verdict") != GT_OK)
        return 1;
    return v;
}

int gt_cmd_eval(int argc, char **argv) {
    eval_opts o = {.job = GT_RANK_CONFIG_INIT, .ctx = 512, .max_bytes = 4ull << 30};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    rc = 0;
    if (o.base) {
        gt_status st = check_vocabs(&o);
        if (st != GT_OK) return gt_rank_launch_rank() == 0 ? gt_flags_report("eval", st) : 0;
    }
    gt_comm *world = NULL;
    if (gt_rank_launched() || o.job.tp > 1 || o.job.pp > 1) {
        gt_status st = gt_comm_init_world(NULL, NULL, &world);
        if (st != GT_OK) return gt_flags_report("eval", st);
    }
    o.world = world ? gt_comm_size(world) : 1;
    o.pp = o.job.pp > 0 ? o.job.pp : 1;
    o.tp = o.job.tp > 0 ? o.job.tp : o.world / o.pp;
    bool lead = !world || gt_comm_rank(world) == 0;
    char tmp[4096] = "";
    o.logits_path = o.base_logits ? o.base_logits : o.save_base;
    if (!o.logits_path && lead) {
        const char *dir = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/gantry-eval-XXXXXX", dir && *dir ? dir : "/tmp");
        int fd = mkstemp(tmp);
        if (fd < 0) {
            rc = gt_flags_report("eval",
                                 gt_fail(GT_ERR_IO, "%s: cannot create a temporary file", tmp));
            tmp[0] = 0;
        } else {
            close(fd);
        }
        o.logits_path = tmp;
    }
    gt_rank_config rk = o.job;
    rk.eng.n_ctx = (uint32_t)o.ctx;
    rk.eng.max_batch_tokens = (int)(o.ctx < 512 ? o.ctx : 512);
    rk.max_out_rows = rk.eng.max_batch_tokens;
    rc = agree(world, rc);
    if (rc == 0 && !o.base_logits) {
        rk.eng.model_path = o.base;
        rc = agree(world, gt_verb_run("eval", &rk, &o, base_lead));
    }
    if (rc == 0) {
        rk.eng.model_path = o.file_model;
        rc = gt_verb_run("eval", &rk, &o, file_lead);
    }
    if (tmp[0]) unlink(tmp);
    gt_comm_finalize(world);
    return lead ? rc : 0;
}
