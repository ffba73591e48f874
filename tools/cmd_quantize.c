/* `gantry quantize IN.gguf OUT.gguf --type T`: a thin flag layer over
 * gt_quantize_file (model/quantize.h), with the progress display and the
 * summary. Progress goes to stderr: a redrawn bar when stderr is a
 * terminal, otherwise one line per tenth of the tensors. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/quant.h"
#include "common/timer.h"
#include "model/quantize.h"
#include "tools/cmds.h"
#include "tools/flags.h"

#define MAX_KEEP 64

typedef struct quant_opts {
    const char *in, *out;
    const char *type;
    const char *imatrix;
    int threads;
    gt_quant_keep keep[MAX_KEEP];
    int n_keep;
} quant_opts;

static gt_status keep_flag(const char *flag, const char *value, void *opts) {
    quant_opts *o = opts;
    if (o->n_keep == MAX_KEEP)
        return gt_fail(GT_ERR_INVALID_ARG, "%s: at most %d overrides", flag, MAX_KEEP);
    GT_TRY(gt_quant_keep_parse(value, &o->keep[o->n_keep]));
    o->n_keep++;
    return GT_OK;
}

static gt_status positional(const char *arg, void *opts) {
    quant_opts *o = opts;
    if (!o->in)
        o->in = arg;
    else if (!o->out)
        o->out = arg;
    else
        return gt_fail(GT_ERR_INVALID_ARG, "takes two files (IN OUT), got a third: '%s'", arg);
    return GT_OK;
}

static gt_status validate(void *opts) {
    quant_opts *o = opts;
    if (!o->in || !o->out)
        return gt_fail(GT_ERR_INVALID_ARG, "needs an input and an output file (IN.gguf OUT.gguf)");
    if (strcmp(o->in, o->out) == 0)
        return gt_fail(GT_ERR_INVALID_ARG, "the output %s is the input; write another file",
                       o->out);
    return GT_OK;
}

#define O(f) offsetof(quant_opts, f)
static const gt_flag k_flags[] = {
    {NULL, "--type", GT_FLAG_STR, O(type), .metavar = "T",
     .help = "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k, or a mix:\n"
             "q3_k_m q4_k_m q5_k_m (docs/quantize.md)",
     .required = "quantize needs a target type (--type T)"},
    {NULL, "--keep", GT_FLAG_CALL, 0, .metavar = "PATTERN=TYPE", .call = keep_flag,
     .help = "store matrices whose name matches the glob as TYPE (repeatable; last wins)"},
    {NULL, "--imatrix", GT_FLAG_STR, O(imatrix), .metavar = "FILE",
     .help = "importance matrix (gantry imatrix) for weighted rounding of Q4_0, Q5_0, K-quants"},
    {"-t", "--threads", GT_FLAG_INT, O(threads), .lo = 1, .hi = 256, .metavar = "N",
     .help = "threads (default: online CPUs, at most 8)"},
};
#undef O

static const gt_flag_spec k_spec = {
    .verb = "quantize",
    .synopsis =
        "IN.gguf OUT.gguf --type T [--keep PATTERN=TYPE ...] [--imatrix FILE] [--threads N]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .positional = positional,
    .validate = validate,
    .usage_on_error = GT_USAGE_AFTER,
};

typedef struct progress_state {
    bool tty;
    uint64_t t0;
} progress_state;

static void show_progress(void *ctx, const gt_quantize_progress *p) {
    progress_state *ps = ctx;
    if (ps->tty) {
        const int W = 30;
        int fill = (int)((double)W * (double)p->done / (double)p->total);
        fprintf(stderr, "\rquantize [%.*s%*s] %zu/%zu %-40.40s", fill,
                "##############################", W - fill, "", p->done, p->total, p->name);
        if (p->done == p->total) fputc('\n', stderr);
    } else if (p->done % (p->total >= 10 ? p->total / 10 : 1) == 0 || p->done == p->total) {
        fprintf(stderr, "quantize: %zu/%zu tensors (%s), %.1f s\n", p->done, p->total, p->name,
                (double)(gt_now_ns() - ps->t0) * 1e-9);
    }
    fflush(stderr);
}

static int run(quant_opts *o) {
    gt_quantize_config cfg = {
        .in_path = o->in,
        .out_path = o->out,
        .keep = o->keep,
        .n_keep = o->n_keep,
        .imatrix_path = o->imatrix,
        .n_threads = o->threads,
    };
    gt_status st = gt_quant_preset_parse(o->type, &cfg.preset);
    if (st != GT_OK) return gt_flags_report("quantize", st);
    gt_imatrix *im = NULL;
    if (o->imatrix) {
        st = gt_imatrix_load(o->imatrix, &im);
        if (st != GT_OK) return gt_flags_report("quantize", st);
        fprintf(stderr, "quantize: %zu importance entries from %s (%u chunks)\n",
                gt_imatrix_n_entries(im), o->imatrix, gt_imatrix_chunk_count(im));
        if (!cfg.preset.mix && !gt_quant_uses_imatrix(cfg.preset.base))
            fprintf(stderr,
                    "quantize: %s rounds to nearest; the imatrix only steers Q4_0, Q5_0 "
                    "and the K-quants\n",
                    cfg.preset.name);
    }
    cfg.imatrix = im;
    progress_state ps = {.tty = isatty(2) != 0, .t0 = gt_now_ns()};
    cfg.progress = show_progress;
    cfg.progress_ctx = &ps;
    gt_quantize_report rep;
    st = gt_quantize_file(&cfg, &rep);
    gt_imatrix_free(im);
    if (st != GT_OK) return gt_flags_report("quantize", st);
    double secs = (double)(gt_now_ns() - ps.t0) * 1e-9;
    if (o->imatrix && rep.n_no_imatrix)
        fprintf(stderr, "quantize: %zu matrices had no imatrix entry and were rounded to nearest\n",
                rep.n_no_imatrix);
    char a[32], b[32];
    fprintf(stderr,
            "quantize: %s -> %s as %s: %zu tensors (%zu converted, %zu copied, %zu at a fallback "
            "type, %zu requantized)\n"
            "quantize: %s -> %s (%.2fx) in %.2f s, %.1f MB/s of input, %d threads\n",
            o->in, o->out, cfg.preset.name, rep.n_tensors, rep.n_converted, rep.n_copied,
            rep.n_fallback, rep.n_requantized, gt_format_bytes(rep.bytes_in, a, sizeof a),
            gt_format_bytes(rep.bytes_out, b, sizeof b),
            rep.bytes_out ? (double)rep.bytes_in / (double)rep.bytes_out : 0.0, secs,
            secs > 0 ? (double)rep.bytes_in / secs / 1e6 : 0.0, o->threads);
    return 0;
}

int gt_cmd_quantize(int argc, char **argv) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    quant_opts o = {.threads = cpus < 1 ? 1 : cpus > 8 ? 8 : (int)cpus};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc < 0) rc = run(&o);
    for (int i = 0; i < o.n_keep; i++) free((char *)o.keep[i].pattern);
    return rc;
}
