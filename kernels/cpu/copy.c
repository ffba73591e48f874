/* Asynchronous host -> buffer copies for the CPU backend: one copy thread,
 * started by the first copy, takes requests from a ring in issue order and
 * memcpy's them while the caller's thread runs ops on the pool. That is the
 * CPU stand-in for a GPU's copy stream; a copy and the ops compete for
 * memory bandwidth and, with as many compute threads as cores, for a core.
 * Tickets count requests from 1; `done` is the last finished ticket. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"

#define RING 64 /* requests in flight; a full ring makes copy_start wait */

typedef struct copy_req {
    void *dst;
    const void *src;
    size_t n;
} copy_req;

struct gt_cpu_copier {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t more, done_cv; /* a request arrived; a request finished */
    copy_req ring[RING];
    uint64_t issued, done;        /* tickets: issued is the last handed out */
    bool stop;
};

static void *copy_main(void *arg) {
    gt_cpu_copier *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->done == c->issued && !c->stop) pthread_cond_wait(&c->more, &c->mu);
        if (c->done == c->issued) break; /* stop, and nothing left */
        copy_req r = c->ring[c->done % RING];
        pthread_mutex_unlock(&c->mu);
        memcpy(r.dst, r.src, r.n);
        pthread_mutex_lock(&c->mu);
        c->done++;
        pthread_cond_broadcast(&c->done_cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static gt_status copier_start(gt_cpu *k) {
    gt_cpu_copier *c = calloc(1, sizeof *c);
    if (!c) return gt_fail(GT_ERR_NOMEM, "kernels: cannot allocate the copy thread's state");
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->more, NULL);
    pthread_cond_init(&c->done_cv, NULL);
    if (pthread_create(&c->thread, NULL, copy_main, c) != 0) {
        pthread_cond_destroy(&c->more);
        pthread_cond_destroy(&c->done_cv);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return gt_fail(GT_ERR_NOMEM, "kernels: cannot start the copy thread");
    }
    k->copier = c;
    return GT_OK;
}

gt_status gt__cpu_copy_start(gt_kernels *kb, gt_buffer *dst, size_t off, const void *src, size_t n,
                             uint64_t *ticket) {
    gt_cpu *k = gt__cpu(kb);
    if (!k->copier) GT_TRY(copier_start(k));
    gt_cpu_copier *c = k->copier;
    pthread_mutex_lock(&c->mu);
    while (c->issued - c->done >= RING) pthread_cond_wait(&c->done_cv, &c->mu);
    c->ring[c->issued % RING] = (copy_req){(char *)dst->addr + off, src, n};
    *ticket = ++c->issued;
    pthread_cond_signal(&c->more);
    pthread_mutex_unlock(&c->mu);
    return GT_OK;
}

gt_status gt__cpu_copy_wait(gt_kernels *kb, uint64_t ticket) {
    gt_cpu_copier *c = gt__cpu(kb)->copier;
    if (!c) return GT_OK;
    pthread_mutex_lock(&c->mu);
    if (ticket > c->issued) {
        uint64_t issued = c->issued;
        pthread_mutex_unlock(&c->mu);
        return gt_fail(GT_ERR_INVALID_ARG, "kernels: copy ticket %llu was never issued (last %llu)",
                       (unsigned long long)ticket, (unsigned long long)issued);
    }
    while (c->done < ticket) pthread_cond_wait(&c->done_cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return GT_OK;
}

void gt__cpu_copier_destroy(gt_cpu_copier *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->more);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->more);
    pthread_cond_destroy(&c->done_cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
