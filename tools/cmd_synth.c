/* `gantry synth`: writes a GGUF model with seeded random weights.
 *
 * A thin flag layer over gt_synth_write (model/synth.h): every flag maps to
 * one config field and all validation happens in the library, so the tests
 * that call the library and the users that call the verb see the same
 * sentences. The default vocabulary is the llama-spm vocab-only GGUF from the
 * shared folder; without it a minimal generated vocabulary is used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/timer.h"
#include "model/synth.h"
#include "tools/args.h"
#include "tools/cmds.h"

#define VOCAB_NAME "vocab/ggml-vocab-llama-spm.gguf"

static void usage(FILE *f) {
    fprintf(
        f,
        "usage: gantry synth -o FILE --arch {llama,qwen2,qwen3,llama-moe,qwen2moe} [options]\n"
        "  --layers N (2)  --hidden N (256)  --heads N (4)  --kv-heads N (2)\n"
        "  --head-dim N (hidden/heads)  --ffn N (512)\n"
        "  --experts N (0; MoE archs: 4)  --experts-used N (2)  --expert-ffn N (ffn)\n"
        "  --shared-ffn N (ffn; qwen2moe)\n"
        "  --vocab-from FILE.gguf | --vocab N   (default: shared llama-spm vocab)\n"
        "  --ctx N (2048)  --type f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q2_k|q3_k|q4_k|q5_k|q6_k\n"
        "  --seed N (1)  --rope-base X (10000)  --tied  --threads N  --name TEXT\n");
}

/* $GANTRY_SHARED_DIR/vocab/..., else ../shared/vocab/... next to the source
 * tree this binary was built from. NULL when neither exists. */
static const char *default_vocab(char *buf, size_t n) {
    const char *dir = getenv("GANTRY_SHARED_DIR");
    if (dir && *dir) {
        snprintf(buf, n, "%s/%s", dir, VOCAB_NAME);
        if (access(buf, R_OK) == 0) return buf;
    }
    /* __FILE__ is ".../tools/cmd_synth.c"; the shared folder is a sibling of the repo. */
    snprintf(buf, n, "%s", __FILE__);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(buf, '/');
        if (!slash) return NULL;
        *slash = '\0';
    }
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "/../shared/%s", VOCAB_NAME);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

static gt_status u32_flag(gt_args *a, long lo, long hi, uint32_t *out) {
    long v;
    GT_TRY(gt_args_long(a, lo, hi, &v));
    *out = (uint32_t)v;
    return GT_OK;
}

static gt_status parse(int argc, char **argv, gt_synth_config *cfg, const char **out_path,
                       bool *vocab_given, bool *help) {
    gt_args a;
    const char *arg;
    gt_args_init(&a, argc, argv);
    while (gt_args_next(&a, &arg)) {
        if (gt_args_is(&a, "-h", "--help")) {
            *help = true;
            return GT_OK;
        } else if (gt_args_is(&a, "-o", "--output")) {
            GT_TRY(gt_args_str(&a, out_path));
        } else if (gt_args_is(&a, NULL, "--arch")) {
            GT_TRY(gt_args_str(&a, &cfg->arch));
        } else if (gt_args_is(&a, NULL, "--name")) {
            GT_TRY(gt_args_str(&a, &cfg->name));
        } else if (gt_args_is(&a, NULL, "--layers")) {
            GT_TRY(u32_flag(&a, 1, 1024, &cfg->n_layer));
        } else if (gt_args_is(&a, NULL, "--hidden")) {
            GT_TRY(u32_flag(&a, 1, 1 << 20, &cfg->n_embd));
        } else if (gt_args_is(&a, NULL, "--heads")) {
            GT_TRY(u32_flag(&a, 1, 4096, &cfg->n_head));
        } else if (gt_args_is(&a, NULL, "--kv-heads")) {
            GT_TRY(u32_flag(&a, 1, 4096, &cfg->n_head_kv));
        } else if (gt_args_is(&a, NULL, "--head-dim")) {
            GT_TRY(u32_flag(&a, 1, 4096, &cfg->head_dim));
        } else if (gt_args_is(&a, NULL, "--ffn")) {
            GT_TRY(u32_flag(&a, 1, 1 << 20, &cfg->n_ff));
        } else if (gt_args_is(&a, NULL, "--experts")) {
            GT_TRY(u32_flag(&a, 0, 1024, &cfg->n_expert));
        } else if (gt_args_is(&a, NULL, "--experts-used")) {
            GT_TRY(u32_flag(&a, 1, 1024, &cfg->n_expert_used));
        } else if (gt_args_is(&a, NULL, "--expert-ffn")) {
            GT_TRY(u32_flag(&a, 1, 1 << 20, &cfg->n_ff_exp));
        } else if (gt_args_is(&a, NULL, "--shared-ffn")) {
            GT_TRY(u32_flag(&a, 1, 1 << 20, &cfg->n_ff_shexp));
        } else if (gt_args_is(&a, NULL, "--vocab-from")) {
            GT_TRY(gt_args_str(&a, &cfg->vocab_from));
            *vocab_given = true;
        } else if (gt_args_is(&a, NULL, "--vocab")) {
            GT_TRY(u32_flag(&a, 3, 1 << 24, &cfg->n_vocab));
            *vocab_given = true;
        } else if (gt_args_is(&a, NULL, "--ctx")) {
            GT_TRY(u32_flag(&a, 1, 1 << 24, &cfg->n_ctx));
        } else if (gt_args_is(&a, NULL, "--type")) {
            const char *t;
            GT_TRY(gt_args_str(&a, &t));
            if (!gt_dtype_parse(t, &cfg->type))
                return gt_fail(GT_ERR_INVALID_ARG,
                               "--type '%s' is not a weight type (f32, f16, "
                               "bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k)",
                               t);
        } else if (gt_args_is(&a, NULL, "--seed")) {
            long v;
            GT_TRY(gt_args_long(&a, 0, 0x7fffffffffffffffL, &v));
            cfg->seed = (uint64_t)v;
        } else if (gt_args_is(&a, NULL, "--rope-base")) {
            double v;
            GT_TRY(gt_args_double(&a, 1e-3, 1e12, &v));
            cfg->rope_base = (float)v;
        } else if (gt_args_is(&a, NULL, "--tied")) {
            cfg->tied = true;
        } else if (gt_args_is(&a, "-t", "--threads")) {
            long v;
            GT_TRY(gt_args_long(&a, 1, 64, &v));
            cfg->n_threads = (int)v;
        } else {
            return gt_args_unknown(&a);
        }
    }
    if (cfg->vocab_from && cfg->n_vocab)
        return gt_fail(GT_ERR_INVALID_ARG, "give either --vocab-from or --vocab, not both");
    if (!*out_path) return gt_fail(GT_ERR_INVALID_ARG, "-o FILE is required");
    return GT_OK;
}

int gt_cmd_synth(int argc, char **argv) {
    gt_synth_config cfg = GT_SYNTH_CONFIG_INIT;
    const char *path = NULL;
    bool vocab_given = false, help = false;
    char vbuf[4096];
    gt_status st = parse(argc, argv, &cfg, &path, &vocab_given, &help);
    if (help) {
        usage(stdout);
        return 0;
    }
    if (st != GT_OK) return gt_args_report("synth", st);
    if (!vocab_given) {
        cfg.vocab_from = default_vocab(vbuf, sizeof vbuf);
        if (!cfg.vocab_from) {
            cfg.n_vocab = 32000;
            GT_LOG_WARN(GT_SUB_MODEL,
                        "synth: no %s under $GANTRY_SHARED_DIR or ../shared: using a "
                        "generated vocabulary of 32000 tokens",
                        VOCAB_NAME);
        }
    }
    double t0 = gt_now_s();
    st = gt_synth_write(&cfg, path);
    if (st != GT_OK) return gt_args_report("synth", st);
    fprintf(stderr, "gantry synth: wrote %s in %.2f s\n", path, gt_now_s() - t0);
    return 0;
}
