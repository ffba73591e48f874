/* `gantry bench` with a speculation flag: plain greedy decode and
 * speculative decode of the same prompt, timed in the same rounds. */
#ifndef GT_BENCH_SPEC_H
#define GT_BENCH_SPEC_H

#include "coordinator/spec.h"

typedef struct gt_bench_spec_opts {
    gt_spec_config spec;
    const char *prompt_file; /* the prompt's text; NULL: n_prompt seeded random ids */
    bool chat;               /* format the file's text with the chat template */
    int n_prompt, n_gen, rounds;
    unsigned seed;
    const char *json; /* also write the results as JSON ("-": stdout) */
} gt_bench_spec_opts;

/* Rank 0: per round, n_gen greedy tokens plain and then with speculation
 * (which must give the same tokens), printed with the acceptance rate,
 * tokens per verification step and the speed-up. */
gt_status gt_bench_spec(gt_coord *c, const gt_bench_spec_opts *o);

#endif
