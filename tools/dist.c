/* Multi-rank plumbing for the verbs; see dist.h. */
#include "tools/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

bool gt_dist_launched(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

static double g_timeout_s;

void gt_dist_set_timeout(double seconds) { g_timeout_s = seconds; }

gt_status gt_dist_init(gt_dist *d, int *argc, char ***argv, int tp, int pp, gt_engine_config *ec) {
    memset(d, 0, sizeof *d);
    d->size = 1;
    if (!gt_dist_launched() && (tp <= 1) && (pp <= 1)) return GT_OK;
    GT_TRY(gt_comm_init_world(argc, argv, &d->world));
    d->active = true;
    if (g_timeout_s > 0) GT_TRY(gt_comm_set_timeout(d->world, g_timeout_s));
    d->rank = gt_comm_rank(d->world);
    d->size = gt_comm_size(d->world);
    if (tp <= 0) tp = pp > 0 ? d->size / pp : d->size;
    if (pp <= 0) pp = 1;
    if (tp < 1) tp = 1;
    gt_gguf *g = NULL;
    GT_TRY(gt_gguf_open(ec->model_path, &g));
    gt_plan_config pc = GT_PLAN_CONFIG_INIT;
    pc.world = d->size;
    pc.tp = tp;
    pc.pp = pp;
    pc.n_ctx = ec->n_ctx;
    pc.n_seqs = ec->max_seqs;
    pc.kv_block_size = ec->kv_block_size;
    pc.kv_type = ec->kv_type;
    pc.max_batch_tokens = ec->max_batch_tokens;
    gt_status st = gt_plan_build(g, &pc, &d->plan);
    gt_gguf_close(g);
    if (st != GT_OK) return st;
    d->have_plan = true;
    d->shard = &d->plan.shards[d->rank];
    GT_TRY(gt_par_create(d->world, &d->shard->grid, &d->par));
    ec->shard = d->shard;
    ec->par = d->par;
    GT_LOG_INFO(GT_SUB_NET, "rank %d: stage %d/%d, tp %d/%d, layers %lld..%lld, heads %lld..%lld, "
                "vocab %lld..%lld", d->rank, d->shard->grid.stage, pp, d->shard->grid.tp_rank, tp,
                (long long)d->shard->layers.begin, (long long)d->shard->layers.end,
                (long long)d->shard->heads.begin, (long long)d->shard->heads.end,
                (long long)d->shard->vocab.begin, (long long)d->shard->vocab.end);
    return GT_OK;
}

void gt_dist_finalize(gt_dist *d) {
    gt_par_destroy(d->par);
    if (d->have_plan) gt_plan_free(&d->plan);
    if (d->active) gt_comm_finalize(d->world);
    memset(d, 0, sizeof *d);
}

bool gt_dist_prints(const gt_dist *d) { return !d->active || d->rank == 0; }

_Noreturn void gt_dist_fail(gt_dist *d, const char *verb, gt_status st, bool after_start) {
    const char *msg = gt_last_error();
    if (after_start || gt_dist_prints(d)) {
        if (d->active && d->size > 1) fprintf(stderr, "gantry %s: [rank %d/%d] %s\n", verb, d->rank, d->size, *msg ? msg : gt_status_str(st));
        else fprintf(stderr, "gantry %s: %s\n", verb, *msg ? msg : gt_status_str(st));
    }
    fflush(stderr);
    if (d->active && after_start && d->size > 1) gt_comm_abort(d->world, 1);
    if (d->active) gt_dist_finalize(d);
    exit(st == GT_ERR_INVALID_ARG ? 2 : 1);
}

gt_status gt_dist_next_token(gt_dist *d, gt_engine *e, gt_sampler *s, const float *logits,
                             int32_t *tok) {
    if (!d->par) {
        *tok = gt_sampler_sample(s, logits);
        return GT_OK;
    }
    int32_t t = -1;
    if (gt_engine_has_logits(e)) {
        int64_t v0, n;
        gt_engine_vocab_slice(e, &v0, &n);
        int k = gt_sampler_n_candidates(s);
        int tp = d->shard->grid.tp;
        float *vals = malloc((size_t)k * (size_t)tp * sizeof *vals);
        int32_t *ids = malloc((size_t)k * (size_t)tp * sizeof *ids);
        int got = 0;
        gt_status st = vals && ids ? gt_par_top_candidates(d->par, logits, n, v0, k, vals, ids, &got,
                                                          "sampling candidates")
                                   : gt_fail(GT_ERR_NOMEM, "cannot allocate %d candidates", k * tp);
        if (st == GT_OK) t = gt_sampler_sample_candidates(s, vals, ids, got);
        free(vals);
        free(ids);
        GT_TRY(st);
    }
    GT_TRY(gt_par_bcast_from_last(d->par, &t, 1, "next token"));
    *tok = t;
    return GT_OK;
}

gt_status gt_dist_gather_logits(gt_dist *d, gt_engine *e, const float *local, int n_rows,
                                float *full) {
    int64_t v0, n;
    gt_engine_vocab_slice(e, &v0, &n);
    int64_t V = gt_engine_hparams(e)->n_vocab;
    if (!d->par) {
        memcpy(full, local, (size_t)n_rows * (size_t)V * sizeof *full);
        return GT_OK;
    }
    const gt_grid *g = &d->shard->grid;
    /* Each last-stage rank sends its [n_rows, n] slice to world rank 0,
     * which places the columns. */
    if (gt_engine_has_logits(e) && d->rank != 0)
        GT_TRY(gt_comm_send(d->world, local, (size_t)n_rows * (size_t)n, GT_F32, 0, 3, "logits slice"));
    if (d->rank != 0) return GT_OK;
    for (int tr = 0; tr < g->tp; tr++) {
        int src = gt_grid_rank_at(g, g->pp - 1, tr);
        const gt_shard *sh = &d->plan.shards[src];
        int64_t s0 = sh->vocab.begin, sn = gt_range_len(sh->vocab);
        float *buf = malloc((size_t)n_rows * (size_t)sn * sizeof *buf);
        if (!buf) return gt_fail(GT_ERR_NOMEM, "cannot allocate a logits slice");
        gt_status st = GT_OK;
        if (src == 0) memcpy(buf, local, (size_t)n_rows * (size_t)sn * sizeof *buf);
        else st = gt_comm_recv(d->world, buf, (size_t)n_rows * (size_t)sn, GT_F32, src, 3, "logits slice");
        for (int r = 0; st == GT_OK && r < n_rows; r++)
            memcpy(full + (size_t)r * V + s0, buf + (size_t)r * sn, (size_t)sn * sizeof *buf);
        free(buf);
        GT_TRY(st);
    }
    return GT_OK;
}
