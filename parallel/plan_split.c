/* Splitting the MLP dimensions over tensor parallelism at block granularity.
 *
 * The down projections are row-parallel: each rank keeps every row and a
 * column range of it, and a quantized row can only be cut between blocks.
 * When the even split n p / tp falls on a block boundary for every rank (an
 * unquantized model, or 512 columns of Q4_K at tp 2) it is kept, so existing
 * layouts do not change. Otherwise the columns are dealt out in whole
 * granules (the lcm of the block sizes of every matrix that slices the
 * dimension inside its rows, over all layers), the first ranks one more:
 * 768 columns of Q4_K are three 256-column blocks, 512 + 256 at tp 2 and
 * 256 + 256 + 256 + 0 at tp 4. The gate and up rows that produce those
 * columns follow the same ranges. A rank that holds no column of a
 * dimension skips those matrices and adds zeros to the stage's sum. */
#include "parallel/plan.h"
#include "parallel/plan_internal.h"

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int64_t ff_width(const gt_hparams *hp, gt_ff_dim d) {
    switch (d) {
    case GT_FF_DENSE:
        return hp->n_expert ? 0 : hp->n_ff;
    case GT_FF_EXPERT:
        return hp->n_expert ? hp->n_ff_exp : 0;
    case GT_FF_SHARED:
        return hp->n_ff_shexp;
    default:
        return 0;
    }
}

/* True when every boundary of the even split is a multiple of the granule. */
static bool even_is_aligned(int64_t n, int64_t granule, int tp) {
    for (int p = 1; p < tp; p++)
        if (n * p / tp % granule) return false;
    return true;
}

gt_status gt_plan_ff_split_init(const gt_gguf *g, const gt_hparams *hp, gt_ff_dim d, int tp,
                                gt_ff_split *out) {
    out->n = ff_width(hp, d);
    out->granule = 1;
    out->uneven = false;
    for (size_t i = 0; i < gt_gguf_n_tensors(g); i++) {
        const gt_tensor_info *t = gt_gguf_tensor_at(g, i);
        gt_ff_dim td;
        if (!gt__plan_tensor_cuts_ff(t->name, &td) || td != d) continue;
        const gt_dtype_info *di;
        GT_TRY(gt__plan_dtype_of(t, &di));
        int64_t blk = di->block_elems;
        if (t->ne[0] % blk)
            return gt_fail(GT_ERR_FORMAT,
                           "%s: rows of %lld elements are not whole %s blocks of %lld", t->name,
                           (long long)t->ne[0], di->name, (long long)blk);
        out->granule = out->granule / gcd64(out->granule, blk) * blk;
    }
    if (out->n > 0 && tp > 1) out->uneven = !even_is_aligned(out->n, out->granule, tp);
    return GT_OK;
}

gt_range gt_plan_ff_range(const gt_ff_split *f, int p, int tp) {
    if (!f->uneven) return (gt_range){f->n * p / tp, f->n * (p + 1) / tp};
    /* Whole granules, the first (units % tp) ranks one more; the last
     * granule is clipped to n should n not be a multiple of it (the
     * tensors' shape check then refuses the file). */
    int64_t units = (f->n + f->granule - 1) / f->granule, base = units / tp, extra = units % tp;
    int64_t u0 = p * base + (p < extra ? p : extra), u1 = u0 + base + (p < extra ? 1 : 0);
    gt_range r = {u0 * f->granule, u1 * f->granule};
    if (r.begin > f->n) r.begin = f->n;
    if (r.end > f->n) r.end = f->n;
    return r;
}

double gt_plan_ff_imbalance(const gt_ff_split *f, int tp) {
    if (f->n <= 0 || tp < 1) return 0.0;
    int64_t most = 0;
    for (int p = 0; p < tp; p++) {
        int64_t len = gt_range_len(gt_plan_ff_range(f, p, tp));
        if (len > most) most = len;
    }
    return (double)most * tp / (double)f->n;
}

const char *gt_ff_dim_name(gt_ff_dim d) {
    static const char *const names[GT_FF_DIMS] = {"MLP", "expert MLP", "shared expert MLP"};
    return (unsigned)d < GT_FF_DIMS ? names[d] : "?";
}
