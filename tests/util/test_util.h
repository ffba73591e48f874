/* Helpers shared by the cmocka tests: seeded random data, paths from the
 * environment ctest sets, and array comparison that reports the largest
 * difference and where it is. */
#ifndef GT_TEST_UTIL_H
#define GT_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "model/synth.h"

/* xorshift64*: deterministic across platforms. */
typedef struct gt_test_rng {
    uint64_t s;
} gt_test_rng;
void gt_test_rng_seed(gt_test_rng *r, uint64_t seed);
uint64_t gt_test_rng_u64(gt_test_rng *r);
float gt_test_rng_uniform(gt_test_rng *r, float lo, float hi);
float gt_test_rng_normal(gt_test_rng *r); /* mean 0, sd 1 */
void gt_test_fill_uniform(gt_test_rng *r, float *x, size_t n, float lo, float hi);
void gt_test_fill_normal(gt_test_rng *r, float *x, size_t n, float sd);

/* Environment set by tests/CMakeLists.txt; falls back to sensible defaults. */
const char *gt_test_shared_dir(void);
const char *gt_test_source_dir(void);
/* A path under the per-build temporary folder; static buffer, one at a time
 * per slot (0..3). */
const char *gt_test_tmp_path(int slot, const char *name);

/* The small model the engine-level tests share: 2 layers, 64 wide, 4 heads
 * over 2 kv heads, MLP 96, context 128 (MoE archs: 4 experts of 32, 2 used,
 * a shared expert of 48). Adjust fields before writing. */
gt_synth_config gt_test_tiny_model(const char *arch, gt_dtype type, uint32_t n_vocab, uint64_t seed);
/* Writes c to gt_test_tmp_path(slot, name); fails the test on error. */
const char *gt_test_synth(const gt_synth_config *c, int slot, const char *name);

/* Largest |a - b| / (atol + rtol * |b|); index of the worst in *worst. */
double gt_test_max_rel_err(const float *a, const float *b, size_t n, double atol, double rtol,
                           size_t *worst);
/* Compares; on failure prints the label, the worst index and both values and
 * returns 0, else 1. */
int gt_test_allclose(const char *label, const float *got, const float *want, size_t n,
                     double atol, double rtol);

#endif
