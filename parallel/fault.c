/* Test-only fault injection; see fault.h. Compiled only with
 * GANTRY_TEST_HOOKS (parallel/CMakeLists.txt). */
#include "parallel/fault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct gt__par_fault {
    double stall_s; /* sleep before allreduce number stall_at */
    long stall_at;
    long n_allreduce;
    int kill_self; /* die before the first allreduce */
};

gt__par_fault *gt__par_fault_create(int rank) {
    const char *stall = getenv("GANTRY_TEST_STALL");
    const char *kill_env = getenv("GANTRY_TEST_KILL");
    int stall_rank = -1;
    double stall_s = 0;
    long stall_at = 0;
    int stalls = stall && sscanf(stall, "%d:%lf:%ld", &stall_rank, &stall_s, &stall_at) >= 2 &&
                 stall_rank == rank && stall_s > 0;
    int kills = kill_env && atoi(kill_env) == rank;
    if (!stalls && !kills) return NULL;
    gt__par_fault *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    if (stalls) {
        f->stall_s = stall_s;
        f->stall_at = stall_at;
    }
    f->kill_self = kills;
    return f;
}

void gt__par_fault_destroy(gt__par_fault *f) { free(f); }

void gt__par_fault_allreduce(gt__par_fault *f) {
    if (!f) return;
    if (f->kill_self) raise(SIGKILL);
    if (f->stall_s > 0 && f->n_allreduce++ == f->stall_at) {
        struct timespec ts = {(time_t)f->stall_s,
                              (long)((f->stall_s - (double)(time_t)f->stall_s) * 1e9)};
        f->stall_s = 0;
        nanosleep(&ts, NULL);
    }
}
