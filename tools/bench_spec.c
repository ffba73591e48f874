/* `gantry bench --lookup/--draft/--self-draft`: the speed-up of speculative
 * decoding over plain decode, both measured in every round on the same
 * prompt, so the ratio holds on a shared, noisy host even when the absolute
 * speeds do not. Greedy, so the two outputs must be equal token for token;
 * a difference is reported as a failure. */
#include "tools/bench_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timer.h"
#include "coordinator/text.h"

typedef struct spec_round {
    double plain_tps, spec_tps, speedup, accept_rate, tokens_per_step, accepted_per_step;
} spec_round;

static gt_status plain_decode(gt_coord *c, const int32_t *prompt, int n, int G, int32_t *out,
                              double *s) {
    GT_TRY(gt_coord_free_seq(c, 0));
    GT_TRY(gt_coord_prefill(c, 0, prompt, n, NULL));
    GT_TRY(gt_coord_next_token(c, 0, &out[0]));
    int32_t seq = 0;
    uint64_t t0 = gt_now_ns();
    for (int i = 1; i < G; i++) {
        GT_TRY(gt_coord_decode(c, 1, &seq, &out[i - 1]));
        GT_TRY(gt_coord_next_token(c, 0, &out[i]));
    }
    *s = (double)(gt_now_ns() - t0) * 1e-9;
    return gt_coord_free_seq(c, 0);
}

static gt_status spec_decode(gt_coord *c, gt_spec *sp, gt_sampler *smp, const int32_t *prompt,
                             int n, int G, int32_t *out, double *s) {
    GT_TRY(gt_coord_free_seq(c, 0));
    GT_TRY(gt_spec_start(sp, 0, smp, prompt, n, NULL, &out[0]));
    gt_spec_reset_stats(sp);
    uint64_t t0 = gt_now_ns();
    for (int got = 1, m; got < G; got += m) GT_TRY(gt_spec_round(sp, G - got, out + got, &m));
    *s = (double)(gt_now_ns() - t0) * 1e-9;
    return gt_coord_free_seq(c, 0);
}

static gt_status load_prompt(gt_coord *c, const gt_bench_spec_opts *o, int32_t **ids, int *n) {
    gt_rank *rk = gt_coord_rank(c);
    if (!o->prompt_file) {
        uint32_t V = gt_rank_hparams(rk)->n_vocab;
        *n = o->n_prompt;
        *ids = malloc((size_t)*n * sizeof **ids);
        if (!*ids) return gt_fail(GT_ERR_NOMEM, "cannot allocate a prompt of %d tokens", *n);
        unsigned rng = o->seed;
        for (int i = 0; i < *n; i++) {
            rng = rng * 1103515245u + 12345u;
            (*ids)[i] = (int32_t)((rng >> 8) % V);
        }
        return GT_OK;
    }
    gt_text *t = NULL;
    GT_TRY(gt_text_open(gt_rank_gguf(rk), &t));
    gt_text_prompt_opts po = {NULL, o->prompt_file, true, o->chat, NULL, NULL};
    gt_status st = gt_text_prompt(t, gt_rank_gguf(rk), &po, ids, n);
    gt_text_close(t);
    return st;
}

gt_status gt_bench_spec(gt_coord *c, const gt_bench_spec_opts *o) {
    int G = o->n_gen, n = 0;
    int32_t *prompt = NULL, *plain = malloc((size_t)G * sizeof *plain),
            *fast = malloc((size_t)(G + 65) * sizeof *fast);
    gt_spec *sp = NULL;
    gt_sampler *smp = NULL;
    spec_round r[100];
    gt_status st = GT_OK;
    if (!plain || !fast) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate %d generated tokens", G);
        goto done;
    }
    GT_TRY_GOTO(load_prompt(c, o, &prompt, &n), st, done);
    if ((uint64_t)n + (uint64_t)G + 1 > gt_coord_n_ctx(c)) {
        st = gt_fail(GT_ERR_RANGE,
                     "the prompt of %d tokens plus %d to generate exceeds the context of %u "
                     "tokens (--ctx)",
                     n, G, gt_coord_n_ctx(c));
        goto done;
    }
    gt_sampler_config sc = GT_SAMPLER_CONFIG_INIT;
    sc.temperature = 0;
    GT_TRY_GOTO(gt_sampler_create(&sc, (int)gt_rank_hparams(gt_coord_rank(c))->n_vocab, &smp), st,
                done);
    GT_TRY_GOTO(gt_coord_set_sampler(c, 0, smp), st, done);
    GT_TRY_GOTO(gt_spec_create(c, &o->spec, &sp), st, done);
    const char *how = o->spec.lookup       ? "prompt lookup"
                      : o->spec.draft_path ? "draft model"
                                           : "self-draft";
    printf("speculation: %s, %d draft tokens per step; prompt %d tokens, %d generated (greedy)\n",
           how, o->spec.draft_tokens, n, G);
    printf("%5s %12s %12s %9s %11s %15s %16s\n", "round", "plain tok/s", "spec tok/s", "speed-up",
           "accepted", "tokens/step", "accepted/step");
    for (int i = 0; i < o->rounds; i++) {
        double tp, ts;
        GT_TRY_GOTO(plain_decode(c, prompt, n, G, plain, &tp), st, done);
        GT_TRY_GOTO(spec_decode(c, sp, smp, prompt, n, G, fast, &ts), st, done);
        for (int j = 0; j < G; j++)
            if (fast[j] != plain[j]) {
                st = gt_fail(GT_ERR_INTERNAL,
                             "speculative decode gave token %d at place %d, plain decode %d",
                             fast[j], j, plain[j]);
                goto done;
            }
        gt_spec_stats ss = gt_spec_get_stats(sp);
        r[i] = (spec_round){(G - 1) / tp,
                            (G - 1) / ts,
                            tp / ts,
                            ss.drafted ? (double)ss.accepted / (double)ss.drafted : 0.0,
                            ss.steps ? (double)ss.emitted / (double)ss.steps : 0.0,
                            ss.steps ? (double)ss.accepted / (double)ss.steps : 0.0};
        printf("%5d %12.2f %12.2f %8.2fx %10.1f%% %15.2f %16.2f\n", i + 1, r[i].plain_tps,
               r[i].spec_tps, r[i].speedup, 100 * r[i].accept_rate, r[i].tokens_per_step,
               r[i].accepted_per_step);
        fflush(stdout);
    }
    double sp_sum = 0, best = 0;
    for (int i = 0; i < o->rounds; i++) {
        sp_sum += r[i].speedup;
        if (r[i].speedup > best) best = r[i].speedup;
    }
    const spec_round *last = &r[o->rounds - 1];
    printf("speed-up best/mean %.2fx/%.2fx; acceptance %.1f%% (accepted draft tokens / drafted), "
           "%.2f accepted "
           "draft tokens and %.2f tokens per verification step; outputs equal to plain decode\n",
           best, sp_sum / o->rounds, 100 * last->accept_rate, last->accepted_per_step,
           last->tokens_per_step);
    if (o->json) {
        FILE *f = strcmp(o->json, "-") == 0 ? stdout : fopen(o->json, "w");
        if (!f) {
            st = gt_fail(GT_ERR_IO, "%s: cannot open for writing", o->json);
            goto done;
        }
        fprintf(f,
                "{\"proposer\": \"%s\", \"draft_tokens\": %d, \"n_prompt\": %d, \"n_gen\": %d, "
                "\"rounds\": %d, "
                "\"speedup\": {\"best\": %.3f, \"mean\": %.3f}, \"acceptance\": %.4f, "
                "\"tokens_per_step\": %.3f, \"accepted_per_step\": %.3f, \"plain_tps\": %.3f, "
                "\"spec_tps\": %.3f}\n",
                how, o->spec.draft_tokens, n, G, o->rounds, best, sp_sum / o->rounds,
                last->accept_rate, last->tokens_per_step, last->accepted_per_step, last->plain_tps,
                last->spec_tps);
        if (f != stdout) fclose(f);
    }
done:
    gt_spec_destroy(sp);
    gt_sampler_destroy(smp);
    free(prompt);
    free(plain);
    free(fast);
    return st;
}
