/* Fault injection for the transport watchdog, driven by tests/mpi/run_fault.py.
 *
 * test_comm_faults watchdog (3 ranks): the world timeout is 2 s. Rank 1
 * sleeps and never joins anything. Ranks 0 and 2 first wait for a message
 * rank 1 never sends (the point-to-point watchdog must name rank 1), then
 * join an allreduce that rank 1 never joins (the collective watchdog must
 * name rank 1 and not rank 2, which did arrive). Rank 0 prints both
 * sentences with their waiting times and ends the job with gt_comm_abort;
 * the wrapper checks the text, the exit status and the time.
 *
 * test_comm_faults kill (2+ ranks): all ranks loop over allreduces; rank 1
 * kills itself with SIGKILL after 20 of them. Every rank must be gone within
 * seconds (mpirun's job, with odls_base_sigkill_timeout 0), never hang. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/timer.h"
#include "transport/comm.h"

static int watchdog(gt_comm *w) {
    int r = gt_comm_rank(w);
    gt_comm_set_timeout(w, 2.0);
    if (r == 1) {
        sleep(30); /* never arrives; the job is aborted long before */
        return 3;
    }
    float x[16] = {0};
    double t0 = gt_now_s();
    gt_status st = gt_comm_recv(w, x, 16, GT_F32, 1, 9, "pipeline activations");
    double t1 = gt_now_s();
    if (r == 0) {
        printf("P2P status=%s after %.2f s: %s\n", gt_status_str(st), t1 - t0, gt_last_error());
        fflush(stdout);
    }
    t0 = gt_now_s();
    st = gt_comm_allreduce(w, x, x, 16, GT_F32, "watchdog probe allreduce");
    t1 = gt_now_s();
    printf("COLL rank %d status=%s after %.2f s: %s\n", r, gt_status_str(st), t1 - t0,
           gt_last_error());
    fflush(stdout);
    if (st == GT_OK) return 4; /* impossible: rank 1 never joined */
    if (r != 0) sleep(5);      /* let rank 0 report and abort the job */
    gt_comm_abort(w, 3);
}

static int kill_rank(gt_comm *w) {
    int r = gt_comm_rank(w);
    float x[1024];
    for (int it = 0; it < 1000000; it++) {
        if (r == 1 && it == 20) {
            printf("rank 1 kills itself after %d allreduces\n", it);
            fflush(stdout);
            raise(SIGKILL);
        }
        for (int i = 0; i < 1024; i++) x[i] = (float)i;
        gt_status st = gt_comm_allreduce(w, x, x, 1024, GT_F32, "kill loop allreduce");
        if (st != GT_OK) {
            printf("rank %d: %s\n", r, gt_last_error());
            gt_comm_abort(w, 5);
        }
    }
    return 6; /* the loop outlives any reasonable test timeout */
}

int main(int argc, char **argv) {
    gt_comm *w;
    if (gt_comm_init_world(&argc, &argv, &w) != GT_OK) {
        fprintf(stderr, "init: %s\n", gt_last_error());
        return 2;
    }
    const char *mode = argc > 1 ? argv[1] : "";
    int rc = 2;
    if (strcmp(mode, "watchdog") == 0)
        rc = watchdog(w);
    else if (strcmp(mode, "kill") == 0)
        rc = kill_rank(w);
    else
        fprintf(stderr, "usage: test_comm_faults watchdog|kill\n");
    gt_comm_finalize(w);
    return rc;
}
