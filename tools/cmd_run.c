/* `gantry run`: generate from a prompt on one rank.
 *
 * The prompt is evaluated in micro-batches of --ubatch tokens (one forward
 * call each, so prefill is a GEMM), then tokens are decoded one at a time.
 * --logits-out writes the logits of every prompt position, so any tool can
 * compare them with its own reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/timer.h"
#include "coordinator/sampler.h"
#include "tools/args.h"
#include "tools/cmds.h"
#include "tools/verb.h"
#include "tools/text.h"
#include "worker/engine.h"

typedef struct run_opts {
    gt_engine_config eng;
    gt_sampler_config samp;
    const char *prompt;
    const char *prompt_file;
    int32_t *tokens;
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
    long tp, pp;
    double comm_timeout;
} run_opts;

static void usage(void) {
    printf("usage: gantry run -m FILE (-p TEXT | -f FILE | --tokens 1,2,3) [-n N] [options]\n"
           "  -m, --model FILE      GGUF model\n"
           "  -p, --prompt TEXT     prompt text (tokenized with the model's vocabulary)\n"
           "  -f, --file FILE       prompt text from a file\n"
           "  --tokens IDS          prompt as comma-separated token ids\n"
           "  -n, --n-predict N     tokens to generate (default 32; 0 only evaluates the prompt)\n"
           "  --temp T              temperature (default 0: greedy)\n"
           "  --top-k K             keep the K most likely tokens (default 40; 0: all)\n"
           "  --top-p P             nucleus sampling threshold (default 0.95)\n"
           "  --seed S              sampling seed (default 1234)\n"
           "  -t, --threads N       compute threads (default 1)\n"
           "  --isa NAME            kernels: auto, avx512, avx2, ref\n"
           "  -c, --ctx N           context length (default min(model, 4096))\n"
           "  --ubatch N            prompt tokens per forward call (default 512)\n"
           "  --kv-type T           KV cache type: f16 (default) or f32\n"
           "  --logits-out FILE     write prompt logits, float32 [n_prompt, n_vocab]\n"
           "  --print-ids           print the generated token ids on one line\n"
           "  --ignore-eos          keep generating after an end-of-generation token\n"
           "  --no-bos              do not add the BOS token to a text prompt\n"
           "  --chat                format the prompt as a user turn with the model's chat template\n"
           "  --system TEXT         system message for --chat\n"
           "  --chat-format NAME    chat format instead of the GGUF's template (chatml, gemma, llama3, ...)\n"
           "  --tp N, --pp N        tensor and pipeline parallel sizes under mpirun (default: tp = ranks)\n"
           "  --comm-timeout S      end the job when a collective or receive waits longer (default 300)\n"
           "  --sp-min-tokens N     split prompt batches of at least N tokens along the sequence over\n"
           "                        the stage group (sequence parallelism; default 0: off)\n");
}

static gt_status parse(int argc, char **argv, run_opts *o, bool *help) {
    gt_args a;
    gt_args_init(&a, argc, argv);
    const char *arg;
    long v;
    double d;
    while (gt_args_next(&a, &arg)) {
        if (gt_args_is(&a, "-h", "--help")) *help = true;
        else if (gt_args_is(&a, "-m", "--model")) GT_TRY(gt_args_str(&a, &o->eng.model_path));
        else if (gt_args_is(&a, "-p", "--prompt")) GT_TRY(gt_args_str(&a, &o->prompt));
        else if (gt_args_is(&a, "-f", "--file")) GT_TRY(gt_args_str(&a, &o->prompt_file));
        else if (gt_args_is(&a, NULL, "--tokens")) {
            free(o->tokens);
            GT_TRY(gt_args_int_list(&a, &o->tokens, &o->n_tokens));
        } else if (gt_args_is(&a, "-n", "--n-predict")) GT_TRY(gt_args_long(&a, 0, 1 << 20, &o->n_predict));
        else if (gt_args_is(&a, NULL, "--temp")) {
            GT_TRY(gt_args_double(&a, 0, 100, &d));
            o->samp.temperature = (float)d;
        } else if (gt_args_is(&a, NULL, "--top-k")) {
            GT_TRY(gt_args_long(&a, 0, 1 << 24, &v));
            o->samp.top_k = (int)v;
        } else if (gt_args_is(&a, NULL, "--top-p")) {
            GT_TRY(gt_args_double(&a, 0, 1, &d));
            o->samp.top_p = (float)d;
        } else if (gt_args_is(&a, NULL, "--seed")) {
            GT_TRY(gt_args_long(&a, 0, 0x7fffffffl, &v));
            o->samp.seed = (uint64_t)v;
        } else if (gt_args_is(&a, "-t", "--threads")) {
            GT_TRY(gt_args_long(&a, 1, 1024, &v));
            o->eng.n_threads = (int)v;
        } else if (gt_args_is(&a, NULL, "--isa")) GT_TRY(gt_args_str(&a, &o->eng.isa));
        else if (gt_args_is(&a, "-c", "--ctx")) {
            GT_TRY(gt_args_long(&a, 1, 1 << 22, &v));
            o->eng.n_ctx = (uint32_t)v;
        } else if (gt_args_is(&a, NULL, "--ubatch")) GT_TRY(gt_args_long(&a, 1, 16384, &o->ubatch));
        else if (gt_args_is(&a, NULL, "--kv-type")) {
            const char *s;
            GT_TRY(gt_args_str(&a, &s));
            if (!gt_dtype_parse(s, &o->eng.kv_type) || (o->eng.kv_type != GT_F16 && o->eng.kv_type != GT_F32))
                return gt_fail(GT_ERR_INVALID_ARG, "--kv-type takes f16 or f32, not '%s'", s);
        } else if (gt_args_is(&a, NULL, "--logits-out")) GT_TRY(gt_args_str(&a, &o->logits_out));
        else if (gt_args_is(&a, NULL, "--print-ids")) o->print_ids = true;
        else if (gt_args_is(&a, NULL, "--ignore-eos")) o->ignore_eos = true;
        else if (gt_args_is(&a, NULL, "--no-bos")) o->no_bos = true;
        else if (gt_args_is(&a, NULL, "--chat")) o->chat = true;
        else if (gt_args_is(&a, NULL, "--tp")) GT_TRY(gt_args_long(&a, 1, 4096, &o->tp));
        else if (gt_args_is(&a, NULL, "--pp")) GT_TRY(gt_args_long(&a, 1, 4096, &o->pp));
        else if (gt_args_is(&a, NULL, "--sp-min-tokens")) {
            GT_TRY(gt_args_long(&a, 0, 1 << 20, &v));
            o->eng.sp_min_tokens = (int)v;
        } else if (gt_args_is(&a, NULL, "--comm-timeout")) {
            GT_TRY(gt_args_double(&a, 0.1, 1e6, &d));
            o->comm_timeout = d;
        }
        else if (gt_args_is(&a, NULL, "--system")) GT_TRY(gt_args_str(&a, &o->system));
        else if (gt_args_is(&a, NULL, "--chat-format")) {
            GT_TRY(gt_args_str(&a, &o->chat_format));
            o->chat = true;
        }
        else return gt_args_unknown(&a);
    }
    if (*help) return GT_OK;
    if (!o->eng.model_path) return gt_fail(GT_ERR_INVALID_ARG, "no model given (-m FILE)");
    int sources = !!o->prompt + !!o->prompt_file + !!o->tokens;
    if (sources != 1)
        return gt_fail(GT_ERR_INVALID_ARG, "give exactly one prompt: -p TEXT, -f FILE or --tokens IDS");
    return GT_OK;
}

static gt_status write_logits(const char *path, const float *logits, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return gt_fail(GT_ERR_IO, "%s: cannot open for writing", path);
    size_t w = fwrite(logits, sizeof(float), n, f);
    if (fclose(f) != 0 || w != n) return gt_fail(GT_ERR_IO, "%s: write failed", path);
    return GT_OK;
}

typedef struct run_state {
    gt_text *text;
    gt_sampler *smp;
    float *full;
    int32_t *prompt_owned;
} run_state;

static void run_state_free(run_state *r) {
    gt_sampler_destroy(r->smp);
    free(r->full);
    free(r->prompt_owned);
    gt_text_close(r->text);
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
    GT_TRY(gt_sampler_create(&o->samp, (int)V, &r->smp));
    GT_TRY(gt_coord_set_sampler(c, 0, r->smp));

    uint64_t t0 = gt_now_ns();
    GT_TRY(gt_coord_prefill(c, 0, prompt, n_prompt, r->full));
    uint64_t t1 = gt_now_ns();
    if (o->logits_out) GT_TRY(write_logits(o->logits_out, r->full, (size_t)n_prompt * V));

    int n_gen = 0;
    int32_t seq0 = 0;
    for (long i = 0; i < o->n_predict; i++) {
        int32_t tok;
        GT_TRY(gt_coord_next_token(c, 0, &tok));
        n_gen++;
        bool stop = false;
        if (o->print_ids) printf(i ? " %d" : "%d", tok);
        else stop = gt_text_print(r->text, tok, stdout);
        fflush(stdout);
        if (!o->ignore_eos && (stop || gt_text_is_eog(r->text, tok))) break;
        if (i + 1 == o->n_predict) break;
        GT_TRY(gt_coord_decode(c, 1, &seq0, &tok));
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
            gt_kernels_isa(gt_engine_kernels(gt_rank_engine(rk))), o->eng.n_threads);
    if (gt_rank_world_size(rk) > 1)
        fprintf(stderr, "; %d ranks (tp %d x pp %d)", gt_rank_world_size(rk), gt_rank_shard(rk)->grid.tp,
                gt_rank_shard(rk)->grid.pp);
    fprintf(stderr, "\n");
    return GT_OK;
}

static gt_status run_lead(gt_coord *c, void *opts) {
    run_state r = {0};
    gt_status st = generate(opts, c, &r);
    run_state_free(&r);
    return st;
}

int gt_cmd_run(int argc, char **argv) {
    run_opts o = {.eng = GT_ENGINE_CONFIG_INIT, .samp = GT_SAMPLER_CONFIG_INIT, .n_predict = 32};
    bool help = false;
    gt_status st = parse(argc, argv, &o, &help);
    if (st == GT_OK && help) {
        usage();
        free(o.tokens);
        return 0;
    }
    if (st != GT_OK) {
        free(o.tokens);
        return gt_args_report("run", st);
    }
    if (o.ubatch > 0) o.eng.max_batch_tokens = (int)o.ubatch;
    gt_rank_config rc = GT_RANK_CONFIG_INIT;
    rc.eng = o.eng;
    rc.tp = (int)o.tp;
    rc.pp = (int)o.pp;
    rc.comm_timeout_s = o.comm_timeout;
    rc.max_cand = o.samp.temperature <= 0 ? 1 : (o.samp.top_k > 0 ? o.samp.top_k : 1);
    rc.max_out_rows = o.logits_out ? o.eng.max_batch_tokens : 1;
    int rc_exit = gt_verb_run("run", &rc, &o, run_lead);
    free(o.tokens);
    return rc_exit;
}
