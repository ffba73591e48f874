/* `gantry plan -m FILE --tp T --pp P`: prints the sharding plan of a model
 * over a tp × pp grid before anything is loaded.
 *
 * Only the GGUF metadata and tensor infos are read (the weights stay
 * unmapped pages), so planning a 70B model takes milliseconds. The table
 * shows, per rank, its stage and position, the layers, query heads, kv heads
 * (marked when replicated), MLP columns and vocabulary rows it holds, and its
 * bytes: weights (summed from the file's real tensor types), the KV pool for
 * --ctx × --seqs, activations, total. With --mem-budget the memory planner
 * fills each rank's budget with weights, then KV blocks, and says what does
 * not fit. An impossible layout prints its one sentence and exits 1. */
#include <stddef.h>
#include <stdio.h>

#include "common/bytes.h"
#include "common/dtype.h"
#include "model/gguf.h"
#include "kernels/kernels.h"
#include "parallel/plan.h"
#include "tools/cmds.h"
#include "tools/flags.h"
#include "tools/verb.h"

#define F32_BYTES_PLAN 4ull /* activations travel as f32 */

typedef struct plan_opts {
    const char *path;
    long tp, pp, ranks;
    gt_plan_config cfg;
    const char *isa; /* the kernels that size prepared experts (--device-mem) */
} plan_opts;

static gt_status positional(const char *arg, void *opts) {
    plan_opts *o = opts;
    if (o->path) return gt_fail(GT_ERR_INVALID_ARG, "takes one model, got '%s' and '%s'", o->path, arg);
    o->path = arg;
    return GT_OK;
}

static gt_status validate(void *opts) {
    plan_opts *o = opts;
    o->cfg.tp = (int)o->tp;
    o->cfg.pp = (int)o->pp;
    o->cfg.world = o->ranks ? (int)o->ranks : (int)(o->tp * o->pp);
    return GT_OK;
}

#define O(f) offsetof(plan_opts, f)
static const gt_flag k_flags[] = {
    {"-m", "--model", GT_FLAG_STR, O(path), .metavar = "FILE",
     .help = "GGUF model (or give it as FILE)", .required = "needs a model: -m FILE"},
    {NULL, "--tp", GT_FLAG_LONG, O(tp), .lo = 1, .hi = 65536, .metavar = "T",
     .help = "ranks per pipeline stage (tensor parallel; default 1)"},
    {NULL, "--pp", GT_FLAG_LONG, O(pp), .lo = 1, .hi = 65536, .metavar = "P",
     .help = "pipeline stages (default 1)"},
    {NULL, "--ep", GT_FLAG_INT, O(cfg.ep), .lo = 1, .hi = 65536, .metavar = "E",
     .help = "expert parallelism: the ranks of a stage that share out each MoE layer's experts\n"
             "(divides T and the expert count; default: experts split by columns)"},
    {NULL, "--ranks", GT_FLAG_LONG, O(ranks), .lo = 1, .hi = 1 << 20, .metavar = "N",
     .help = "ranks in the job (default T*P; must equal it)"},
    {NULL, "--ctx", GT_FLAG_U32, O(cfg.n_ctx), .lo = 1, .hi = 1 << 24, .metavar = "C",
     .help = "positions per sequence for the KV pool (default min(training, 4096))"},
    {NULL, "--seqs", GT_FLAG_INT, O(cfg.n_seqs), .lo = 1, .hi = 65536, .metavar = "S",
     .help = "sequences with a full context in the KV pool (default 1)"},
    GT_KV_TYPE_FLAG(O(cfg.kv_type)),
    {NULL, "--mem-budget", GT_FLAG_BYTES, O(cfg.mem_budget_bytes), .lo = 1, .metavar = "B",
     .help = "memory per rank, like 2G or 512M: weights first, then KV blocks"},
    {NULL, "--kv-blocks", GT_FLAG_INT, O(cfg.kv_blocks), .lo = 1, .hi = 1 << 30, .metavar = "N",
     .help = "KV pool blocks per rank (default: --ctx x --seqs tokens' worth)"},
    {NULL, "--kv-host-mem", GT_FLAG_BYTES, O(cfg.kv_host_bytes), .lo = 1, .metavar = "B",
     .help = "host memory per rank for KV blocks evicted from the pool (prefix cache tier)"},
    {"-t", "--threads", GT_FLAG_INT, O(cfg.n_threads), .lo = 1, .hi = 1024, .metavar = "N",
     .help = "compute threads per rank, for the kernels' workspace (default 1)"},
    {NULL, "--batch", GT_FLAG_INT, O(cfg.max_batch_tokens), .lo = 1, .hi = 16384, .metavar = "B",
     .help = "tokens per forward step, for activation sizes (default 512)"},
    {NULL, "--block", GT_FLAG_INT, O(cfg.kv_block_size), .lo = 1, .hi = 4096, .metavar = "K",
     .help = "tokens per KV block (default 16)"},
    {NULL, "--device-mem", GT_FLAG_BYTES, O(cfg.device_mem_bytes), .lo = 1, .metavar = "B",
     .help = "device memory per rank, like 8G: dense weights, KV pool and activations\n"
             "stay resident; how many experts per layer fit beside them"},
    {NULL, "--isa", GT_FLAG_STR, O(isa), .metavar = "NAME",
     .help = "CPU kernels whose prepared expert sizes --device-mem counts (default: this CPU's)"},
};
#undef O

static const gt_flag_spec k_spec = {
    .verb = "plan",
    .synopsis = "-m FILE [--tp T] [--pp P] [--ranks N] [--ctx C] [--seqs S]\n"
                "                   [--ep E] [--kv-type f16|bf16|f32] [--mem-budget BYTES] "
                "[--batch B] [--block K]\n"
                "                   [--device-mem BYTES]",
    .flags = k_flags,
    .n_flags = GT_FLAGS_COUNT(k_flags),
    .positional = positional,
    .validate = validate,
    .usage_on_error = GT_USAGE_AFTER,
};

static const char *range_str(gt_range r, char *buf, size_t cap) {
    snprintf(buf, cap, "[%lld, %lld)", (long long)r.begin, (long long)r.end);
    return buf;
}

static const char *hb(uint64_t b, char *buf) { return gt_format_bytes(b, buf, 24); }

static void print_header(const gt_plan *p, const char *path) {
    const gt_hparams *hp = &p->hp;
    const gt_plan_config *c = &p->cfg;
    char b[24];
    printf("model   %s: %s, %u layers, hidden %u, %u heads / %u kv heads of %u, ", path,
           hp->arch_name, hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim);
    if (hp->n_expert)
        printf("%u experts (%u used) of %u columns", hp->n_expert, hp->n_expert_used, hp->n_ff_exp);
    else
        printf("MLP %u", hp->n_ff);
    printf(", vocab %u%s\n", hp->n_vocab, hp->tied_output ? " (tied head)" : "");
    printf("weights %s in the file (%llu bytes)\n", hb(p->model_bytes, b),
           (unsigned long long)p->model_bytes);
    if (c->ep > 1)
        printf("experts shared out over ep %d ranks of each stage group: %u experts per rank%s\n",
               c->ep, hp->n_expert / (uint32_t)c->ep,
               c->ep < c->tp ? ", each split by columns over tp / ep ranks" : ", whole");
    printf("grid    %d ranks = pp %d x tp %d; KV pool for %u positions x %d sequences, %s, "
           "blocks of %d; activations for %d tokens\n\n",
           c->world, c->pp, c->tp, c->n_ctx, c->n_seqs,
           c->kv_type == GT_F16    ? "f16"
           : c->kv_type == GT_BF16 ? "bf16"
                                   : "f32",
           c->kv_block_size, c->max_batch_tokens);
}

static void print_table(const gt_plan *p) {
    char r1[32], r2[32], r3[40], r4[32], r5[40], b1[24], b2[24], b3[24], b4[24];
    bool any_repl = false, moe = p->hp.n_expert > 0;
    printf("%4s %5s %3s  %-10s %-10s %-12s %-14s %-16s %11s %11s %11s %11s\n", "rank", "stage",
           "tp", "layers", "heads", "kv heads", moe ? "expert cols" : "ffn cols", "vocab",
           "weights", "KV pool", "activations", "total");
    for (int r = 0; r < p->n_ranks; r++) {
        const gt_shard *s = &p->shards[r];
        range_str(s->kv_heads, r3, sizeof r3);
        if (s->kv_copies > 1) {
            size_t n = strlen(r3);
            snprintf(r3 + n, sizeof r3 - n, " x%d", s->kv_copies);
            any_repl = true;
        }
        printf("%4d %5d %3d  %-10s %-10s %-12s %-14s %-16s %11s %11s %11s %11s\n", r, s->grid.stage,
               s->grid.tp_rank, range_str(s->layers, r1, sizeof r1),
               range_str(s->heads, r2, sizeof r2), r3,
               range_str(moe ? s->ff_exp : s->ff, r4, sizeof r4),
               s->first_stage || s->last_stage ? range_str(s->vocab, r5, sizeof r5) : "-",
               hb(s->weight_bytes, b1), hb(s->kv_bytes, b2), hb(s->act_bytes, b3),
               hb(s->total_bytes, b4));
    }
    if (moe) {
        printf("\n%4s %-12s %-14s %13s   (routed experts each rank holds and their bytes)\n", "rank",
               "experts", "expert cols", "expert bytes");
        for (int r = 0; r < p->n_ranks; r++) {
            const gt_shard *s = &p->shards[r];
            printf("%4d %-12s %-14s %13s\n", r, range_str(s->experts, r1, sizeof r1),
                   range_str(s->ff_exp, r4, sizeof r4), hb(s->expert_bytes, b1));
        }
    }
    if (any_repl)
        printf("  (x N: tp %d exceeds the %u kv heads, so each kv head is stored on the N ranks "
               "whose query heads use it)\n",
               p->cfg.tp, p->hp.n_head_kv);
}

/* MLP dimensions dealt out in whole blocks: every tp rank's columns (the
 * same in every stage) and max / mean of their widths. */
static void print_uneven(const gt_plan *p) {
    for (int d = 0; d < GT_FF_DIMS; d++) {
        const gt_ff_split *f = &p->ff_split[d];
        if (!f->uneven) continue;
        /* Under --ep an expert's columns are split over tp / ep ranks. */
        int ep = p->cfg.ep > 1 ? p->cfg.ep : 1;
        int tp = d == GT_FF_EXPERT ? p->cfg.tp / ep : p->cfg.tp;
        printf("  %s: %lld columns split in blocks of %lld (an even split would cut one):",
               gt_ff_dim_name((gt_ff_dim)d), (long long)f->n, (long long)f->granule);
        for (int r = 0; r < tp; r++) {
            char buf[48];
            printf(" tp %d %s%s", r, range_str(gt_plan_ff_range(f, r, tp), buf, sizeof buf),
                   r + 1 < tp ? "," : "");
        }
        printf("; imbalance (max / mean) %.2f\n", gt_plan_ff_imbalance(f, tp));
    }
}

static void print_totals(const gt_plan *p) {
    uint64_t w = 0, kv = 0, act = 0, tot = 0, repl = 0, kvtok = 0;
    char b1[24], b2[24], b3[24], b4[24];
    for (int r = 0; r < p->n_ranks; r++) {
        const gt_shard *s = &p->shards[r];
        w += s->weight_bytes;
        kv += s->kv_bytes;
        act += s->act_bytes;
        tot += s->total_bytes;
        repl += s->replicated_bytes;
        kvtok += s->kv_bytes_per_token;
    }
    printf("\ntotal   weights %s (file %s; %s more from replicated norms, kv heads and tied "
           "embeddings), KV pool %s, activations %s, all %s\n",
           hb(w, b1), hb(p->model_bytes, b2), hb(w - p->model_bytes, b3), hb(kv, b4),
           gt_format_bytes(act, (char[24]){0}, 24), gt_format_bytes(tot, (char[24]){0}, 24));
    printf("KV      %llu bytes per token over all ranks\n", (unsigned long long)kvtok);
    if (p->cfg.kv_host_bytes)
        printf("KV host tier %s per rank (%llu blocks of rank 0's shard) in host memory\n",
               hb(p->shards[0].kv_host_bytes, b1),
               (unsigned long long)(p->shards[0].kv_block_bytes ? p->shards[0].kv_host_bytes / p->shards[0].kv_block_bytes : 0));
    printf("network per decoded token:");
    if (p->cfg.tp > 1)
        printf(" TP %d allreduces of %u floats (2 per layer, each in its stage group, + 1 for "
               "the embedding) = %s, sampling candidates %s;",
               p->tp_allreduces, p->hp.n_embd, hb(p->tp_allreduce_bytes, b1),
               hb(p->logits_gather_bytes, b2));
    else
        printf(" no TP collectives;");
    if (p->cfg.ep > 1) {
        /* Per MoE layer each token's K rows go to their experts and back;
         * the (ep-1)/ep of them whose expert is on another rank travel. */
        uint64_t a2a = 2ull * p->hp.n_layer * p->hp.n_expert_used * p->hp.n_embd * F32_BYTES_PLAN;
        printf(" EP all-to-all up to %s (2 x %u rows of %u floats per MoE layer; %d/%d of them "
               "leave the rank under uniform routing);",
               hb(a2a, b1), p->hp.n_expert_used, p->hp.n_embd, p->cfg.ep - 1, p->cfg.ep);
    }
    if (p->cfg.pp > 1)
        printf(" PP %d activation sends of %u floats = %s\n", p->cfg.pp - 1, p->hp.n_embd,
               hb(p->pp_send_bytes, b3));
    else
        printf(" no PP sends\n");
}

static void print_budget(const gt_plan *p) {
    char b1[24], b2[24], b3[24], b4[24];
    const gt_plan_config *c = &p->cfg;
    uint64_t want = (c->n_ctx + (uint64_t)c->kv_block_size - 1) / c->kv_block_size * c->n_seqs;
    printf("\nmemory budget %s per rank (weights and activations first, then KV blocks of %d "
           "tokens; %d x %u positions need %llu blocks):\n",
           hb(c->mem_budget_bytes, b1), c->kv_block_size, c->n_seqs, c->n_ctx,
           (unsigned long long)want);
    for (int r = 0; r < p->n_ranks; r++) {
        const gt_shard *s = &p->shards[r];
        if (s->weights_fit) {
            printf("  rank %d: weights %s + activations %s; KV pool %lld blocks = %lld tokens "
                   "(%s per block)%s\n",
                   r, hb(s->weight_bytes, b1), hb(s->act_bytes, b2), (long long)s->kv_blocks_fit,
                   (long long)s->kv_tokens_fit, hb(s->kv_block_bytes, b3),
                   (uint64_t)s->kv_blocks_fit < want ? ": fewer than asked, the rest of the KV "
                                                       "would be swapped to host memory"
                                                     : "");
        } else {
            printf("  rank %d: weights %s + activations %s exceed the budget by %s; no room for "
                   "KV. Expert offload (--device-mem) would move %s of routed experts",
                   r, hb(s->weight_bytes, b1), hb(s->act_bytes, b2), hb(s->offload_bytes, b3),
                   hb(s->offload_expert_bytes, b4));
            if (s->offload_bytes > s->offload_expert_bytes)
                printf(", and %s more (dense weights, activations) still would not fit: use more "
                       "ranks",
                       gt_format_bytes(s->offload_bytes - s->offload_expert_bytes, b1, 24));
            printf("\n");
        }
    }
}

static void print_device(const gt_plan *p) {
    char b1[24], b2[24], b3[24];
    printf("\ndevice memory %s per rank (dense weights, KV pool and activations resident; routed "
           "experts in the rest):\n", hb(p->cfg.device_mem_bytes, b1));
    for (int r = 0; r < p->n_ranks; r++) {
        const gt_shard *s = &p->shards[r];
        if (s->device_min_bytes > p->cfg.device_mem_bytes) {
            printf("  rank %d: too small, needs at least %s (%llu bytes) for %d experts per layer beside the "
                   "rest\n", r, hb(s->device_min_bytes, b1), (unsigned long long)s->device_min_bytes,
                   s->n_expert_used);
        } else if (!s->n_expert) {
            printf("  rank %d: no routed experts; needs %s\n", r, hb(s->total_bytes, b1));
        } else if (!s->expert_slots) {
            printf("  rank %d: all %d experts per layer resident; needs %s\n", r, s->n_expert,
                   hb(s->total_bytes, b1));
        } else {
            printf("  rank %d: %d of %d experts per layer resident (expert pool %s, %s per slot over "
                   "%lld layers), %d per layer in host memory; needs %s, at least %s (%llu bytes)\n",
                   r, s->expert_slots, s->n_expert, hb(s->expert_pool_bytes, b1), hb(s->expert_slot_bytes, b2),
                   (long long)gt_range_len(s->layers), s->n_expert - s->expert_slots, hb(s->total_bytes, b3),
                   gt_format_bytes(s->device_min_bytes, (char[24]){0}, 24),
                   (unsigned long long)s->device_min_bytes);
        }
    }
}

int gt_cmd_plan(int argc, char **argv) {
    plan_opts o = {.tp = 1, .pp = 1, .cfg = GT_PLAN_CONFIG_INIT};
    int rc = gt_flags_parse(&k_spec, argc, argv, &o);
    if (rc >= 0) return rc;
    gt_gguf *g;
    gt_status st = gt_gguf_open(o.path, &g);
    if (st != GT_OK) return gt_flags_report("plan", st);
    gt_plan p;
    gt_kernels *k = NULL;
    if (o.cfg.device_mem_bytes) { /* experts are sized as these kernels prepare them */
        gt_kernels_config kc = GT_KERNELS_CONFIG_INIT;
        kc.isa = o.isa;
        st = gt_kernels_create(&kc, &k);
        if (st != GT_OK) {
            gt_gguf_close(g);
            return gt_flags_report("plan", st);
        }
        o.cfg.kernels = k;
    }
    st = gt_plan_build(g, &o.cfg, &p);
    gt_kernels_destroy(k);
    gt_gguf_close(g);
    if (st != GT_OK) {
        gt_flags_report("plan", st);
        return 1; /* an impossible layout is a failure, not a usage error */
    }
    print_header(&p, o.path);
    print_table(&p);
    print_uneven(&p);
    print_totals(&p);
    if (p.cfg.mem_budget_bytes) print_budget(&p);
    if (p.cfg.device_mem_bytes) {
        print_device(&p);
        st = gt_plan_check_device(&p);
        if (st != GT_OK) {
            gt_flags_report("plan", st);
            gt_plan_free(&p);
            return 1;
        }
    }
    gt_plan_free(&p);
    return 0;
}
