/* Allreduce microbenchmark for the transport: latency and bandwidth from 4 B
 * to 64 MiB of f32, printed by rank 0 as a table.
 *
 * Usage: mpirun -np N bench_comm [mpi|nccl] [max_bytes]. Each size runs a
 * few warm-up calls, then enough timed calls to fill about 0.2 s (at least
 * 5); every call is timed on its own, with a barrier before it so that ranks
 * start together, and the table shows the median and the best. "algbw" is
 * bytes / time; "busbw" scales it by 2(N-1)/N, the bytes each rank moves in
 * a ring allreduce (the figure NCCL's tests print), so sizes and rank counts
 * compare. Lives beside the mpi tests because bench/ does not link
 * transport. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/timer.h"
#include "transport/comm.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    gt_comm *world;
    if (gt_comm_init_world(&argc, &argv, &world) != GT_OK) {
        fprintf(stderr, "init: %s\n", gt_last_error());
        return 2;
    }
    int rank = gt_comm_rank(world), size = gt_comm_size(world);
    int nccl = argc > 1 && strcmp(argv[1], "nccl") == 0;
    size_t max_bytes = argc > 2 ? (size_t)strtoull(argv[2], NULL, 10) : (size_t)64 << 20;
    gt_comm *c = world;
    if (nccl) {
        gt_comm_opts o = GT_COMM_OPTS_INIT;
        o.backend = GT_COMM_NCCL;
        o.cuda_device = rank % (gt_comm_cuda_device_count() ? gt_comm_cuda_device_count() : 1);
        o.name = "bench";
        if (gt_comm_split_ex(world, 0, rank, &o, &c) != GT_OK) gt_comm_abort(world, 2);
    }
    float *buf = gt_comm_mem_alloc(c, max_bytes);
    float *host = calloc(1, max_bytes);
    if (!buf || !host) gt_comm_abort(c, 2);
    for (size_t i = 0; i < max_bytes / 4; i++) host[i] = 1.0f;
    gt_comm_mem_upload(c, buf, host, max_bytes);
    double *t = malloc(10000 * sizeof *t);
    if (rank == 0)
        printf("allreduce f32, %d ranks, %s backend\n%10s %7s %12s %12s %10s %10s\n", size,
               nccl ? "nccl" : "mpi", "bytes", "iters", "median_us", "best_us", "algbw_GB/s",
               "busbw_GB/s");
    for (size_t bytes = 4; bytes <= max_bytes; bytes *= 4) {
        size_t n = bytes / 4;
        for (int w = 0; w < 3; w++)
            if (gt_comm_allreduce(c, buf, buf, n, GT_F32, "bench warm-up") != GT_OK)
                gt_comm_abort(c, 3);
        /* Rank 0 decides the iteration count from one timed call. */
        double t0 = gt_now_s();
        gt_comm_allreduce(c, buf, buf, n, GT_F32, "bench probe");
        int iters = (int)(0.2 / (gt_now_s() - t0 + 1e-9));
        iters = iters < 5 ? 5 : iters > 10000 ? 10000 : iters;
        gt_comm_broadcast(world, &iters, 1, GT_I32, 0, "bench iteration count");
        for (int it = 0; it < iters; it++) {
            gt_comm_barrier(c, "bench barrier");
            t0 = gt_now_s();
            if (gt_comm_allreduce(c, buf, buf, n, GT_F32, "bench allreduce") != GT_OK)
                gt_comm_abort(c, 3);
            t[it] = gt_now_s() - t0;
        }
        qsort(t, (size_t)iters, sizeof *t, cmp_double);
        double med = t[iters / 2], best = t[0];
        double alg = (double)bytes / med * 1e-9, bus = alg * 2.0 * (size - 1) / size;
        if (rank == 0)
            printf("%10zu %7d %12.1f %12.1f %10.3f %10.3f\n", bytes, iters, med * 1e6, best * 1e6,
                   alg, bus);
        fflush(stdout);
    }
    free(t);
    free(host);
    gt_comm_mem_free(c, buf);
    if (c != world) gt_comm_destroy(c);
    gt_comm_finalize(world);
    return 0;
}
