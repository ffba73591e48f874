/* Multi-rank test of every transport collective, run under mpirun.
 *
 * Oracle: rank r fills element i of its contribution with fval(r, i, salt),
 * a small integer, so every rank can compute what every other rank sent and
 * every sum is exact in f32, f16, bf16 and i32; results must match exactly.
 * Covered: allreduce (out of place and in place), allgather (both),
 * reduce_scatter, alltoall, alltoallv (uneven and zero counts, scattered
 * displacements, untouched gaps), broadcast, send/recv around a ring and
 * barrier, for 1, 7 and 1000003 elements, all four dtypes, on the world and
 * on two split groups; then f32 accumulation of f16/bf16 sums, and argument
 * and message-length errors; and that a group takes its buffers (reduction
 * scratch, gt_comm_mem_alloc) from the allocator it is given.
 *
 * Usage: test_comm [mpi|nccl]. Each rank counts its own checks; rank 0
 * prints "N passed, N failed" over all ranks; the exit status is non-zero on
 * any failure, 77 (skip) for nccl without a GPU per rank. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timer.h"
#include "transport/comm.h"

static int g_pass, g_fail, g_rank;
static const gt_dtype k_dtypes[] = {GT_F32, GT_F16, GT_BF16, GT_I32};
static const size_t k_counts[] = {1, 7, 1000003};
#define SENTINEL 99

static int fval(int r, size_t i, int salt) {
    return (int)((i * 7 + (size_t)r * 13 + (size_t)salt * 5) % 23) - 11;
}

static size_t esize(gt_dtype dt) { return dt == GT_F16 || dt == GT_BF16 ? 2 : 4; }

static void hset(void *h, gt_dtype dt, size_t i, double v) {
    switch (dt) {
    case GT_F32:
        ((float *)h)[i] = (float)v;
        break;
    case GT_F16:
        ((uint16_t *)h)[i] = gt_f32_to_f16((float)v);
        break;
    case GT_BF16:
        ((uint16_t *)h)[i] = gt_f32_to_bf16((float)v);
        break;
    default:
        ((int32_t *)h)[i] = (int32_t)v;
        break;
    }
}

static double hget(const void *h, gt_dtype dt, size_t i) {
    switch (dt) {
    case GT_F32:
        return ((const float *)h)[i];
    case GT_F16:
        return gt_f16_to_f32(((const uint16_t *)h)[i]);
    case GT_BF16:
        return gt_bf16_to_f32(((const uint16_t *)h)[i]);
    default:
        return ((const int32_t *)h)[i];
    }
}

/* One test case: a group, a dtype, a count, and device/host buffers. */
typedef struct tcase {
    gt_comm *c;
    gt_dtype dt;
    size_t n;
    int r, size;
    char label[96];
} tcase;

static void check_status(const tcase *t, const char *op, gt_status st) {
    if (st == GT_OK) return;
    g_fail++;
    printf("FAIL [rank %d] %s %s: %s: %s\n", g_rank, t->label, op, gt_status_str(st),
           gt_last_error());
}

/* Compares got with want (host, n elements); prints the largest difference. */
static void compare(const tcase *t, const char *op, const void *got, const void *want, size_t n) {
    size_t bad = 0, worst = 0;
    double worst_d = -1;
    for (size_t i = 0; i < n; i++) {
        double d = hget(got, t->dt, i) - hget(want, t->dt, i);
        if (d < 0) d = -d;
        if (d != 0) bad++;
        if (d > worst_d) worst_d = d, worst = i;
    }
    if (!bad) {
        g_pass++;
        return;
    }
    g_fail++;
    printf("FAIL [rank %d] %s %s: %zu of %zu elements differ; largest difference %g at %zu "
           "(got %g, want %g)\n",
           g_rank, t->label, op, bad, n, worst_d, worst, hget(got, t->dt, worst),
           hget(want, t->dt, worst));
}

/* Device (or host) buffer of n elements uploaded from host h. */
static void *put(const tcase *t, const void *h, size_t n) {
    void *d = gt_comm_mem_alloc(t->c, n * esize(t->dt) + 64);
    if (!d) {
        printf("FATAL [rank %d] %s\n", g_rank, gt_last_error());
        exit(2);
    }
    if (n) gt_comm_mem_upload(t->c, d, h, n * esize(t->dt));
    return d;
}

static void get(const tcase *t, void *h, const void *d, size_t n) {
    if (n) gt_comm_mem_download(t->c, h, d, n * esize(t->dt));
}

static void *halloc(const tcase *t, size_t n) {
    void *p = malloc(n * esize(t->dt) + 64);
    if (!p) exit(2);
    return p;
}

static void test_allreduce(const tcase *t, int in_place) {
    size_t n = t->n;
    int salt = 1 + in_place;
    void *h = halloc(t, n), *want = halloc(t, n);
    for (size_t i = 0; i < n; i++) {
        int s = 0;
        for (int q = 0; q < t->size; q++) s += fval(q, i, salt);
        hset(h, t->dt, i, fval(t->r, i, salt));
        hset(want, t->dt, i, s);
    }
    void *ds = put(t, h, n), *dr = in_place ? ds : put(t, h, n);
    check_status(t, "allreduce", gt_comm_allreduce(t->c, ds, dr, n, t->dt, "test allreduce"));
    get(t, h, dr, n);
    compare(t, in_place ? "allreduce in place" : "allreduce", h, want, n);
    gt_comm_mem_free(t->c, ds);
    if (!in_place) gt_comm_mem_free(t->c, dr);
    free(h);
    free(want);
}

static void test_allgather(const tcase *t, int in_place) {
    size_t n = t->n, tot = n * (size_t)t->size;
    void *h = halloc(t, tot), *want = halloc(t, tot);
    for (size_t j = 0; j < tot; j++) {
        int q = (int)(j / (n ? n : 1));
        hset(want, t->dt, j, fval(q, j % n, 3));
        hset(h, t->dt, j, q == t->r ? fval(q, j % n, 3) : SENTINEL);
    }
    void *dr = put(t, h, tot);
    void *ds = in_place ? (char *)dr + (size_t)t->r * n * esize(t->dt)
                        : put(t, (char *)h + (size_t)t->r * n * esize(t->dt), n);
    check_status(t, "allgather", gt_comm_allgather(t->c, ds, dr, n, t->dt, "test allgather"));
    get(t, h, dr, tot);
    compare(t, in_place ? "allgather in place" : "allgather", h, want, tot);
    gt_comm_mem_free(t->c, dr);
    if (!in_place) gt_comm_mem_free(t->c, ds);
    free(h);
    free(want);
}

static void test_reduce_scatter(const tcase *t) {
    size_t n = t->n, tot = n * (size_t)t->size;
    void *h = halloc(t, tot), *want = halloc(t, n);
    for (size_t j = 0; j < tot; j++) hset(h, t->dt, j, fval(t->r, j, 4));
    for (size_t i = 0; i < n; i++) {
        int s = 0;
        for (int q = 0; q < t->size; q++) s += fval(q, (size_t)t->r * n + i, 4);
        hset(want, t->dt, i, s);
    }
    void *ds = put(t, h, tot), *dr = put(t, h, n);
    check_status(t, "reduce_scatter",
                 gt_comm_reduce_scatter(t->c, ds, dr, n, t->dt, "test reduce_scatter"));
    get(t, h, dr, n);
    compare(t, "reduce_scatter", h, want, n);
    gt_comm_mem_free(t->c, ds);
    gt_comm_mem_free(t->c, dr);
    free(h);
    free(want);
}

static void test_alltoall(const tcase *t) {
    size_t n = t->n, tot = n * (size_t)t->size;
    void *h = halloc(t, tot), *want = halloc(t, tot);
    for (int p = 0; p < t->size; p++)
        for (size_t i = 0; i < n; i++) {
            hset(h, t->dt, (size_t)p * n + i, fval(t->r * 7 + p, i, 5));
            hset(want, t->dt, (size_t)p * n + i, fval(p * 7 + t->r, i, 5));
        }
    void *ds = put(t, h, tot), *dr = put(t, h, tot);
    check_status(t, "alltoall", gt_comm_alltoall(t->c, ds, dr, n, t->dt, "test alltoall"));
    get(t, h, dr, tot);
    compare(t, "alltoall", h, want, tot);
    gt_comm_mem_free(t->c, ds);
    gt_comm_mem_free(t->c, dr);
    free(h);
    free(want);
}

/* Elements rank s sends to rank d: uneven, sometimes zero. */
static size_t vcount(size_t n, int s, int d) {
    return (s * 3 + d) % 4 == 1 ? 0 : n + (size_t)((s + d) % 3);
}

static void test_alltoallv(const tcase *t) {
    int P = t->size;
    size_t sc[64], sd[64], rc[64], rd[64], stot = 0, rtot = 0;
    /* Send blocks in reverse peer order with a 1-element gap; receive blocks
     * in peer order with a 2-element gap that must stay untouched. */
    for (int p = P - 1; p >= 0; p--) {
        sc[p] = vcount(t->n, t->r, p);
        sd[p] = stot;
        stot += sc[p] + 1;
    }
    for (int p = 0; p < P; p++) {
        rc[p] = vcount(t->n, p, t->r);
        rd[p] = rtot;
        rtot += rc[p] + 2;
    }
    void *hs = halloc(t, stot), *hr = halloc(t, rtot), *want = halloc(t, rtot);
    for (size_t j = 0; j < stot; j++) hset(hs, t->dt, j, SENTINEL);
    for (size_t j = 0; j < rtot; j++) hset(want, t->dt, j, SENTINEL);
    for (int p = 0; p < P; p++) {
        for (size_t i = 0; i < sc[p]; i++) hset(hs, t->dt, sd[p] + i, fval(t->r * 7 + p, i, 6));
        for (size_t i = 0; i < rc[p]; i++) hset(want, t->dt, rd[p] + i, fval(p * 7 + t->r, i, 6));
    }
    for (size_t j = 0; j < rtot; j++) hset(hr, t->dt, j, SENTINEL);
    void *ds = put(t, hs, stot), *dr = put(t, hr, rtot);
    gt_comm_vlayout sl = {sc, sd}, rl = {rc, rd};
    check_status(t, "alltoallv", gt_comm_alltoallv(t->c, ds, sl, dr, rl, t->dt, "test alltoallv"));
    get(t, hr, dr, rtot);
    compare(t, "alltoallv", hr, want, rtot);
    gt_comm_mem_free(t->c, ds);
    gt_comm_mem_free(t->c, dr);
    free(hs);
    free(hr);
    free(want);
}

static void test_broadcast(const tcase *t) {
    size_t n = t->n;
    int root = t->size - 1;
    void *h = halloc(t, n), *want = halloc(t, n);
    for (size_t i = 0; i < n; i++) {
        hset(want, t->dt, i, fval(root, i, 7));
        hset(h, t->dt, i, t->r == root ? fval(root, i, 7) : SENTINEL);
    }
    void *d = put(t, h, n);
    check_status(t, "broadcast", gt_comm_broadcast(t->c, d, n, t->dt, root, "test broadcast"));
    get(t, h, d, n);
    compare(t, "broadcast", h, want, n);
    gt_comm_mem_free(t->c, d);
    free(h);
    free(want);
}

/* Ring: send to r+1, receive from r-1. Even ranks send first, odd ranks
 * receive first, so blocking sends of any size cannot deadlock. */
static void test_ring(const tcase *t) {
    if (t->size < 2) return;
    size_t n = t->n;
    int next = (t->r + 1) % t->size, prev = (t->r + t->size - 1) % t->size;
    void *h = halloc(t, n), *want = halloc(t, n);
    for (size_t i = 0; i < n; i++) {
        hset(h, t->dt, i, fval(t->r, i, 8));
        hset(want, t->dt, i, fval(prev, i, 8));
    }
    void *ds = put(t, h, n), *dr = put(t, h, n);
    for (int phase = 0; phase < 2; phase++) {
        if ((phase == 0) == (t->r % 2 == 0))
            check_status(t, "send", gt_comm_send(t->c, ds, n, t->dt, next, 5, "test ring send"));
        else
            check_status(t, "recv", gt_comm_recv(t->c, dr, n, t->dt, prev, 5, "test ring recv"));
    }
    get(t, h, dr, n);
    compare(t, "send/recv ring", h, want, n);
    gt_comm_mem_free(t->c, ds);
    gt_comm_mem_free(t->c, dr);
    free(h);
    free(want);
}

static void run_group(gt_comm *c, const char *gname) {
    for (size_t di = 0; di < sizeof k_dtypes / sizeof *k_dtypes; di++)
        for (size_t ni = 0; ni < sizeof k_counts / sizeof *k_counts; ni++) {
            tcase t = {c, k_dtypes[di], k_counts[ni], gt_comm_rank(c), gt_comm_size(c), ""};
            snprintf(t.label, sizeof t.label, "[%s np=%d %s n=%zu]", gname, t.size,
                     gt_dtype_name((uint32_t)t.dt), t.n);
            test_allreduce(&t, 0);
            test_allreduce(&t, 1);
            test_allgather(&t, 0);
            if (t.n == 7) test_allgather(&t, 1);
            test_reduce_scatter(&t);
            test_alltoall(&t);
            test_alltoallv(&t);
            test_broadcast(&t);
            test_ring(&t);
            check_status(&t, "barrier", gt_comm_barrier(c, "test barrier"));
        }
}

/* f16/bf16 sums accumulate in f32 (MPI backend): rank 0 adds `big`, every
 * other rank adds 1. Rounding after each partial sum would stay at `big`
 * (big + 1 is a tie that rounds back to even); one final rounding does not. */
static void test_half_accumulation(gt_comm *c) {
    int size = gt_comm_size(c), r = gt_comm_rank(c);
    if (size < 3) return;
    const gt_dtype dts[2] = {GT_F16, GT_BF16};
    const float big[2] = {2048.0f, 256.0f}; /* ulp 2 at these magnitudes */
    for (int k = 0; k < 2; k++) {
        tcase t = {c, dts[k], 3, r, size, ""};
        snprintf(t.label, sizeof t.label, "[world np=%d %s accumulation]", size,
                 gt_dtype_name((uint32_t)dts[k]));
        uint16_t h[3], want[3];
        for (int i = 0; i < 3; i++) {
            hset(h, t.dt, (size_t)i, r == 0 ? big[k] : 1.0);
            hset(want, t.dt, (size_t)i, big[k] + (float)(size - 1));
        }
        void *d = put(&t, h, 3);
        check_status(&t, "allreduce", gt_comm_allreduce(c, d, d, 3, t.dt, "f32 accumulation"));
        get(&t, h, d, 3);
        compare(&t, "allreduce accumulates in f32", h, want, 3);
        gt_comm_mem_free(c, d);
    }
}

static void expect_status(const char *what, gt_status got, gt_status want, const char *needle) {
    if (got == want && strstr(gt_last_error(), needle)) {
        g_pass++;
        return;
    }
    g_fail++;
    printf("FAIL [rank %d] %s: got %s (\"%s\"), want %s mentioning \"%s\"\n", g_rank, what,
           gt_status_str(got), gt_last_error(), gt_status_str(want), needle);
}

static void test_errors(gt_comm *w) {
    int size = gt_comm_size(w), r = gt_comm_rank(w);
    float x[8] = {0};
    expect_status("broadcast root out of range",
                  gt_comm_broadcast(w, x, 1, GT_F32, size, "bad root"), GT_ERR_INVALID_ARG, "root");
    expect_status("allreduce of q4_0", gt_comm_allreduce(w, x, x, 1, GT_Q4_0, "bad dtype"),
                  GT_ERR_INVALID_ARG, "bad dtype");
    expect_status("count past INT_MAX", gt_comm_allreduce(w, x, x, (size_t)1 << 31, GT_F32, "huge"),
                  GT_ERR_RANGE, "exceeds");
    expect_status("send to itself", gt_comm_send(w, x, 1, GT_F32, r, 0, "self"), GT_ERR_INVALID_ARG,
                  "itself");
    expect_status("tag out of range", gt_comm_send(w, x, 1, GT_F32, (r + 1) % size, 40000, "tag"),
                  GT_ERR_INVALID_ARG, "tag");
    expect_status("timeout of zero", gt_comm_set_timeout(w, 0), GT_ERR_INVALID_ARG, "timeout");
    if (gt_comm_backend_of(w) != GT_COMM_MPI || size < 2) return;
    /* A message shorter than the receive: rank 0 sends 5, rank 1 expects 7. */
    if (r == 0) {
        expect_status("short message send", gt_comm_send(w, x, 5, GT_F32, 1, 11, "short"), GT_OK,
                      "");
    } else if (r == 1) {
        expect_status("short message recv", gt_comm_recv(w, x, 7, GT_F32, 0, 11, "short"),
                      GT_ERR_COMM, "holds 5");
    }
    /* Longer than the receive: MPI reports truncation as GT_ERR_COMM. */
    if (r == 0) {
        gt_comm_send(w, x, 8, GT_F32, 1, 12, "long");
    } else if (r == 1) {
        expect_status("long message recv", gt_comm_recv(w, x, 2, GT_F32, 0, 12, "long"),
                      GT_ERR_COMM, "recv 'long'");
    }
}

/* A group's buffers come from the allocator it is given: the f16 reduction
 * scratch and gt_comm_mem_alloc, all returned by destroy. */
typedef struct counting_alloc {
    int n_alloc, n_free;
} counting_alloc;

static void *count_alloc(void *ctx, size_t bytes) {
    ((counting_alloc *)ctx)->n_alloc++;
    return malloc(bytes);
}

static void count_free(void *ctx, void *p) {
    ((counting_alloc *)ctx)->n_free++;
    free(p);
}

static void test_allocator(gt_comm *world) {
    counting_alloc ca = {0, 0};
    gt_comm_opts o = GT_COMM_OPTS_INIT;
    o.name = "counted";
    o.alloc = (gt_comm_allocator){count_alloc, count_free, &ca};
    gt_comm *c = NULL;
    gt_status st = gt_comm_split_ex(world, 0, g_rank, &o, &c);
    uint16_t h[5];
    for (int i = 0; i < 5; i++) h[i] = gt_f32_to_f16((float)i);
    if (st == GT_OK) st = gt_comm_allreduce(c, h, h, 5, GT_F16, "counted f16 sum");
    int after_sum = ca.n_alloc;
    void *m = st == GT_OK ? gt_comm_mem_alloc(c, 64) : NULL;
    int after_mem = ca.n_alloc;
    gt_comm_mem_free(c, m);
    gt_comm_destroy(c);
    int size = gt_comm_size(world);
    int ok = st == GT_OK && after_sum == 1 && after_mem == 2 && ca.n_free == 2 &&
             gt_f16_to_f32(h[3]) == (float)(3 * size);
    if (ok)
        g_pass++;
    else
        g_fail++, printf("FAIL [rank %d] allocator: status %d, %d allocs after the sum, %d after "
                         "mem_alloc, %d frees\n",
                         g_rank, (int)st, after_sum, after_mem, ca.n_free);
    gt_comm_allocator bad = {count_alloc, NULL, &ca};
    if (gt_comm_set_allocator(world, &bad) == GT_ERR_INVALID_ARG)
        g_pass++;
    else
        g_fail++, printf("FAIL [rank %d] an allocator without free was accepted\n", g_rank);
}

int main(int argc, char **argv) {
    gt_comm *world;
    if (gt_comm_init_world(&argc, &argv, &world) != GT_OK) {
        fprintf(stderr, "init: %s\n", gt_last_error());
        return 2;
    }
    g_rank = gt_comm_rank(world);
    int size = gt_comm_size(world);
    int nccl = argc > 1 && strcmp(argv[1], "nccl") == 0;
    double t0 = gt_now_s();
    gt_comm_opts o = GT_COMM_OPTS_INIT;
    if (nccl) {
        int ndev = gt_comm_cuda_device_count();
        if (!gt_comm_have_nccl() || ndev < size) {
            if (g_rank == 0)
                printf(
                    "SKIP: nccl needs one CUDA device per rank (%d ranks, %d devices, NCCL %s)\n",
                    size, ndev, gt_comm_have_nccl() ? "built" : "not built");
            gt_comm_finalize(world);
            return 77;
        }
        o.backend = GT_COMM_NCCL;
        o.cuda_device = g_rank;
    }
    /* The group under test: the world itself (MPI) or an NCCL copy of it. */
    gt_comm *all = world;
    o.name = "all";
    if (nccl && gt_comm_split_ex(world, 0, g_rank, &o, &all) != GT_OK) {
        printf("FAIL [rank %d] nccl world: %s\n", g_rank, gt_last_error());
        return 1;
    }
    run_group(all, nccl ? "nccl world" : "world");
    /* Two groups: even and odd ranks, keyed in reverse rank order. */
    gt_comm *half = NULL;
    o.name = g_rank % 2 ? "odd" : "even";
    gt_status st = gt_comm_split_ex(world, g_rank % 2, -g_rank, &o, &half);
    if (st != GT_OK || !half || gt_comm_rank(half) != (gt_comm_size(half) - 1 - g_rank / 2) ||
        gt_comm_world_rank(half, gt_comm_rank(half)) != g_rank) {
        g_fail++;
        printf("FAIL [rank %d] split: %s\n", g_rank, st ? gt_last_error() : "wrong rank order");
    } else {
        g_pass++;
        run_group(half, o.name);
    }
    gt_comm *none = world;
    st = gt_comm_split(world, g_rank == 0 ? GT_COMM_UNDEFINED : 1, 0, &none);
    if (st == GT_OK && (g_rank == 0) == (none == NULL))
        g_pass++;
    else
        g_fail++, printf("FAIL [rank %d] split with GT_COMM_UNDEFINED\n", g_rank);
    gt_comm_destroy(none);
    if (!nccl) test_half_accumulation(world);
    if (!nccl) test_allocator(world);
    test_errors(all);
    gt_comm_destroy(half);
    if (all != world) gt_comm_destroy(all);

    int mine[2] = {g_pass, g_fail}, tot[2] = {0, 0};
    if (gt_comm_allreduce(world, mine, tot, 2, GT_I32, "test totals") != GT_OK) {
        printf("FAIL [rank %d] totals: %s\n", g_rank, gt_last_error());
        return 1;
    }
    if (g_rank == 0)
        printf("test_comm %s np=%d: %d passed, %d failed (%.1f s)\n", nccl ? "nccl" : "mpi", size,
               tot[0], tot[1], gt_now_s() - t0);
    gt_comm_finalize(world);
    return tot[1] ? 1 : 0;
}
