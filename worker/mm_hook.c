/* The matrix-input hook (gt_engine_set_mm_hook): names the weight of each
 * observed product the way the GGUF file does, so that statistics gathered
 * here (gantry imatrix) line up with the tensors a quantizer converts. The
 * forward pass calls in only when a hook is set. */
#include <stdio.h>

#include "worker/engine_internal.h"

void gt_engine_set_mm_hook(gt_engine *e, gt_engine_mm_hook_fn fn, void *ctx) {
    e->mm_hook = fn;
    e->mm_hook_ctx = ctx;
    e->hook_layer = -1;
    e->hook_mlp = "";
    e->hook_expert = -1;
}

void gt__mm_hook(gt_engine *e, int layer, const char *what, int expert, const float *x, int n,
                 int64_t n_in) {
    char name[96];
    if (layer >= 0)
        snprintf(name, sizeof name, "blk.%d.%s.weight", layer, what);
    else
        snprintf(name, sizeof name, "%s.weight", what);
    e->mm_hook(e->mm_hook_ctx, name, expert, x, n, n_in);
}

void gt__mm_hook_mlp(gt_engine *e, const char *mat, const float *x, int n, int64_t n_in) {
    char what[48];
    snprintf(what, sizeof what, "%s%s", mat, e->hook_mlp ? e->hook_mlp : "");
    gt__mm_hook(e, e->hook_layer, what, e->hook_expert, x, n, n_in);
}
