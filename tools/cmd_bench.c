/* `gantry bench`: offline prefill and decode speed of one model on one rank,
 * reported beside the memory bandwidth measured in the same rounds.
 *
 * Each round measures read bandwidth, prefills --prompt tokens (seeded random
 * ids) for each of --batch sequences, then decodes --gen steps of --batch
 * tokens. Decode is memory-bound, so its roofline is bandwidth / bytes read
 * per step (every weight once, plus the KV cache the step attends over). On
 * an MoE model only the routed experts a step ran count: the dense part
 * (attention, routers, shared experts, head) plus the experts the engine
 * reports it ran during decode, measured, not assumed.
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
#include "tools/bench_spec.h"
#include "tools/cmds.h"
#include "tools/verb.h"
#include "tools/flags.h"
#include "common/trace.h"

typedef struct bench_opts {
    gt_rank_config job; /* the model, engine, grid and limits of the job */
    long n_prompt, n_gen, batch, rounds;
    long bw_mib;
    const char *json;
    const char *trace;
    unsigned seed;
    gt_spec_config spec;
    const char *prompt_file;
    bool chat;
} bench_opts;

typedef struct round_result {
    double bw, prefill_tps, decode_tps, roofline_frac;
    double step_bytes; /* bytes one decode step reads: weights + the KV attended over */
    double expert_step_bytes;       /* MoE: routed experts run per decode step (measured) */
    double decode_s;                /* wall time of decode on rank 0 */
    double comm_fraction;           /* rank 0: time in collectives / its time in decode */
    double bytes_sent_per_token;    /* this rank's collective payload per decoded token */
} round_result;

#define O(f) offsetof(bench_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(job.eng.model_path), .metavar = "FILE", .help = "GGUF model",
     .required = "no model given (-m FILE)"},
    {NULL, "--prompt", GT_FLAG_LONG, O(n_prompt), .lo = 1, .hi = 16384, .metavar = "N",
     .help = "prompt tokens per sequence (default 512)"},
    {NULL, "--gen", GT_FLAG_LONG, O(n_gen), .lo = 1, .hi = 16384, .metavar = "N",
     .help = "decode steps (default 64)"},
    {NULL, "--batch", GT_FLAG_LONG, O(batch), .lo = 1, .hi = 256, .metavar = "B",
     .help = "sequences decoded together (default 1)"},
    {NULL, "--rounds", GT_FLAG_LONG, O(rounds), .lo = 1, .hi = 100, .metavar = "R",
     .help = "measurement rounds (default 3)"},
    {NULL, "--bw-mib", GT_FLAG_LONG, O(bw_mib), .lo = 16, .hi = 65536, .metavar = "N",
     .help = "bandwidth test buffer in MiB (default 1024)"},
    {NULL, "--json", GT_FLAG_STR, O(json), .metavar = "FILE",
     .help = "also write the results as JSON ('-' for stdout)"},
    {NULL, "--sp-min-tokens", GT_FLAG_INT, O(job.eng.sp_min_tokens), .lo = 0, .hi = 1 << 20,
     .metavar = "N", .help = "sequence parallelism for prompt batches of at least N tokens"},
    {NULL, "--trace", GT_FLAG_STR, O(trace), .metavar = "PREFIX",
     .help = "write PREFIX.rankR.json, Chrome trace events of the last round\n"
             "(per layer, its attention over the KV cache, per collective), for Perfetto"},
    {NULL, "--lookup", GT_FLAG_INT, O(spec.lookup), .lo = 1, .hi = 64, .metavar = "N",
     .help = "compare plain decode with prompt-lookup speculation (N-gram)"},
    {NULL, "--draft", GT_FLAG_STR, O(spec.draft_path), .metavar = "FILE",
     .help = "compare plain decode with a draft model's speculation"},
    {NULL, "--self-draft", GT_FLAG_INT, O(spec.self_draft_layers), .lo = 1, .hi = 1 << 16,
     .metavar = "L", .help = "compare plain decode with the first L layers as the draft"},
    {NULL, "--draft-tokens", GT_FLAG_INT, O(spec.draft_tokens), .lo = 1, .hi = 64, .metavar = "K",
     .help = "guesses verified per step when speculating (default 4)"},
    {"-f", "--file", GT_FLAG_STR, O(prompt_file), .metavar = "FILE",
     .help = "speculation: the prompt's text (default: --prompt random ids)"},
    {NULL, "--chat", GT_FLAG_BOOL, O(chat), .help = "speculation: format --file as a chat turn"},
    GT_JOB_FLAGS(bench_opts),
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

static gt_status one_round(gt_coord *c, const bench_opts *o, gt_bandwidth *bw, round_result *r) {
    gt_rank *rk = gt_coord_rank(c);
    gt_engine *e = gt_rank_engine(rk);
    const gt_hparams *hp = gt_rank_hparams(rk);
    int B = (int)o->batch, P = (int)o->n_prompt, G = (int)o->n_gen;
    int n_max = P > B ? P : B;
    int32_t *tok = malloc((size_t)n_max * sizeof *tok), *seq = malloc((size_t)B * sizeof *seq);
    gt_status st = GT_OK;
    *r = (round_result){0};
    if (!tok || !seq) {
        st = gt_fail(GT_ERR_NOMEM, "cannot allocate the benchmark batch");
        goto done;
    }
    r->bw = gt_bandwidth_read(bw, gt_kernels_pool(gt_engine_kernels(e)), 3);
    unsigned rng = o->seed;
    for (int s = 0; s < B; s++) GT_TRY_GOTO(gt_coord_free_seq(c, s), st, done);
    uint64_t t0 = gt_now_ns();
    for (int s = 0; s < B; s++) {
        for (int i = 0; i < P; i++) {
            rng = rng * 1103515245u + 12345u;
            tok[i] = (int32_t)((rng >> 8) % hp->n_vocab);
        }
        GT_TRY_GOTO(gt_coord_prefill(c, s, tok, P, NULL), st, done);
    }
    /* The first tokens come from the prefill's outputs: on a pipeline they
     * exist only once the last stage has finished, so they belong to the
     * prefill's time, not to decode's. */
    for (int s = 0; s < B; s++) {
        seq[s] = s;
        GT_TRY_GOTO(gt_coord_next_token(c, s, &tok[s]), st, done);
    }
    uint64_t dense, held, x0, x1;
    gt_engine_moe_bytes(e, &dense, &held, &x0);
    uint64_t t1 = gt_now_ns();
    gt_coord_reset_stats(c);
    for (int g = 0; g < G; g++) {
        GT_TRY_GOTO(gt_coord_decode(c, B, seq, tok), st, done);
        for (int s = 0; s < B; s++) GT_TRY_GOTO(gt_coord_next_token(c, s, &tok[s]), st, done);
    }
    uint64_t t2 = gt_now_ns();
    gt_engine_moe_bytes(e, &dense, &held, &x1);
    double pf = (double)(t1 - t0) * 1e-9, dc = (double)(t2 - t1) * 1e-9;
    r->decode_s = dc;
    r->prefill_tps = (double)P * B / pf;
    r->decode_tps = (double)G * B / dc;
    /* Bytes one decode step reads: all weights (MoE: the dense ones and the
     * experts the steps ran), plus K and V of every layer over the average
     * attended length, for each sequence. */
    double kv_row = (double)hp->n_head_kv * hp->head_dim * (o->job.eng.kv_type == GT_F32 ? 4 : 2);
    double kv_bytes = 2.0 * hp->n_layer * kv_row * (P + G / 2.0) * B;
    double weights = (double)gt_engine_weight_bytes(e);
    if (hp->n_expert) {
        r->expert_step_bytes = (double)(x1 - x0) / G;
        weights = (double)dense + r->expert_step_bytes;
    }
    double step_bytes = weights + kv_bytes;
    double steps_per_s = (double)G / dc;
    r->roofline_frac = steps_per_s * step_bytes / r->bw;
    r->step_bytes = step_bytes;
done:
    free(tok);
    free(seq);
    return st;
}

/* Every rank's compute / communication split of the last round's decode,
 * and rank 0's own figures for the summary. */
static gt_status report_ranks(gt_coord *c, const bench_opts *o, round_result *r) {
    gt_rank *rk = gt_coord_rank(c);
    int n = gt_rank_world_size(rk);
    gt_rank_counters *all = calloc((size_t)n, sizeof *all);
    if (!all) return gt_fail(GT_ERR_NOMEM, "cannot gather per-rank statistics");
    gt_status st = gt_coord_report(c, o->trace != NULL, all);
    double tokens = (double)o->n_gen * (double)o->batch;
    if (st == GT_OK && n > 1) {
        r->comm_fraction = all[0].busy_s > 0 ? all[0].comm_s / all[0].busy_s : 0.0;
        r->bytes_sent_per_token = all[0].bytes_sent / tokens;
        printf("per rank, decode of the last round:\n%5s %6s %4s %10s %12s %8s %16s\n", "rank", "stage",
               "tp", "decode s", "collectives s", "comm %", "bytes sent/token");
        for (int i = 0; i < n; i++)
            printf("%5d %6d %4d %10.3f %12.3f %7.1f%% %16.0f\n", i, all[i].stage, all[i].tp_rank,
                   all[i].busy_s, all[i].comm_s, 100.0 * all[i].comm_s / (all[i].busy_s > 0 ? all[i].busy_s : 1),
                   all[i].bytes_sent / tokens);
    }
    free(all);
    return st;
}

/* Expert parallelism, decode of the last round: per MoE layer the rows
 * (token, expert pairs) each rank's experts computed, the imbalance
 * (max / mean over the ranks of the layer's stage) and the bytes the
 * all-to-alls moved per decoded token (every rank's sends, rows out and
 * outputs back). Needs a REPORT before (report_ranks). */
static void report_ep(gt_coord *c, const bench_opts *o) {
    gt_rank *rk = gt_coord_rank(c);
    gt_rank_ep_report ep = gt_rank_ep(rk);
    const gt_plan *p = gt_rank_plan(rk);
    if (!ep.rows) return;
    int tp = p->cfg.tp;
    double tokens = (double)o->n_gen * (double)o->batch;
    printf("expert parallelism (ep %d), decode of the last round: rows routed to each rank of the "
           "layer's stage\n%5s %-*s %10s %14s\n", p->cfg.ep, "layer", 9 * tp, "rows per rank",
           "max/mean", "a2a bytes/tok");
    for (int l = 0; l < ep.n_layer; l++) {
        int stage = -1;
        for (int r = 0; r < p->n_ranks && stage < 0; r++)
            if (l >= p->shards[r].layers.begin && l < p->shards[r].layers.end) stage = p->shards[r].grid.stage;
        if (stage < 0) continue;
        double mx = 0, sum = 0, bytes = 0;
        printf("%5d ", l);
        for (int q = 0; q < tp; q++) {
            int r = stage * tp + q;
            double rows = ep.rows[(size_t)r * ep.n_layer + l];
            bytes += ep.a2a_bytes[(size_t)r * ep.n_layer + l];
            sum += rows;
            if (rows > mx) mx = rows;
            printf("%9.0f", rows);
        }
        double mean = sum / tp;
        printf(" %10.2f %14.0f\n", mean > 0 ? mx / mean : 0.0, bytes / tokens);
    }
}

static gt_status bench_spec_lead(gt_coord *c, void *opts) {
    const bench_opts *o = opts;
    gt_bench_spec_opts so = {o->spec, o->prompt_file, o->chat, (int)o->n_prompt, (int)o->n_gen, (int)o->rounds,
                             o->seed, o->json};
    return gt_bench_spec(c, &so);
}

static gt_status bench_lead(gt_coord *c, void *opts) {
    const bench_opts *o = opts;
    gt_rank *rk = gt_coord_rank(c);
    gt_engine *e = gt_rank_engine(rk);
    gt_sampler *smp = NULL;
    gt_bandwidth bw = {0};
    round_result r[100];
    gt_status st;
    bool grid = gt_rank_world_size(rk) > 1;
    const gt_grid *gr = &gt_rank_shard(rk)->grid;
    GT_TRY_GOTO(gt_bandwidth_init(&bw, (size_t)o->bw_mib << 20), st, done);
    gt_sampler_config sc = GT_SAMPLER_CONFIG_INIT;
    sc.temperature = 0; /* greedy: the benchmark measures the engine, not the sampler */
    const gt_hparams *hp = gt_rank_hparams(rk);
    GT_TRY_GOTO(gt_sampler_create(&sc, (int)hp->n_vocab, &smp), st, done);
    for (int s = 0; s < (int)o->batch; s++) GT_TRY_GOTO(gt_coord_set_sampler(c, s, smp), st, done);
    const char *type = main_type(gt_rank_gguf(rk));
    const char *half = gt_kernels_half(gt_engine_kernels(e));
    printf("model %s: %s %s, %u layers, embd %u, weights read per token %.1f MiB; %s x%d threads",
           o->job.eng.model_path, hp->arch_name, type, hp->n_layer, hp->n_embd,
           (double)gt_engine_weight_bytes(e) / (1 << 20), gt_kernels_isa(gt_engine_kernels(e)),
           o->job.eng.n_threads);
    if (strcmp(half, "off")) printf("; F16/BF16 weights in %s products", half);
    if (grid) printf("; rank 0 of %d (tp %d x pp %d%s)", gr->world, gr->tp, gr->pp, gr->ep > 1 ? " with ep" : "");
    uint64_t dense = 0, held = 0, read = 0;
    gt_engine_moe_bytes(e, &dense, &held, &read);
    if (hp->n_expert)
        printf("\nMoE: %u of %u experts per token; per token: attention, routers, shared experts "
               "and head %.1f MiB + the chosen experts %.1f MiB (of %.1f MiB held); the roofline "
               "counts the experts each decode step ran", hp->n_expert_used, hp->n_expert,
               (double)dense / (1 << 20), (double)(gt_engine_weight_bytes(e) - dense) / (1 << 20),
               (double)held / (1 << 20));
    printf("\n%5s %10s %14s %14s %10s\n", "round", "bw GB/s", "prefill tok/s", "decode tok/s", "roofline");
    for (int i = 0; i < o->rounds; i++) {
        if (o->trace && i == o->rounds - 1) gt_coord_trace_on(c);
        GT_TRY_GOTO(one_round(c, o, &bw, &r[i]), st, done);
        printf("%5d %10.1f %14.1f %14.2f %9.0f%%\n", i + 1, r[i].bw * 1e-9, r[i].prefill_tps,
               r[i].decode_tps, 100 * r[i].roofline_frac);
        fflush(stdout);
    }
    GT_TRY_GOTO(report_ranks(c, o, &r[o->rounds - 1]), st, done);
    report_ep(c, o);
    int n = (int)o->rounds;
    double bwb, bwm, pb, pm, db, dm, fb, fm;
    best_median(r, n, offsetof(round_result, bw), &bwb, &bwm);
    best_median(r, n, offsetof(round_result, prefill_tps), &pb, &pm);
    best_median(r, n, offsetof(round_result, decode_tps), &db, &dm);
    best_median(r, n, offsetof(round_result, roofline_frac), &fb, &fm);
    if (hp->n_expert)
        printf("bytes read per decode step: %.1f MiB (dense weights %.1f MiB + routed experts run "
               "%.1f MiB, measured + KV cache)%s\n", r[0].step_bytes / (1 << 20),
               (double)dense / (1 << 20), r[0].expert_step_bytes / (1 << 20), grid ? " on rank 0" : "");
    else
        printf("bytes read per decode step: %.1f MiB (weights %.1f MiB + KV cache)%s\n",
               r[0].step_bytes / (1 << 20), (double)gt_engine_weight_bytes(e) / (1 << 20),
               grid ? " on rank 0" : "");
    printf("best/median: bandwidth %.1f/%.1f GB/s, prefill %.1f/%.1f tok/s, decode %.2f/%.2f tok/s, "
           "decode at %.0f%%/%.0f%% of the bandwidth roofline%s\n", bwb * 1e-9, bwm * 1e-9, pb, pm,
           db, dm, 100 * fb, 100 * fm, grid ? " (rank 0's shard and bandwidth)" : "");
    gt_engine_expert_stats xs = gt_engine_experts(e, -1);
    if (xs.slots)
        printf("expert cache%s, all rounds: %d of %u experts per layer on the device; %llu hits, %llu misses, "
               "%llu evictions, %.1f MiB copied, %.3f s waiting for copies; predicted prefetch %s: "
               "%llu copies, %llu of them routed to\n", grid ? " on rank 0" : "",
               xs.slots, hp->n_expert, (unsigned long long)xs.hits, (unsigned long long)xs.misses,
               (unsigned long long)xs.evictions, (double)xs.bytes_copied / (1 << 20), xs.wait_s,
               o->job.eng.no_expert_prefetch ? "off" : "on", (unsigned long long)xs.prefetched,
               (unsigned long long)xs.prefetch_useful);
    if (o->json) {
        FILE *f = strcmp(o->json, "-") == 0 ? stdout : fopen(o->json, "w");
        if (!f) {
            st = gt_fail(GT_ERR_IO, "%s: cannot open for writing", o->json);
            goto done;
        }
        const round_result *last = &r[n - 1];
        fputs("{\"model\": ", f);
        gt_json_write_str(f, o->job.eng.model_path);
        fputs(", \"arch\": ", f);
        gt_json_write_str(f, hp->arch_name);
        fputs(", \"type\": ", f);
        gt_json_write_str(f, type);
        fputs(", \"isa\": ", f);
        gt_json_write_str(f, gt_kernels_isa(gt_engine_kernels(e)));
        fputs(", \"half_matmul\": ", f);
        gt_json_write_str(f, half);
        fprintf(f, ", \"threads\": %d, \"ranks\": %d, \"tp\": %d, \"pp\": %d, \"n_prompt\": %ld, "
                "\"n_gen\": %ld, \"batch\": %ld, \"rounds\": %ld, "
                "\"weight_bytes\": %llu, \"bytes_per_decode_step\": %.0f, \"bandwidth_gbs\": {\"best\": %.2f, \"median\": %.2f}, "
                "\"prefill_tps\": {\"best\": %.2f, \"median\": %.2f}, "
                "\"decode_tps\": {\"best\": %.3f, \"median\": %.3f}, "
                "\"decode_roofline_fraction\": {\"best\": %.3f, \"median\": %.3f}, "
                "\"rank0_decode_comm_fraction\": %.3f, \"rank0_bytes_sent_per_token\": %.0f, "
                "\"expert_cache\": {\"slots\": %d, \"hits\": %llu, \"misses\": %llu, \"evictions\": %llu, "
                "\"bytes_copied\": %llu, \"wait_s\": %.6f, \"prefetched\": %llu, \"prefetch_useful\": %llu}, "
                "\"moe_dense_bytes\": %llu, \"moe_expert_bytes_held\": %llu, "
                "\"moe_expert_bytes_per_decode_step\": %.0f}\n",
                o->job.eng.n_threads, gr->world, gr->tp, gr->pp,
                o->n_prompt, o->n_gen, o->batch, o->rounds,
                (unsigned long long)gt_engine_weight_bytes(e), r[0].step_bytes, bwb * 1e-9, bwm * 1e-9, pb, pm, db, dm,
                fb, fm, last->comm_fraction,
                last->bytes_sent_per_token, xs.slots, (unsigned long long)xs.hits, (unsigned long long)xs.misses,
                (unsigned long long)xs.evictions, (unsigned long long)xs.bytes_copied, xs.wait_s,
                (unsigned long long)xs.prefetched, (unsigned long long)xs.prefetch_useful,
                (unsigned long long)(hp->n_expert ? dense : 0),
                (unsigned long long)held, r[0].expert_step_bytes);
        if (f != stdout) fclose(f);
    }
done:
    gt_sampler_destroy(smp);
    gt_bandwidth_free(&bw);
    return st;
}

int gt_cmd_bench(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "serve") == 0) return gt_cmd_bench_serve(argc - 1, argv + 1);
    bench_opts o = {.job = GT_RANK_CONFIG_INIT, .n_prompt = 512, .n_gen = 64, .batch = 1,
                    .rounds = 3, .bw_mib = 1024, .seed = 42, .spec = GT_SPEC_CONFIG_INIT};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    if (gt_spec_enabled(&o.spec)) {
        gt_rank_config rk = o.job;
        rk.eng.max_seqs = 1;
        o.spec.n_threads = o.job.eng.n_threads;
        if (!rk.eng.n_ctx && !o.prompt_file) rk.eng.n_ctx = (uint32_t)(o.n_prompt + o.n_gen + 1);
        rk.max_cand = 1;
        rk.max_out_rows = gt_spec_rows(&o.spec);
        return gt_verb_run("bench", &rk, &o, bench_spec_lead);
    }
    gt_rank_config rk = o.job;
    rk.eng.max_seqs = (int)o.batch;
    rk.eng.max_batch_tokens = (int)(o.n_prompt > o.batch ? o.n_prompt : o.batch);
    if (!rk.eng.n_ctx) rk.eng.n_ctx = (uint32_t)(o.n_prompt + o.n_gen);
    rk.max_cand = 1;
    rk.max_out_rows = (int)o.batch;
    rk.trace_prefix = o.trace;
    return gt_verb_run("bench", &rk, &o, bench_lead);
}
