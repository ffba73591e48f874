/* A verb's life over the job; see verb.h. */
#include "tools/verb.h"

#include <stdio.h>

#include "tools/flags.h"

static _Noreturn void fail_job(const char *verb, gt_coord *c, gt_status st) {
    const char *msg = gt_last_error();
    gt_rank *r = gt_coord_rank(c);
    fprintf(stderr, "gantry %s: [rank %d/%d] %s\n", verb, gt_rank_world_rank(r), gt_rank_world_size(r),
            *msg ? msg : gt_status_str(st));
    fflush(stderr);
    gt_coord_abort(c, 1);
}

int gt_verb_run(const char *verb, const gt_rank_config *rc, void *opts, gt_verb_lead_fn lead) {
    gt_coord *c = NULL;
    gt_status st = gt_coord_create(rc, &c);
    if (st != GT_OK) {
        /* Every rank failed alike (the plan's verdict is the same everywhere,
         * and an engine that failed on one rank failed the start-up agreement
         * on all). Rank 0 prints the sentence and carries the exit code: a
         * non-zero exit of another rank would let mpirun kill rank 0 before
         * it has printed. */
        if (gt_rank_launch_rank() != 0) return 0;
        return gt_flags_report(verb, st);
    }
    if (!gt_coord_leads(c)) {
        st = gt_coord_follow(c);
        if (st != GT_OK) fail_job(verb, c, st);
        gt_coord_destroy(c);
        return 0;
    }
    st = lead(c, opts);
    if (st != GT_OK && gt_coord_failed(c) && gt_rank_world_size(gt_coord_rank(c)) > 1) fail_job(verb, c, st);
    gt_coord_destroy(c);
    return st == GT_OK ? 0 : gt_flags_report(verb, st);
}
