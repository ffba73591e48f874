/* The `gantry` command: one binary, one verb per job. Verbs live in
 * tools/cmd_*.c and share the declarative flag tables of tools/flags.c. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "tools/cmds.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_verbs[] = {
    {"run", gt_cmd_run, "generate from a prompt on one rank"},
    {"bench", gt_cmd_bench, "measure prefill/decode speed and memory bandwidth"},
    {"synth", gt_cmd_synth, "write a GGUF model with seeded random weights"},
    {"inspect", gt_cmd_inspect, "print a GGUF file's metadata and tensors"},
    {"tokenize", gt_cmd_tokenize, "turn text into token ids with a model's vocabulary"},
    {"perplexity", gt_cmd_perplexity, "perplexity of a model over a text file"},
    {"eval", gt_cmd_eval, "a model against its base over a text: perplexities, KL, top-1 agreement"},
    {"serve", gt_cmd_serve, "serve the model over msgpack-RPC (docs/protocol.md)"},
    {"generate", gt_cmd_generate, "send one prompt to a running server and stream the answer"},
    {"chat", gt_cmd_chat, "talk to a running server, one turn per line"},
    {"quantize", gt_cmd_quantize, "convert a GGUF model's weights to another type (q4_k_m, q8_0, ...)"},
    {"imatrix", gt_cmd_imatrix, "importance matrix (activation statistics) of a model over a text"},
    {"plan", gt_cmd_plan, "print which layers, heads and bytes each rank of a tp x pp grid holds"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: gantry VERB [options]   (gantry VERB --help for each)\n\nverbs:\n");
    for (size_t i = 0; i < sizeof k_verbs / sizeof k_verbs[0]; i++)
        fprintf(f, "  %-10s %s\n", k_verbs[i].name, k_verbs[i].help);
}

int main(int argc, char **argv) {
    gt_log_init();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof k_verbs / sizeof k_verbs[0]; i++)
        if (strcmp(argv[1], k_verbs[i].name) == 0) return k_verbs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gantry: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
