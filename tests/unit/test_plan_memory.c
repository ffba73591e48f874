/* `gantry plan` prints what the engine allocates.
 *
 * For every synthetic architecture (llama, qwen2, qwen3, llama-moe,
 * qwen2moe, qwen3moe; f32 and a quantized type) and every grid of (tp, pp) in (1,1)
 * (2,1) (4,1) (1,2) (2,2), the plan is built from the file's metadata and,
 * for each rank, an engine is created on that rank's shard (no collectives
 * run: creating an engine needs none). The bytes the engine really
 * allocated for its activations and logits rows and for its KV block pool
 * (one backend buffer laid out by parallel/scratch.c, plus the kernels'
 * workspace it reserved) and for its KV block pool must equal the plan's
 * act_bytes and kv_bytes exactly; so must the
 * one-rank engine built without a plan; also for Q4_K models whose MLP
 * columns are split unevenly in whole blocks. A deliberately wrong layout (one
 * more output row) must not match, so the check can fail. With a device
 * budget (--device-mem) the expert pool the engine allocates must equal the
 * plan's too (check_offload). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "model/synth.h"
#include "parallel/plan.h"
#include "parallel/scratch.h"
#include "util/test_util.h"
#include "worker/engine.h"

static const int k_grids[][2] = {{1, 1}, {2, 1}, {4, 1}, {1, 2}, {2, 2}};

static const char *synth(const char *arch, gt_dtype type) {
    static char path[1024];
    char name[64];
    snprintf(name, sizeof name, "planmem_%s_%s.gguf", arch, gt_dtype_name(type));
    snprintf(path, sizeof path, "%s", gt_test_tmp_path(0, name));
    gt_synth_config c = GT_SYNTH_CONFIG_INIT;
    c.arch = arch;
    c.type = type;
    c.n_layer = 4;
    c.n_embd = 128;
    c.n_head = 8;
    c.n_head_kv = 4;
    c.n_ff = 256;
    c.n_vocab = 1001;
    c.n_ctx = 256;
    if (strstr(arch, "moe")) {
        c.n_expert = 4;
        c.n_expert_used = 2;
        c.n_ff_exp = 128; /* 4 x 32: Q8_0 blocks survive tp 4 */
        c.n_ff_shexp = 256;
    }
    if (gt_synth_write(&c, path) != GT_OK) fail_msg("synth %s: %s", arch, gt_last_error());
    return path;
}

/* An engine with the plan's limits on shard s (NULL: its own one-rank plan). */
static gt_engine *open_engine(const gt_gguf *g, const gt_plan_config *pc, const gt_shard *s,
                              uint32_t n_ctx) {
    gt_engine_config ec = GT_ENGINE_CONFIG_INIT;
    ec.gguf = g;
    ec.shard = s;
    ec.n_ctx = n_ctx;
    ec.max_seqs = pc->n_seqs;
    ec.kv_block_size = pc->kv_block_size;
    ec.max_batch_tokens = pc->max_batch_tokens;
    ec.max_out_rows = pc->max_out_rows;
    ec.n_threads = pc->n_threads;
    ec.kv_host_bytes = pc->kv_host_bytes;
    gt_engine *e = NULL;
    if (gt_engine_create(&ec, &e) != GT_OK) fail_msg("engine: %s", gt_last_error());
    return e;
}

static void check_model(const char *path) {
    gt_gguf *g = NULL;
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    for (size_t gi = 0; gi < sizeof k_grids / sizeof k_grids[0]; gi++) {
        int tp = k_grids[gi][0], pp = k_grids[gi][1];
        gt_plan_config pc = GT_PLAN_CONFIG_INIT;
        pc.tp = tp;
        pc.pp = pp;
        pc.n_ctx = 200; /* not a multiple of the block size */
        pc.n_seqs = 3;
        pc.kv_block_size = 16;
        pc.max_batch_tokens = 37;
        pc.max_out_rows = 5;
        pc.n_threads = 2; /* the kernels' workspace has a part per thread */
        pc.kv_host_bytes = 100000; /* not a whole number of blocks */
        gt_plan plan;
        if (gt_plan_build(g, &pc, &plan) != GT_OK) fail_msg("%s tp %d pp %d: %s", path, tp, pp, gt_last_error());
        for (int r = 0; r < plan.n_ranks; r++) {
            const gt_shard *s = &plan.shards[r];
            gt_engine *e = open_engine(g, &pc, s, plan.cfg.n_ctx);
            gt_engine_memory m = gt_engine_memory_used(e);
            if (m.act_bytes != s->act_bytes || m.kv_bytes != s->kv_bytes || m.kv_host_bytes != s->kv_host_bytes)
                fail_msg("%s tp %d pp %d rank %d: engine allocated activations %llu, KV %llu; the plan "
                         "says %llu and %llu", path, tp, pp, r, (unsigned long long)m.act_bytes,
                         (unsigned long long)m.kv_bytes, (unsigned long long)s->act_bytes,
                         (unsigned long long)s->kv_bytes);
            /* The same sizes with one more output row differ on the last stage. */
            gt_scratch_config sc = {pc.max_batch_tokens, pc.max_out_rows + 1, plan.cfg.n_ctx, pc.kv_block_size,
                                    pc.n_threads};
            gt_scratch_layout wrong;
            gt_scratch_layout_compute(&plan.hp, s, &sc, &wrong);
            if (s->last_stage) assert_true(wrong.total_bytes + wrong.workspace_bytes != m.act_bytes);
            gt_engine_destroy(e);
        }
        if (tp * pp == 1) { /* the engine's own one-rank plan */
            gt_engine *e = open_engine(g, &pc, NULL, pc.n_ctx);
            gt_engine_memory m = gt_engine_memory_used(e);
            assert_int_equal(m.act_bytes, plan.shards[0].act_bytes);
            assert_int_equal(m.kv_bytes, plan.shards[0].kv_bytes);
            assert_int_equal(m.kv_host_bytes, plan.shards[0].kv_host_bytes);
            assert_true(m.kv_host_bytes > 0);
            gt_engine_destroy(e);
        }
        gt_plan_free(&plan);
    }
    gt_gguf_close(g);
}

/* Expert offload: a budget a little above the largest minimum makes every
 * rank of every grid keep n_expert_used or more (but not all) experts per
 * layer in a device pool whose bytes the engine allocates exactly; a budget
 * of one byte is refused. The kernels that size the slots are the engine's. */
static void check_offload(const char *path) {
    gt_gguf *g = NULL;
    assert_int_equal(gt_gguf_open(path, &g), GT_OK);
    gt_kernels_config kc = GT_KERNELS_CONFIG_INIT;
    kc.n_threads = 2;
    gt_kernels *k = NULL;
    assert_int_equal(gt_kernels_create(&kc, &k), GT_OK);
    for (size_t gi = 0; gi < sizeof k_grids / sizeof k_grids[0]; gi++) {
        int tp = k_grids[gi][0], pp = k_grids[gi][1];
        gt_plan_config pc = GT_PLAN_CONFIG_INIT;
        pc.tp = tp;
        pc.pp = pp;
        pc.n_ctx = 64;
        pc.max_batch_tokens = 16;
        pc.n_threads = 2;
        pc.kernels = k;
        pc.device_mem_bytes = 1;
        gt_plan plan;
        assert_int_equal(gt_plan_build(g, &pc, &plan), GT_OK);
        assert_int_equal(gt_plan_check_device(&plan), GT_ERR_RANGE);
        uint64_t budget = 0;
        for (int r = 0; r < plan.n_ranks; r++) {
            uint64_t want = plan.shards[r].device_min_bytes + plan.shards[r].expert_slot_bytes / 2;
            if (want > budget) budget = want;
        }
        gt_plan_free(&plan);
        pc.device_mem_bytes = budget;
        assert_int_equal(gt_plan_build(g, &pc, &plan), GT_OK);
        assert_int_equal(gt_plan_check_device(&plan), GT_OK);
        for (int r = 0; r < plan.n_ranks; r++) {
            const gt_shard *s = &plan.shards[r];
            assert_true(s->expert_slots >= s->n_expert_used && s->expert_slots < s->n_expert);
            assert_true(s->total_bytes <= budget);
            gt_engine_config ec = GT_ENGINE_CONFIG_INIT;
            ec.gguf = g;
            ec.kernels = k;
            ec.shard = s;
            ec.n_ctx = plan.cfg.n_ctx;
            ec.max_batch_tokens = pc.max_batch_tokens;
            gt_engine *e = NULL;
            if (gt_engine_create(&ec, &e) != GT_OK) fail_msg("engine: %s", gt_last_error());
            gt_engine_memory m = gt_engine_memory_used(e);
            if (m.expert_pool_bytes != s->expert_pool_bytes || m.act_bytes != s->act_bytes || m.kv_bytes != s->kv_bytes)
                fail_msg("%s tp %d pp %d rank %d: expert pool %llu, plan %llu", path, tp, pp, r,
                         (unsigned long long)m.expert_pool_bytes, (unsigned long long)s->expert_pool_bytes);
            assert_int_equal(gt_engine_experts(e, -1).slots, s->expert_slots);
            gt_engine_destroy(e);
        }
        if (tp * pp == 1) { /* the engine's own plan under the same budget, and below it */
            gt_engine_config ec = GT_ENGINE_CONFIG_INIT;
            ec.gguf = g;
            ec.kernels = k;
            ec.n_ctx = plan.cfg.n_ctx;
            ec.max_batch_tokens = pc.max_batch_tokens;
            ec.device_mem_bytes = budget;
            gt_engine *e = NULL;
            assert_int_equal(gt_engine_create(&ec, &e), GT_OK);
            assert_int_equal(gt_engine_memory_used(e).expert_pool_bytes, plan.shards[0].expert_pool_bytes);
            gt_engine_destroy(e);
            ec.device_mem_bytes = plan.shards[0].device_min_bytes - 1;
            assert_int_equal(gt_engine_create(&ec, &e), GT_ERR_RANGE);
        }
        gt_plan_free(&plan);
    }
    gt_kernels_destroy(k);
    gt_gguf_close(g);
}

static void test_every_arch_and_grid(void **state) {
    (void)state;
    const char *archs[] = {"llama", "qwen2", "qwen3", "llama-moe", "qwen2moe", "qwen3moe"};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        check_model(synth(archs[i], GT_F32));
        check_model(synth(archs[i], GT_Q8_0));
    }
    check_offload(synth("llama-moe", GT_F32));
    check_offload(synth("qwen2moe", GT_Q8_0));
}

/* Q4_K models whose MLP columns are split in whole blocks, unevenly: 768
 * columns are 512 + 256 at tp 2 and 256 + 256 + 256 + 0 at tp 4 (a rank
 * without MLP columns, hence without gate and up buffers); qwen2moe's
 * single-block experts all sit on the first rank. */
static void test_uneven_q4k(void **state) {
    (void)state;
    const char *archs[] = {"llama", "qwen2moe"};
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        static char path[1024];
        char name[64];
        snprintf(name, sizeof name, "planmem_uneven_%s.gguf", archs[i]);
        snprintf(path, sizeof path, "%s", gt_test_tmp_path(0, name));
        gt_synth_config c = GT_SYNTH_CONFIG_INIT;
        c.arch = archs[i];
        c.type = GT_Q4_K;
        c.n_layer = 2; /* a KV block within check_model's host tier */
        c.n_embd = 256;
        c.n_head = 8;
        c.n_head_kv = 4;
        c.head_dim = 128; /* wo: 1024 columns, whole blocks at tp 4 */
        c.n_ff = 768;
        c.n_vocab = 1001;
        c.n_ctx = 256;
        if (strstr(archs[i], "moe")) {
            c.n_expert = 4;
            c.n_expert_used = 2;
            c.n_ff_exp = 256;
            c.n_ff_shexp = 768;
        }
        if (gt_synth_write(&c, path) != GT_OK) fail_msg("synth %s: %s", archs[i], gt_last_error());
        check_model(path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_every_arch_and_grid),
                                       cmocka_unit_test(test_uneven_q4k)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
