/* Which peers have died, as far as this host can tell.
 *
 * Open MPI has no fault tolerance: when a rank dies, the others wait in
 * their collectives until mpirun kills them about a second later. A rank
 * that talks to clients (rank 0 runs the server) must use that second to
 * answer them, so the watchdog asks here, while it waits, whether a member
 * of the group it waits on has exited.
 *
 * At start every rank publishes (host identity, pid). The host identity
 * hashes the host name, the boot id and the pid namespace, so two ranks
 * compare pids only when the numbers mean the same process. A peer on this
 * host is dead when its pid is gone or is a zombie. Peers on other hosts are
 * never reported dead here; there the watchdog's deadline names them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "transport/internal.h"

typedef struct peer_id {
    uint64_t host;
    int64_t pid;
} peer_id;

static peer_id *g_peers; /* [g_n_peers], by world rank */
static int g_n_peers;
static uint64_t g_self_host;

static uint64_t fnv1a(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t host_identity(void) {
    uint64_t h = 14695981039346656037ull;
    char buf[256] = "";
    if (gethostname(buf, sizeof buf - 1) == 0) h = fnv1a(h, buf, strlen(buf));
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        h = fnv1a(h, buf, n);
        fclose(f);
    }
    ssize_t n = readlink("/proc/self/ns/pid", buf, sizeof buf - 1);
    if (n > 0) h = fnv1a(h, buf, (size_t)n);
    return h;
}

gt_status gt__liveness_init(MPI_Comm world) {
    int size = 0;
    MPI_Comm_size(world, &size);
    peer_id self = {host_identity(), (int64_t)getpid()};
    peer_id *all = calloc((size_t)size, sizeof *all);
    if (!all) return gt_fail(GT_ERR_NOMEM, "cannot allocate the table of %d ranks' processes", size);
    if (MPI_Allgather(&self, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, world) != MPI_SUCCESS) {
        free(all);
        return gt_fail(GT_ERR_COMM, "exchanging the ranks' process ids failed");
    }
    free(g_peers);
    g_peers = all;
    g_n_peers = size;
    g_self_host = self.host;
    return GT_OK;
}

void gt__liveness_free(void) {
    free(g_peers);
    g_peers = NULL;
    g_n_peers = 0;
}

/* 1 when the process is gone or a zombie. */
static int process_dead(pid_t pid) {
    if (kill(pid, 0) != 0) return errno == ESRCH;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* "pid (comm) S ..."; comm may hold ')' */
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

int gt__liveness_dead(int world_rank) {
    if (!g_peers || world_rank < 0 || world_rank >= g_n_peers) return 0;
    const peer_id *p = &g_peers[world_rank];
    if (p->host != g_self_host || p->pid == (int64_t)getpid()) return 0;
    return process_dead((pid_t)p->pid) ? (int)p->pid : 0;
}
