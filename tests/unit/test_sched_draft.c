/* Draft-model speculation in the scheduler (coordinator/spec_draft.c with
 * sched.c) against the same requests run without speculation.
 *
 * - Greedy requests' tokens equal their plain runs whatever the draft
 *   (a separate tiny model, the target's own file, the target's first
 *   layer), batched with sampled, prompt-lookup and plain requests.
 * - With the target's own file as the draft, the draft computes the
 *   target's logits bit for bit (--isa ref is batch-invariant), so every
 *   greedy guess must be accepted: a draft KV sequence that is stale, at a
 *   wrong position, not freed with its request (slots are reused) or not
 *   rebuilt after a preemption would show as a rejected guess. The same
 *   under preemption (a pool too small for all requests). Once all
 *   requests left, the draft holds no sequence.
 * - The counters per proposer add up to the requests' own, and the
 *   refusals (draft without a draft model, draft with lookup). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "coordinator/sched.h"
#include "coordinator/spec_draft.h"
#include "model/synth.h"
#include "util/test_util.h"

enum { V = 300, N_REQ = 7, MAX_GEN = 30 };

static const char *target_model(void) {
    gt_synth_config c = gt_test_tiny_model("llama", GT_F32, V, 9);
    return gt_test_synth(&c, 0, "sched_draft_target.gguf");
}

static const char *other_draft(void) {
    gt_synth_config c = gt_test_tiny_model("llama", GT_F32, V, 21);
    c.n_layer = 1;
    return gt_test_synth(&c, 1, "sched_draft_other.gguf");
}

static gt_coord *open_coord(int kv_blocks) {
    gt_rank_config rc = GT_RANK_CONFIG_INIT;
    rc.eng.model_path = target_model();
    rc.eng.isa = "ref";
    rc.eng.n_ctx = 96;
    rc.eng.max_seqs = 4;
    rc.eng.max_batch_tokens = 16;
    rc.eng.kv_block_size = 4;
    rc.eng.kv_blocks = kv_blocks;
    rc.max_cand = 8;
    rc.max_out_rows = 16; /* 4 sequences, 12 rows for guesses */
    gt_coord *c = NULL;
    if (gt_coord_create(&rc, &c) != GT_OK) fail_msg("coordinator: %s", gt_last_error());
    return c;
}

static gt_spec_draft *open_draft(gt_coord *c, const char *path, int self_layers) {
    gt_spec_draft_config dc = GT_SPEC_DRAFT_CONFIG_INIT;
    dc.path = path;
    dc.self_layers = self_layers;
    dc.isa = "ref";
    dc.max_seqs = 4;
    dc.max_tokens = 16;
    dc.max_guesses = 12;
    gt_spec_draft *d = NULL;
    if (gt_spec_draft_create(c, &dc, &d) != GT_OK) fail_msg("draft: %s", gt_last_error());
    return d;
}

typedef struct result {
    int32_t toks[MAX_GEN];
    int n, done;
    int spec_drafted, spec_accepted, spec_steps;
} result;
static result g_res[N_REQ];

static bool on_token(void *user, uint64_t id, int32_t tok, const gt_token_info *info) {
    (void)info;
    (void)user;
    result *r = &g_res[id];
    assert_true(r->n < MAX_GEN);
    r->toks[r->n++] = tok;
    return false;
}

static void on_done(void *user, uint64_t id, gt_finish why, const gt_sched_usage *u) {
    (void)user;
    assert_int_equal(why, GT_FINISH_LENGTH);
    g_res[id].done++;
    g_res[id].spec_drafted = u->spec_drafted;
    g_res[id].spec_accepted = u->spec_accepted;
    g_res[id].spec_steps = u->spec_steps;
    assert_int_equal(u->completion_tokens, g_res[id].n);
}

static const int k_len[N_REQ] = {3, 20, 5, 37, 1, 12, 9};

/* How request i speculates in the mixed runs. */
enum { PLAIN, DRAFT, LOOKUP };
static const int k_kind[N_REQ] = {DRAFT, DRAFT, LOOKUP, DRAFT, PLAIN, DRAFT, DRAFT};

static bool sampled(int i) { return i == 5; }

static gt_sched_req request(int i, const int32_t *prompt, bool spec) {
    gt_sched_req r = {.id = (uint64_t)i,
                      .prompt = prompt,
                      .n_prompt = k_len[i],
                      .max_tokens = MAX_GEN,
                      .on_token = on_token,
                      .on_done = on_done};
    r.samp = (gt_sampler_config)GT_SAMPLER_CONFIG_INIT;
    r.samp.temperature = 0;
    if (sampled(i)) {
        r.samp.temperature = 0.9f;
        r.samp.top_k = 8;
        r.samp.seed = 77;
    }
    if (i == 1) r.pen = (gt_penalty_config){1.1f, 0.1f, 0.05f};
    if (i == 3) r.logprobs = 2;
    if (spec && k_kind[i] == DRAFT) {
        r.spec_draft = true;
        r.spec_tokens = 1 + i % 4; /* 1..4 guesses per step */
    } else if (spec && k_kind[i] == LOOKUP) {
        r.spec_lookup = 2;
        r.spec_tokens = 3;
    }
    return r;
}

static void make_prompt(int i, int32_t *p) {
    for (int j = 0; j < k_len[i]; j++) p[j] = (int32_t)((j * 31 + i * 57 + 3) % V);
    for (int j = 4; j < k_len[i]; j++) p[j] = p[j % 4]; /* a period of 4: lookup finds matches */
}

static void run_to_idle(gt_sched *s) {
    bool work = true;
    while (work)
        if (gt_sched_step(s, &work) != GT_OK) fail_msg("step: %s", gt_last_error());
}

/* All requests, with or without speculation, on the scheduler of c with
 * draft d; returns the scheduler's counters. */
static gt_sched_spec_stats run_all(gt_coord *c, gt_spec_draft *d, bool spec, uint64_t *preempted) {
    int32_t prompts[N_REQ][64];
    gt_sched_config cfg = GT_SCHED_CONFIG_INIT;
    cfg.draft = d;
    gt_sched *s = NULL;
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    memset(g_res, 0, sizeof g_res);
    for (int i = 0; i < N_REQ; i++) {
        make_prompt(i, prompts[i]);
        gt_sched_req r = request(i, prompts[i], spec);
        if (gt_sched_submit(s, &r) != GT_OK) fail_msg("submit %d: %s", i, gt_last_error());
    }
    run_to_idle(s);
    /* Every request left: none holds a draft sequence any more. */
    if (d) assert_int_equal(gt_spec_draft_seqs_held(d), 0);
    gt_sched_spec_stats st = gt_sched_get_spec_stats(s);
    if (preempted) *preempted = gt_sched_n_preempted(s);
    gt_sched_destroy(s);
    return st;
}

/* The speculating run against the plain one; with exact (the draft is the
 * target) every greedy draft guess must be kept. */
static void check_against(const result *plain, gt_sched_spec_stats st, bool exact,
                          const char *what) {
    uint64_t sum[2][3] = {{0}};
    for (int i = 0; i < N_REQ; i++) {
        const result *r = &g_res[i];
        assert_int_equal(r->done, 1);
        assert_int_equal(r->n, MAX_GEN);
        assert_true(r->spec_accepted <= r->spec_drafted);
        if (!sampled(i) && memcmp(r->toks, plain[i].toks, sizeof r->toks))
            fail_msg("%s: greedy request %d's tokens differ from its plain run", what, i);
        if (k_kind[i] == PLAIN) assert_int_equal(r->spec_drafted, 0);
        if (k_kind[i] == DRAFT && !sampled(i)) {
            assert_true(r->spec_drafted > 0);
            if (exact && r->spec_accepted != r->spec_drafted)
                fail_msg("%s: request %d kept %d of the target's own %d guesses", what, i,
                         r->spec_accepted, r->spec_drafted);
        }
        if (k_kind[i] == PLAIN) continue;
        int m = k_kind[i] == DRAFT;
        sum[m][0] += (uint64_t)r->spec_steps;
        sum[m][1] += (uint64_t)r->spec_drafted;
        sum[m][2] += (uint64_t)r->spec_accepted;
    }
    assert_true(st.lookup.steps == sum[0][0] && st.lookup.drafted == sum[0][1] &&
                st.lookup.accepted == sum[0][2]);
    assert_true(st.draft.steps == sum[1][0] && st.draft.drafted == sum[1][1] &&
                st.draft.accepted == sum[1][2]);
    assert_true(st.drafted == st.lookup.drafted + st.draft.drafted);
    assert_true(st.accepted == st.lookup.accepted + st.draft.accepted);
    printf("%s: draft %llu of %llu accepted, lookup %llu of %llu\n", what,
           (unsigned long long)st.draft.accepted, (unsigned long long)st.draft.drafted,
           (unsigned long long)st.lookup.accepted, (unsigned long long)st.lookup.drafted);
}

static void test_drafts_match_plain(void **state) {
    (void)state;
    gt_coord *c = open_coord(0);
    result plain[N_REQ];
    run_all(c, NULL, false, NULL);
    memcpy(plain, g_res, sizeof plain);
    struct {
        const char *path;
        int self_layers;
        bool exact;
        const char *what;
    } drafts[] = {{target_model(), 0, true, "the target's own file"},
                  {other_draft(), 0, false, "another model"},
                  {NULL, 1, false, "self-draft of 1 layer"}};
    for (size_t k = 0; k < sizeof drafts / sizeof drafts[0]; k++) {
        gt_spec_draft *d = open_draft(c, drafts[k].path, drafts[k].self_layers);
        gt_sched_spec_stats st = run_all(c, d, true, NULL);
        check_against(plain, st, drafts[k].exact, drafts[k].what);
        gt_spec_draft_stats ds = gt_spec_draft_get_stats(d);
        assert_true(ds.forwards > 0 && ds.tokens >= st.draft.drafted);
        gt_spec_draft_destroy(d);
    }
    gt_coord_destroy(c);
}

/* 18 blocks of 4 for 4 running requests of up to 67 tokens: the youngest is
 * preempted, resumes, and its draft sequence starts again. */
static void test_draft_under_preemption(void **state) {
    (void)state;
    gt_coord *c = open_coord(0);
    result plain[N_REQ];
    run_all(c, NULL, false, NULL);
    memcpy(plain, g_res, sizeof plain);
    gt_coord_destroy(c);
    c = open_coord(18);
    gt_spec_draft *d = open_draft(c, target_model(), 0);
    uint64_t preempted = 0;
    gt_sched_spec_stats st = run_all(c, d, true, &preempted);
    printf("preempted %llu times\n", (unsigned long long)preempted);
    assert_true(preempted > 0);
    check_against(plain, st, true, "preemption");
    gt_spec_draft_destroy(d);
    gt_coord_destroy(c);
}

static void test_draft_refusals(void **state) {
    (void)state;
    gt_coord *c = open_coord(0);
    int32_t p[64];
    make_prompt(0, p);
    gt_sched_config cfg = GT_SCHED_CONFIG_INIT;
    gt_sched *s = NULL;
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    gt_sched_req r = request(0, p, true);
    assert_int_equal(gt_sched_submit(s, &r), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "this server has no draft model"));
    gt_sched_destroy(s);
    gt_spec_draft *d = open_draft(c, target_model(), 0);
    cfg.draft = d;
    assert_int_equal(gt_sched_create(c, &cfg, &s), GT_OK);
    r.spec_lookup = 3;
    assert_int_equal(gt_sched_submit(s, &r), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "both prompt lookup (3) and the draft model"));
    r.spec_lookup = 0;
    r.spec_tokens = 65;
    assert_int_equal(gt_sched_submit(s, &r), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "tokens must be in 1..64"));
    gt_sched_destroy(s);
    gt_spec_draft_destroy(d);
    /* A self-draft must be shallower than the target; one proposer. */
    gt_spec_draft_config dc = GT_SPEC_DRAFT_CONFIG_INIT;
    dc.self_layers = 2;
    assert_int_equal(gt_spec_draft_create(c, &dc, &d), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "fewer layers than the model's 2"));
    dc.path = target_model();
    assert_int_equal(gt_spec_draft_create(c, &dc, &d), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "not both"));
    gt_coord_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drafts_match_plain),
        cmocka_unit_test(test_draft_under_preemption),
        cmocka_unit_test(test_draft_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
