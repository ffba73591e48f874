/* Continuous batching must not change what a request generates.
 *
 * The oracle is each request run alone through the coordinator's direct
 * path (gt_coord_prefill, then gt_coord_next_token / gt_coord_decode one
 * token at a time, with a fresh sampler of the same settings), which shares
 * none of the scheduler's logic. The scheduler then runs all requests
 * together: 4 sequence slots, a 16-token step budget (so prompts are
 * chunked, and decode tokens share steps with prefill chunks), greedy and
 * sampled requests mixed. Every request's tokens must equal its solo run,
 * bit for bit. The scalar kernels (--isa ref) reduce every row in one order
 * whatever the batch, which is what makes bit equality the right check
 * here; the fast kernels' batch invariance is their own issue.
 * Also: a shared prompt prefix taken from the prefix cache (the tokens
 * still equal a from-scratch run), cancel (waiting and running), stop from
 * the token callback, slot
 * reuse after a finish (a stale KV cache would be refused by the engine),
 * and the refusals at submit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "coordinator/sched.h"
#include "model/synth.h"
#include "util/test_util.h"

enum { V = 300, N_REQ = 7, MAX_GEN = 40 };

static const char *model(void) {
    gt_synth_config c = gt_test_tiny_model("llama", GT_F32, V, 9);
    const char *path = gt_test_synth(&c, 0, "sched_llama.gguf");
    return path;
}

static gt_coord *open_coord_pool(const char *path, int kv_blocks, uint64_t host_bytes) {
    gt_rank_config rc = GT_RANK_CONFIG_INIT;
    rc.eng.kv_blocks = kv_blocks;
    rc.eng.kv_host_bytes = host_bytes;
    rc.eng.model_path = path;
    rc.eng.isa = "ref";
    rc.eng.n_ctx = 96;
    rc.eng.max_seqs = 4;
    rc.eng.max_batch_tokens = 16;
    rc.eng.kv_block_size = 4;
    rc.max_cand = 8;
    gt_coord *c = NULL;
    if (gt_coord_create(&rc, &c) != GT_OK) fail_msg("coordinator: %s", gt_last_error());
    return c;
}

static gt_coord *open_coord(const char *path) { return open_coord_pool(path, 0, 0); }

typedef struct result {
    int32_t toks[MAX_GEN];
    int n;
    int done;         /* times on_done ran */
    gt_finish why;
    int stop_after;   /* the token callback stops after this many (0: never) */
    int cached;       /* prompt tokens the prefix cache gave */
    int spec_drafted, spec_accepted, spec_steps;
} result;

static result g_res[N_REQ + 4];

static bool on_token(void *user, uint64_t id, int32_t tok, const gt_token_info *info) {
    (void)info;
    (void)user;
    result *r = &g_res[id];
    assert_true(r->n < MAX_GEN);
    r->toks[r->n++] = tok;
    return r->stop_after && r->n == r->stop_after;
}

static void on_done(void *user, uint64_t id, gt_finish why, const gt_sched_usage *u) {
    (void)user;
    g_res[id].done++;
    g_res[id].why = why;
    g_res[id].cached = u->cached_tokens;
    g_res[id].spec_drafted = u->spec_drafted;
    g_res[id].spec_accepted = u->spec_accepted;
    g_res[id].spec_steps = u->spec_steps;
    assert_int_equal(u->completion_tokens, g_res[id].n);
}

static const int k_len[N_REQ] = {3, 20, 5, 37, 1, 12, 9};
static const int k_gen[N_REQ] = {6, 4, 10, 3, 8, 5, 7};

static void make_prompt(int i, int32_t *p) {
    for (int j = 0; j < k_len[i]; j++) p[j] = (int32_t)((j * 31 + i * 57 + 3) % V);
}

static gt_sampler_config samp_of(int i) {
    gt_sampler_config s = GT_SAMPLER_CONFIG_INIT;
    if (i % 2) { /* odd requests sample: temperature, top-k within the reserved candidates */
        s.temperature = 0.9f;
        s.top_k = 8;
        s.top_p = 0.9f;
        s.seed = 100 + (uint64_t)i;
    } else {
        s.temperature = 0;
    }
    return s;
}

/* Request i alone, through the coordinator's direct path. */
static void solo(gt_coord *c, int i, int32_t *out) {
    int32_t p[64];
    make_prompt(i, p);
    gt_sampler_config sc = samp_of(i);
    gt_sampler *smp = NULL;
    assert_int_equal(gt_sampler_create(&sc, V, &smp), GT_OK);
    assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);
    assert_int_equal(gt_coord_set_sampler(c, 0, smp), GT_OK);
    assert_int_equal(gt_coord_prefill(c, 0, p, k_len[i], NULL), GT_OK);
    int32_t seq = 0;
    for (int g = 0; g < k_gen[i]; g++) {
        assert_int_equal(gt_coord_next_token(c, 0, &out[g]), GT_OK);
        if (g + 1 < k_gen[i]) assert_int_equal(gt_coord_decode(c, 1, &seq, &out[g]), GT_OK);
    }
    assert_int_equal(gt_coord_set_sampler(c, 0, NULL), GT_OK);
    gt_sampler_destroy(smp);
}

static gt_sched_req request(int i, const int32_t *prompt) {
    gt_sched_req r = {.id = (uint64_t)i, .prompt = prompt, .n_prompt = k_len[i], .samp = samp_of(i),
                      .max_tokens = k_gen[i], .on_token = on_token, .on_done = on_done};
    return r;
}

static int run_to_idle(gt_sched *s) {
    int steps = 0;
    bool work = true;
    while (work) {
        gt_status st_ = gt_sched_step(s, &work);
        if (st_ != GT_OK) fail_msg("step: %s", gt_last_error());
        steps += work;
        assert_true(steps < 1000);
    }
    return steps;
}

static void test_batched_equals_solo(void **state) {
    (void)state;
    gt_coord *c = open_coord(model());
    int32_t want[N_REQ][MAX_GEN];
    for (int i = 0; i < N_REQ; i++) solo(c, i, want[i]);
    assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);

    gt_sched *s = NULL;
    gt_sched_config cfg = GT_SCHED_CONFIG_INIT;
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    memset(g_res, 0, sizeof g_res);
    int32_t prompts[N_REQ][64];
    for (int i = 0; i < N_REQ; i++) {
        make_prompt(i, prompts[i]);
        gt_sched_req r = request(i, prompts[i]);
        assert_int_equal(gt_sched_submit(s, &r), GT_OK);
    }
    assert_int_equal(gt_sched_n_waiting(s), N_REQ);
    int steps = run_to_idle(s);
    /* Fewer steps than running the requests one after another. */
    int serial = 0;
    for (int i = 0; i < N_REQ; i++) serial += (k_len[i] + 15) / 16 + k_gen[i] - 1;
    assert_true(steps < serial);
    for (int i = 0; i < N_REQ; i++) {
        assert_int_equal(g_res[i].done, 1);
        assert_int_equal(g_res[i].why, GT_FINISH_LENGTH);
        assert_int_equal(g_res[i].n, k_gen[i]);
        if (memcmp(g_res[i].toks, want[i], (size_t)k_gen[i] * sizeof(int32_t)) != 0)
            fail_msg("request %d: batched tokens differ from its solo run", i);
    }
    assert_int_equal(gt_sched_n_running(s), 0);
    gt_sched_destroy(s);
    gt_coord_destroy(c);
}

static void test_cancel_stop_and_reuse(void **state) {
    (void)state;
    gt_coord *c = open_coord(model());
    int32_t want[MAX_GEN];
    solo(c, 2, want);
    assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);
    gt_sched *s = NULL;
    gt_sched_config cfg = GT_SCHED_CONFIG_INIT;
    cfg.max_waiting = 5;
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    memset(g_res, 0, sizeof g_res);
    int32_t prompts[N_REQ][64];
    for (int i = 0; i < 5; i++) {
        make_prompt(i, prompts[i]);
        gt_sched_req r = request(i, prompts[i]);
        assert_int_equal(gt_sched_submit(s, &r), GT_OK);
    }
    g_res[1].stop_after = 2;
    /* The queue holds 5: a sixth is refused with the count. */
    make_prompt(5, prompts[5]);
    gt_sched_req r5 = request(5, prompts[5]);
    assert_int_equal(gt_sched_submit(s, &r5), GT_ERR_RANGE);
    assert_non_null(strstr(gt_last_error(), "queue is full (5 requests waiting)"));
    bool work;
    assert_int_equal(gt_sched_step(s, &work), GT_OK);
    assert_int_equal(gt_sched_step(s, &work), GT_OK);
    /* Request 4 still waits (4 slots); request 0 runs. */
    assert_int_equal(gt_sched_cancel(s, 4), GT_OK);
    assert_int_equal(g_res[4].why, GT_FINISH_CANCELLED);
    assert_int_equal(g_res[4].n, 0);
    assert_int_equal(gt_sched_cancel(s, 0), GT_OK);
    assert_int_equal(g_res[0].why, GT_FINISH_CANCELLED);
    assert_int_equal(gt_sched_cancel(s, 0), GT_ERR_NOT_FOUND);
    run_to_idle(s);
    assert_int_equal(g_res[1].why, GT_FINISH_STOP);
    assert_int_equal(g_res[1].n, 2);
    /* Slots freed by cancel and finish are reused: request 2 again, under a
     * new id, generates what it generates alone. */
    int32_t p2[64];
    make_prompt(2, p2);
    gt_sched_req again = request(2, p2);
    again.id = N_REQ + 1;
    g_res[N_REQ + 1] = (result){0};
    assert_int_equal(gt_sched_submit(s, &again), GT_OK);
    run_to_idle(s);
    assert_int_equal(g_res[N_REQ + 1].n, k_gen[2]);
    assert_memory_equal(g_res[N_REQ + 1].toks, want, (size_t)k_gen[2] * sizeof(int32_t));
    /* Refusals at submit, each naming its numbers. */
    gt_sched_req bad = request(3, prompts[3]);
    bad.max_tokens = 90;
    assert_int_equal(gt_sched_submit(s, &bad), GT_ERR_RANGE);
    assert_non_null(strstr(gt_last_error(), "prompt of 37 tokens plus max_tokens 90 exceeds the context of 96"));
    bad = request(3, prompts[3]);
    bad.samp.temperature = 1;
    bad.samp.top_k = 50;
    assert_int_equal(gt_sched_submit(s, &bad), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "top_k 50"));
    int32_t oov = V;
    bad = request(3, &oov);
    bad.n_prompt = 1;
    assert_int_equal(gt_sched_submit(s, &bad), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "outside the vocabulary of 300"));
    /* Shutdown finishes what is left. */
    gt_sched_req last = request(6, prompts[6]);
    make_prompt(6, prompts[6]);
    g_res[6] = (result){0};
    assert_int_equal(gt_sched_submit(s, &last), GT_OK);
    assert_int_equal(gt_sched_submit(s, &last), GT_ERR_INVALID_ARG);
    gt_sched_destroy(s);
    assert_int_equal(g_res[6].why, GT_FINISH_SHUTDOWN);
    gt_coord_destroy(c);
}

/* A shared 20-token prefix (a system prompt): the second request reuses the
 * first's KV blocks (whole blocks of 4: all 20) and generates exactly what
 * it generates when computed from scratch. */
static void test_prefix_cache(void **state) {
    (void)state;
    gt_coord *c = open_coord(model());
    int32_t p1[26], p2[29];
    for (int i = 0; i < 20; i++) p1[i] = p2[i] = (int32_t)((i * 13 + 7) % V);
    for (int i = 20; i < 26; i++) p1[i] = (int32_t)(i * 3 % V);
    for (int i = 20; i < 29; i++) p2[i] = (int32_t)(i * 5 % V + 1);
    gt_sched *s = NULL;
    gt_sched_config cfg = GT_SCHED_CONFIG_INIT;
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    memset(g_res, 0, sizeof g_res);
    gt_sched_req r1 = {.id = 1, .prompt = p1, .n_prompt = 26, .samp = samp_of(0), .max_tokens = 6,
                       .on_token = on_token, .on_done = on_done};
    gt_sched_req r2 = r1;
    r2.id = 2;
    r2.prompt = p2;
    r2.n_prompt = 29;
    assert_int_equal(gt_sched_submit(s, &r1), GT_OK);
    run_to_idle(s);
    assert_int_equal(g_res[1].cached, 0);
    assert_int_equal(gt_sched_submit(s, &r2), GT_OK);
    run_to_idle(s);
    assert_int_equal(g_res[2].cached, 20);
    gt_sched_destroy(s);
    /* The oracle: p2 computed from scratch on the direct path. */
    gt_sampler_config sc = samp_of(0);
    gt_sampler *smp = NULL;
    assert_int_equal(gt_sampler_create(&sc, V, &smp), GT_OK);
    assert_int_equal(gt_coord_set_sampler(c, 3, smp), GT_OK);
    assert_int_equal(gt_coord_prefill(c, 3, p2, 29, NULL), GT_OK);
    int32_t seq = 3, tok[6];
    for (int g = 0; g < 6; g++) {
        assert_int_equal(gt_coord_next_token(c, 3, &tok[g]), GT_OK);
        if (g < 5) assert_int_equal(gt_coord_decode(c, 1, &seq, &tok[g]), GT_OK);
    }
    assert_memory_equal(g_res[2].toks, tok, sizeof tok);
    gt_sampler_destroy(smp);
    gt_coord_destroy(c);
}

/* A pool of 14 blocks of 4 tokens for 4 slots whose requests need up to 9
 * blocks each: the scheduler must preempt (the youngest request leaves its
 * slot, its blocks go to the prefix cache, and with a host tier on to host
 * memory when evicted; it resumes later on what is still cached). Every
 * request's tokens still equal its solo run. */
static void check_preemption(uint64_t host_bytes) {
    gt_coord *c = open_coord_pool(model(), 14, host_bytes);
    int32_t want[N_REQ][MAX_GEN];
    for (int i = 0; i < N_REQ; i++)
        if (k_len[i] + k_gen[i] <= 14 * 4) solo(c, i, want[i]);
    assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);
    gt_sched *s = NULL;
    gt_sched_config cfg = GT_SCHED_CONFIG_INIT;
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    memset(g_res, 0, sizeof g_res);
    int32_t prompts[N_REQ][64];
    for (int i = 0; i < N_REQ; i++) {
        make_prompt(i, prompts[i]);
        gt_sched_req r = request(i, prompts[i]);
        assert_int_equal(gt_sched_submit(s, &r), GT_OK);
    }
    run_to_idle(s);
    assert_true(gt_sched_n_preempted(s) > 0);
    for (int i = 0; i < N_REQ; i++) {
        assert_int_equal(g_res[i].n, k_gen[i]);
        if (memcmp(g_res[i].toks, want[i], (size_t)k_gen[i] * sizeof(int32_t)) != 0)
            fail_msg("request %d: tokens after preemption differ from its solo run", i);
    }
    /* A request that needs more blocks than the whole pool is refused. */
    int32_t big[64] = {0};
    gt_sched_req r = request(3, big);
    r.n_prompt = 50;
    r.max_tokens = 10;
    assert_int_equal(gt_sched_submit(s, &r), GT_ERR_RANGE);
    assert_non_null(strstr(gt_last_error(), "needs 15 KV blocks; the pool holds 14"));
    if (host_bytes) assert_true(gt_engine_kv(gt_rank_engine(gt_coord_rank(c))).to_host_bytes > 0);
    gt_sched_destroy(s);
    gt_coord_destroy(c);
}

static void test_preemption(void **state) {
    (void)state;
    check_preemption(0);
    check_preemption(1 << 20); /* with a host tier */
}

/* Prompt-lookup speculation in the batch: every request speculates on a
 * prompt that repeats itself; greedy ones must equal their plain runs
 * (sampled ones only finish: their rejection draws differ from a
 * plain decode's). The counters add up, and settings the job cannot hold
 * are refused. */
static void test_speculation(void **state) {
    (void)state;
    gt_rank_config rc = GT_RANK_CONFIG_INIT;
    rc.eng.model_path = model();
    rc.eng.isa = "ref";
    rc.eng.n_ctx = 96;
    rc.eng.max_seqs = 4;
    rc.eng.max_batch_tokens = 16;
    rc.eng.kv_block_size = 4;
    rc.max_cand = 8;
    rc.max_out_rows = 16; /* 4 sequences, 12 rows for guesses */
    gt_coord *c = NULL;
    if (gt_coord_create(&rc, &c) != GT_OK) fail_msg("coordinator: %s", gt_last_error());
    /* The plain runs of the same (periodic) prompts: batched plain equals
     * solo (test_batched_equals_solo). */
    int32_t want[N_REQ][MAX_GEN], prompts[N_REQ][64];
    gt_sched *s = NULL;
    gt_sched_config cfg = GT_SCHED_CONFIG_INIT;
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    memset(g_res, 0, sizeof g_res);
    for (int i = 0; i < N_REQ; i++) {
        make_prompt(i, prompts[i]);
        for (int j = 4; j < k_len[i]; j++) prompts[i][j] = prompts[i][j % 4]; /* a period of 4 */
        gt_sched_req r = request(i, prompts[i]);
        r.max_tokens = MAX_GEN;
        assert_int_equal(gt_sched_submit(s, &r), GT_OK);
    }
    run_to_idle(s);
    for (int i = 0; i < N_REQ; i++) memcpy(want[i], g_res[i].toks, sizeof want[i]);
    gt_sched_destroy(s);
    memset(g_res, 0, sizeof g_res);
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    for (int i = 0; i < N_REQ; i++) {
        gt_sched_req r = request(i, prompts[i]);
        r.spec_lookup = 2;
        r.spec_tokens = 3;
        r.max_tokens = MAX_GEN;
        assert_int_equal(gt_sched_submit(s, &r), GT_OK);
    }
    run_to_idle(s);
    uint64_t drafted = 0, accepted = 0, steps = 0;
    for (int i = 0; i < N_REQ; i++) {
        assert_int_equal(g_res[i].done, 1);
        assert_int_equal(g_res[i].n, MAX_GEN);
        assert_true(g_res[i].spec_accepted <= g_res[i].spec_drafted);
        drafted += (uint64_t)g_res[i].spec_drafted;
        accepted += (uint64_t)g_res[i].spec_accepted;
        steps += (uint64_t)g_res[i].spec_steps;
        if (samp_of(i).temperature == 0 && memcmp(g_res[i].toks, want[i], sizeof want[i]))
            fail_msg("greedy request %d: speculative tokens differ from its plain run", i);
    }
    gt_sched_spec_stats st = gt_sched_get_spec_stats(s);
    printf("speculation: %llu of %llu guesses accepted in %llu steps\n", (unsigned long long)st.accepted, (unsigned long long)st.drafted, (unsigned long long)st.steps);
    assert_true(drafted > 0);
    assert_true(st.drafted == drafted && st.accepted == accepted && st.steps == steps);
    /* Out of range, and a job without rows for guesses. */
    gt_sched_req bad = request(0, prompts[0]);
    bad.spec_lookup = 2;
    bad.spec_tokens = 0;
    assert_int_equal(gt_sched_submit(s, &bad), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "and tokens in 1..64"));
    gt_sched_destroy(s);
    gt_coord_destroy(c);
    c = open_coord(model());
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    bad.spec_tokens = 3;
    assert_int_equal(gt_sched_submit(s, &bad), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "leaving none for guesses"));
    gt_sched_destroy(s);
    gt_coord_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_equals_solo),
        cmocka_unit_test(test_cancel_stop_and_reuse),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_preemption),
        cmocka_unit_test(test_speculation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
