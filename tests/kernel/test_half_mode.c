/* The --half-matmul rule (kernels/cpu/bf16_mode.c) on crafted CPUs, and the
 * detected CPU's bf16_full_rate against /proc/cpuinfo's vendor and family
 * (read here as text, independently of the CPUID bits the detector uses).
 *
 * auto: fp16 where AVX-512 FP16 and its kernels exist, else bf16 where
 * vdpbf16ps issues at the FMA's rate (AMD family 19h+), else off; explicit
 * modes are honoured where they can run and refused with a sentence where
 * they cannot. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul_internal.h"

typedef struct {
    bool f16, bf16, fp16;
} mode;

static gt_status pick(const char *m, gt_isa isa, gt_cpu_features f, mode *out) {
    return gt__cpu_bf16_mode(m ? m : "auto", isa, &f, &out->f16, &out->bf16, &out->fp16);
}

static gt_cpu_features cpu(bool bf16, bool fp16, bool full_rate) {
    gt_cpu_features f = {0};
    f.avx2 = f.fma = f.f16c = true;
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512vnni = true;
    f.avx512bf16 = bf16;
    f.avx512fp16 = fp16;
    f.bf16_full_rate = full_rate;
    return f;
}

static void test_auto(void **state) {
    (void)state;
    mode m;
    /* Zen 4: bf16 dots at the FMA's rate, no FP16 -> bf16 for both types. */
    assert_int_equal(pick(NULL, GT_ISA_AVX512, cpu(true, false, true), &m), GT_OK);
    assert_true(m.f16 && m.bf16 && !m.fp16);
    /* Cooper Lake-like: BF16 at half rate -> off. */
    assert_int_equal(pick(NULL, GT_ISA_AVX512, cpu(true, false, false), &m), GT_OK);
    assert_true(!m.f16 && !m.bf16 && !m.fp16);
    /* Sapphire Rapids-like: FP16 wins where this build has its kernels. */
    assert_int_equal(pick(NULL, GT_ISA_AVX512, cpu(true, true, false), &m), GT_OK);
    assert_true(!m.f16 && !m.bf16 && m.fp16 == gt__mm_ph_built());
    /* A CPU with both: fp16 still wins (less KL) where built. */
    assert_int_equal(pick(NULL, GT_ISA_AVX512, cpu(true, true, true), &m), GT_OK);
    assert_true(m.fp16 == gt__mm_ph_built() && m.bf16 == !gt__mm_ph_built());
    /* The avx2 or ref kernels have neither path. */
    assert_int_equal(pick(NULL, GT_ISA_AVX2, cpu(true, false, true), &m), GT_OK);
    assert_true(!m.f16 && !m.bf16 && !m.fp16);
    assert_int_equal(pick("", GT_ISA_REF, cpu(true, true, true), &m), GT_OK);
    assert_true(!m.f16 && !m.bf16 && !m.fp16);
}

static void test_explicit(void **state) {
    (void)state;
    mode m;
    assert_int_equal(pick("off", GT_ISA_AVX512, cpu(true, false, true), &m), GT_OK);
    assert_true(!m.f16 && !m.bf16 && !m.fp16);
    /* bf16 is honoured at half rate too (a research flag). */
    assert_int_equal(pick("bf16", GT_ISA_AVX512, cpu(true, false, false), &m), GT_OK);
    assert_true(m.f16 && m.bf16 && !m.fp16);
    assert_int_equal(pick("on", GT_ISA_AVX512, cpu(true, false, false), &m), GT_OK);
    assert_true(m.bf16);
    assert_int_equal(pick("bf16", GT_ISA_AVX512, cpu(false, false, false), &m), GT_ERR_UNSUPPORTED);
    assert_non_null(strstr(gt_last_error(), "lacks AVX-512 BF16"));
    assert_int_equal(pick("fp16", GT_ISA_AVX512, cpu(true, false, true), &m), GT_ERR_UNSUPPORTED);
    assert_non_null(strstr(gt_last_error(), "lacks AVX-512 FP16"));
    assert_int_equal(pick("fp12", GT_ISA_AVX512, cpu(true, true, true), &m), GT_ERR_INVALID_ARG);
    assert_non_null(strstr(gt_last_error(), "\"fp12\""));
}

/* "vendor_id : AuthenticAMD" and "cpu family : 25" of the first processor. */
static bool cpuinfo(char *vendor, size_t n, int *family) {
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (!fp) return false;
    char line[512];
    bool v = false, fam = false;
    while ((!v || !fam) && fgets(line, sizeof line, fp)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        if (!v && !strncmp(line, "vendor_id", 9)) {
            v = sscanf(colon + 1, " %63s", vendor) == 1;
            vendor[n - 1] = 0;
        } else if (!fam && !strncmp(line, "cpu family", 10)) {
            fam = sscanf(colon + 1, " %d", family) == 1;
        }
    }
    fclose(fp);
    return v && fam;
}

static void test_this_cpu(void **state) {
    (void)state;
    char vendor[64] = "";
    int family = 0;
    if (!cpuinfo(vendor, sizeof vendor, &family)) {
        print_message("no /proc/cpuinfo: the detected CPU is not checked\n");
        return;
    }
    gt_cpu_features f = gt__cpu_detect();
    const bool want = f.avx512bf16 && !strcmp(vendor, "AuthenticAMD") && family >= 0x19;
    print_message("this CPU: %s family %d, avx512_bf16 %d, bf16_full_rate %d\n", vendor, family,
                  f.avx512bf16, f.bf16_full_rate);
    assert_int_equal(f.bf16_full_rate, want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auto),
        cmocka_unit_test(test_explicit),
        cmocka_unit_test(test_this_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
