/* Shared test helpers; see test_util.h. */
#include "util/test_util.h"

#include <string.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void gt_test_rng_seed(gt_test_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 1; }

uint64_t gt_test_rng_u64(gt_test_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1Dull;
}

float gt_test_rng_uniform(gt_test_rng *r, float lo, float hi) {
    double u = (double)(gt_test_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

float gt_test_rng_normal(gt_test_rng *r) {
    double u1 = ((double)(gt_test_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(gt_test_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void gt_test_fill_uniform(gt_test_rng *r, float *x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = gt_test_rng_uniform(r, lo, hi);
}

void gt_test_fill_normal(gt_test_rng *r, float *x, size_t n, float sd) {
    for (size_t i = 0; i < n; i++) x[i] = sd * gt_test_rng_normal(r);
}

const char *gt_test_shared_dir(void) {
    const char *d = getenv("GANTRY_SHARED_DIR");
    return d && *d ? d : "tests/data"; /* vocab/ travels with the repository */
}

const char *gt_test_source_dir(void) {
    const char *d = getenv("GANTRY_SOURCE_DIR");
    return d && *d ? d : ".";
}

const char *gt_test_tmp_path(int slot, const char *name) {
    static char buf[4][1024];
    const char *d = getenv("GANTRY_TEST_TMP");
    snprintf(buf[slot & 3], sizeof buf[0], "%s/%s", d && *d ? d : "/tmp", name);
    return buf[slot & 3];
}

double gt_test_max_rel_err(const float *a, const float *b, size_t n, double atol, double rtol,
                           size_t *worst) {
    double m = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (isnan(d)) d = INFINITY;
        if (d > m) {
            m = d;
            w = i;
        }
    }
    if (worst) *worst = w;
    return m;
}

int gt_test_allclose(const char *label, const float *got, const float *want, size_t n,
                     double atol, double rtol) {
    size_t w;
    double m = gt_test_max_rel_err(got, want, n, atol, rtol, &w);
    if (m <= 1.0) return 1;
    fprintf(stderr, "%s: mismatch at %zu of %zu: got %.9g want %.9g (|diff| %.3g, atol %.3g rtol %.3g)\n",
            label, w, n, (double)got[w], (double)want[w], fabs((double)got[w] - (double)want[w]),
            atol, rtol);
    return 0;
}

gt_synth_config gt_test_tiny_model(const char *arch, gt_dtype type, uint32_t n_vocab, uint64_t seed) {
    gt_synth_config c = GT_SYNTH_CONFIG_INIT;
    c.arch = arch;
    c.n_layer = 2;
    c.n_embd = 64;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 96;
    c.n_vocab = n_vocab;
    c.n_ctx = 128;
    c.type = type;
    c.seed = seed;
    if (strstr(arch, "moe")) {
        c.n_expert = 4;
        c.n_expert_used = 2;
        c.n_ff_exp = 32;
        c.n_ff_shexp = 48;
    }
    return c;
}

const char *gt_test_synth(const gt_synth_config *c, int slot, const char *name) {
    const char *path = gt_test_tmp_path(slot, name);
    if (gt_synth_write(c, path) != GT_OK) {
        fprintf(stderr, "synth %s: %s\n", name, gt_last_error());
        abort();
    }
    return path;
}
