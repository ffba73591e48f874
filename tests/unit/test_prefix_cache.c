/* Prefix caching in the paged KV cache must not change a single logit.
 *
 * The oracle is the same prompt computed from scratch on a sequence of its
 * own. With the scalar kernels (--isa ref) and an f32 cache every row is
 * computed in one order whatever the batch, so the logits of a sequence
 * that attached cached blocks and computed only its tail must equal the
 * oracle's bit for bit. Also: only whole matching blocks are reused (a
 * prompt that diverges inside a block stops there), two sequences can
 * share the same cached blocks and diverge without disturbing each other,
 * cached blocks are evicted (least recently released first) only when the
 * pool runs out, and attaching refuses non-empty sequences and prefixes
 * that are not cached. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "model/synth.h"
#include "util/test_util.h"
#include "worker/engine.h"

enum { V = 300, BS = 4, CTX = 32, SEQS = 3 };

static gt_engine *open_engine_host(uint64_t host_bytes) {
    gt_synth_config c = gt_test_tiny_model("llama", GT_F32, V, 5);
    const char *path = gt_test_synth(&c, 0, "prefix_llama.gguf");
    gt_engine_config ec = GT_ENGINE_CONFIG_INIT;
    ec.model_path = path;
    ec.isa = "ref";
    ec.n_ctx = CTX;
    ec.max_seqs = SEQS;
    ec.kv_block_size = BS;
    ec.kv_type = GT_F32;
    ec.max_batch_tokens = 32;
    ec.kv_host_bytes = host_bytes;
    gt_engine *e = NULL;
    if (gt_engine_create(&ec, &e) != GT_OK) fail_msg("engine: %s", gt_last_error());
    return e;
}

static gt_engine *open_engine(void) { return open_engine_host(0); }

/* Evaluates toks[n] at the end of seq in one batch; logits of every token. */
static void eval(gt_engine *e, int seq, const int32_t *toks, int n, float *logits) {
    int32_t pos[32], sq[32];
    int8_t want[32];
    uint32_t p0 = gt_engine_seq_len(e, seq);
    for (int i = 0; i < n; i++) {
        pos[i] = (int32_t)(p0 + (uint32_t)i);
        sq[i] = seq;
        want[i] = 1;
    }
    gt_batch b = {n, toks, pos, sq, want};
    assert_int_equal(gt_engine_decode(e, &b, logits), GT_OK);
}

static void prompt(int32_t *t, int n, int salt) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)((i * 41 + salt * 7 + 11) % V);
}

static float g_ref[32 * V], g_got[32 * V];

static void test_reuse_is_exact(void **state) {
    (void)state;
    gt_engine *e = open_engine();
    int32_t a[13], b[15];
    prompt(a, 13, 0);
    memcpy(b, a, 11 * sizeof *b); /* b shares 11 tokens: two whole blocks and 3 of the third */
    b[11] = 299, b[12] = 1, b[13] = 2, b[14] = 3;
    assert_int_equal(gt_engine_prefix_cached(e, b, 15), 0);
    eval(e, 0, a, 13, g_got);
    gt_engine_seq_clear(e, 0);
    /* Blocks 0..2 of a were full and stay cached; only 2 match b. */
    assert_int_equal(gt_engine_prefix_cached(e, a, 13), 12);
    assert_int_equal(gt_engine_prefix_cached(e, a, 12), 8); /* the last token is always computed */
    assert_int_equal(gt_engine_prefix_cached(e, b, 15), 8);

    uint32_t hit = gt_engine_prefix_cached(e, b, 15);
    assert_int_equal(gt_engine_seq_attach(e, 1, b, hit), GT_OK);
    assert_int_equal(gt_engine_seq_len(e, 1), 8);
    eval(e, 2, b, 15, g_ref); /* the oracle: b from scratch */
    /* Computing b filled its third block: now that one is cached too. */
    assert_int_equal(gt_engine_prefix_cached(e, b, 15), 12);
    eval(e, 1, b + 8, 7, g_got);
    assert_memory_equal(g_got, g_ref + 8 * V, 7 * V * sizeof(float));
    gt_engine_destroy(e);
}

static void test_shared_blocks_diverge(void **state) {
    (void)state;
    gt_engine *e = open_engine();
    int32_t a[16], x[4] = {5, 6, 7, 8}, y[4] = {9, 10, 11, 12};
    prompt(a, 16, 3);
    eval(e, 0, a, 16, g_got);
    gt_engine_seq_clear(e, 0);
    /* Two sequences hold the same 3 cached blocks and continue differently. */
    assert_int_equal(gt_engine_seq_attach(e, 0, a, 12), GT_OK);
    assert_int_equal(gt_engine_seq_attach(e, 1, a, 12), GT_OK);
    eval(e, 0, a + 12, 4, g_got);  /* a's own last block, written to a fresh block */
    eval(e, 1, x, 4, g_got + 4 * V);
    eval(e, 0, y, 4, g_got + 8 * V);
    /* Oracle: sequence 2 from scratch, a then y; then a[..12] + x. */
    gt_engine_seq_clear(e, 2);
    int32_t ay[20], ax[16];
    memcpy(ay, a, sizeof a);
    memcpy(ay + 16, y, sizeof y);
    memcpy(ax, a, 12 * sizeof *a);
    memcpy(ax + 12, x, sizeof x);
    /* Sequence 2 must not find a's blocks through the cache here: evaluate
     * from position 0 explicitly. */
    eval(e, 2, ay, 20, g_ref);
    assert_memory_equal(g_got, g_ref + 12 * V, 4 * V * sizeof(float));
    assert_memory_equal(g_got + 8 * V, g_ref + 16 * V, 4 * V * sizeof(float));
    gt_engine_seq_clear(e, 2);
    eval(e, 2, ax, 16, g_ref);
    assert_memory_equal(g_got + 4 * V, g_ref + 12 * V, 4 * V * sizeof(float));
    /* Attaching refuses a sequence that holds tokens, and a prefix not cached. */
    assert_int_equal(gt_engine_seq_attach(e, 1, a, 4), GT_ERR_INVALID_ARG);
    gt_engine_seq_clear(e, 1);
    int32_t other[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(gt_engine_seq_attach(e, 1, other, 8), GT_ERR_NOT_FOUND);
    assert_int_equal(gt_engine_seq_attach(e, 1, a, 6), GT_ERR_INVALID_ARG); /* not whole blocks */
    gt_engine_destroy(e);
}

static void test_eviction(void **state) {
    (void)state;
    gt_engine *e = open_engine();
    int32_t a[32], f[32];
    prompt(a, 32, 8);
    eval(e, 0, a, 32, g_got);
    gt_engine_seq_clear(e, 0);
    assert_int_equal(gt_engine_prefix_cached(e, a, 32), 28);
    /* The pool holds SEQS * CTX / BS = 24 blocks: a's 8 wait as cached. Two
     * full sequences of other tokens need 16, served from the 16 free
     * blocks first, so a stays cached. */
    prompt(f, 32, 9);
    eval(e, 1, f, 32, g_got);
    prompt(f, 32, 10);
    eval(e, 2, f, 32, g_got);
    assert_int_equal(gt_engine_prefix_cached(e, a, 32), 28);
    /* A third needs blocks that only eviction can give: the least recently
     * released go first, which are a's (a sequence releases its last block
     * first, so a prefix loses its tail before its head). */
    gt_engine_seq_clear(e, 1);
    prompt(f, 32, 11);
    eval(e, 0, f, 32, g_got);
    assert_true(gt_engine_prefix_cached(e, a, 32) < 28);
    /* Whatever was evicted, a computed again from scratch still matches its
     * first run. */
    gt_engine_seq_clear(e, 0);
    gt_engine_seq_clear(e, 2);
    eval(e, 1, a, 32, g_ref);
    gt_engine_seq_clear(e, 1);
    uint32_t hit = gt_engine_prefix_cached(e, a, 32);
    assert_int_equal(hit, 28);
    assert_int_equal(gt_engine_seq_attach(e, 2, a, hit), GT_OK);
    eval(e, 2, a + 28, 4, g_got);
    assert_memory_equal(g_got, g_ref + 28 * V, 4 * V * sizeof(float));
    gt_engine_destroy(e);
}

/* The host tier: a prefix evicted from the pool is kept in host memory and
 * copied back when a sequence attaches it; the tail computed after it
 * matches the first computation exactly. */
static void test_host_tier(void **state) {
    (void)state;
    /* 2 layers x (K and V) x 2 kv heads x 16 dims x 4 rows x 4 bytes = 2 KiB a block. */
    gt_engine *e = open_engine_host(16 * 2048);
    int32_t a[32], f[32];
    prompt(a, 32, 8);
    eval(e, 0, a, 32, g_ref);
    gt_engine_seq_clear(e, 0);
    prompt(f, 32, 9);
    eval(e, 1, f, 32, g_got);
    prompt(f, 32, 10);
    eval(e, 2, f, 32, g_got);
    gt_engine_seq_clear(e, 1);
    prompt(f, 32, 11);
    eval(e, 0, f, 32, g_got); /* evicts a's 8 blocks from the pool: to the host tier */
    gt_engine_kv_stats st = gt_engine_kv(e);
    assert_int_equal(st.host_blocks, 8);
    assert_int_equal(st.to_host_bytes, 8 * 2048);
    assert_int_equal(gt_engine_prefix_cached(e, a, 32), 28);
    gt_engine_seq_clear(e, 0);
    assert_int_equal(gt_engine_seq_attach(e, 0, a, 28), GT_OK);
    st = gt_engine_kv(e);
    assert_int_equal(st.from_host_bytes, 7 * 2048);
    eval(e, 0, a + 28, 4, g_got);
    assert_memory_equal(g_got, g_ref + 28 * V, 4 * V * sizeof(float));
    gt_engine_destroy(e);
    /* Without a host tier the same eviction drops the prefix. */
    e = open_engine();
    eval(e, 0, a, 32, g_ref);
    gt_engine_seq_clear(e, 0);
    prompt(f, 32, 9);
    eval(e, 1, f, 32, g_got);
    prompt(f, 32, 10);
    eval(e, 2, f, 32, g_got);
    gt_engine_seq_clear(e, 1);
    prompt(f, 32, 11);
    eval(e, 0, f, 32, g_got);
    assert_int_equal(gt_engine_prefix_cached(e, a, 32), 0);
    assert_int_equal(gt_engine_kv(e).host_blocks, 0);
    gt_engine_destroy(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_is_exact),
        cmocka_unit_test(test_shared_blocks_diverge),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_host_tier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
