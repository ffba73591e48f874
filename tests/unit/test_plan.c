/* Rank grid and sharding plan tests.
 *
 * Small synthetic models (llama, tied llama, qwen3, llama-moe, Q4_K llama)
 * are planned over every grid of (tp, pp) in (1,1) (2,1) (4,1) (1,2) (1,4)
 * (2,2) (8,1), and checked against facts computed here independently:
 * - the ranks' layer, head, MLP column and vocabulary ranges cover each index
 *   exactly once per stage (kv heads tp / n_kv times when replicated), and
 *   every query head finds its kv head on its own rank;
 * - the weight bytes of all ranks add up to the sum of tensor sizes read from
 *   the file, each tensor multiplied by its copy count from name rules
 *   written here (norms tp times, replicated kv projections tp / n_kv times,
 *   a tied embedding twice when the first and last stage differ);
 * - a row-parallel slice's bytes, found with the returned offsets,
 *   dequantize to the same values as those columns of the whole row;
 * - MLP columns whose even split would cut a Q4_K block are dealt out in
 *   whole blocks (768 = 512 + 256 at tp 2, 256 + 256 + 256 + 0 at tp 4), for
 *   dense, routed-expert and shared-expert MLPs, against ranges written here;
 * - impossible layouts are refused with the status and the numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/quant.h"
#include "model/gguf.h"
#include "model/synth.h"
#include "parallel/grid.h"
#include "common/bytes.h"
#include "parallel/plan.h"
#include "util/test_util.h"

static const int k_layouts[][2] = {{1, 1}, {2, 1}, {4, 1}, {1, 2}, {1, 4}, {2, 2}, {8, 1}};

/* llama: 4 layers, hidden 256, 8 heads, 2 kv heads, MLP 512. */
static gt_synth_config base_cfg(const char *arch, gt_dtype type) {
    gt_synth_config c = GT_SYNTH_CONFIG_INIT;
    c.arch = arch;
    c.type = type;
    c.n_layer = 4;
    c.n_embd = 256;
    c.n_head = 8;
    c.n_head_kv = 2;
    c.n_ff = 512;
    c.n_vocab = 1001; /* not a multiple of any tp: the last slice takes the remainder */
    c.n_ctx = 1024;
    c.n_threads = 2;
    return c;
}

static gt_gguf *synth_open(const gt_synth_config *c, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s", gt_test_tmp_path(0, file));
    gt_status st = gt_synth_write(c, path);
    if (st != GT_OK) fprintf(stderr, "synth failed: %s\n", gt_last_error());
    assert_int_equal(st, GT_OK);
    gt_gguf *g = NULL;
    st = gt_gguf_open(path, &g);
    if (st != GT_OK) fprintf(stderr, "open failed: %s\n", gt_last_error());
    assert_int_equal(st, GT_OK);
    return g;
}

static gt_status build(const gt_gguf *g, int tp, int pp, gt_plan *p) {
    gt_plan_config cfg = GT_PLAN_CONFIG_INIT;
    cfg.tp = tp;
    cfg.pp = pp;
    cfg.n_ctx = 256;
    cfg.n_seqs = 2;
    return gt_plan_build(g, &cfg, p);
}

/* Copies of a tensor over the whole grid, from its name alone. */
static uint64_t copies(const char *name, const gt_hparams *hp, int tp, int pp) {
    if (strcmp(name, "token_embd.weight") == 0) return hp->tied_output && pp > 1 ? 2 : 1;
    if (strcmp(name, "output.weight") == 0) return 1;
    if (strstr(name, "norm") || strstr(name, "ffn_gate_inp")) return (uint64_t)tp;
    if (strstr(name, ".attn_k.") || strstr(name, ".attn_v."))
        return (uint32_t)tp > hp->n_head_kv ? (uint64_t)tp / hp->n_head_kv : 1;
    return 1;
}

/* Adds 1 to cover[i] for i in r; fails when r leaves [0, n). */
static void mark(int *cover, int64_t n, gt_range r, const char *what, int rank) {
    if (r.begin < 0 || r.end > n || r.begin > r.end)
        fail_msg("rank %d: %s range [%lld, %lld) is outside [0, %lld)", rank, what,
                 (long long)r.begin, (long long)r.end, (long long)n);
    for (int64_t i = r.begin; i < r.end; i++) cover[i]++;
}

static void expect_cover(const int *cover, int64_t n, int want, const char *what, int tp, int pp) {
    for (int64_t i = 0; i < n; i++)
        if (cover[i] != want)
            fail_msg("tp %d pp %d: %s index %lld is held %d times, expected %d", tp, pp, what,
                     (long long)i, cover[i], want);
}

/* Every range covers its dimension exactly once per stage (layers once
 * overall), and the bytes add up. */
static void check_plan(const gt_gguf *g, const gt_plan *p, int tp, int pp) {
    const gt_hparams *hp = &p->hp;
    assert_int_equal(p->n_ranks, tp * pp);
    int *layers = calloc(hp->n_layer, sizeof(int));
    assert_non_null(layers);
    for (int st = 0; st < pp; st++) {
        int64_t nff = hp->n_expert ? hp->n_ff_exp : hp->n_ff;
        int *heads = calloc(hp->n_head, sizeof(int)), *kv = calloc(hp->n_head_kv, sizeof(int));
        int *ff = calloc((size_t)nff, sizeof(int)), *voc = calloc(hp->n_vocab, sizeof(int));
        assert_true(heads && kv && ff && voc);
        for (int pos = 0; pos < tp; pos++) {
            int r = st * tp + pos;
            const gt_shard *s = &p->shards[r];
            assert_int_equal(s->grid.rank, r);
            assert_int_equal(s->grid.stage, st);
            assert_int_equal(s->grid.tp_rank, pos);
            assert_int_equal(s->first_stage, st == 0);
            assert_int_equal(s->last_stage, st == pp - 1);
            if (pos == 0) mark(layers, hp->n_layer, s->layers, "layer", r);
            assert_true(gt_range_len(s->layers) >= 1);
            assert_int_equal(s->layers.begin, p->shards[st * tp].layers.begin);
            mark(heads, hp->n_head, s->heads, "head", r);
            mark(kv, hp->n_head_kv, s->kv_heads, "kv head", r);
            mark(ff, nff, hp->n_expert ? s->ff_exp : s->ff, "MLP column", r);
            mark(voc, hp->n_vocab, s->vocab, "vocab", r);
            /* Query head h uses kv head h / (n_head / n_kv): it must be local. */
            for (int64_t h = s->heads.begin; h < s->heads.end; h++) {
                int64_t k = h / (hp->n_head / hp->n_head_kv);
                if (k < s->kv_heads.begin || k >= s->kv_heads.end)
                    fail_msg("tp %d rank %d: query head %lld needs kv head %lld, not held", tp, r,
                             (long long)h, (long long)k);
            }
            /* KV per token: K and V of head_dim for each local layer and kv head. */
            uint64_t kv_local = (uint32_t)tp >= hp->n_head_kv ? 1 : hp->n_head_kv / (uint32_t)tp;
            uint64_t want_kv = (uint64_t)gt_range_len(s->layers) * kv_local * 2 * hp->head_dim * 2;
            assert_int_equal(s->kv_bytes_per_token, want_kv);
            assert_int_equal(s->kv_bytes, want_kv * 256 * 2); /* ctx 256 × 2 seqs, whole blocks */
            assert_int_equal(s->total_bytes, s->weight_bytes + s->kv_bytes + s->act_bytes);
            assert_int_equal(s->weight_bytes, s->embd_bytes + s->head_bytes + s->attn_bytes +
                                                  s->ffn_bytes + s->expert_bytes +
                                                  s->replicated_bytes);
        }
        int kv_times = (uint32_t)tp > hp->n_head_kv ? tp / (int)hp->n_head_kv : 1;
        expect_cover(heads, hp->n_head, 1, "head", tp, pp);
        expect_cover(kv, hp->n_head_kv, kv_times, "kv head", tp, pp);
        expect_cover(ff, nff, 1, "MLP column", tp, pp);
        expect_cover(voc, hp->n_vocab, 1, "vocab", tp, pp);
        free(heads);
        free(kv);
        free(ff);
        free(voc);
    }
    expect_cover(layers, hp->n_layer, 1, "layer", tp, pp);
    free(layers);

    uint64_t want = 0, file = 0, got = 0;
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        want += t->nbytes * copies(t->name, hp, tp, pp);
        file += t->nbytes;
    }
    for (int r = 0; r < p->n_ranks; r++) got += p->shards[r].weight_bytes;
    if (got != want)
        fail_msg("tp %d pp %d: ranks hold %llu weight bytes, expected %llu (file %llu)", tp, pp,
                 (unsigned long long)got, (unsigned long long)want, (unsigned long long)file);
    assert_int_equal(p->model_bytes, file);
}

static void check_all_layouts(const gt_gguf *g) {
    for (size_t i = 0; i < sizeof k_layouts / sizeof k_layouts[0]; i++) {
        int tp = k_layouts[i][0], pp = k_layouts[i][1];
        gt_plan p;
        gt_status st = build(g, tp, pp, &p);
        if (st != GT_OK) fail_msg("tp %d pp %d: %s", tp, pp, gt_last_error());
        check_plan(g, &p, tp, pp);
        gt_plan_free(&p);
    }
}

static void test_grid(void **state) {
    (void)state;
    gt_grid g;
    assert_int_equal(gt_grid_init(8, 2, 4, 5, &g), GT_OK);
    assert_int_equal(g.stage, 2);
    assert_int_equal(g.tp_rank, 1);
    assert_int_equal(gt_grid_prev_rank(&g), 3);
    assert_int_equal(gt_grid_next_rank(&g), 7);
    assert_int_equal(gt_grid_rank_at(&g, 3, 0), 6);
    assert_int_equal(gt_grid_init(8, 2, 4, 7, &g), GT_OK);
    assert_int_equal(gt_grid_next_rank(&g), -1);
    assert_true(gt_grid_last_stage(&g));
    assert_int_equal(gt_grid_init(6, 4, 2, 0, &g), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "6 ranks"));
    assert_non_null(strstr(gt_last_error(), "tp 4"));
    assert_non_null(strstr(gt_last_error(), "pp 2"));
    assert_int_equal(gt_grid_init(0, 0, 1, 0, &g), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "tp 0"));
    assert_int_equal(gt_grid_init(4, 2, 2, 4, &g), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "rank 4"));
}

static void test_llama_q8(void **state) {
    (void)state;
    gt_synth_config c = base_cfg("llama", GT_Q8_0);
    gt_gguf *g = synth_open(&c, "plan_llama_q8.gguf");
    check_all_layouts(g);
    /* Fixed facts of the 2 × 2 grid. */
    gt_plan p;
    assert_int_equal(build(g, 2, 2, &p), GT_OK);
    const gt_shard *s3 = &p.shards[3];
    assert_int_equal(s3->layers.begin, 2);
    assert_int_equal(s3->layers.end, 4);
    assert_int_equal(s3->heads.begin, 4);
    assert_int_equal(s3->kv_heads.begin, 1);
    assert_int_equal(s3->kv_copies, 1);
    assert_int_equal(s3->ff.begin, 256);
    assert_int_equal(s3->vocab.begin, 500);
    assert_int_equal(s3->vocab.end, 1001);
    assert_int_equal(p.shards[0].head_bytes, 0);
    assert_int_equal(p.shards[3].embd_bytes, 0);
    assert_int_equal(p.pp_send_bytes, 256 * 4);
    assert_int_equal(p.tp_allreduces, 2 * 4 + 1);
    gt_plan_free(&p);
    gt_gguf_close(g);
}

static void test_llama_tied_f16(void **state) {
    (void)state;
    gt_synth_config c = base_cfg("llama", GT_F16);
    c.tied = true;
    c.n_layer = 5; /* pp 2: 3 + 2, pp 4: 2 + 1 + 1 + 1 */
    gt_gguf *g = synth_open(&c, "plan_llama_tied.gguf");
    check_all_layouts(g);
    gt_plan p;
    assert_int_equal(build(g, 1, 4, &p), GT_OK);
    int64_t want[4][2] = {{0, 2}, {2, 3}, {3, 4}, {4, 5}};
    for (int r = 0; r < 4; r++) {
        assert_int_equal(p.shards[r].layers.begin, want[r][0]);
        assert_int_equal(p.shards[r].layers.end, want[r][1]);
    }
    /* The tied head's rows live on the last stage as well. */
    const gt_tensor_info *emb = gt_gguf_find_tensor(g, "token_embd.weight");
    assert_int_equal(p.shards[3].head_bytes, emb->nbytes);
    assert_int_equal(p.shards[0].embd_bytes, emb->nbytes);
    gt_plan_free(&p);
    gt_gguf_close(g);
}

/* qwen3: q/k norms replicated; 8 heads over 4 kv heads, so tp 8 replicates. */
static void test_qwen3_replicated_kv(void **state) {
    (void)state;
    gt_synth_config c = base_cfg("qwen3", GT_F32);
    c.n_head_kv = 4;
    c.head_dim = 64; /* n_head × head_dim = 512 differs from n_embd */
    gt_gguf *g = synth_open(&c, "plan_qwen3.gguf");
    check_all_layouts(g);
    gt_plan p;
    assert_int_equal(build(g, 8, 1, &p), GT_OK);
    for (int r = 0; r < 8; r++) {
        assert_int_equal(p.shards[r].kv_copies, 2);
        assert_int_equal(p.shards[r].kv_heads.begin, r / 2);
        const gt_tensor_info *wk = gt_gguf_find_tensor(g, "blk.1.attn_k.weight");
        gt_tensor_slice sl;
        assert_int_equal(gt_plan_tensor_slice(&p.hp, &p.shards[r], wk, &sl), GT_OK);
        assert_int_equal(sl.split, GT_SPLIT_ROWS);
        assert_true(sl.replicated);
        assert_int_equal(sl.i0, (r / 2) * 64);
        assert_int_equal(sl.i1, (r / 2 + 1) * 64);
    }
    gt_plan_free(&p);
    gt_gguf_close(g);
}

static void test_moe(void **state) {
    (void)state;
    gt_synth_config c = base_cfg("llama-moe", GT_Q8_0);
    c.n_expert = 4;
    c.n_expert_used = 2;
    c.n_ff_exp = 256;
    gt_gguf *g = synth_open(&c, "plan_moe.gguf");
    check_all_layouts(g);
    gt_plan p;
    assert_int_equal(build(g, 2, 1, &p), GT_OK);
    const gt_tensor_info *t = gt_gguf_find_tensor(g, "blk.0.ffn_down_exps.weight");
    assert_non_null(t);
    /* Experts: half the columns of each of the 4 experts; the router whole. */
    assert_int_equal(p.shards[0].expert_bytes + p.shards[1].expert_bytes,
                     3 * 4 * t->nbytes); /* gate, up, down: same size here */
    gt_plan_free(&p);
    gt_gguf_close(g);
}

/* The bytes the slice offsets point at dequantize to the whole row's columns. */
static void check_cols_slice(const gt_tensor_info *t, int64_t c0, int64_t c1) {
    size_t off, rb, full;
    assert_int_equal(gt_plan_slice_cols(t, c0, c1, &off, &rb), GT_OK);
    assert_true(gt_dtype_row_bytes(t->type, t->ne[0], &full));
    float *whole = malloc((size_t)t->ne[0] * sizeof(float));
    float *part = malloc((size_t)(c1 - c0) * sizeof(float));
    assert_true(whole && part);
    for (int64_t row = 0; row < t->ne[1]; row += 37) {
        const uint8_t *base = (const uint8_t *)t->data + (size_t)row * full;
        assert_int_equal(gt_dequantize_row(t->type, base, whole, t->ne[0]), GT_OK);
        assert_int_equal(gt_dequantize_row(t->type, base + off, part, c1 - c0), GT_OK);
        char label[128];
        snprintf(label, sizeof label, "%s row %lld cols [%lld, %lld)", t->name, (long long)row,
                 (long long)c0, (long long)c1);
        assert_true(gt_test_allclose(label, part, whole + c0, (size_t)(c1 - c0), 1e-30, 0));
    }
    free(whole);
    free(part);
}

static gt_synth_config q4k_cfg(uint32_t n_ff) {
    gt_synth_config c = base_cfg("llama", GT_Q4_K);
    c.n_embd = 512; /* rows of 512: whole 256-element blocks */
    c.n_ff = n_ff;
    c.n_layer = 2;
    return c;
}

static void test_q4k_slices(void **state) {
    (void)state;
    gt_synth_config c = q4k_cfg(512);
    gt_gguf *g = synth_open(&c, "plan_q4k.gguf");
    const gt_tensor_info *down = gt_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    assert_int_equal(down->type, GT_Q4_K);
    check_cols_slice(down, 256, 512);
    check_cols_slice(down, 0, 256);
    /* tp 2 cuts wo (512 columns) and down (512) at 256: allowed. */
    gt_plan p;
    gt_status st = build(g, 2, 1, &p);
    if (st != GT_OK) fail_msg("%s", gt_last_error());
    check_plan(g, &p, 2, 1);
    assert_false(p.ff_split[GT_FF_DENSE].uneven); /* 256 + 256: the even split, as before */
    gt_tensor_slice sl;
    assert_int_equal(gt_plan_tensor_slice(&p.hp, &p.shards[1], down, &sl), GT_OK);
    assert_int_equal(sl.split, GT_SPLIT_COLS);
    assert_int_equal(sl.row_offset_bytes, sizeof(gt_block_q4_K));
    assert_int_equal(sl.row_bytes, sizeof(gt_block_q4_K));
    assert_int_equal(sl.nbytes, 512 * sizeof(gt_block_q4_K));
    gt_plan_free(&p);
    /* pp alone never slices rows. */
    assert_int_equal(build(g, 1, 2, &p), GT_OK);
    check_plan(g, &p, 1, 2);
    gt_plan_free(&p);
    /* tp 4 would cut wo's 512 columns at 128. */
    assert_int_equal(build(g, 4, 1, &p), GT_ERR_INVALID_ARG);
    const char *e = gt_last_error();
    if (!strstr(e, "blk.0.attn_output.weight is Q4_K (256-element blocks); tp 4 would slice its "
                   "512 columns at 128"))
        fail_msg("unexpected sentence: %s", e);
    assert_int_equal(gt_plan_slice_cols(down, 128, 256, &(size_t){0}, &(size_t){0}),
                     GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "256-element blocks"));
    gt_gguf_close(g);
}

/* Expected MLP column ranges of the tp ranks of one stage. */
typedef struct ff_case {
    int tp, pp;
    int64_t r[4][2];
} ff_case;

/* The slices of a row-parallel (down) and a column-parallel (gate) matrix of
 * an MLP split in whole blocks: ranges, byte offsets and sizes, and the
 * bytes found with them dequantize to those columns of the whole rows. */
static void check_ff_slices(const gt_plan *p, const gt_shard *s, gt_range want,
                            const gt_tensor_info *down, const gt_tensor_info *gate) {
    gt_tensor_slice sl;
    size_t blk = sizeof(gt_block_q4_K), gate_row;
    assert_true(gt_dtype_row_bytes(gate->type, gate->ne[0], &gate_row));
    assert_int_equal(gt_plan_tensor_slice(&p->hp, s, down, &sl), GT_OK);
    assert_int_equal(sl.split, GT_SPLIT_COLS);
    assert_int_equal(sl.i0, want.begin);
    assert_int_equal(sl.i1, want.end);
    assert_int_equal(sl.row_offset_bytes, (size_t)(want.begin / 256) * blk);
    assert_int_equal(sl.row_bytes, (size_t)(gt_range_len(want) / 256) * blk);
    assert_int_equal(sl.nbytes, (size_t)(down->ne[1] * down->ne[2]) * sl.row_bytes);
    assert_int_equal(gt_plan_tensor_slice(&p->hp, s, gate, &sl), GT_OK);
    assert_int_equal(sl.split, GT_SPLIT_ROWS);
    assert_int_equal(sl.i0, want.begin);
    assert_int_equal(sl.i1, want.end);
    assert_int_equal(sl.nbytes, (size_t)(gt_range_len(want) * gate->ne[2]) * gate_row);
    if (gt_range_len(want) > 0) check_cols_slice(down, want.begin, want.end);
}

/* Plans g over each case and checks dimension d's ranges on every rank. */
static void check_ff_cases(const gt_gguf *g, gt_ff_dim d, const ff_case *cases, size_t n_cases,
                           const char *down_name, const char *gate_name) {
    const gt_tensor_info *down = gt_gguf_find_tensor(g, down_name);
    const gt_tensor_info *gate = gt_gguf_find_tensor(g, gate_name);
    assert_true(down && gate);
    assert_int_equal(down->type, GT_Q4_K);
    for (size_t ci = 0; ci < n_cases; ci++) {
        const ff_case *fc = &cases[ci];
        gt_plan p;
        gt_status st = build(g, fc->tp, fc->pp, &p);
        if (st != GT_OK) fail_msg("tp %d pp %d: %s", fc->tp, fc->pp, gt_last_error());
        check_plan(g, &p, fc->tp, fc->pp);
        const gt_ff_split *f = &p.ff_split[d];
        assert_true(f->uneven);
        assert_int_equal(f->granule, 256);
        int64_t most = 0;
        for (int r = 0; r < p.n_ranks; r++) {
            const gt_shard *s = &p.shards[r];
            gt_range have = d == GT_FF_DENSE    ? s->ff
                            : d == GT_FF_EXPERT ? s->ff_exp
                                                : s->ff_shexp;
            gt_range want = {fc->r[s->grid.tp_rank][0], fc->r[s->grid.tp_rank][1]};
            if (have.begin != want.begin || have.end != want.end)
                fail_msg("tp %d pp %d rank %d: %s columns [%lld, %lld), expected [%lld, %lld)",
                         fc->tp, fc->pp, r, gt_ff_dim_name(d), (long long)have.begin,
                         (long long)have.end, (long long)want.begin, (long long)want.end);
            if (gt_range_len(want) > most) most = gt_range_len(want);
            /* Only the stage holding layer 1 slices its tensors. */
            if (s->layers.begin <= 1 && 1 < s->layers.end)
                check_ff_slices(&p, s, want, down, gate);
        }
        double want_imb = (double)most * fc->tp / (double)f->n;
        assert_true(gt_plan_ff_imbalance(f, fc->tp) == want_imb);
        gt_plan_free(&p);
    }
}

/* 768 columns of Q4_K are three 256-element blocks: tp 2 and tp 4 cannot
 * split them evenly, so they are dealt out in whole blocks, the first ranks
 * one more; at tp 4 the last rank holds none. (This layout was refused
 * before: "tp 2 would slice its 768 columns at 384".) */
static void test_q4k_ffn_uneven(void **state) {
    (void)state;
    gt_synth_config c = q4k_cfg(768);
    c.head_dim = 128; /* wo's 1024 Q4_K columns stay whole blocks per rank at tp 4 */
    gt_gguf *g = synth_open(&c, "plan_q4k_768.gguf");
    const ff_case cases[] = {
        {2, 1, {{0, 512}, {512, 768}}},
        {2, 2, {{0, 512}, {512, 768}}},
        {4, 1, {{0, 256}, {256, 512}, {512, 768}, {768, 768}}},
    };
    check_ff_cases(g, GT_FF_DENSE, cases, sizeof cases / sizeof cases[0], "blk.1.ffn_down.weight",
                   "blk.1.ffn_gate.weight");
    /* The rank without columns holds no MLP bytes but the rest of its layers. */
    gt_plan p;
    assert_int_equal(build(g, 4, 1, &p), GT_OK);
    const gt_tensor_info *down = gt_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    assert_int_equal(p.shards[3].ffn_bytes, 0);
    assert_int_equal(p.shards[0].ffn_bytes, 2 * 3 * down->nbytes / 3); /* 2 layers, 1 of 3 blocks */
    assert_true(p.shards[3].attn_bytes > 0);
    gt_plan_free(&p);
    gt_gguf_close(g);
}

/* Routed experts (llama-moe, 768 columns each) and a shared expert
 * (qwen2moe, 768) split in whole blocks; qwen2moe's 256-column experts are
 * one block, all on the first rank at tp 2. */
static void test_moe_uneven(void **state) {
    (void)state;
    gt_synth_config c = base_cfg("llama-moe", GT_Q4_K);
    c.n_layer = 2;
    c.n_embd = 256;
    c.head_dim = 128; /* 8 heads: wo has 1024 columns */
    c.n_expert = 4;
    c.n_expert_used = 2;
    c.n_ff_exp = 768;
    gt_gguf *g = synth_open(&c, "plan_moe_768.gguf");
    const ff_case cases[] = {
        {2, 1, {{0, 512}, {512, 768}}},
        {4, 1, {{0, 256}, {256, 512}, {512, 768}, {768, 768}}},
    };
    check_ff_cases(g, GT_FF_EXPERT, cases, sizeof cases / sizeof cases[0],
                   "blk.1.ffn_down_exps.weight", "blk.1.ffn_up_exps.weight");
    gt_gguf_close(g);

    c.arch = "qwen2moe";
    c.n_ff_exp = 256;
    c.n_ff_shexp = 768;
    g = synth_open(&c, "plan_qwen2moe_768.gguf");
    const ff_case shared[] = {{2, 1, {{0, 512}, {512, 768}}}};
    check_ff_cases(g, GT_FF_SHARED, shared, 1, "blk.1.ffn_down_shexp.weight",
                   "blk.1.ffn_gate_shexp.weight");
    const ff_case experts[] = {{2, 1, {{0, 256}, {256, 256}}}};
    check_ff_cases(g, GT_FF_EXPERT, experts, 1, "blk.1.ffn_down_exps.weight",
                   "blk.1.ffn_gate_exps.weight");
    gt_plan p;
    assert_int_equal(build(g, 2, 1, &p), GT_OK);
    assert_int_equal(p.shards[1].expert_bytes, 0);
    assert_true(p.shards[0].expert_bytes > 0);
    gt_plan_free(&p);
    gt_gguf_close(g);
}

/* The split itself, on the widths of real checkpoints (ranges computed by
 * hand): Llama-2-7B's 11008 = 43 blocks at tp 2, Qwen2.5-7B's 18944 = 74
 * blocks at tp 4, Qwen3-30B-A3B's experts of 768 at tp 2; and even splits,
 * which stay n p / tp. */
static void test_ff_range(void **state) {
    (void)state;
    const struct {
        gt_ff_split f;
        int tp;
        int64_t want[4][2];
        double imbalance;
    } cases[] = {
        {{11008, 256, true}, 2, {{0, 5632}, {5632, 11008}}, 5632.0 * 2 / 11008},
        {{18944, 256, true},
         4,
         {{0, 4864}, {4864, 9728}, {9728, 14336}, {14336, 18944}},
         4864.0 * 4 / 18944},
        {{768, 256, true}, 2, {{0, 512}, {512, 768}}, 512.0 * 2 / 768},
        {{1001, 1, false}, 4, {{0, 250}, {250, 500}, {500, 750}, {750, 1001}}, 251.0 * 4 / 1001},
        {{512, 32, false}, 4, {{0, 128}, {128, 256}, {256, 384}, {384, 512}}, 1.0},
        {{3, 1, false}, 4, {{0, 0}, {0, 1}, {1, 2}, {2, 3}}, 4.0 / 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int p = 0; p < cases[i].tp; p++) {
            gt_range r = gt_plan_ff_range(&cases[i].f, p, cases[i].tp);
            if (r.begin != cases[i].want[p][0] || r.end != cases[i].want[p][1])
                fail_msg("n %lld tp %d rank %d: [%lld, %lld), expected [%lld, %lld)",
                         (long long)cases[i].f.n, cases[i].tp, p, (long long)r.begin,
                         (long long)r.end, (long long)cases[i].want[p][0],
                         (long long)cases[i].want[p][1]);
        }
        double imb = gt_plan_ff_imbalance(&cases[i].f, cases[i].tp);
        if (imb != cases[i].imbalance)
            fail_msg("n %lld tp %d: imbalance %.6f, expected %.6f", (long long)cases[i].f.n,
                     cases[i].tp, imb, cases[i].imbalance);
    }
}

static void expect_refusal(const gt_gguf *g, int world, int tp, int pp, const char *words) {
    gt_plan_config cfg = GT_PLAN_CONFIG_INIT;
    cfg.world = world;
    cfg.tp = tp;
    cfg.pp = pp;
    gt_plan p;
    gt_status st = gt_plan_build(g, &cfg, &p);
    if (st != GT_ERR_INVALID_ARG || !strstr(gt_last_error(), words))
        fail_msg("world %d tp %d pp %d: status %d '%s', expected a refusal with '%s'", world, tp,
                 pp, st, gt_last_error(), words);
}

static void test_refusals(void **state) {
    (void)state;
    gt_synth_config c = base_cfg("llama", GT_F32);
    gt_gguf *g = synth_open(&c, "plan_refuse.gguf");
    expect_refusal(g, 3, 3, 1, "8 attention heads do not divide over tp 3");
    expect_refusal(g, 5, 1, 5, "pp 5 asks for more pipeline stages than the model's 4 layers");
    expect_refusal(g, 3, 2, 2, "3 ranks cannot form a grid of tp 2 × pp 2");
    expect_refusal(g, 0, 0, 1, "tp 0");
    gt_gguf_close(g);
    /* 24 heads over 8 kv heads: tp 6 splits kv unevenly, tp 12 cannot replicate. */
    c.n_embd = 384;
    c.n_head = 24;
    c.n_head_kv = 8;
    g = synth_open(&c, "plan_refuse_kv.gguf");
    expect_refusal(g, 6, 6, 1, "8 kv heads do not divide over tp 6");
    expect_refusal(g, 12, 12, 1, "8 kv heads cannot be replicated over tp 12");
    /* tp 24 replicates each kv head 3 times, which is fine. */
    gt_plan p;
    assert_int_equal(build(g, 24, 1, &p), GT_OK);
    check_plan(g, &p, 24, 1);
    gt_plan_free(&p);
    gt_gguf_close(g);
}

static void test_memory_budget(void **state) {
    (void)state;
    gt_synth_config c = base_cfg("llama", GT_Q8_0);
    gt_gguf *g = synth_open(&c, "plan_mem.gguf");
    gt_plan p;
    assert_int_equal(build(g, 2, 1, &p), GT_OK);
    gt_shard s = p.shards[1];
    gt_plan_config cfg = p.cfg;
    cfg.mem_budget_bytes = s.weight_bytes + s.act_bytes + 3 * s.kv_block_bytes + 1;
    gt_plan_fill_memory(&cfg, &s);
    assert_true(s.weights_fit);
    assert_int_equal(s.kv_blocks_fit, 3);
    assert_int_equal(s.kv_tokens_fit, 3 * 16);
    cfg.mem_budget_bytes = s.weight_bytes - 1000;
    gt_plan_fill_memory(&cfg, &s);
    assert_false(s.weights_fit);
    assert_int_equal(s.offload_bytes, s.act_bytes + 1000);
    assert_int_equal(s.offload_expert_bytes, 0); /* a dense model has no experts to move */
    assert_int_equal(s.kv_blocks_fit, 0);
    gt_plan_free(&p);
    gt_gguf_close(g);

    uint64_t b;
    assert_int_equal(gt_parse_bytes("2G", &b), GT_OK);
    assert_int_equal(b, 2ull << 30);
    assert_int_equal(gt_parse_bytes("1.5GiB", &b), GT_OK);
    assert_int_equal(b, 3ull << 29);
    assert_int_equal(gt_parse_bytes("512m", &b), GT_OK);
    assert_int_equal(b, 512ull << 20);
    assert_int_equal(gt_parse_bytes("123", &b), GT_OK);
    assert_int_equal(b, 123);
    assert_int_equal(gt_parse_bytes("12X", &b), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "12X"));
    assert_int_equal(gt_parse_bytes("-1G", &b), GT_ERR_INVALID_ARG);
    char buf[24];
    assert_string_equal(gt_format_bytes(3ull << 29, buf, sizeof buf), "1.50 GiB");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid),
        cmocka_unit_test(test_llama_q8),
        cmocka_unit_test(test_llama_tied_f16),
        cmocka_unit_test(test_qwen3_replicated_kv),
        cmocka_unit_test(test_moe),
        cmocka_unit_test(test_q4k_slices),
        cmocka_unit_test(test_q4k_ffn_uneven),
        cmocka_unit_test(test_moe_uneven),
        cmocka_unit_test(test_ff_range),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_memory_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
