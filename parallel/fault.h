/* Test-only fault injection for the multi-rank tests (tests/mpi/
 * test_parallel.py): GANTRY_TEST_STALL=RANK:SECONDS[:CALL] makes that rank
 * arrive SECONDS late at its stage allreduce number CALL (0: the first), so
 * that the watchdog can be seen naming the operation and the rank;
 * GANTRY_TEST_KILL=RANK makes that rank SIGKILL itself before its first
 * allreduce.
 *
 * Built only with the CMake option GANTRY_TEST_HOOKS (ON in our builds,
 * because the tests drive the real `gantry` binary; a production build
 * turns it OFF). Without it these are empty inline functions and the
 * environment is never read. */
#ifndef GT_PARALLEL_FAULT_H
#define GT_PARALLEL_FAULT_H

typedef struct gt__par_fault gt__par_fault;

#ifdef GT_TEST_HOOKS
/* Reads the environment for world rank `rank`; NULL when no hook targets it. */
gt__par_fault *gt__par_fault_create(int rank);
void gt__par_fault_destroy(gt__par_fault *f); /* accepts NULL */
/* Called before every stage allreduce; may sleep or kill the process. */
void gt__par_fault_allreduce(gt__par_fault *f);
#else
static inline gt__par_fault *gt__par_fault_create(int rank) {
    (void)rank;
    return (gt__par_fault *)0;
}
static inline void gt__par_fault_destroy(gt__par_fault *f) { (void)f; }
static inline void gt__par_fault_allreduce(gt__par_fault *f) { (void)f; }
#endif

#endif
