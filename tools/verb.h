/* The life of a verb that drives the job through the coordinator: create it
 * (every rank), let rank 0 lead with the verb's body while the other ranks
 * follow its steps, and end every rank alike. The one place where a verb's
 * failure becomes a printed sentence and an exit code. */
#ifndef GT_VERB_H
#define GT_VERB_H

#include <stddef.h>

#include "coordinator/coord.h"
#include "tools/flags.h"

/* --kv-type's values, in the order of its choices "f16|bf16|f32" (a
 * GT_FLAG_CHOICE writes an int into the gt_dtype field). */
static const int gt_kv_type_values[] = {GT_F16, GT_BF16, GT_F32};
_Static_assert(sizeof(gt_dtype) == sizeof(int), "--kv-type writes an int into a gt_dtype");

/* --kv-type into the gt_dtype at offset OFF (every job verb, and plan). */
// clang-format off
#define GT_KV_TYPE_FLAG(OFF)                                                                       \
    {NULL, "--kv-type", GT_FLAG_CHOICE, (OFF), .choices = "f16|bf16|f32",                         \
     .choice_values = gt_kv_type_values, .metavar = "T",                                         \
     .help = "KV cache type: f16 (default), bf16 (attention in bf16 dot products: queries\n"     \
             "and softmax weights rounded to bf16; docs/benchmarks.md) or f32"}
// clang-format on

/* The flags of every verb that starts a job, for an options struct T whose
 * field `job` (a gt_rank_config) they fill: threads, kernels, KV cache
 * type, grid, watchdog and memory budget. */
// clang-format off
#define GT_JOB_FLAGS(T)                                                                            \
    {"-t", "--threads", GT_FLAG_INT, offsetof(T, job.eng.n_threads), .lo = 1, .hi = 1024,           \
     .metavar = "N", .help = "compute threads (default 1)"},                                       \
    {NULL, "--isa", GT_FLAG_STR, offsetof(T, job.eng.isa), .metavar = "NAME",                      \
     .help = "kernels: auto, avx512, avx2, ref"},                                                  \
    {NULL, "--half-matmul", GT_FLAG_STR, offsetof(T, job.eng.bf16),                              \
     .metavar = "off|bf16|fp16|auto",                                                              \
     .help = "F16/BF16 weights, every batch size: bf16 dot products (AVX-512 BF16) or\n"          \
             "fp16 FMAs in short chunks (AVX-512 FP16), activations rounded; auto: fp16\n"        \
             "where the CPU has it, else bf16 where vdpbf16ps runs at the FMA's rate\n"          \
             "(AMD Zen 4 and later), else off (docs/benchmarks.md)"},                             \
    {NULL, "--bf16-matmul", GT_FLAG_STR, offsetof(T, job.eng.bf16), .metavar = "on|off|fp16|auto", \
     .help = "the older name of --half-matmul (on = bf16)"},                                      \
    GT_KV_TYPE_FLAG(offsetof(T, job.eng.kv_type)),                                                 \
    {NULL, "--backend", GT_FLAG_STR, offsetof(T, job.eng.backend), .metavar = "NAME",              \
     .help = "kernel backend: cpu (default) or cuda"},                                             \
    {NULL, "--tp", GT_FLAG_INT, offsetof(T, job.tp), .lo = 1, .hi = 4096, .metavar = "N",          \
     .help = "tensor parallel size under mpirun (default: tp = ranks)"},                           \
    {NULL, "--pp", GT_FLAG_INT, offsetof(T, job.pp), .lo = 1, .hi = 4096, .metavar = "N",          \
     .help = "pipeline parallel size under mpirun (default 1)"},                                   \
    {NULL, "--ep", GT_FLAG_INT, offsetof(T, job.ep), .lo = 1, .hi = 4096, .metavar = "N",          \
     .help = "expert parallelism: each MoE layer's experts shared out over N ranks of a stage\n"    \
             "(N divides tp and the expert count; default: experts split by columns)"},          \
    {NULL, "--comm-timeout", GT_FLAG_DOUBLE, offsetof(T, job.comm_timeout_s), .flo = 0.1,          \
     .fhi = 1e6, .metavar = "S",                                                                   \
     .help = "end the job when a collective or receive waits longer (default 300)"},              \
    {NULL, "--mem-budget", GT_FLAG_BYTES, offsetof(T, job.mem_budget_bytes), .lo = 1,             \
     .metavar = "B", .help = "memory per rank, like 2G or 512M: refuse to start when the plan needs more"}, \
    {NULL, "--device-mem", GT_FLAG_BYTES, offsetof(T, job.eng.device_mem_bytes), .lo = 1,           \
     .metavar = "B", .help = "device memory per rank, like 8G: routed experts that do not fit stay\n"     \
                             "in host memory behind an LRU expert cache"},                                \
    {NULL, "--expert-stats", GT_FLAG_STR, offsetof(T, job.eng.expert_stats_path), .metavar = "FILE",  \
     .help = "routing counts (from --expert-stats-out) that put the hottest experts\n"                  \
             "on the device first"},                                                               \
    {NULL, "--no-expert-prefetch", GT_FLAG_BOOL, offsetof(T, job.eng.no_expert_prefetch),          \
     .help = "offloaded experts: no predicted prefetch before attention (copies start\n"            \
             "only when the router has chosen)"}
// clang-format on

/* The verb's body on rank 0. */
typedef gt_status (*gt_verb_lead_fn)(gt_coord *c, void *opts);

/* Runs a verb over the job described by rc. A failure to start (an
 * impossible layout, a bad file) is printed once, as "gantry VERB: ...";
 * a failed step on a grid ends the whole job with the failing rank named;
 * a failure of the body before any step went wrong stops the followers
 * cleanly. Returns the exit code: 0, 1, or 2 for bad usage. */
int gt_verb_run(const char *verb, const gt_rank_config *rc, void *opts, gt_verb_lead_fn lead);

#endif
