/* Expert parallelism in the sharding plan (--ep).
 *
 * A llama-moe and a qwen2moe model of 8 experts are planned over grids with
 * ep == tp (2, 4, and 2 x 2 stages) and ep < tp (tp 4, ep 2), and checked
 * against facts computed here from the file alone:
 * - in every stage, each (expert, column) of every routed-expert matrix is
 *   held by exactly one rank, and EP rank i (tp position / (tp / ep)) holds
 *   exactly experts [i * 8 / ep, (i + 1) * 8 / ep);
 * - the routed-expert bytes of all ranks add up to the file's *_exps tensor
 *   bytes (each element once over the grid), so a rank counts only its own
 *   experts, and the tensor slice names the same expert range;
 * - impossible layouts are refused with the numbers: --ep on a dense
 *   model, experts not divisible by ep, ep not dividing the stage group,
 *   and a top-k larger than the expert count (patched into the metadata). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/gguf.h"
#include "model/synth.h"
#include "parallel/plan.h"
#include "util/test_util.h"

#define N_EXPERT 8

static gt_synth_config moe_cfg(const char *arch) {
    gt_synth_config c = gt_test_tiny_model(arch, GT_F32, 300, 5);
    c.n_layer = 2;
    c.n_expert = N_EXPERT;
    c.n_expert_used = 2;
    c.n_ff_exp = 64;
    c.n_head = 8; /* so that tp 8 divides the heads */
    return c;
}

static gt_gguf *open_model(const gt_synth_config *c, const char *name) {
    const char *path = gt_test_synth(c, 0, name);
    gt_gguf *g = NULL;
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    return g;
}

static gt_status build(const gt_gguf *g, int tp, int pp, int ep, gt_plan *p) {
    gt_plan_config cfg = GT_PLAN_CONFIG_INIT;
    cfg.tp = tp;
    cfg.pp = pp;
    cfg.ep = ep;
    cfg.n_ctx = 128;
    return gt_plan_build(g, &cfg, p);
}

static bool is_expert_tensor(const char *name) { return strstr(name, "_exps.weight") != NULL; }

static void check_layout(const gt_gguf *g, int tp, int pp, int ep) {
    gt_plan p;
    gt_status st = build(g, tp, pp, ep, &p);
    if (st != GT_OK) fail_msg("tp %d pp %d ep %d: %s", tp, pp, ep, gt_last_error());
    const gt_hparams *hp = &p.hp;
    int64_t F = hp->n_ff_exp;
    int *cover = calloc((size_t)pp * N_EXPERT * (size_t)F, sizeof *cover);
    assert_non_null(cover);
    uint64_t file_bytes = 0, plan_bytes = 0;
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++)
        if (is_expert_tensor(gt_gguf_tensor_at(g, i)->name)) file_bytes += gt_gguf_tensor_at(g, i)->nbytes;
    for (int r = 0; r < p.n_ranks; r++) {
        const gt_shard *s = &p.shards[r];
        int cols = tp / ep, i = s->grid.tp_rank / cols;
        if (s->experts.begin != (int64_t)i * N_EXPERT / ep || s->experts.end != (int64_t)(i + 1) * N_EXPERT / ep)
            fail_msg("tp %d ep %d rank %d: experts [%lld, %lld), expected EP rank %d's", tp, ep, r,
                     (long long)s->experts.begin, (long long)s->experts.end, i);
        for (int64_t e = s->experts.begin; e < s->experts.end; e++)
            for (int64_t c = s->ff_exp.begin; c < s->ff_exp.end; c++)
                cover[((size_t)s->grid.stage * N_EXPERT + (size_t)e) * (size_t)F + (size_t)c]++;
        plan_bytes += s->expert_bytes;
        for (size_t k = 0; k < gt_gguf_n_tensors(g); k++) {
            const gt_tensor_info *t = gt_gguf_tensor_at(g, k);
            if (!is_expert_tensor(t->name)) continue;
            gt_tensor_slice sl;
            assert_int_equal(gt_plan_tensor_slice(hp, s, t, &sl), GT_OK);
            if (sl.split == GT_SPLIT_NONE) continue;
            assert_int_equal(sl.e0, s->experts.begin);
            assert_int_equal(sl.e1, s->experts.end);
        }
    }
    for (size_t k = 0; k < (size_t)pp * N_EXPERT * (size_t)F; k++)
        if (cover[k] != 1)
            fail_msg("tp %d pp %d ep %d: stage %zu expert %zu column %zu held %d times", tp, pp, ep,
                     k / ((size_t)N_EXPERT * (size_t)F), k / (size_t)F % N_EXPERT, k % (size_t)F, cover[k]);
    if (plan_bytes != file_bytes)
        fail_msg("tp %d pp %d ep %d: ranks hold %llu expert bytes, the file has %llu", tp, pp, ep,
                 (unsigned long long)plan_bytes, (unsigned long long)file_bytes);
    free(cover);
    gt_plan_free(&p);
}

static void test_layouts(void **state) {
    (void)state;
    const char *archs[] = {"llama-moe", "qwen2moe"};
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        gt_synth_config c = moe_cfg(archs[a]);
        gt_gguf *g = open_model(&c, "plan_ep.gguf");
        const int layouts[][3] = {{2, 1, 2}, {4, 1, 4}, {2, 2, 2}, {4, 1, 2}, {8, 1, 8}, {2, 1, 1}};
        for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
            check_layout(g, layouts[i][0], layouts[i][1], layouts[i][2]);
        gt_gguf_close(g);
    }
}

static void expect_refusal(const gt_gguf *g, int tp, int ep, gt_status want, const char *words) {
    gt_plan p;
    gt_status st = build(g, tp, 1, ep, &p);
    if (st != want || !strstr(gt_last_error(), words))
        fail_msg("tp %d ep %d: status %d '%s', expected %d with '%s'", tp, ep, st, gt_last_error(),
                 want, words);
}

/* Overwrites the u32 value of metadata key `key` in the file at path. */
static void patch_u32(const char *path, const char *key, uint32_t value) {
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    size_t kl = strlen(key);
    size_t at = 0;
    for (size_t i = 0; i + kl + 8 <= n && !at; i++)
        if (memcmp(buf + i, key, kl) == 0) at = i + kl;
    assert_true(at > 0);
    uint32_t type;
    memcpy(&type, buf + at, 4);
    assert_int_equal(type, 4); /* GGUF u32 */
    assert_int_equal(fseek(f, (long)(at + 4), SEEK_SET), 0);
    assert_int_equal(fwrite(&value, 4, 1, f), 1);
    fclose(f);
}

static void test_refusals(void **state) {
    (void)state;
    gt_synth_config c = moe_cfg("llama-moe");
    gt_gguf *g = open_model(&c, "plan_ep_refuse.gguf");
    expect_refusal(g, 4, 3, GT_ERR_INVALID_ARG, "8 experts do not divide over --ep 3");
    expect_refusal(g, 2, 4, GT_ERR_INVALID_ARG, "--ep 4 does not divide the stage group of tp 2");
    expect_refusal(g, 4, 8, GT_ERR_INVALID_ARG, "--ep 8 does not divide the stage group of tp 4");
    gt_gguf_close(g);

    gt_synth_config d = gt_test_tiny_model("llama", GT_F32, 300, 5);
    g = open_model(&d, "plan_ep_dense.gguf");
    expect_refusal(g, 2, 2, GT_ERR_INVALID_ARG, "--ep 2 asks for expert parallelism, but this llama "
                                               "model is dense");
    gt_plan p;
    assert_int_equal(build(g, 2, 1, 1, &p), GT_OK); /* --ep 1 is the default */
    gt_plan_free(&p);
    gt_gguf_close(g);

    /* A top-k of 9 out of 8 experts: refused from the metadata, before any weight. */
    const char *path = gt_test_synth(&c, 0, "plan_ep_topk.gguf");
    patch_u32(path, "llama.expert_used_count", 9);
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    expect_refusal(g, 2, 2, GT_ERR_FORMAT, "9 experts used per token out of 8 experts");
    gt_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
