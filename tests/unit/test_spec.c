/* Speculative decoding must not change what is generated.
 *
 * - KV truncation: a sequence that decoded tokens A, was truncated and then
 *   decoded B gives the same logits, bit for bit, as a fresh sequence that
 *   decoded the kept part of A and then B in the same batches; the prefix
 *   index forgets the rewritten block and files the new tokens.
 * - Prompt lookup finds the latest, longest match.
 * - Greedy: every proposer (prompt lookup, a draft model, the target's first
 *   layer) and draft length 1, 3, 8 over many prompts gives the plain
 *   decode's tokens (the oracle: gt_coord_decode one token at a time, which
 *   shares nothing with the verification), also with two sequences
 *   speculating in turns, whose truncations travel with each other's steps.
 * - Sampling: the first two tokens drawn with speculation (a different
 *   random model as the draft; prompt lookup) follow the exact joint
 *   distribution computed here from the target's logits (its own softmax
 *   over the top-k, not the sampler's), by a chi-square test whose
 *   threshold a correct implementation passes with probability above
 *   1 - 1e-6; the plain sampler is checked the same way. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "coordinator/spec.h"
#include "model/synth.h"
#include "util/test_util.h"
#include "worker/engine.h"

enum { V = 64, CTX = 128, GEN = 24 };

/* Written once (an open engine maps the file). */
static const char *target_path(void) {
    static const char *path;
    if (!path) {
        gt_synth_config c = gt_test_tiny_model("llama", GT_F32, V, 21);
        path = gt_test_synth(&c, 0, "spec_target.gguf");
    }
    return path;
}

static const char *draft_path(void) {
    static const char *path;
    if (!path) {
        gt_synth_config c = gt_test_tiny_model("llama", GT_F32, V, 22);
        c.n_layer = 1;
        path = gt_test_synth(&c, 1, "spec_draft.gguf");
    }
    return path;
}

/* ---- KV truncation, on the engine ---- */

static gt_engine *open_engine(const char *path) {
    gt_engine_config ec = GT_ENGINE_CONFIG_INIT;
    ec.model_path = path;
    ec.n_ctx = 64;
    ec.max_seqs = 3;
    ec.kv_block_size = 4;
    ec.max_batch_tokens = 32;
    ec.max_out_rows = 32;
    gt_engine *e = NULL;
    if (gt_engine_create(&ec, &e) != GT_OK) fail_msg("engine: %s", gt_last_error());
    return e;
}

/* Decodes toks[n] at the end of seq in one batch; all rows' logits into out. */
static void decode(gt_engine *e, int seq, const int32_t *toks, int n, float *out) {
    int32_t pos[32], sq[32];
    int8_t want[32];
    uint32_t p0 = gt_engine_seq_len(e, seq);
    for (int i = 0; i < n; i++) {
        pos[i] = (int32_t)p0 + i;
        sq[i] = seq;
        want[i] = 1;
    }
    gt_batch b = {n, toks, pos, sq, want};
    if (gt_engine_decode(e, &b, gt_engine_logits(e)) != GT_OK)
        fail_msg("decode: %s", gt_last_error());
    if (out) memcpy(out, gt_engine_logits(e), (size_t)n * V * sizeof *out);
}

static void test_kv_truncate(void **state) {
    (void)state;
    gt_engine *e = open_engine(target_path());
    int32_t a[20], b[7];
    for (int i = 0; i < 20; i++) a[i] = (i * 7 + 3) % V;
    for (int i = 0; i < 7; i++) b[i] = (i * 11 + 5) % V;
    static float got[7 * V], want[7 * V];
    /* 20 tokens fill blocks 0..4 (all indexed); truncating to 13 keeps
     * blocks 0..3 and rewrites block 3 from row 1 on. */
    decode(e, 0, a, 20, NULL);
    assert_int_equal(gt_engine_prefix_cached(e, a, 20), 16);
    assert_int_equal(gt_engine_seq_truncate(e, 0, 21), GT_ERR_INVALID_ARG);
    assert_int_equal(gt_engine_seq_truncate(e, 0, 13), GT_OK);
    assert_int_equal(gt_engine_seq_len(e, 0), 13);
    /* Block 3 left the index (its rows will change); blocks 0..2 stay. */
    assert_int_equal(gt_engine_prefix_cached(e, a, 20), 12);
    decode(e, 0, b, 7, got);
    /* The oracle: a fresh sequence with the kept tokens, then b. */
    decode(e, 1, a, 13, NULL);
    decode(e, 1, b, 7, want);
    assert_memory_equal(got, want, sizeof got);
    /* The new tokens are filed: a sequence with them attaches 4 blocks
     * (16 tokens) and its next row equals the uncached one. */
    int32_t ab[21];
    memcpy(ab, a, 13 * sizeof *a);
    memcpy(ab + 13, b, 7 * sizeof *b);
    ab[20] = 9;
    assert_int_equal(gt_engine_prefix_cached(e, ab, 21), 20);
    gt_engine_seq_clear(e, 1);
    assert_int_equal(gt_engine_seq_attach(e, 2, ab, 20), GT_OK);
    static float row[V], row_fresh[V];
    decode(e, 2, ab + 20, 1, row);
    decode(e, 0, ab + 20, 1, row_fresh);
    assert_memory_equal(row, row_fresh, sizeof row);
    /* A truncation inside a block another sequence shares is refused. */
    assert_int_equal(gt_engine_seq_truncate(e, 2, 6), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "share"));
    /* Truncating to a block boundary, then to nothing. */
    assert_int_equal(gt_engine_seq_truncate(e, 0, 8), GT_OK);
    decode(e, 0, b, 3, got);
    gt_engine_seq_clear(e, 1);
    decode(e, 1, a, 8, NULL);
    decode(e, 1, b, 3, want);
    assert_memory_equal(got, want, 3 * V * sizeof *got);
    assert_int_equal(gt_engine_seq_truncate(e, 0, 0), GT_OK);
    assert_int_equal(gt_engine_seq_len(e, 0), 0);
    gt_engine_destroy(e);
}

static void test_lookup(void **state) {
    (void)state;
    int32_t out[8];
    /* ... 1 2 3 | 9 ... 1 2 3 | 4 5 ... 2 3: the latest "2 3" wins over the
     * trigram, which does not occur. */
    int32_t ctx[] = {1, 2, 3, 9, 8, 1, 2, 3, 4, 5, 7, 2, 3};
    int n = (int)(sizeof ctx / sizeof *ctx);
    assert_int_equal(gt_spec_lookup(ctx, n, 3, 4, out), 4);
    int32_t want[] = {4, 5, 7, 2};
    assert_memory_equal(out, want, sizeof want);
    /* k bounds the copy; the tokens up to the end of the context. */
    assert_int_equal(gt_spec_lookup(ctx, n, 3, 2, out), 2);
    int32_t tail[] = {1, 2, 3, 1, 2};
    assert_int_equal(gt_spec_lookup(tail, 5, 2, 8, out), 3); /* "1 2" at 0: 3 1 2 follow */
    int32_t follow[] = {3, 1, 2};
    assert_memory_equal(out, follow, sizeof follow);
    int32_t none[] = {1, 2, 3, 4};
    assert_int_equal(gt_spec_lookup(none, 4, 3, 4, out), 0);
    assert_int_equal(gt_spec_lookup(none, 1, 3, 4, out), 0);
}

/* ---- the coordinator ---- */

static gt_coord *open_coord(void) {
    gt_rank_config rc = GT_RANK_CONFIG_INIT;
    rc.eng.model_path = target_path();
    rc.eng.n_ctx = CTX;
    rc.eng.max_seqs = 2;
    rc.eng.max_batch_tokens = 16;
    rc.eng.kv_block_size = 4;
    rc.max_cand = 8;
    rc.max_out_rows = 16;
    gt_coord *c = NULL;
    if (gt_coord_create(&rc, &c) != GT_OK) fail_msg("coordinator: %s", gt_last_error());
    return c;
}

static void make_prompt(int i, int32_t *p, int *n) {
    gt_test_rng r;
    gt_test_rng_seed(&r, 100 + (uint64_t)i);
    int motif = 2 + i % 4, len = 8 + (i * 5) % 20;
    int32_t m[8];
    for (int j = 0; j < motif; j++) m[j] = (int32_t)(gt_test_rng_u64(&r) % V);
    for (int j = 0; j < len; j++)
        p[j] = gt_test_rng_u64(&r) % 5 == 0 ? (int32_t)(gt_test_rng_u64(&r) % V) : m[j % motif];
    *n = len;
}

static void plain_greedy(gt_coord *c, const int32_t *p, int n, int32_t *out) {
    gt_sampler_config sc = {0.0f, 40, 1.0f, 1, 0.0f, 0.0f};
    gt_sampler *s;
    assert_int_equal(gt_sampler_create(&sc, V, &s), GT_OK);
    assert_int_equal(gt_coord_set_sampler(c, 0, s), GT_OK);
    assert_int_equal(gt_coord_prefill(c, 0, p, n, NULL), GT_OK);
    int32_t seq = 0;
    for (int i = 0; i < GEN; i++) {
        assert_int_equal(gt_coord_next_token(c, 0, &out[i]), GT_OK);
        if (i + 1 < GEN) assert_int_equal(gt_coord_decode(c, 1, &seq, &out[i]), GT_OK);
    }
    assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);
    assert_int_equal(gt_coord_set_sampler(c, 0, NULL), GT_OK);
    gt_sampler_destroy(s);
}

/* Generates GEN tokens of seq with sp; returns them in out. */
static void spec_generate(gt_coord *c, gt_spec *sp, int seq, const int32_t *p, int n,
                          int32_t *out) {
    gt_sampler_config sc = {0.0f, 40, 1.0f, 1, 0.0f, 0.0f};
    gt_sampler *s;
    assert_int_equal(gt_sampler_create(&sc, V, &s), GT_OK);
    if (gt_spec_start(sp, seq, s, p, n, NULL, &out[0]) != GT_OK)
        fail_msg("start: %s", gt_last_error());
    int got = 1;
    while (got < GEN) {
        int m;
        if (gt_spec_round(sp, GEN - got, out + got, &m) != GT_OK)
            fail_msg("round: %s", gt_last_error());
        assert_true(m >= 1 && got + m <= GEN);
        got += m;
    }
    assert_int_equal(gt_coord_free_seq(c, seq), GT_OK);
    assert_int_equal(gt_coord_set_sampler(c, seq, NULL), GT_OK);
    gt_sampler_destroy(s);
}

static void test_greedy_equal(void **state) {
    (void)state;
    gt_coord *c = open_coord();
    enum { N_PROMPTS = 10 };
    static int32_t want[N_PROMPTS][GEN];
    int32_t p[40];
    int n;
    for (int i = 0; i < N_PROMPTS; i++) {
        make_prompt(i, p, &n);
        plain_greedy(c, p, n, want[i]);
    }
    const int ks[] = {1, 3, 8};
    for (int kind = 0; kind < 3; kind++) {
        for (int ki = 0; ki < 3; ki++) {
            gt_spec_config cfg = GT_SPEC_CONFIG_INIT;
            cfg.draft_tokens = ks[ki];
            if (kind == 0) cfg.lookup = 3;
            if (kind == 1) cfg.draft_path = draft_path();
            if (kind == 2) cfg.self_draft_layers = 1;
            gt_spec *sp;
            if (gt_spec_create(c, &cfg, &sp) != GT_OK) fail_msg("spec: %s", gt_last_error());
            for (int i = 0; i < N_PROMPTS; i++) {
                int32_t got[GEN];
                make_prompt(i, p, &n);
                spec_generate(c, sp, 0, p, n, got);
                for (int t = 0; t < GEN; t++)
                    if (got[t] != want[i][t])
                        fail_msg(
                            "proposer %d, K %d, prompt %d: token %d is %d, plain decode gives %d",
                            kind, ks[ki], i, t, got[t], want[i][t]);
            }
            gt_spec_stats st = gt_spec_get_stats(sp);
            print_message("proposer %d K %d: %llu steps, %llu of %llu accepted\n", kind, ks[ki],
                          (unsigned long long)st.steps, (unsigned long long)st.accepted,
                          (unsigned long long)st.drafted);
            /* The first layer of the target and its own context's
             * repetitions guess some tokens right. */
            if (kind != 1) assert_true(st.accepted > 0);
            assert_int_equal(st.emitted, st.accepted + st.steps);
            gt_spec_destroy(sp);
        }
    }
    /* Two sequences in turns: each one's truncations go out with the
     * other's verification steps. */
    gt_spec_config cfg = GT_SPEC_CONFIG_INIT;
    cfg.lookup = 2;
    cfg.draft_tokens = 3;
    gt_spec *s0, *s1;
    assert_int_equal(gt_spec_create(c, &cfg, &s0), GT_OK);
    assert_int_equal(gt_spec_create(c, &cfg, &s1), GT_OK);
    gt_sampler_config sc = {0.0f, 40, 1.0f, 1, 0.0f, 0.0f};
    gt_sampler *g0, *g1;
    assert_int_equal(gt_sampler_create(&sc, V, &g0), GT_OK);
    assert_int_equal(gt_sampler_create(&sc, V, &g1), GT_OK);
    int32_t p1[40], o0[GEN + 8], o1[GEN + 8];
    int n1;
    make_prompt(3, p, &n);
    make_prompt(6, p1, &n1);
    assert_int_equal(gt_spec_start(s0, 0, g0, p, n, NULL, &o0[0]), GT_OK);
    assert_int_equal(gt_spec_start(s1, 1, g1, p1, n1, NULL, &o1[0]), GT_OK);
    int a = 1, b = 1, m;
    while (a < GEN || b < GEN) {
        if (a < GEN) {
            assert_int_equal(gt_spec_round(s0, GEN - a, o0 + a, &m), GT_OK);
            a += m;
        }
        if (b < GEN) {
            assert_int_equal(gt_spec_round(s1, GEN - b, o1 + b, &m), GT_OK);
            b += m;
        }
    }
    assert_memory_equal(o0, want[3], sizeof want[3]);
    assert_memory_equal(o1, want[6], sizeof want[6]);
    gt_spec_destroy(s0);
    gt_spec_destroy(s1);
    gt_sampler_destroy(g0);
    gt_sampler_destroy(g1);
    gt_coord_destroy(c);
}

static void test_refusals(void **state) {
    (void)state;
    gt_coord *c = open_coord();
    gt_spec *sp = NULL;
    gt_spec_config cfg = GT_SPEC_CONFIG_INIT;
    cfg.lookup = 2;
    cfg.self_draft_layers = 1;
    assert_int_equal(gt_spec_create(c, &cfg, &sp), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "one proposer"));
    cfg = (gt_spec_config)GT_SPEC_CONFIG_INIT;
    cfg.self_draft_layers = 2; /* the model has 2 */
    assert_int_equal(gt_spec_create(c, &cfg, &sp), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "fewer layers than the model's 2"));
    gt_synth_config dc = gt_test_tiny_model("llama", GT_F32, V + 3, 5);
    cfg = (gt_spec_config)GT_SPEC_CONFIG_INIT;
    cfg.draft_path = gt_test_synth(&dc, 2, "spec_other_vocab.gguf");
    assert_int_equal(gt_spec_create(c, &cfg, &sp), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "vocabulary of 67 tokens, the target's has 64"));
    assert_null(sp);
    gt_coord_destroy(c);
}

/* ---- the sampled distribution ---- */

enum { TOPK = 8, N_TRIALS = 2000 };
static const float k_temp = 1.5f;

/* The sampler's target distribution, computed independently: softmax of
 * logits / T over the TOPK largest (ties to the lower id), in double. */
static void exact_probs(const float *logits, double *p) {
    int idx[TOPK];
    for (int k = 0; k < TOPK; k++) {
        int best = -1;
        for (int i = 0; i < V; i++) {
            bool used = false;
            for (int j = 0; j < k; j++) used |= idx[j] == i;
            if (!used && (best < 0 || logits[i] > logits[best])) best = i;
        }
        idx[k] = best;
    }
    double mx = logits[idx[0]] / k_temp, sum = 0;
    for (int i = 0; i < V; i++) p[i] = 0;
    for (int k = 0; k < TOPK; k++) sum += p[idx[k]] = exp(logits[idx[k]] / k_temp - mx);
    for (int k = 0; k < TOPK; k++) p[idx[k]] /= sum;
}

/* The exact joint p(t1, t2 | ctx) [V * V]. */
static void exact_joint(gt_coord *c, const int32_t *ctx, int n, double *joint) {
    static float logits[CTX * V];
    static double p1[V], p2[V];
    int32_t buf[CTX];
    assert_int_equal(gt_coord_prefill(c, 0, ctx, n, logits), GT_OK);
    assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);
    exact_probs(logits + (size_t)(n - 1) * V, p1);
    memcpy(buf, ctx, (size_t)n * sizeof *ctx);
    for (int t1 = 0; t1 < V; t1++) {
        for (int t2 = 0; t2 < V; t2++) joint[t1 * V + t2] = 0;
        if (p1[t1] == 0) continue;
        buf[n] = t1;
        assert_int_equal(gt_coord_prefill(c, 0, buf, n + 1, logits), GT_OK);
        assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);
        exact_probs(logits + (size_t)n * V, p2);
        for (int t2 = 0; t2 < V; t2++) joint[t1 * V + t2] = p1[t1] * p2[t2];
    }
}

/* Pearson's chi-square of counts[V * V] against the joint: cells expected
 * below 5 are pooled into one. Fails on a sample of probability 0. Returns
 * the statistic; *df its degrees of freedom. */
static double chi_square(const int *counts, const double *joint, int n, int *df) {
    double chi = 0, pool_e = 0, pool_o = 0;
    int cells = 0;
    for (int i = 0; i < V * V; i++) {
        if (joint[i] == 0) {
            if (counts[i])
                fail_msg("drew the pair (%d, %d), which has probability 0", i / V, i % V);
            continue;
        }
        double e = joint[i] * n;
        if (e < 5) {
            pool_e += e;
            pool_o += counts[i];
            continue;
        }
        chi += (counts[i] - e) * (counts[i] - e) / e;
        cells++;
    }
    if (pool_e > 0) {
        chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        cells++;
    }
    *df = cells - 1;
    return chi;
}

/* The chi-square value that a true null exceeds with probability below
 * 1e-6 (Wilson-Hilferty with z = 5.0, an upper tail of 2.9e-7). */
static double chi_threshold(int df) {
    double a = 2.0 / (9.0 * df), z = 5.0;
    return df * pow(1 - a + z * sqrt(a), 3);
}

/* Draws (t1, t2) N_TRIALS times after ctx, each with a fresh sampler of
 * seed s; sp NULL: plain decode. With speculation the first round may keep
 * both guesses and add a bonus token: the pair is its first two tokens,
 * which follow the joint as much as any prefix of an exact sampler's
 * output does. */
static void sample_pairs(gt_coord *c, gt_spec *sp, const int32_t *ctx, int n, int *counts) {
    memset(counts, 0, (size_t)V * V * sizeof *counts);
    for (int s = 0; s < N_TRIALS; s++) {
        gt_sampler_config sc = {k_temp, TOPK, 1.0f, (uint64_t)s + 1, 0.0f, 0.0f};
        gt_sampler *smp;
        assert_int_equal(gt_sampler_create(&sc, V, &smp), GT_OK);
        int32_t t[2 + 64];
        int got = 0;
        if (!sp) {
            int32_t seq = 0;
            assert_int_equal(gt_coord_set_sampler(c, 0, smp), GT_OK);
            assert_int_equal(gt_coord_prefill(c, 0, ctx, n, NULL), GT_OK);
            assert_int_equal(gt_coord_next_token(c, 0, &t[0]), GT_OK);
            assert_int_equal(gt_coord_decode(c, 1, &seq, &t[0]), GT_OK);
            assert_int_equal(gt_coord_next_token(c, 0, &t[1]), GT_OK);
        } else {
            assert_int_equal(gt_coord_set_sampler(c, 0, NULL), GT_OK);
            assert_int_equal(gt_coord_prefill(c, 0, ctx, n - 1, NULL), GT_OK);
            assert_int_equal(gt_spec_resume(sp, 0, smp, ctx, n), GT_OK);
            while (got < 2) { /* a round may give 3; the first two are the pair */
                int m;
                assert_int_equal(gt_spec_round(sp, 3 - got, t + got, &m), GT_OK);
                got += m;
            }
        }
        counts[t[0] * V + t[1]]++;
        assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);
        assert_int_equal(gt_coord_set_sampler(c, 0, NULL), GT_OK);
        gt_sampler_destroy(smp);
    }
}

static void check_distribution(const char *what, const int *counts, const double *joint) {
    int df;
    double chi = chi_square(counts, joint, N_TRIALS, &df), thr = chi_threshold(df);
    print_message("%s: chi-square %.1f with %d degrees of freedom (threshold %.1f)\n", what, chi,
                  df, thr);
    if (chi > thr)
        fail_msg("%s: chi-square %.1f exceeds %.1f (%d degrees of freedom)", what, chi, thr, df);
}

static void test_distribution(void **state) {
    (void)state;
    gt_coord *c = open_coord();
    /* The last token occurred earlier, followed by x, so prompt lookup
     * guesses x: the x that the target itself finds most likely there. */
    int32_t ctx[] = {3, 17, 40, 9, 5, 0, 8, 9, 5};
    int n = (int)(sizeof ctx / sizeof *ctx);
    static float lg[CTX * V];
    int best_x = 0;
    float best = -1e30f;
    for (int x = 0; x < V; x++) {
        ctx[5] = x;
        assert_int_equal(gt_coord_prefill(c, 0, ctx, n, lg), GT_OK);
        assert_int_equal(gt_coord_free_seq(c, 0), GT_OK);
        const float *row = lg + (size_t)(n - 1) * V;
        if (gt_argmax(row, V) == x && row[x] > best) {
            best = row[x];
            best_x = x;
        }
    }
    ctx[5] = best_x;
    static double joint[V * V];
    static int counts[V * V];
    exact_joint(c, ctx, n, joint);
    sample_pairs(c, NULL, ctx, n, counts);
    check_distribution("plain", counts, joint);
    gt_spec_config cfg = GT_SPEC_CONFIG_INIT;
    cfg.draft_path = draft_path();
    cfg.draft_tokens = 2;
    gt_spec *sp;
    assert_int_equal(gt_spec_create(c, &cfg, &sp), GT_OK);
    sample_pairs(c, sp, ctx, n, counts);
    gt_spec_stats st = gt_spec_get_stats(sp);
    print_message("draft: %llu of %llu accepted\n", (unsigned long long)st.accepted,
                  (unsigned long long)st.drafted);
    check_distribution("draft model", counts, joint);
    assert_true(st.accepted > 0 && st.accepted < st.drafted); /* both branches ran */
    gt_spec_destroy(sp);
    cfg = (gt_spec_config)GT_SPEC_CONFIG_INIT;
    cfg.lookup = 2;
    cfg.draft_tokens = 2;
    assert_int_equal(gt_spec_create(c, &cfg, &sp), GT_OK);
    sample_pairs(c, sp, ctx, n, counts);
    st = gt_spec_get_stats(sp);
    print_message("lookup: %llu of %llu accepted\n", (unsigned long long)st.accepted,
                  (unsigned long long)st.drafted);
    check_distribution("prompt lookup", counts, joint);
    assert_true(st.accepted > 0 && st.accepted < st.drafted);
    gt_spec_destroy(sp);
    gt_coord_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_truncate),  cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_greedy_equal), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_distribution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
