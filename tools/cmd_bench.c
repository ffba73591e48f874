/* `gantry bench`: offline prefill and decode speed of one model on one rank,
 * reported beside the memory bandwidth measured in the same rounds.
 *
 * Each round measures read bandwidth, prefills --prompt tokens (seeded random
 * ids) for each of --batch sequences, then decodes --gen steps of --batch
 * tokens. Decode is memory-bound, so its roofline is bandwidth / bytes read
 * per step (every weight once, plus the KV cache the step attends over).
 * Rounds interleave the measurements because this host is shared and noisy;
 * best and median are reported, optionally as JSON. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/timer.h"
#include "coordinator/sampler.h"
#include "tools/bandwidth.h"
#include "tools/cmds.h"
#include "tools/dist.h"
#include "tools/flags.h"
#include "common/trace.h"
#include "worker/engine.h"

typedef struct bench_opts {
    gt_engine_config eng;
    long n_prompt, n_gen, batch, rounds;
    long bw_mib;
    const char *json;
    const char *trace;
    unsigned seed;
    long tp, pp;
} bench_opts;

typedef struct round_result {
    double bw, prefill_tps, decode_tps, roofline_frac;
    double step_bytes; /* bytes one decode step reads: weights + the KV attended over */
    double decode_comm_s, decode_s; /* this rank: time in collectives / in all of decode */
    double bytes_sent_per_token;    /* this rank's collective payload per decoded token */
} round_result;

#define O(f) offsetof(bench_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(eng.model_path), .metavar = "FILE", .help = "GGUF model",
     .required = "no model given (-m FILE)"},
    {"-t", "--threads", GT_FLAG_INT, O(eng.n_threads), .lo = 1, .hi = 1024, .metavar = "N",
     .help = "compute threads (default 1)"},
    {NULL, "--prompt", GT_FLAG_LONG, O(n_prompt), .lo = 1, .hi = 16384, .metavar = "N",
     .help = "prompt tokens per sequence (default 512)"},
    {NULL, "--gen", GT_FLAG_LONG, O(n_gen), .lo = 1, .hi = 16384, .metavar = "N",
     .help = "decode steps (default 64)"},
    {NULL, "--batch", GT_FLAG_LONG, O(batch), .lo = 1, .hi = 256, .metavar = "B",
     .help = "sequences decoded together (default 1)"},
    {NULL, "--rounds", GT_FLAG_LONG, O(rounds), .lo = 1, .hi = 100, .metavar = "R",
     .help = "measurement rounds (default 3)"},
    {NULL, "--isa", GT_FLAG_STR, O(eng.isa), .metavar = "NAME", .help = "kernels: auto, avx512, avx2, ref"},
    {NULL, "--bw-mib", GT_FLAG_LONG, O(bw_mib), .lo = 16, .hi = 65536, .metavar = "N",
     .help = "bandwidth test buffer in MiB (default 1024)"},
    {NULL, "--json", GT_FLAG_STR, O(json), .metavar = "FILE",
     .help = "also write the results as JSON ('-' for stdout)"},
    {NULL, "--tp", GT_FLAG_LONG, O(tp), .lo = 1, .hi = 4096, .metavar = "N",
     .help = "tensor parallel size under mpirun (default: tp = ranks); adds per-rank compute and\n"
             "communication time and bytes sent per decoded token"},
    {NULL, "--pp", GT_FLAG_LONG, O(pp), .lo = 1, .hi = 4096, .metavar = "N",
     .help = "pipeline parallel size under mpirun (default 1)"},
    {NULL, "--sp-min-tokens", GT_FLAG_INT, O(eng.sp_min_tokens), .lo = 0, .hi = 1 << 20, .metavar = "N",
     .help = "sequence parallelism for prompt batches of at least N tokens"},
    {NULL, "--trace", GT_FLAG_STR, O(trace), .metavar = "PREFIX",
     .help = "write PREFIX.rankR.json, Chrome trace events of the last round\n"
             "(per layer, per collective), for Perfetto"},
};
#undef O

static const gt_flag_spec k_spec = {
    .verb = "bench",
    .synopsis = "-m FILE [options]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void best_median(const round_result *r, int n, size_t field, double *best, double *median) {
    double v[100];
    for (int i = 0; i < n; i++) v[i] = *(const double *)((const char *)&r[i] + field);
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    *best = v[n - 1];
    *median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The stored type holding most of the model's bytes ("Q4_0"). */
static const char *main_type(const gt_gguf *g) {
    uint64_t by[GT_DTYPE_MAX] = {0};
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        if ((unsigned)t->type < GT_DTYPE_MAX) by[t->type] += t->nbytes;
    }
    int best = 0;
    for (int t = 1; t < GT_DTYPE_MAX; t++)
        if (by[t] > by[best]) best = t;
    return gt_dtype_name((uint32_t)best);
}

static gt_status one_round(gt_engine *e, gt_dist *d, gt_sampler *smp, const bench_opts *o,
                           gt_bandwidth *bw, round_result *r) {
    const gt_hparams *hp = gt_engine_hparams(e);
    int B = (int)o->batch, P = (int)o->n_prompt, G = (int)o->n_gen;
    int64_t v0, V;
    gt_engine_vocab_slice(e, &v0, &V);
    int n_max = P > B ? P : B;
    int32_t *tok = malloc((size_t)n_max * sizeof *tok), *pos = malloc((size_t)n_max * sizeof *pos);
    int32_t *seq = malloc((size_t)n_max * sizeof *seq);
    float *logits = malloc((size_t)B * V * sizeof *logits);
    gt_status st = GT_OK;
    if (!tok || !pos || !seq || !logits) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate the benchmark batch");
        goto done;
    }
    r->bw = gt_bandwidth_read(bw, gt_kernels_pool(gt_engine_kernels(e)), 3);
    unsigned rng = o->seed;
    for (int s = 0; s < B; s++) gt_engine_seq_clear(e, s);
    uint64_t t0 = gt_now_ns();
    for (int s = 0; s < B; s++) {
        for (int i = 0; i < P; i++) {
            rng = rng * 1103515245u + 12345u;
            tok[i] = (int32_t)((rng >> 8) % hp->n_vocab);
            pos[i] = i;
            seq[i] = s;
        }
        gt_batch b = {P, tok, pos, seq, NULL};
        GT_TRY_GOTO(gt_engine_decode(e, &b, logits + (size_t)s * V), st, done);
    }
    /* The first tokens come from the prefill's logits: on a pipeline the
     * first stage only has them once the last stage has finished, so they
     * belong to the prefill's time, not to decode's. */
    for (int s = 0; s < B; s++) GT_TRY_GOTO(gt_dist_next_token(d, e, smp, logits + (size_t)s * V, &tok[s]), st, done);
    uint64_t t1 = gt_now_ns();
    if (d->par) gt_par_reset_stats(d->par);
    int8_t want[256];
    memset(want, 1, sizeof want);
    for (int g = 0; g < G; g++) {
        for (int s = 0; s < B; s++) {
            pos[s] = P + g;
            seq[s] = s;
        }
        gt_batch b = {B, tok, pos, seq, want};
        GT_TRY_GOTO(gt_engine_decode(e, &b, logits), st, done);
        for (int s = 0; s < B; s++)
            GT_TRY_GOTO(gt_dist_next_token(d, e, smp, logits + (size_t)s * V, &tok[s]), st, done);
    }
    uint64_t t2 = gt_now_ns();
    if (d->par) {
        const gt_par_stats *ps = gt_par_get_stats(d->par);
        r->decode_comm_s = ps->comm_s;
        r->bytes_sent_per_token = (double)ps->bytes_sent / ((double)G * B);
    }
    double pf = (double)(t1 - t0) * 1e-9, dc = (double)(t2 - t1) * 1e-9;
    r->decode_s = dc;
    r->prefill_tps = (double)P * B / pf;
    r->decode_tps = (double)G * B / dc;
    /* Bytes one decode step reads: all weights, plus K and V of every
     * layer over the average attended length, for each sequence. */
    double kv_row = (double)hp->n_head_kv * hp->head_dim * (o->eng.kv_type == GT_F16 ? 2 : 4);
    double kv_bytes = 2.0 * hp->n_layer * kv_row * (P + G / 2.0) * B;
    double step_bytes = (double)gt_engine_weight_bytes(e) + kv_bytes;
    double steps_per_s = (double)G / dc;
    r->roofline_frac = steps_per_s * step_bytes / r->bw;
    r->step_bytes = step_bytes;
done:
    free(tok);
    free(pos);
    free(seq);
    free(logits);
    return st;
}

/* Rank 0 prints every rank's compute / communication split of decode. */
static gt_status report_ranks(gt_dist *d, const round_result *r) {
    if (!d->par) return GT_OK;
    float mine[4] = {(float)r->decode_s, (float)r->decode_comm_s, (float)r->bytes_sent_per_token, 0};
    float *all = malloc((size_t)d->size * 4 * sizeof *all);
    if (!all) return gt_fail(GT_ERR_NOMEM, "cannot gather per-rank statistics");
    gt_status st = gt_comm_allgather(d->world, mine, all, 4, GT_F32, "bench statistics");
    if (st == GT_OK && gt_dist_prints(d)) {
        printf("per rank, decode of the last round:\n%5s %6s %4s %10s %12s %8s %16s\n", "rank", "stage",
               "tp", "decode s", "collectives s", "comm %", "bytes sent/token");
        for (int i = 0; i < d->size; i++) {
            const gt_grid *g = &d->plan.shards[i].grid;
            printf("%5d %6d %4d %10.3f %12.3f %7.1f%% %16.0f\n", i, g->stage, g->tp_rank, all[4 * i],
                   all[4 * i + 1], 100.0 * all[4 * i + 1] / (all[4 * i] > 0 ? all[4 * i] : 1),
                   all[4 * i + 2]);
        }
    }
    free(all);
    return st;
}

static gt_status bench(const bench_opts *o, gt_dist *d, gt_engine_config *ec) {
    gt_engine *e = NULL;
    gt_sampler *smp = NULL;
    gt_bandwidth bw = {0};
    round_result r[100];
    gt_status st;
    bool out = gt_dist_prints(d);
    GT_TRY_GOTO(gt_engine_create(ec, &e), st, done);
    GT_TRY_GOTO(gt_bandwidth_init(&bw, (size_t)o->bw_mib << 20), st, done);
    gt_sampler_config sc = GT_SAMPLER_CONFIG_INIT;
    sc.temperature = 0; /* greedy: the benchmark measures the engine, not the sampler */
    GT_TRY_GOTO(gt_sampler_create(&sc, (int)gt_engine_hparams(e)->n_vocab, &smp), st, done);
    const gt_hparams *hp = gt_engine_hparams(e);
    const char *type = main_type(gt_engine_gguf(e));
    if (out) {
        printf("model %s: %s %s, %u layers, embd %u, weights read per token %.1f MiB; %s x%d threads",
               o->eng.model_path, hp->arch_name, type, hp->n_layer, hp->n_embd,
               (double)gt_engine_weight_bytes(e) / (1 << 20), gt_kernels_isa(gt_engine_kernels(e)),
               o->eng.n_threads);
        if (d->par) printf("; rank 0 of %d (tp %d x pp %d)", d->size, d->shard->grid.tp, d->shard->grid.pp);
        printf("\n%5s %10s %14s %14s %10s\n", "round", "bw GB/s", "prefill tok/s", "decode tok/s", "roofline");
    }
    for (int i = 0; i < o->rounds; i++) {
        if (o->trace && i == o->rounds - 1) gt_trace_enable(d->rank);
        GT_TRY_GOTO(one_round(e, d, smp, o, &bw, &r[i]), st, done);
        if (out)
            printf("%5d %10.1f %14.1f %14.2f %9.0f%%\n", i + 1, r[i].bw * 1e-9, r[i].prefill_tps,
                   r[i].decode_tps, 100 * r[i].roofline_frac);
        fflush(stdout);
    }
    if (o->trace) {
        char path[1024];
        snprintf(path, sizeof path, "%s.rank%d.json", o->trace, d->rank);
        GT_TRY_GOTO(gt_trace_write(path), st, done);
    }
    GT_TRY_GOTO(report_ranks(d, &r[o->rounds - 1]), st, done);
    if (!out) goto done;
    int n = (int)o->rounds;
    double bwb, bwm, pb, pm, db, dm, fb, fm;
    best_median(r, n, offsetof(round_result, bw), &bwb, &bwm);
    best_median(r, n, offsetof(round_result, prefill_tps), &pb, &pm);
    best_median(r, n, offsetof(round_result, decode_tps), &db, &dm);
    best_median(r, n, offsetof(round_result, roofline_frac), &fb, &fm);
    printf("bytes read per decode step: %.1f MiB (weights %.1f MiB + KV cache)%s\n",
           r[0].step_bytes / (1 << 20), (double)gt_engine_weight_bytes(e) / (1 << 20),
           d->par ? " on rank 0" : "");
    printf("best/median: bandwidth %.1f/%.1f GB/s, prefill %.1f/%.1f tok/s, decode %.2f/%.2f tok/s, "
           "decode at %.0f%%/%.0f%% of the bandwidth roofline%s\n", bwb * 1e-9, bwm * 1e-9, pb, pm,
           db, dm, 100 * fb, 100 * fm, d->par ? " (rank 0's shard and bandwidth)" : "");
    if (o->json) {
        FILE *f = strcmp(o->json, "-") == 0 ? stdout : fopen(o->json, "w");
        if (!f) {
            st = gt_fail(GT_ERR_IO, "%s: cannot open for writing", o->json);
            goto done;
        }
        const round_result *last = &r[n - 1];
        fputs("{\"model\": ", f);
        gt_json_write_str(f, o->eng.model_path);
        fputs(", \"arch\": ", f);
        gt_json_write_str(f, hp->arch_name);
        fputs(", \"type\": ", f);
        gt_json_write_str(f, type);
        fputs(", \"isa\": ", f);
        gt_json_write_str(f, gt_kernels_isa(gt_engine_kernels(e)));
        fprintf(f, ", \"threads\": %d, \"ranks\": %d, \"tp\": %d, \"pp\": %d, \"n_prompt\": %ld, "
                "\"n_gen\": %ld, \"batch\": %ld, \"rounds\": %ld, "
                "\"weight_bytes\": %llu, \"bytes_per_decode_step\": %.0f, \"bandwidth_gbs\": {\"best\": %.2f, \"median\": %.2f}, "
                "\"prefill_tps\": {\"best\": %.2f, \"median\": %.2f}, "
                "\"decode_tps\": {\"best\": %.3f, \"median\": %.3f}, "
                "\"decode_roofline_fraction\": {\"best\": %.3f, \"median\": %.3f}, "
                "\"rank0_decode_comm_fraction\": %.3f, \"rank0_bytes_sent_per_token\": %.0f}\n",
                o->eng.n_threads, d->size, d->par ? d->shard->grid.tp : 1, d->par ? d->shard->grid.pp : 1,
                o->n_prompt, o->n_gen, o->batch, o->rounds,
                (unsigned long long)gt_engine_weight_bytes(e), r[0].step_bytes, bwb * 1e-9, bwm * 1e-9, pb, pm, db, dm,
                fb, fm, last->decode_s > 0 ? last->decode_comm_s / last->decode_s : 0.0,
                last->bytes_sent_per_token);
        if (f != stdout) fclose(f);
    }
done:
    gt_sampler_destroy(smp);
    gt_bandwidth_free(&bw);
    gt_engine_destroy(e);
    return st;
}

int gt_cmd_bench(int argc, char **argv) {
    bench_opts o = {.eng = GT_ENGINE_CONFIG_INIT, .n_prompt = 512, .n_gen = 64, .batch = 1,
                    .rounds = 3, .bw_mib = 1024, .seed = 42};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    gt_engine_config ec = o.eng;
    ec.max_seqs = (int)o.batch;
    ec.max_batch_tokens = (int)(o.n_prompt > o.batch ? o.n_prompt : o.batch);
    if (!ec.n_ctx) ec.n_ctx = (uint32_t)(o.n_prompt + o.n_gen);
    gt_dist d;
    gt_status st = gt_dist_init(&d, NULL, NULL, (int)o.tp, (int)o.pp, &ec);
    if (st != GT_OK) gt_dist_fail(&d, "bench", st, false);
    st = bench(&o, &d, &ec);
    if (st != GT_OK && d.active && d.size > 1) gt_dist_fail(&d, "bench", st, true);
    gt_dist_finalize(&d);
    return st == GT_OK ? 0 : gt_flags_report("bench", st);
}
