/* Continuous batching and prefix caching across ranks: run under mpirun as
 * `test_sched_grid TP PP`. Every rank synthesizes the same model (a
 * deterministic file of its own) and joins the job; rank 0 leads.
 *
 * The oracle is each request run alone through the coordinator's direct
 * path on the same grid. Then the scheduler runs all requests together (4
 * slots, 16-token steps), half of them sharing a 20-token prefix, so later
 * ones attach KV blocks cached by earlier ones on every rank (a rank whose
 * cache disagreed with rank 0's would refuse the step). With the scalar
 * kernels each row reduces in one order whatever the batch, and the grid's
 * collectives sum in a fixed order, so every request's tokens must equal
 * its solo run exactly. Prints one line per check; exits 1 on a failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/sched.h"
#include "model/synth.h"
#include "util/test_util.h"

enum { V = 300, N_REQ = 8, MAX_GEN = 8 };

static int32_t g_toks[N_REQ][MAX_GEN];
static int g_n[N_REQ], g_cached[N_REQ], g_done[N_REQ];

static bool on_token(void *user, uint64_t id, int32_t tok, const gt_token_info *info) {
    (void)info;
    (void)user;
    if (g_n[id] < MAX_GEN) g_toks[id][g_n[id]] = tok;
    g_n[id]++;
    return false;
}

static void on_done(void *user, uint64_t id, gt_finish why, const gt_sched_usage *u) {
    (void)user;
    (void)why;
    g_done[id]++;
    g_cached[id] = u->cached_tokens;
}

static int prompt_of(int i, int32_t *p) {
    int n = 22 + (i * 7) % 13;
    for (int j = 0; j < n; j++)
        p[j] = j < 20 && i % 2 == 0 ? (int32_t)((j * 13 + 7) % V) : (int32_t)((j * 31 + i * 57 + 3) % V);
    return n;
}

static gt_sampler_config samp_of(int i) {
    gt_sampler_config s = GT_SAMPLER_CONFIG_INIT;
    s.temperature = i % 3 ? 0.8f : 0.0f;
    s.top_k = 8;
    s.seed = 7 + (uint64_t)i;
    return s;
}

static int fail(const char *what) {
    fprintf(stderr, "test_sched_grid: %s: %s\n", what, gt_last_error());
    return 1;
}

int main(int argc, char **argv) {
    int tp = argc > 1 ? atoi(argv[1]) : 1, pp = argc > 2 ? atoi(argv[2]) : 1;
    char name[64];
    snprintf(name, sizeof name, "sched_grid_r%d.gguf", gt_rank_launch_rank());
    gt_synth_config sc = gt_test_tiny_model("llama", GT_F32, V, 21);
    const char *path = gt_test_synth(&sc, 0, name);
    gt_rank_config rc = GT_RANK_CONFIG_INIT;
    rc.eng.model_path = path;
    rc.eng.isa = "ref";
    rc.eng.n_ctx = 96;
    rc.eng.max_seqs = 4;
    rc.eng.max_batch_tokens = 16;
    rc.eng.kv_block_size = 4;
    rc.tp = tp;
    rc.pp = pp;
    rc.max_cand = 8;
    gt_coord *c = NULL;
    if (gt_coord_create(&rc, &c) != GT_OK) return fail("start");
    if (!gt_coord_leads(c)) {
        gt_status st = gt_coord_follow(c);
        gt_coord_destroy(c);
        return st == GT_OK ? 0 : fail("follow");
    }
    int failures = 0;
    int32_t want[N_REQ][MAX_GEN], prompts[N_REQ][40];
    int lens[N_REQ];
    for (int i = 0; i < N_REQ; i++) { /* solo, direct path, sequence 0 */
        lens[i] = prompt_of(i, prompts[i]);
        gt_sampler_config s = samp_of(i);
        gt_sampler *smp = NULL;
        int32_t seq = 0;
        if (gt_sampler_create(&s, V, &smp) != GT_OK || gt_coord_free_seq(c, 0) != GT_OK ||
            gt_coord_set_sampler(c, 0, smp) != GT_OK || gt_coord_prefill(c, 0, prompts[i], lens[i], NULL) != GT_OK)
            gt_coord_abort(c, 1);
        for (int g = 0; g < MAX_GEN; g++) {
            if (gt_coord_next_token(c, 0, &want[i][g]) != GT_OK) gt_coord_abort(c, 1);
            if (g + 1 < MAX_GEN && gt_coord_decode(c, 1, &seq, &want[i][g]) != GT_OK) gt_coord_abort(c, 1);
        }
        gt_coord_set_sampler(c, 0, NULL);
        gt_sampler_destroy(smp);
    }
    gt_coord_free_seq(c, 0);
    gt_sched *s = NULL;
    gt_sched_config cfg = GT_SCHED_CONFIG_INIT;
    if (gt_sched_create(c, &cfg, &s) != GT_OK) gt_coord_abort(c, 1);
    for (int i = 0; i < N_REQ; i++) {
        gt_sched_req r = {.id = (uint64_t)i, .prompt = prompts[i], .n_prompt = lens[i], .samp = samp_of(i),
                          .max_tokens = MAX_GEN, .on_token = on_token, .on_done = on_done};
        if (gt_sched_submit(s, &r) != GT_OK) gt_coord_abort(c, 1);
    }
    bool work = true;
    while (work)
        if (gt_sched_step(s, &work) != GT_OK) {
            fail("step");
            gt_coord_abort(c, 1);
        }
    int cached = 0;
    for (int i = 0; i < N_REQ; i++) {
        bool ok = g_done[i] == 1 && g_n[i] == MAX_GEN && memcmp(g_toks[i], want[i], sizeof want[i]) == 0;
        printf("%s tp %d pp %d: request %d (%d prompt tokens, %d from the prefix cache) equals its solo run\n",
               ok ? "ok  " : "FAIL", tp, pp, i, lens[i], g_cached[i]);
        failures += !ok;
        cached += g_cached[i];
    }
    printf("%s tp %d pp %d: %d prompt tokens came from the prefix cache\n", cached > 0 ? "ok  " : "FAIL", tp,
           pp, cached);
    failures += cached == 0;
    gt_sched_destroy(s);
    gt_coord_destroy(c);
    return failures ? 1 : 0;
}
