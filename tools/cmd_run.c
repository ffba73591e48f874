/* `gantry run`: generate from a prompt on one rank.
 *
 * The prompt is evaluated in micro-batches of --ubatch tokens (one forward
 * call each, so prefill is a GEMM), then tokens are decoded one at a time.
 * --logits-out writes the logits of every prompt position, so any tool can
 * compare them with its own reference. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "common/alloc.h"
#include "common/file.h"
#include "common/timer.h"
#include "coordinator/constraint.h"
#include "coordinator/grammar_vocab.h"
#include "coordinator/sampler.h"
#include "coordinator/spec.h"
#include "tools/cmds.h"
#include "tools/run_beam.h"
#include "tools/verb.h"
#include "tools/flags.h"
#include "coordinator/text.h"
#include "worker/engine.h"
#include "worker/expert_cache.h"

enum { GT_RUN_MAX_BIAS = 256 };

typedef struct run_opts {
    gt_rank_config job; /* the model, engine, grid and limits of the job */
    gt_sampler_config samp;
    const char *prompt;
    const char *prompt_file;
    int32_t *tokens; /* [n_tokens], from --tokens */
    int n_tokens;
    long n_predict;
    long ubatch;
    const char *logits_out;
    bool print_ids;
    bool ignore_eos;
    bool no_bos;
    bool chat;
    const char *system;
    const char *chat_format;
    const char *expert_stats_out;
    gt_spec_config spec;
    const char *grammar_file;
    const char *json_schema_file;
    int32_t bias_ids[GT_RUN_MAX_BIAS]; /* --logit-bias ID=B, repeated */
    float bias[GT_RUN_MAX_BIAS];
    int n_bias;
    int beams;            /* --beams W; 0: sampling */
    int n_best;           /* --n-best N: hypotheses printed, 1..W (0: 1) */
    float length_penalty; /* --length-penalty A */
    gt_penalty_config pen; /* --repeat-penalty, --presence-penalty, --frequency-penalty */
    int logprobs;          /* --logprobs N: alternatives printed per token; 0: none */
} run_opts;

/* --logit-bias ID=B: B a number or -inf (bans the token). */
static gt_status parse_bias(const char *flag, const char *value, void *opts) {
    run_opts *o = opts;
    if (o->n_bias == GT_RUN_MAX_BIAS)
        return gt_fail(GT_ERR_INVALID_ARG, "%s: more than %d biases", flag, GT_RUN_MAX_BIAS);
    char *end;
    long id = strtol(value, &end, 10);
    if (end == value || *end != '=' || id < 0 || id > 0x7fffffffl)
        return gt_fail(GT_ERR_INVALID_ARG, "%s '%s': expected ID=BIAS with a token id >= 0", flag, value);
    const char *b = end + 1;
    float bias = strtof(b, &end);
    if (end == b || *end || isnan(bias) || bias == INFINITY)
        return gt_fail(GT_ERR_INVALID_ARG, "%s '%s': the bias is not a finite number or -inf", flag, value);
    o->bias_ids[o->n_bias] = (int32_t)id;
    o->bias[o->n_bias++] = bias;
    return GT_OK;
}

#define O(f) offsetof(run_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(job.eng.model_path), .metavar = "FILE", .help = "GGUF model",
     .required = "no model given (-m FILE)"},
    {"-p", "--prompt", GT_FLAG_STR, O(prompt), .metavar = "TEXT",
     .help = "prompt text (tokenized with the model's vocabulary)"},
    {"-f", "--file", GT_FLAG_STR, O(prompt_file), .metavar = "FILE",
     .help = "prompt text from a file"},
    {NULL, "--tokens", GT_FLAG_INT_LIST, O(tokens), .off2 = O(n_tokens), .metavar = "IDS",
     .help = "prompt as comma-separated token ids"},
    {"-n", "--n-predict", GT_FLAG_LONG, O(n_predict), .lo = 0, .hi = 1 << 20, .metavar = "N",
     .help = "tokens to generate (default 32; 0 only evaluates the prompt)"},
    {NULL, "--temp", GT_FLAG_FLOAT, O(samp.temperature), .flo = 0, .fhi = 100, .metavar = "T",
     .help = "temperature (default 0: greedy)"},
    {NULL, "--top-k", GT_FLAG_INT, O(samp.top_k), .lo = 0, .hi = 1 << 24, .metavar = "K",
     .help = "keep the K most likely tokens (default 40; 0: all)"},
    {NULL, "--top-p", GT_FLAG_FLOAT, O(samp.top_p), .flo = 0, .fhi = 1, .metavar = "P",
     .help = "nucleus sampling threshold (default 0.95)"},
    {NULL, "--min-p", GT_FLAG_FLOAT, O(samp.min_p), .flo = 0, .fhi = 1, .metavar = "P",
     .help = "drop tokens less likely than P times the most likely one (default 0: off)"},
    {NULL, "--typical-p", GT_FLAG_FLOAT, O(samp.typical_p), .flo = 0, .fhi = 1, .metavar = "P",
     .help = "locally typical sampling: keep the tokens nearest the entropy\n"
             "up to probability P (default 1: off)"},
    {NULL, "--repeat-penalty", GT_FLAG_FLOAT, O(pen.repetition), .flo = 1e-3, .fhi = 10,
     .metavar = "R",
     .help = "divide the positive logit of a token among the last 64 by R, multiply\n"
             "a negative one (default 1: off)"},
    {NULL, "--presence-penalty", GT_FLAG_FLOAT, O(pen.presence), .flo = -2, .fhi = 2,
     .metavar = "P", .help = "subtract P from the logit of a token among the last 64 (default 0)"},
    {NULL, "--frequency-penalty", GT_FLAG_FLOAT, O(pen.frequency), .flo = -2, .fhi = 2,
     .metavar = "F", .help = "subtract F per time a token occurs among the last 64 (default 0)"},
    {NULL, "--logprobs", GT_FLAG_INT, O(logprobs), .lo = 1, .hi = GT_COORD_MAX_LOGPROBS,
     .metavar = "N",
     .help = "after the output, print each generated token's log-probability and the\n"
             "N most likely tokens' (before penalties, bias and grammar) to stderr"},
    {NULL, "--logit-bias", GT_FLAG_CALL, 0, .call = parse_bias, .metavar = "ID=B",
     .help = "add B to token ID's logit (-inf bans it); repeatable"},
    {NULL, "--beams", GT_FLAG_INT, O(beams), .lo = 1, .hi = GT_BEAM_MAX_WIDTH, .metavar = "W",
     .help = "beam search with W beams (one rank's sequences; replaces sampling)"},
    {NULL, "--n-best", GT_FLAG_INT, O(n_best), .lo = 1, .hi = GT_BEAM_MAX_WIDTH, .metavar = "N",
     .help = "with --beams: print the N best hypotheses, best first, one per line (default 1)"},
    {NULL, "--length-penalty", GT_FLAG_FLOAT, O(length_penalty), .flo = -10, .fhi = 10,
     .metavar = "A", .help = "beam score: sum of log-probabilities / length^A (default 1)"},
    {NULL, "--grammar", GT_FLAG_STR, O(grammar_file), .metavar = "FILE",
     .help = "constrain the output to a GBNF grammar (start rule 'root')"},
    {NULL, "--json-schema", GT_FLAG_STR, O(json_schema_file), .metavar = "FILE",
     .help = "constrain the output to JSON that a JSON schema accepts"},
    {NULL, "--seed", GT_FLAG_U64, O(samp.seed), .lo = 0, .hi = 0x7fffffffl, .metavar = "S",
     .help = "sampling seed (default 1234)"},
    {"-c", "--ctx", GT_FLAG_U32, O(job.eng.n_ctx), .lo = 1, .hi = 1 << 22, .metavar = "N",
     .help = "context length (default min(model, 4096))"},
    {NULL, "--ubatch", GT_FLAG_LONG, O(ubatch), .lo = 1, .hi = 16384, .metavar = "N",
     .help = "prompt tokens per forward call (default 512)"},
    {NULL, "--logits-out", GT_FLAG_STR, O(logits_out), .metavar = "FILE",
     .help = "write prompt logits, float32 [n_prompt, n_vocab]"},
    {NULL, "--print-ids", GT_FLAG_BOOL, O(print_ids),
     .help = "print the generated token ids on one line"},
    {NULL, "--ignore-eos", GT_FLAG_BOOL, O(ignore_eos),
     .help = "keep generating after an end-of-generation token"},
    {NULL, "--no-bos", GT_FLAG_BOOL, O(no_bos),
     .help = "do not add the BOS token to a text prompt"},
    {NULL, "--chat", GT_FLAG_BOOL, O(chat),
     .help = "format the prompt as a user turn with the model's chat template"},
    {NULL, "--system", GT_FLAG_STR, O(system), .metavar = "TEXT",
     .help = "system message for --chat"},
    {NULL, "--chat-format", GT_FLAG_STR, O(chat_format), .metavar = "NAME",
     .help = "chat format instead of the GGUF's template (chatml, gemma, llama3, ...)"},
    {NULL, "--sp-min-tokens", GT_FLAG_INT, O(job.eng.sp_min_tokens), .lo = 0, .hi = 1 << 20,
     .metavar = "N",
     .help = "split prompt batches of at least N tokens along the sequence over\n"
             "the stage group (sequence parallelism; default 0: off)"},
    {NULL, "--expert-stats-out", GT_FLAG_STR, O(expert_stats_out), .metavar = "FILE",
     .help = "write how many tokens each expert of each layer took (rank 0's\n"
             "layers), for a later --expert-stats"},
    {NULL, "--lookup", GT_FLAG_INT, O(spec.lookup), .lo = 1, .hi = 64, .metavar = "N",
     .help = "speculate with prompt lookup: the tokens that followed the last\n"
             "N-gram (N down to 1) earlier in the context"},
    {NULL, "--draft", GT_FLAG_STR, O(spec.draft_path), .metavar = "FILE",
     .help = "speculate with a draft model of the same vocabulary (on rank 0)"},
    {NULL, "--self-draft", GT_FLAG_INT, O(spec.self_draft_layers), .lo = 1, .hi = 1 << 16,
     .metavar = "L", .help = "speculate with the model's first L layers as the draft (on rank 0)"},
    {NULL, "--draft-tokens", GT_FLAG_INT, O(spec.draft_tokens), .lo = 1, .hi = 64, .metavar = "K",
     .help = "guesses verified per step when speculating (default 4)"},
    GT_JOB_FLAGS(run_opts),
};
#undef O

static gt_status validate(void *opts) {
    run_opts *o = opts;
    if (o->chat_format) o->chat = true;
    if (o->ubatch > 0) o->job.eng.max_batch_tokens = (int)o->ubatch;
    int sources = !!o->prompt + !!o->prompt_file + !!o->tokens;
    if (sources != 1)
        return gt_fail(GT_ERR_INVALID_ARG, "give exactly one prompt: -p TEXT, -f FILE or --tokens IDS");
    if (o->grammar_file && o->json_schema_file)
        return gt_fail(GT_ERR_INVALID_ARG, "give at most one of --grammar and --json-schema");
    if (o->beams && (o->grammar_file || o->json_schema_file || o->n_bias || o->logits_out))
        return gt_fail(GT_ERR_INVALID_ARG, "--beams does not combine with --grammar, --json-schema, --logit-bias "
                       "or --logits-out");
    if (gt_spec_enabled(&o->spec) && (o->beams || o->grammar_file || o->json_schema_file || o->n_bias))
        return gt_fail(GT_ERR_INVALID_ARG, "speculative decoding (--lookup, --draft, --self-draft) does not combine "
                       "with --beams, --grammar, --json-schema or --logit-bias");
    bool extras = gt_penalties_active(&o->pen) || o->logprobs > 0;
    if (extras && (o->beams || gt_spec_enabled(&o->spec)))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "--repeat-penalty, --presence-penalty, --frequency-penalty and "
                       "--logprobs do not combine with --beams or speculative decoding");
    if (o->n_best > 1 && o->n_best > o->beams)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "--n-best %d needs --beams of at least %d (one hypothesis per beam)",
                       o->n_best, o->n_best);
    if (o->beams) {
        o->job.eng.max_seqs = o->beams > o->job.eng.max_seqs ? o->beams : o->job.eng.max_seqs;
        if (o->n_predict < 1) return gt_fail(GT_ERR_INVALID_ARG, "--beams needs -n of at least 1");
    }
    return GT_OK;
}

static const gt_flag_spec k_spec = {
    .verb = "run",
    .synopsis = "-m FILE (-p TEXT | -f FILE | --tokens 1,2,3) [-n N] [options]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .validate = validate,
};

static gt_status write_logits(const char *path, const float *logits, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open for writing", path);
    size_t w = fwrite(logits, sizeof(float), n, f);
    if (fclose(f) != 0 || w != n) return gt_fail(GT_ERR_IO, "%s: write failed", path);
    return GT_OK;
}

/* A generated token's log-probability and the n_top most likely tokens'. */
typedef struct run_logprob {
    int32_t tok;
    float lp;
    int n_top;
    gt_cand top[GT_COORD_MAX_LOGPROBS];
} run_logprob;

typedef struct run_state {
    gt_text *text;
    gt_sampler *smp;
    gt_spec *spec;
    gt_grammar *grammar;
    gt_vocab_trie *trie;
    gt_constraint *cons;
    int32_t *eog;
    struct run_logprob *lp; /* --logprobs: one per generated token */
    size_t n_lp, cap_lp;
    float *full;
    int32_t *prompt_owned;
} run_state;

static void run_state_free(run_state *r) {
    gt_spec_destroy(r->spec);
    gt_sampler_destroy(r->smp);
    gt_constraint_free(r->cons);
    gt_vocab_trie_free(r->trie);
    gt_grammar_free(r->grammar);
    free(r->eog);
    free(r->lp);
    free(r->full);
    free(r->prompt_owned);
    gt_text_close(r->text);
}

/* The logit bias and the grammar, when asked for. */
static gt_status setup_constraint(run_opts *o, gt_coord *c, run_state *r, int n_vocab) {
    const char *path = o->grammar_file ? o->grammar_file : o->json_schema_file;
    if (!path && o->n_bias == 0) return GT_OK;
    gt_constraint_config cc = {.bias_ids = o->bias_ids, .bias = o->bias, .n_bias = o->n_bias};
    if (path) {
        const gt_tokenizer *tok = gt_text_tokenizer(r->text);
        if (!tok)
            return gt_fail(GT_ERR_UNSUPPORTED, "%s: a grammar needs the model's tokenizer, and this model has none",
                           path);
        char *text = NULL;
        size_t len = 0;
        GT_TRY(gt_read_file(path, (size_t)1 << 20, &text, &len));
        gt_status st = gt_grammar_from_text(o->grammar_file ? GT_GRAMMAR_GBNF : GT_GRAMMAR_JSON_SCHEMA, text, len,
                                            &r->grammar);
        free(text);
        if (st != GT_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", gt_last_error());
            return gt_fail(st, "%s: %s", path, why);
        }
        GT_TRY(gt_vocab_trie_from_tokenizer(tok, n_vocab, &r->trie));
        int n_eog = 0;
        GT_TRY(gt_tokenizer_eog_ids(tok, n_vocab, &r->eog, &n_eog));
        cc.grammar = r->grammar;
        cc.trie = r->trie;
        cc.eog = r->eog;
        cc.n_eog = n_eog;
    }
    GT_TRY(gt_constraint_create(&cc, n_vocab, &r->cons));
    return gt_coord_set_constraint(c, 0, r->cons);
}

/* --logprobs: keeps the log-probabilities of the token just drawn. */
static gt_status keep_logprobs(const run_opts *o, gt_coord *c, run_state *r, int32_t tok) {
    if (o->logprobs <= 0) return GT_OK;
    if (r->n_lp == r->cap_lp) {
        size_t cap = r->cap_lp ? 2 * r->cap_lp : 64;
        run_logprob *p = realloc(r->lp, cap * sizeof *p);
        if (!p) return gt_fail(GT_ERR_NOMEM, "--logprobs: out of memory for %zu tokens", cap);
        r->lp = p;
        r->cap_lp = cap;
    }
    run_logprob *e = &r->lp[r->n_lp++];
    const gt_cand *top;
    e->tok = tok;
    GT_TRY(gt_coord_next_logprobs(c, 0, &e->lp, &top, &e->n_top));
    memcpy(e->top, top, (size_t)e->n_top * sizeof *top);
    return GT_OK;
}

/* One line per generated token: its index, id and log-probability, then the
 * N most likely tokens as id and log-probability, best first. */
static void print_logprobs(const run_opts *o, const run_state *r) {
    if (o->logprobs <= 0) return;
    fprintf(stderr, "logprobs: token id log-probability | the %d most likely: id log-probability\n",
            o->logprobs);
    for (size_t i = 0; i < r->n_lp; i++) {
        const run_logprob *e = &r->lp[i];
        fprintf(stderr, "logprob %zu: %d %.6f |", i, e->tok, (double)e->lp);
        for (int k = 0; k < e->n_top; k++)
            fprintf(stderr, " %d %.6f", e->top[k].id, (double)e->top[k].logit);
        fprintf(stderr, "\n");
    }
}

/* --beams: the best hypothesis (--n-best: the N best, one per line, best
 * first), printed whole at the end. */
static gt_status beam_search(run_opts *o, gt_coord *c, run_state *r, const int32_t *prompt, int n_prompt,
                             int n_vocab) {
    gt_run_beam_opts bo = {o->beams, o->length_penalty, (int)o->n_predict, o->ignore_eos, n_vocab};
    gt_run_beam_hyp hyps[GT_BEAM_MAX_WIDTH];
    int n_hyp = 0;
    uint64_t t0 = gt_now_ns();
    GT_TRY(gt_run_beam(c, r->text, prompt, n_prompt, &bo, o->n_best > 1 ? o->n_best : 1, hyps,
                       &n_hyp));
    double dt = (double)(gt_now_ns() - t0) * 1e-9;
    for (int h = 0; h < n_hyp; h++) {
        for (int i = 0; i < hyps[h].n; i++) {
            const int32_t t = hyps[h].toks[i];
            if (o->print_ids)
                printf(i ? " %d" : "%d", t);
            else if (!gt_text_is_eog(r->text, t) || o->ignore_eos)
                gt_text_print(r->text, t, stdout);
        }
        if (!o->print_ids) gt_text_flush(r->text, stdout);
        printf("\n");
    }
    fflush(stdout);
    fprintf(stderr, "beam search: %d beams, %d tokens, score %.6f (length penalty %g) in %.3f s\n",
            o->beams, hyps[0].n, hyps[0].score, (double)o->length_penalty, dt);
    for (int h = 1; h < n_hyp; h++)
        fprintf(stderr, "beam hypothesis %d: %d tokens, score %.6f\n", h + 1, hyps[h].n,
                hyps[h].score);
    gt_run_beam_hyps_free(hyps, n_hyp);
    return GT_OK;
}

/* Rank 0: tokenizes the prompt, has the coordinator evaluate it and draws
 * tokens until -n, an end-of-generation token or a stop string. */
static gt_status generate(run_opts *o, gt_coord *c, run_state *r) {
    int32_t *prompt = o->tokens;
    int n_prompt = o->n_tokens;
    gt_rank *rk = gt_coord_rank(c);
    const gt_gguf *g = gt_rank_gguf(rk);
    const gt_hparams *hp = gt_rank_hparams(rk);
    GT_TRY(gt_text_open(g, &r->text));
    if (!prompt) {
        gt_text_prompt_opts po = {o->prompt, o->prompt_file, !o->no_bos, o->chat, o->system,
                                  o->chat_format};
        GT_TRY(gt_text_prompt(r->text, g, &po, &r->prompt_owned, &n_prompt));
        prompt = r->prompt_owned;
    }
    if (n_prompt < 1) return gt_fail(GT_ERR_INVALID_ARG, "the prompt is empty");
    if ((uint64_t)n_prompt + (uint64_t)o->n_predict > gt_coord_n_ctx(c))
        return gt_fail(GT_ERR_RANGE, "the prompt of %d tokens plus %ld to generate exceeds the context "
                       "of %u tokens", n_prompt, o->n_predict, gt_coord_n_ctx(c));
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || (uint32_t)prompt[i] >= hp->n_vocab)
            return gt_fail(GT_ERR_INVALID_ARG, "prompt token %d (id %d) is outside the vocabulary of %u",
                           i, prompt[i], hp->n_vocab);
    size_t V = hp->n_vocab;
    if (o->logits_out) {
        r->full = malloc((size_t)n_prompt * V * sizeof *r->full);
        if (!r->full)
            return gt_fail(GT_ERR_NOMEM, "cannot allocate logits for %d positions of %zu tokens", n_prompt, V);
    }
    if (o->beams) return beam_search(o, c, r, prompt, n_prompt, (int)V);
    GT_TRY(gt_sampler_create(&o->samp, (int)V, &r->smp));
    GT_TRY(gt_coord_set_sampler(c, 0, r->smp));
    if (gt_penalties_active(&o->pen) || o->logprobs > 0)
        GT_TRY(gt_coord_set_extras(c, 0, &o->pen, o->logprobs));
    bool spec = gt_spec_enabled(&o->spec);
    if (spec) GT_TRY(gt_spec_create(c, &o->spec, &r->spec));
    GT_TRY(setup_constraint(o, c, r, (int)V));

    uint64_t t0 = gt_now_ns();
    int32_t buf[66]; /* tokens drawn, not yet printed: one, or a speculation step's */
    int n_buf = 1, at = 0;
    if (spec) GT_TRY(gt_spec_start(r->spec, 0, r->smp, prompt, n_prompt, r->full, &buf[0]));
    else GT_TRY(gt_coord_prefill(c, 0, prompt, n_prompt, r->full));
    uint64_t t1 = gt_now_ns();
    if (o->logits_out) GT_TRY(write_logits(o->logits_out, r->full, (size_t)n_prompt * V));

    int n_gen = 0;
    int32_t seq0 = 0, tok = -1;
    if (!spec && o->n_predict > 0) {
        GT_TRY(gt_coord_next_token(c, 0, &buf[0]));
        GT_TRY(keep_logprobs(o, c, r, buf[0]));
    }
    for (long i = 0; i < o->n_predict; i++) {
        if (at == n_buf) { /* everything drawn is printed: the next step */
            at = 0;
            if (spec) {
                GT_TRY(gt_spec_round(r->spec, (int)(o->n_predict - i), buf, &n_buf));
            } else {
                n_buf = 1;
                GT_TRY(gt_coord_decode(c, 1, &seq0, &tok));
                GT_TRY(gt_coord_next_token(c, 0, &buf[0]));
                GT_TRY(keep_logprobs(o, c, r, buf[0]));
            }
        }
        tok = buf[at++];
        n_gen++;
        bool stop = false;
        if (o->print_ids) printf(i ? " %d" : "%d", tok);
        else stop = gt_text_print(r->text, tok, stdout);
        fflush(stdout);
        if (!o->ignore_eos && (stop || gt_text_is_eog(r->text, tok))) break;
    }
    uint64_t t2 = gt_now_ns();
    if (!o->print_ids) gt_text_flush(r->text, stdout);
    if (o->n_predict > 0) printf("\n");
    fflush(stdout);
    double pf = (double)(t1 - t0) * 1e-9, dc = (double)(t2 - t1) * 1e-9;
    /* n_gen sampled tokens took n_gen - 1 forward passes. */
    fprintf(stderr, "prefill: %d tokens in %.3f s (%.2f tok/s); decode: %d tokens in %.3f s (%.2f tok/s); "
            "%s x%d threads", n_prompt, pf, n_prompt / (pf > 0 ? pf : 1e-9), n_gen, dc,
            n_gen > 1 ? (n_gen - 1) / (dc > 0 ? dc : 1e-9) : 0.0,
            gt_kernels_isa(gt_engine_kernels(gt_rank_engine(rk))), o->job.eng.n_threads);
    if (gt_rank_world_size(rk) > 1)
        fprintf(stderr, "; %d ranks (tp %d x pp %d)", gt_rank_world_size(rk), gt_rank_shard(rk)->grid.tp,
                gt_rank_shard(rk)->grid.pp);
    fprintf(stderr, "\n");
    print_logprobs(o, r);
    if (spec) {
        gt_spec_stats ss = gt_spec_get_stats(r->spec);
        fprintf(stderr, "speculation: %llu verification steps, %llu of %llu drafted tokens accepted (%.1f%%), "
                "%.2f tokens per step\n", (unsigned long long)ss.steps, (unsigned long long)ss.accepted,
                (unsigned long long)ss.drafted, ss.drafted ? 100.0 * (double)ss.accepted / (double)ss.drafted : 0.0,
                ss.steps ? (double)ss.emitted / (double)ss.steps : 0.0);
    }
    if (r->cons && r->grammar) {
        gt_constraint_stats cs = gt_constraint_get_stats(r->cons);
        fprintf(stderr, "grammar: %llu tokens drawn, %llu full masks; %.3f ms checking tokens, %.3f ms in masks "
                "(%.3f ms per token)\n", (unsigned long long)cs.draws, (unsigned long long)cs.masks,
                (double)cs.check_ns * 1e-6, (double)cs.mask_ns * 1e-6,
                cs.draws ? (double)(cs.check_ns + cs.mask_ns) * 1e-6 / (double)cs.draws : 0.0);
    }
    if (o->expert_stats_out) {
        int l0, nl, ne;
        const uint64_t *counts = gt_engine_expert_counts(gt_rank_engine(rk), &l0, &nl, &ne);
        if (!counts)
            return gt_fail(GT_ERR_INVALID_ARG, "--expert-stats-out: the model has no routed experts");
        GT_TRY(gt_expert_stats_write(o->expert_stats_out, l0, nl, ne, counts));
    }
    return GT_OK;
}

static gt_status run_lead(gt_coord *c, void *opts) {
    run_state r = {0};
    gt_status st = generate(opts, c, &r);
    run_state_free(&r);
    return st;
}

int gt_cmd_run(int argc, char **argv) {
    run_opts o = {.job = GT_RANK_CONFIG_INIT,
                  .samp = GT_SAMPLER_CONFIG_INIT,
                  .n_predict = 32,
                  .spec = GT_SPEC_CONFIG_INIT,
                  .length_penalty = 1.0f,
                  .pen = {1.0f, 0.0f, 0.0f}};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) {
        gt_flags_free(&k_spec, &o);
        return rc;
    }
    gt_rank_config rk = o.job;
    rk.max_cand = o.samp.temperature <= 0 ? 1 : (o.samp.top_k > 0 ? o.samp.top_k : 1);
    rk.max_out_rows = o.logits_out ? o.job.eng.max_batch_tokens : o.beams > 1 ? o.beams : 1;
    if (gt_spec_enabled(&o.spec) && rk.max_out_rows < gt_spec_rows(&o.spec)) rk.max_out_rows = gt_spec_rows(&o.spec);
    o.spec.n_threads = o.job.eng.n_threads;
    rc = gt_verb_run("run", &rk, &o, run_lead);
    gt_flags_free(&k_spec, &o);
    return rc;
}
