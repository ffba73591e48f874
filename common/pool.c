/* Thread pool: workers wait for a new generation number, run their share,
 * then count themselves done. Spinning first (with a pause hint) keeps the
 * decode loop's hundreds of small parallel regions cheap; after a bounded
 * spin a worker sleeps on a condition variable so idle pools cost nothing. */
#include "common/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/alloc.h"

#define GT_POOL_SPINS 20000

struct gt_pool {
    int n;
    pthread_t *threads;
    _Atomic unsigned gen;  /* bumped by the caller to start a region */
    _Atomic int pending;   /* workers still running the current region */
    _Atomic int stop;
    gt_pool_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

typedef struct {
    gt_pool *pool;
    int ith;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    gt_pool *pool = wa.pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen) {
            if (++spins < GT_POOL_SPINS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
            spins = 0;
            if (atomic_load(&pool->stop)) return NULL;
        }
        seen = g;
        if (atomic_load(&pool->stop)) return NULL;
        pool->fn(pool->arg, wa.ith, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
}

gt_status gt_pool_create(int n_threads, gt_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 1024)
        return gt_fail(GT_ERR_INVALID_ARG, "thread count %d is outside 1..1024", n_threads);
    gt_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return gt_fail(GT_ERR_NOMEM, "cannot allocate a thread pool");
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
    if (!pool->threads) {
        gt_pool_destroy(pool);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate a thread pool");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) {
            pool->n = i;
            gt_pool_destroy(pool);
            return gt_fail(GT_ERR_NOMEM, "cannot allocate a thread pool");
        }
        wa->pool = pool;
        wa->ith = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            pool->n = i;
            gt_pool_destroy(pool);
            return gt_fail(GT_ERR_INTERNAL, "cannot start worker thread %d of %d", i, n_threads);
        }
    }
    *out = pool;
    return GT_OK;
}

void gt_pool_destroy(gt_pool *pool) {
    if (!pool) return;
    if (pool->threads) {
        pthread_mutex_lock(&pool->mu);
        atomic_store(&pool->stop, 1);
        atomic_fetch_add(&pool->gen, 1);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
        for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
        free(pool->threads);
    }
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    free(pool);
}

int gt_pool_size(const gt_pool *pool) { return pool ? pool->n : 1; }

void gt_pool_run(gt_pool *pool, gt_pool_fn fn, void *arg) {
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, pool->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, pool->n);
    int spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        if (++spins < GT_POOL_SPINS) cpu_relax();
        else sched_yield();
    }
}
