/* `gantry synth`: writes a GGUF model with seeded random weights.
 *
 * A thin flag layer over gt_synth_write (model/synth.h): every flag maps to
 * one config field and all validation happens in the library, so the tests
 * that call the library and the users that call the verb see the same
 * sentences. The default vocabulary is the llama-spm vocab-only GGUF in
 * tests/data/vocab; without it a minimal generated vocabulary is used. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/timer.h"
#include "model/synth.h"
#include "tools/cmds.h"
#include "tools/flags.h"

#define VOCAB_NAME "vocab/ggml-vocab-llama-spm.gguf"

/* $GANTRY_SHARED_DIR/vocab/..., else tests/data/vocab/... in the source tree
 * this binary was built from (the repository carries its test vocabularies).
 * NULL when neither exists (an installed binary without its source tree). */
static const char *default_vocab(char *buf, size_t n) {
    const char *dir = getenv("GANTRY_SHARED_DIR");
    if (dir && *dir) {
        snprintf(buf, n, "%s/%s", dir, VOCAB_NAME);
        if (access(buf, R_OK) == 0) return buf;
    }
    /* __FILE__ is ".../tools/cmd_synth.c"; two levels up is the repository. */
    snprintf(buf, n, "%s", __FILE__);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(buf, '/');
        if (!slash) return NULL;
        *slash = '\0';
    }
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "/tests/data/%s", VOCAB_NAME);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

typedef struct synth_opts {
    gt_synth_config cfg;
    const char *path;
} synth_opts;

static gt_status type_flag(const char *flag, const char *value, void *opts) {
    synth_opts *o = opts;
    if (!gt_dtype_parse(value, &o->cfg.type))
        return gt_fail(GT_ERR_INVALID_ARG,
                       "%s '%s' is not a weight type (f32, f16, "
                       "bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k)",
                       flag, value);
    return GT_OK;
}

#define O(f) offsetof(synth_opts, f)
#define C(f) offsetof(synth_opts, cfg.f)
static const gt_flag k_flags[] = {
    {"-o", "--output", GT_FLAG_STR, O(path), .metavar = "FILE", .help = "the GGUF file to write (required)"},
    {NULL, "--arch", GT_FLAG_STR, C(arch), .metavar = "NAME", .help = "llama, qwen2, qwen3, llama-moe, qwen2moe or qwen3moe (default llama)"},
    {NULL, "--layers", GT_FLAG_U32, C(n_layer), .lo = 1, .hi = 1024, .metavar = "N", .help = "layers (default 2)"},
    {NULL, "--hidden", GT_FLAG_U32, C(n_embd), .lo = 1, .hi = 1 << 20, .metavar = "N",
     .help = "embedding width (default 256)"},
    {NULL, "--heads", GT_FLAG_U32, C(n_head), .lo = 1, .hi = 4096, .metavar = "N", .help = "query heads (default 4)"},
    {NULL, "--kv-heads", GT_FLAG_U32, C(n_head_kv), .lo = 1, .hi = 4096, .metavar = "N",
     .help = "key/value heads (default 2)"},
    {NULL, "--head-dim", GT_FLAG_U32, C(head_dim), .lo = 1, .hi = 4096, .metavar = "N",
     .help = "head dimension (default hidden/heads)"},
    {NULL, "--ffn", GT_FLAG_U32, C(n_ff), .lo = 1, .hi = 1 << 20, .metavar = "N", .help = "MLP width (default 512)"},
    {NULL, "--experts", GT_FLAG_U32, C(n_expert), .lo = 0, .hi = 1024, .metavar = "N",
     .help = "experts (default 0; MoE archs: 4)"},
    {NULL, "--experts-used", GT_FLAG_U32, C(n_expert_used), .lo = 1, .hi = 1024, .metavar = "N",
     .help = "experts per token (default 2)"},
    {NULL, "--expert-ffn", GT_FLAG_U32, C(n_ff_exp), .lo = 1, .hi = 1 << 20, .metavar = "N",
     .help = "expert MLP width (default ffn)"},
    {NULL, "--shared-ffn", GT_FLAG_U32, C(n_ff_shexp), .lo = 1, .hi = 1 << 20, .metavar = "N",
     .help = "shared expert MLP width (default ffn; qwen2moe)"},
    {NULL, "--vocab-from", GT_FLAG_STR, C(vocab_from), .metavar = "FILE.gguf",
     .help = "copy the vocabulary of a GGUF (default: tests/data/vocab llama-spm)"},
    {NULL, "--vocab", GT_FLAG_U32, C(n_vocab), .lo = 3, .hi = 1 << 24, .metavar = "N",
     .help = "a generated vocabulary of N tokens instead"},
    {NULL, "--ctx", GT_FLAG_U32, C(n_ctx), .lo = 1, .hi = 1 << 24, .metavar = "N",
     .help = "training context (default 2048)"},
    {NULL, "--type", GT_FLAG_CALL, 0, .call = type_flag, .metavar = "T",
     .help = "weight type: f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q2_k|q3_k|q4_k|q5_k|q6_k\n(default f32)"},
    {NULL, "--seed", GT_FLAG_U64, C(seed), .lo = 0, .hi = 0x7fffffffffffffffL, .metavar = "N",
     .help = "weight seed (default 1)"},
    {NULL, "--rope-base", GT_FLAG_FLOAT, C(rope_base), .flo = 1e-3, .fhi = 1e12, .metavar = "X",
     .help = "RoPE base (default 10000)"},
    {NULL, "--tied", GT_FLAG_BOOL, C(tied), .help = "the output matrix is the token embedding"},
    {"-t", "--threads", GT_FLAG_INT, C(n_threads), .lo = 1, .hi = 64, .metavar = "N", .help = "writer threads (default: the online CPUs, at most 8)"},
    {NULL, "--name", GT_FLAG_STR, C(name), .metavar = "TEXT", .help = "general.name"},
};
#undef C
#undef O

static gt_status validate(void *opts) {
    synth_opts *o = opts;
    if (o->cfg.vocab_from && o->cfg.n_vocab)
        return gt_fail(GT_ERR_INVALID_ARG, "give either --vocab-from or --vocab, not both");
    if (!o->path) return gt_fail(GT_ERR_INVALID_ARG, "-o FILE is required");
    return GT_OK;
}

static const gt_flag_spec k_spec = {
    .verb = "synth",
    .synopsis = "-o FILE --arch {llama,qwen2,qwen3,llama-moe,qwen2moe,qwen3moe} [options]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .validate = validate,
};

int gt_cmd_synth(int argc, char **argv) {
    synth_opts o = {.cfg = GT_SYNTH_CONFIG_INIT};
    char vbuf[4096];
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    gt_synth_config cfg = o.cfg;
    const char *path = o.path;
    if (!cfg.vocab_from && !cfg.n_vocab) {
        cfg.vocab_from = default_vocab(vbuf, sizeof vbuf);
        if (!cfg.vocab_from) {
            cfg.n_vocab = 32000;
            GT_LOG_WARN(GT_SUB_MODEL,
                        "synth: no %s under $GANTRY_SHARED_DIR or the source tree's tests/data: using a "
                        "generated vocabulary of 32000 tokens",
                        VOCAB_NAME);
        }
    }
    double t0 = gt_now_s();
    gt_status st = gt_synth_write(&cfg, path);
    if (st != GT_OK) return gt_flags_report("synth", st);
    fprintf(stderr, "gantry synth: wrote %s in %.2f s\n", path, gt_now_s() - t0);
    return 0;
}
