/* The CPU rope op and its cos/sin tables.
 *
 * A forward pass rotates q and k of every layer at the same positions with
 * one or two parameter sets (Gemma 3's local layers have a base of their
 * own), and each table row costs n_rot/2 pow, sin and cos in double
 * (gt__rope_table): recomputed for every call, that was 3-5% of a SmolLM2
 * or Gemma 3 prefill. The backend keeps the tables of the last two
 * (positions, parameters) it saw and reuses one when a call brings the same
 * positions (compared by value, not by address) and the same parameters, so
 * a pass computes each table once. The rows are gt__rope_table's, so no
 * output bit depends on whether a table was reused.
 *
 * Memory: before gt_kernels_reserve the tables grow on demand; the
 * reservation sizes them for its max_tokens and head_dim, and a larger call
 * then computes its rows per call instead (the op never fails and, once
 * reserved, never allocates). */
#include <assert.h>
#include <string.h>

#include "common/alloc.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ops.h"

size_t gt__cpu_rope_bytes(int64_t max_tok, int max_rot) {
    if (max_tok < 1 || max_rot < 2) return 0;
    const size_t row = (size_t)max_rot * sizeof(float) + sizeof(int32_t);
    return GT_ROPE_TABLES * (size_t)max_tok * row;
}

void gt__cpu_rope_free(gt_cpu *k) {
    gt_free(k->rope_mem);
    k->rope_mem = NULL;
    memset(k->rope, 0, sizeof k->rope);
    k->rope_cap_tok = 0;
    k->rope_cap_rot = 0;
}

static bool tables_alloc(gt_cpu *k, int64_t max_tok, int max_rot) {
    gt__cpu_rope_free(k);
    const size_t bytes = gt__cpu_rope_bytes(max_tok, max_rot);
    if (!bytes) return true;
    char *m = gt_alloc(bytes);
    if (!m) return false;
    k->rope_mem = m;
    k->rope_cap_tok = max_tok;
    k->rope_cap_rot = max_rot;
    for (int i = 0; i < GT_ROPE_TABLES; i++, m += (size_t)max_tok * (size_t)max_rot * sizeof(float))
        k->rope[i].cs = (float *)m;
    for (int i = 0; i < GT_ROPE_TABLES; i++, m += (size_t)max_tok * sizeof(int32_t))
        k->rope[i].pos = (int32_t *)m;
    return true;
}

gt_status gt__cpu_rope_alloc(gt_cpu *k, int64_t max_tok, int max_rot) {
    if (!tables_alloc(k, max_tok, max_rot))
        return gt_fail(GT_ERR_NOMEM, "kernels: cannot allocate %zu bytes of rope tables",
                       gt__cpu_rope_bytes(max_tok, max_rot));
    return GT_OK;
}

static bool same_params(const gt__rope_tab *t, const gt_rope_params *p) {
    return t->freq_base == p->freq_base && t->freq_scale == p->freq_scale && t->n_rot == p->n_rot;
}

typedef struct {
    const struct gt_ops *ops;
    float *x;
    int64_t n_tok;
    int n_head, head_dim;
    const int32_t *pos;
    const gt_rope_params *p;
    const float *cs; /* [n_tok][stride]: cos then sin; NULL: each row computed here */
    int stride;
    float *fill; /* rows to compute into (the table being filled), or NULL */
} rope_job;

static void table_run(void *arg, int ith, int nth) {
    rope_job *j = arg;
    long b, e;
    gt_pool_split((long)j->n_tok, 1, ith, nth, &b, &e);
    const int half = j->p->n_rot / 2;
    for (long t = b; t < e; t++) {
        float *row = j->fill + (size_t)t * (size_t)j->stride;
        gt__rope_table(j->pos[t], j->p, row, row + half);
    }
}

static void rope_run(void *arg, int ith, int nth) {
    rope_job *j = arg;
    const int half = j->p->n_rot / 2;
    float own[GT_ROPE_MAX_ROT];
    long b, e; /* over (token, head) vectors */
    gt_pool_split((long)(j->n_tok * j->n_head), 1, ith, nth, &b, &e);
    while (b < e) {
        const long t = b / j->n_head, h0 = b % j->n_head;
        long h1 = j->n_head;
        if ((long)(t * j->n_head + h1) > e) h1 = e - t * j->n_head;
        const float *cs = own;
        if (j->cs)
            cs = j->cs + (size_t)t * (size_t)j->stride;
        else
            gt__rope_table(j->pos[t], j->p, own, own + half);
        j->ops->rope(j->x + (t * j->n_head + h0) * j->head_dim, h1 - h0, j->head_dim, cs, cs + half,
                     j->p);
        b = t * j->n_head + h1;
    }
}

static void run(gt_cpu *k, gt_pool_fn fn, rope_job *j, int64_t work) {
    gt__cpu_run(k, fn, j, gt__cpu_useful_threads(k, work, GT_ELEMWISE_MIN_PER_THREAD));
}

/* The table for (pos, p): one held, or the least recently used one
 * refilled; NULL when the call is larger than the tables may grow. */
static const gt__rope_tab *table_for(gt_cpu *k, const int32_t *pos, int64_t n_tok,
                                     const gt_rope_params *p, rope_job *j) {
    gt__rope_tab *old = &k->rope[0];
    for (int i = 0; i < GT_ROPE_TABLES; i++) {
        gt__rope_tab *t = &k->rope[i];
        if (t->n_tok == n_tok && same_params(t, p) &&
            !memcmp(t->pos, pos, (size_t)n_tok * sizeof *pos)) {
            t->used = ++k->rope_clock;
            return t;
        }
        if (t->used < old->used) old = t;
    }
    if (n_tok > k->rope_cap_tok || p->n_rot > k->rope_cap_rot) {
        if (k->reserved) return NULL;
        const int64_t cap = n_tok > k->rope_cap_tok ? n_tok : k->rope_cap_tok;
        const int rot = p->n_rot > k->rope_cap_rot ? p->n_rot : k->rope_cap_rot;
        if (!tables_alloc(k, cap, rot)) return NULL;
        old = &k->rope[0];
    }
    old->n_tok = 0; /* invalid until filled */
    j->fill = old->cs;
    j->stride = k->rope_cap_rot;
    run(k, table_run, j, n_tok * (int64_t)p->n_rot * 64);
    memcpy(old->pos, pos, (size_t)n_tok * sizeof *pos);
    old->n_tok = n_tok;
    old->freq_base = p->freq_base;
    old->freq_scale = p->freq_scale;
    old->n_rot = p->n_rot;
    old->used = ++k->rope_clock;
    return old;
}

gt_status gt__cpu_rope(gt_kernels *kb, float *x, int64_t n_tok, int n_head, int head_dim,
                       const int32_t *pos, const gt_rope_params *p) {
    gt_cpu *k = gt__cpu(kb);
    /* Invariants the model loader checks before any forward pass. */
    assert(p->n_rot >= 0 && p->n_rot % 2 == 0 && p->n_rot <= head_dim &&
           p->n_rot <= GT_ROPE_MAX_ROT);
    if (n_tok <= 0 || n_head <= 0 || p->n_rot == 0) return GT_OK;
    rope_job j = {k->ops, x, n_tok, n_head, head_dim, pos, p, NULL, 0, NULL};
    const gt__rope_tab *t = table_for(k, pos, n_tok, p, &j);
    if (t) {
        j.cs = t->cs;
        j.stride = k->rope_cap_rot;
    }
    run(k, rope_run, &j, n_tok * n_head * (int64_t)p->n_rot * 8);
    return GT_OK;
}
