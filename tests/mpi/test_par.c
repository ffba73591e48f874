/* Multi-rank test of gt_par's coordinator calls and vocabulary-parallel
 * candidates, run under mpirun on 1, 2 and 3 ranks, for every grid of that
 * many ranks (tp x pp).
 *
 * Oracle: every rank can compute what every other rank holds. The step plan
 * bytes are a pattern of the length; logits are exact small multiples of
 * 0.25 of (row, column); candidate logits come from one seed shared by all
 * ranks, rounded so that ties are common. Results must match exactly:
 * gt_par_bcast_plan (lengths not a multiple of 4 included), gt_par_gather_
 * logits on world rank 0 (uneven vocabulary slices, the last one longer),
 * and gt_par_top_candidates against a qsort of the whole vocabulary for k
 * of 1, 5, 40 and the whole vocabulary. Each rank counts its checks; rank 0
 * prints the totals; the exit status is non-zero on any failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cand.h"
#include "parallel/par.h"

static int g_pass, g_fail, g_rank;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            g_pass++;                                                                              \
        } else {                                                                                   \
            g_fail++;                                                                              \
            printf("FAIL [rank %d] ", g_rank);                                                     \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

enum { V = 1001 }; /* not a multiple of 2 or 3: uneven slices */

static float logit_at(int row, int col) { return (float)(row * 7919 + col) * 0.25f - 100.0f; }

/* The plan's split: V / tp rows per rank, the last one the rest. */
static void slice_of(int tp, int tp_rank, int64_t *v0, int64_t *n) {
    int64_t vb = V / tp;
    *v0 = tp_rank * vb;
    *n = tp_rank == tp - 1 ? V - *v0 : vb;
}

static void test_bcast_plan(gt_par *p, const char *grid) {
    static const size_t sizes[] = {1, 4, 13, 4099, 65536};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        unsigned char *buf = malloc(n);
        for (size_t i = 0; i < n; i++)
            buf[i] = g_rank == 0 ? (unsigned char)((i * 31 + n) & 0xff) : 0xAA;
        uint64_t calls = gt_par_get_stats(p)->n_calls;
        gt_status st = gt_par_bcast_plan(p, buf, n, "step plan");
        size_t bad = n;
        for (size_t i = 0; i < n && bad == n; i++)
            if (buf[i] != (unsigned char)((i * 31 + n) & 0xff)) bad = i;
        CHECK(st == GT_OK && bad == n,
              "%s: bcast_plan of %zu bytes: status %d, first wrong byte %zu", grid, n, (int)st,
              bad);
        int world = gt_par_grid(p)->world;
        CHECK(world == 1 || gt_par_get_stats(p)->n_calls == calls + 1,
              "%s: bcast_plan is not counted in the stats", grid);
        free(buf);
    }
}

static void test_gather_logits(gt_par *p, const char *grid) {
    const gt_grid *g = gt_par_grid(p);
    static const int rows[] = {1, 3};
    for (size_t ri = 0; ri < sizeof rows / sizeof *rows; ri++) {
        int n_rows = rows[ri];
        int64_t v0 = 0, n = 0;
        float *local = NULL;
        if (gt_grid_last_stage(g)) {
            slice_of(g->tp, g->tp_rank, &v0, &n);
            local = malloc((size_t)(n_rows * n) * sizeof *local);
            for (int r = 0; r < n_rows; r++)
                for (int64_t j = 0; j < n; j++) local[r * n + j] = logit_at(r, (int)(v0 + j));
        }
        float *full = NULL;
        if (g_rank == 0) {
            full = malloc((size_t)n_rows * V * sizeof *full);
            for (int64_t i = 0; i < (int64_t)n_rows * V; i++) full[i] = NAN;
        }
        gt_status st = gt_par_gather_logits(p, local, n_rows, n, v0, V, full, "logits out");
        CHECK(st == GT_OK, "%s: gather_logits of %d rows: status %d", grid, n_rows, (int)st);
        if (g_rank == 0 && st == GT_OK) {
            int64_t bad = -1;
            for (int r = 0; r < n_rows && bad < 0; r++)
                for (int c = 0; c < V && bad < 0; c++)
                    if (full[(int64_t)r * V + c] != logit_at(r, c)) bad = (int64_t)r * V + c;
            CHECK(bad < 0, "%s: gathered logits of %d rows differ at row %lld column %lld", grid,
                  n_rows, (long long)(bad / V), (long long)(bad % V));
        }
        free(local);
        free(full);
    }
}

static void test_top_candidates(gt_par *p, const char *grid) {
    const gt_grid *g = gt_par_grid(p);
    if (!gt_grid_last_stage(g)) return;
    float *all = malloc(V * sizeof *all);
    uint64_t s = 12345;
    for (int i = 0; i < V; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        all[i] = (float)((s >> 40) % 64) * 0.5f - 16.0f; /* ties are frequent */
    }
    gt_cand *want = malloc(V * sizeof *want);
    for (int i = 0; i < V; i++) want[i] = (gt_cand){all[i], i};
    qsort(want, V, sizeof *want, gt_cand_cmp);
    int64_t v0, n;
    slice_of(g->tp, g->tp_rank, &v0, &n);
    static const int ks[] = {1, 5, 40, V};
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
        int k = ks[ki];
        float *vals = malloc((size_t)k * (size_t)g->tp * sizeof *vals);
        int32_t *ids = malloc((size_t)k * (size_t)g->tp * sizeof *ids);
        int got = -1;
        gt_status st = gt_par_top_candidates(p, all + v0, n, v0, k, vals, ids, &got, "candidates");
        int expect = k < V ? k : V;
        CHECK(st == GT_OK && got == expect, "%s: top %d candidates: status %d, %d returned", grid,
              k, (int)st, got);
        int bad = -1;
        for (int j = 0; st == GT_OK && j < got && j < expect && bad < 0; j++)
            if (ids[j] != want[j].id || vals[j] != want[j].logit) bad = j;
        CHECK(bad < 0, "%s: top %d candidates: entry %d is (%g, %d), want (%g, %d)", grid, k, bad,
              bad < 0 ? 0.0 : (double)vals[bad], bad < 0 ? 0 : ids[bad],
              bad < 0 ? 0.0 : (double)want[bad].logit, bad < 0 ? 0 : want[bad].id);
        free(vals);
        free(ids);
    }
    free(all);
    free(want);
}

int main(int argc, char **argv) {
    gt_comm *world;
    if (gt_comm_init_world(&argc, &argv, &world) != GT_OK) {
        fprintf(stderr, "init: %s\n", gt_last_error());
        return 2;
    }
    g_rank = gt_comm_rank(world);
    int size = gt_comm_size(world);
    for (int tp = 1; tp <= size; tp++) {
        if (size % tp) continue;
        int pp = size / tp;
        char name[32];
        snprintf(name, sizeof name, "tp %d x pp %d", tp, pp);
        gt_grid grid;
        gt_par *p = NULL;
        gt_status st = gt_grid_init(size, tp, pp, g_rank, &grid);
        if (st == GT_OK) st = gt_par_create(world, &grid, &p);
        CHECK(st == GT_OK, "%s: gt_par_create: %s", name, gt_last_error());
        if (st != GT_OK) break;
        test_bcast_plan(p, name);
        test_gather_logits(p, name);
        test_top_candidates(p, name);
        gt_par_destroy(p);
    }
    int mine[2] = {g_pass, g_fail}, sum[2] = {0, 0};
    gt_status st = gt_comm_allreduce(world, mine, sum, 2, GT_I32, "totals");
    if (g_rank == 0) printf("test_par on %d ranks: %d passed, %d failed\n", size, sum[0], sum[1]);
    gt_comm_finalize(world);
    return st == GT_OK && sum[1] == 0 && sum[0] > 0 ? 0 : 1;
}
