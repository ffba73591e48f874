/* `gantry serve`'s rank-0 loop; see server.h. */
#include "coordinator/server.h"
#include "coordinator/metrics.h"
#include "coordinator/server_internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timer.h"
#include "coordinator/spec_draft.h"
#include "coordinator/text.h"
#include "model/chat.h"
#include "model/tokenizer/tokenizer.h"

const double k_bounds_ms[N_BOUNDS] = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};

static void histo_add(histo *h, double ms) {
    int i = 0;
    while (i < N_BOUNDS && ms > k_bounds_ms[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum_ms += ms;
}

/* ---- sending ---- */

static void send_buf(gt_server *s, srv_conn *sc) {
    if (sc && s->out.len) gt_conn_send(sc->conn, s->out.data, s->out.len);
    s->out.len = 0;
}

static void send_error(gt_server *s, srv_conn *sc, uint32_t msgid, gt_rpc_code code) {
    s->n_refused++;
    if (gt_rpc_encode_error(&s->out, msgid, code, gt_last_error()) == GT_OK) send_buf(s, sc);
}

/* ---- requests ---- */

/* Appends p[n] to the NUL-terminated *text (*len bytes in *cap); drops it
 * when memory runs out. */
static void buf_append(char **text, size_t *len, size_t *cap, const char *p, size_t n) {
    if (!n) return;
    if (*len + n + 1 > *cap) {
        size_t c = (*len + n + 1) * 2;
        char *t = realloc(*text, c);
        if (!t) return;
        *text = t;
        *cap = c;
    }
    memcpy(*text + *len, p, n);
    *len += n;
    (*text)[*len] = '\0';
}

static void text_append(srv_req *r, const char *p, size_t n) {
    buf_append(&r->text, &r->len, &r->cap, p, n);
}

static void req_free(gt_server *s, srv_req *r) {
    if (r->prev) r->prev->next = r->next;
    else s->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    s->n_reqs--;
    gt_detok_stream_free(r->detok);
    for (uint32_t i = 0; i < r->n_alt_detok; i++) gt_detok_stream_free(r->alt_detok[i]);
    free(r->alt_detok);
    for (uint32_t i = 0; r->alts && i < r->n_alts; i++) free((char *)r->alts[i].text);
    free(r->alts);
    srv_http_req_free(r->h);
    free(r->text);
    free(r->toks);
    free(r->lps);
    free(r->tops);
    free(r);
}

static srv_req *req_by_id(gt_server *s, uint64_t id) {
    for (srv_req *r = s->reqs; r; r = r->next)
        if (r->id == id) return r;
    return NULL;
}

static void stream_piece(gt_server *s, srv_req *r, const char *p, size_t n, int32_t tok,
                         const gt_rpc_token_logprobs *lp) {
    if (r->hc) {
        if (r->stream) srv_http_piece(s, r, p, n, lp);
        return;
    }
    if (!r->stream || !r->sc) return;
    gt_rpc_token_event e = {r->msgid, p, n, tok, lp};
    if (gt_rpc_encode_token(&s->out, &e) == GT_OK) send_buf(s, r->sc);
}

static void on_admit(void *user, uint64_t id) {
    gt_server *s = user;
    srv_req *r = req_by_id(s, id);
    if (!r) return;
    r->t_admit = gt_now_ns();
    histo_add(&s->h_queue, (double)(r->t_admit - r->t_submit) * 1e-6);
}

static bool on_token(void *user, uint64_t id, int32_t tok, const gt_token_info *info) {
    gt_server *s = user;
    srv_req *r = req_by_id(s, id);
    if (!r) return true;
    uint64_t now = gt_now_ns();
    if (!r->n_toks) {
        r->t_first = now;
        histo_add(&s->h_ttft, (double)(now - r->t_submit) * 1e-6);
    } else {
        histo_add(&s->h_itl, (double)(now - r->t_last) * 1e-6);
    }
    r->t_last = now;
    const gt_rpc_token_logprobs *lp = NULL;
    if (r->n_toks < r->max_toks) {
        if (info && r->n_lp) {
            gt_rpc_logprob *top = r->tops + (size_t)r->n_toks * r->n_lp;
            uint32_t nt = (uint32_t)info->n_top < r->n_lp ? (uint32_t)info->n_top : r->n_lp;
            for (uint32_t i = 0; i < nt; i++) top[i] = (gt_rpc_logprob){info->top[i].id, info->top[i].logit};
            r->lps[r->n_toks] = (gt_rpc_token_logprobs){tok, info->logprob, top, nt};
            lp = &r->lps[r->n_toks];
        }
        r->toks[r->n_toks++] = tok;
    }
    r->last = tok;
    s->n_generated++;
    if (gt_tokenizer_is_eog(s->tok, tok)) return true; /* the end of the turn is not text */
    gt_str piece = {0};
    bool stopped = false;
    if (gt_detok_stream_push(r->detok, tok, &piece, &stopped) != GT_OK) return true;
    text_append(r, piece.ptr, piece.len);
    if (piece.len || lp) stream_piece(s, r, piece.ptr ? piece.ptr : "", piece.len, tok, lp);
    r->stop_string = stopped;
    return stopped;
}

/* Beam search's runners-up as answers, each through its own detokenizer
 * (the request's stop strings) and cut as the winner's is by on_token: an
 * end-of-generation token ends it and adds no text, a stop string ends it
 * after the token that completed it. */
static void alternatives(gt_server *s, srv_req *r, const gt_sched_usage *u) {
    uint32_t n = (uint32_t)u->n_alts < r->n_alt_detok ? (uint32_t)u->n_alts : r->n_alt_detok;
    if (!n || !(r->alts = calloc(n, sizeof *r->alts))) return;
    r->n_alts = n;
    for (uint32_t i = 0; i < n; i++) {
        const gt_sched_hyp *h = &u->alts[i];
        gt_detok_stream *d = r->alt_detok[i];
        char *text = NULL;
        size_t len = 0, cap = 0;
        bool stopped = false;
        int k = 0;
        while (k < h->n && k < (int)r->max_toks && !stopped) {
            int32_t tok = h->toks[k++];
            if (gt_tokenizer_is_eog(s->tok, tok)) {
                stopped = true;
                break;
            }
            gt_str piece = {0};
            if (gt_detok_stream_push(d, tok, &piece, &stopped) != GT_OK) break;
            buf_append(&text, &len, &cap, piece.ptr, piece.len);
        }
        gt_str rest = {0};
        if (!stopped && gt_detok_stream_finish(d, &rest) == GT_OK)
            buf_append(&text, &len, &cap, rest.ptr, rest.len);
        r->alts[i] = (gt_rpc_alternative){text,
                                          text ? len : 0,
                                          h->toks,
                                          (uint32_t)k,
                                          !stopped && k >= (int)r->max_toks ? GT_RPC_FINISH_LENGTH
                                                                            : GT_RPC_FINISH_STOP,
                                          h->score};
    }
}

static void on_done(void *user, uint64_t id, gt_finish why, const gt_sched_usage *u) {
    gt_server *s = user;
    srv_req *r = req_by_id(s, id);
    if (!r) return;
    gt_str rest = {0};
    if (!r->stop_string && gt_detok_stream_finish(r->detok, &rest) == GT_OK && rest.len) {
        text_append(r, rest.ptr, rest.len);
        stream_piece(s, r, rest.ptr, rest.len, r->last, NULL);
    }
    static const gt_rpc_finish map[] = {GT_RPC_FINISH_STOP, GT_RPC_FINISH_STOP, GT_RPC_FINISH_LENGTH,
                                        GT_RPC_FINISH_CANCELLED, GT_RPC_FINISH_SHUTDOWN};
    gt_rpc_finish f = (unsigned)why < 5 ? map[why] : GT_RPC_FINISH_STOP;
    s->n_finished[f]++;
    s->n_cached += (uint64_t)u->cached_tokens;
    histo_add(&s->h_e2e, (double)(gt_now_ns() - r->t_submit) * 1e-6);
    alternatives(s, r, u);
    if (r->hc) srv_http_done(s, r, f, u);
    if (r->sc) {
        uint64_t now = gt_now_ns();
        gt_rpc_generate_result res = {
            .text = r->text ? r->text : "",
            .text_len = r->len,
            .tokens = r->toks,
            .n_tokens = r->n_toks,
            .finish = f,
            .prompt_tokens = r->n_prompt,
            .completion_tokens = (uint32_t)u->completion_tokens,
            .cached_tokens = (uint32_t)u->cached_tokens,
            .logprobs = r->n_lp ? r->lps : NULL,
            .queue_ms = r->t_admit ? (double)(r->t_admit - r->t_submit) * 1e-6 : 0.0,
            .ttft_ms = r->t_first ? (double)(r->t_first - r->t_submit) * 1e-6 : 0.0,
            .total_ms = (double)(now - r->t_submit) * 1e-6,
            .has_spec = r->spec,
            .spec_drafted = (uint32_t)u->spec_drafted,
            .spec_accepted = (uint32_t)u->spec_accepted,
            .spec_steps = (uint32_t)u->spec_steps,
            .spec_method = r->spec ? (r->spec_draft ? "draft" : "lookup") : NULL,
            .beams = r->beams,
            .beam_score = u->beam_score,
            .alts = r->alts,
            .n_alts = r->n_alts,
        };
        if (gt_rpc_encode_generate(&s->out, r->msgid, &res) == GT_OK) send_buf(s, r->sc);
    }
    req_free(s, r);
}

/* The prompt as token ids: text (with the model's BOS), chat messages
 * through the model's template, or ids as given. */
static gt_status prompt_tokens(gt_server *s, const gt_rpc_generate *g, int32_t **ids, size_t *n,
                               gt_rpc_code *code) {
    *code = GT_RPC_INVALID_PARAM;
    unsigned flags = GT_TOK_PARSE_SPECIAL | GT_TOK_ADD_SPECIAL;
    if (g->input == GT_RPC_INPUT_TOKENS) {
        GT_TRY(gt_rpc_tokens_check("tokens", g->tokens, g->n_tokens, s->n_vocab));
        *ids = malloc((size_t)(g->n_tokens ? g->n_tokens : 1) * sizeof **ids);
        if (!*ids) return gt_fail(GT_ERR_NOMEM, "cannot copy %u tokens", g->n_tokens);
        memcpy(*ids, g->tokens, (size_t)g->n_tokens * sizeof **ids);
        *n = g->n_tokens;
        return GT_OK;
    }
    if (g->input == GT_RPC_INPUT_PROMPT) return gt_tokenize(s->tok, g->prompt, g->prompt_len, flags, ids, n);
    if (!s->have_tmpl)
        return gt_fail(GT_ERR_UNSUPPORTED, "the model carries no chat template Gantry recognises; send "
                       "the conversation as `prompt` text");
    gt_chat_msg *m = malloc((size_t)(g->n_messages ? g->n_messages : 1) * sizeof *m);
    if (!m) return gt_fail(GT_ERR_NOMEM, "cannot hold %u messages", g->n_messages);
    for (uint32_t i = 0; i < g->n_messages; i++) m[i] = (gt_chat_msg){g->messages[i].role, g->messages[i].content};
    char *text = NULL;
    size_t len = 0;
    gt_status st = gt_chat_apply(&s->tmpl, m, g->n_messages, true, &text, &len);
    free(m);
    if (st == GT_OK) st = gt_tokenize(s->tok, text, len, flags, ids, n);
    free(text);
    return st;
}

/* The request's speculation: its `speculate`, else the server's proposer
 * (the draft model with --draft/--self-draft, prompt lookup with --lookup)
 * and --draft-tokens (not for a request with a grammar or a logit bias,
 * which verification does not apply: asked for explicitly, the scheduler
 * refuses the pair). Within `speculate`: draft true takes the draft model
 * (the scheduler refuses it on a server without one); lookup N takes
 * prompt lookup (0: none); draft false alone turns speculation off; with
 * neither, the server's proposer, or prompt lookup of 3. */
static void srv_spec_params(const gt_server *s, const gt_rpc_generate *g, gt_sched_req *q) {
    bool draft = s->draft != NULL;
    int lookup = draft ? 0 : s->cfg.spec_lookup, k = s->cfg.spec_tokens > 0 ? s->cfg.spec_tokens : 4;
    if (g->has_speculate) {
        if (g->spec_draft) {
            draft = true;
            lookup = (int)g->spec_lookup;
        } else if (g->spec_has_lookup || g->spec_has_draft) {
            draft = false;
            lookup = (int)g->spec_lookup;
        } else if (!draft && lookup == 0) {
            lookup = 3;
        }
        if (g->spec_tokens) k = (int)g->spec_tokens;
    }
    if (q->cons && !g->has_speculate) {
        lookup = 0;
        draft = false;
    }
    q->spec_lookup = lookup;
    q->spec_draft = draft;
    q->spec_tokens = lookup > 0 || draft ? k : 0;
}

static bool srv_is_eog(void *user, int32_t tok) {
    const gt_server *s = user;
    return gt_tokenizer_is_eog(s->tok, tok);
}

static gt_status srv_submit(gt_server *s, gt_rpc_generate *g, srv_conn *sc, uint32_t msgid,
                            struct srv_http_conn *hc, srv_req **out, gt_rpc_code *out_code) {
    *out = NULL;
    if (s->draining) {
        *out_code = GT_RPC_DRAINING;
        return gt_fail(GT_ERR_UNSUPPORTED, "the server is shutting down and admits no new requests");
    }
    int32_t *ids = NULL;
    size_t n = 0;
    gt_rpc_code code;
    gt_status st = prompt_tokens(s, g, &ids, &n, &code);
    gt_rpc_model_limits ml = {s->n_ctx, s->n_vocab};
    if (st == GT_OK && n > UINT32_MAX) st = gt_fail(GT_ERR_RANGE, "a prompt of %zu tokens", n);
    if (st == GT_OK) st = gt_rpc_generate_check(g, &ml, (uint32_t)n, &code);
    srv_req *r = NULL;
    if (st == GT_OK) {
        r = calloc(1, sizeof *r);
        size_t nt = g->max_tokens ? g->max_tokens : 1;
        if (r) {
            r->toks = malloc(nt * sizeof *r->toks);
            r->n_lp = g->logprobs;
            if (r->n_lp) {
                r->lps = malloc(nt * sizeof *r->lps);
                r->tops = malloc(nt * r->n_lp * sizeof *r->tops);
            }
        }
        if (!r || !r->toks || (r->n_lp && (!r->lps || !r->tops)))
            st = gt_fail(GT_ERR_NOMEM, "cannot hold a request of %u tokens", g->max_tokens);
    }
    if (st == GT_OK) {
        gt_detok_stream_opts o = GT_DETOK_STREAM_OPTS_INIT;
        o.strip_leading_space = false;
        const char *stops[GT_RPC_MAX_DEPTH + 64];
        size_t n_stop = 0;
        for (uint32_t i = 0; i < g->n_stop && n_stop < 64; i++) stops[n_stop++] = g->stop[i];
        if (g->input == GT_RPC_INPUT_MESSAGES)
            for (const char *const *p = gt_chat_stop_strings(s->tmpl.format); p && *p && n_stop < 80; p++)
                stops[n_stop++] = *p;
        o.stop = stops;
        o.n_stop = n_stop;
        st = gt_detok_stream_create(s->tok, &o, &r->detok);
        uint32_t n_alt = g->beams > 0 && g->n_best > 1 ? g->n_best - 1 : 0;
        if (st == GT_OK && n_alt) {
            r->alt_detok = calloc(n_alt, sizeof *r->alt_detok);
            if (!r->alt_detok) st = gt_fail(GT_ERR_NOMEM, "cannot hold %u hypotheses", g->n_best);
            for (; st == GT_OK && r->n_alt_detok < n_alt; r->n_alt_detok++)
                st = gt_detok_stream_create(s->tok, &o, &r->alt_detok[r->n_alt_detok]);
        }
        code = GT_RPC_INVALID_PARAM;
    }
    if (st == GT_OK && g->beams > 0 && g->stream)
        st = gt_fail(GT_ERR_INVALID_ARG, "beam search returns its best hypothesis once it is complete, so it "
                     "cannot stream; ask with stream false");
    struct gt_constraint *cons = NULL;
    if (st == GT_OK) st = srv_constraint(s, g, &cons); /* code stays GT_RPC_INVALID_PARAM */
    if (st == GT_OK) {
        r->id = ++s->next_id;
        r->sc = sc;
        r->hc = hc;
        r->msgid = msgid;
        r->stream = g->stream;
        r->max_toks = g->max_tokens;
        r->n_prompt = (uint32_t)n;
        r->t_submit = gt_now_ns();
        gt_sched_req q = {.id = r->id, .prompt = ids, .n_prompt = (int)n, .samp = g->sampling,
                          .max_tokens = (int)g->max_tokens,
                          .pen = {g->repetition_penalty, g->presence_penalty, g->frequency_penalty},
                          .logprobs = (int)g->logprobs, .on_token = on_token, .on_admit = on_admit,
                          .on_done = on_done, .user = s, .cons = cons};
        srv_spec_params(s, g, &q);
        if (g->beams > 0) {
            if (!g->has_speculate) { /* the server's --lookup or draft is for sampling */
                q.spec_lookup = q.spec_tokens = 0;
                q.spec_draft = false;
            }
            q.beams = (int)g->beams;
            q.length_penalty = g->length_penalty;
            q.n_best = (int)g->n_best;
            q.is_eog = srv_is_eog;
            r->beams = g->beams;
        }
        r->spec = q.spec_lookup > 0 || q.spec_draft;
        r->spec_draft = q.spec_draft;
        st = gt_sched_submit(s->sched, &q);
        code = st == GT_ERR_RANGE ? GT_RPC_QUEUE_FULL : GT_RPC_INVALID_PARAM;
    }
    free(ids);
    if (st != GT_OK) {
        if (r) {
            gt_detok_stream_free(r->detok);
            for (uint32_t i = 0; i < r->n_alt_detok; i++) gt_detok_stream_free(r->alt_detok[i]);
            free(r->alt_detok);
            free(r->toks);
            free(r->lps);
            free(r->tops);
            free(r);
        }
        if (st == GT_ERR_NOMEM) code = GT_RPC_INTERNAL;
        *out_code = code;
        return st;
    }
    r->next = s->reqs;
    if (s->reqs) s->reqs->prev = r;
    s->reqs = r;
    s->n_reqs++;
    s->n_requests++;
    s->n_prompt_tokens += n;
    *out = r;
    return GT_OK;
}

static void handle_generate(gt_server *s, srv_conn *sc, uint32_t msgid, gt_rpc_generate *g) {
    srv_req *r;
    gt_rpc_code code;
    if (srv_submit(s, g, sc, msgid, NULL, &r, &code) != GT_OK) send_error(s, sc, msgid, code);
}

static void handle_tokenize(gt_server *s, srv_conn *sc, const gt_rpc_request *q) {
    int32_t *ids = NULL;
    size_t n = 0;
    unsigned flags = GT_TOK_PARSE_SPECIAL | (q->tokenize.add_special ? GT_TOK_ADD_SPECIAL : 0);
    if (gt_tokenize(s->tok, q->tokenize.text, q->tokenize.text_len, flags, &ids, &n) != GT_OK || n > UINT32_MAX) {
        send_error(s, sc, q->msgid, GT_RPC_INTERNAL);
        free(ids);
        return;
    }
    const char **pieces = malloc((n ? n : 1) * sizeof *pieces);
    size_t *lens = malloc((n ? n : 1) * sizeof *lens);
    if (pieces && lens) {
        for (size_t i = 0; i < n; i++) {
            gt_str p = gt_token_piece(s->tok, ids[i], true);
            pieces[i] = p.ptr ? p.ptr : "";
            lens[i] = p.len;
        }
        if (gt_rpc_encode_tokenize(&s->out, q->msgid, ids, (uint32_t)n, pieces, lens) == GT_OK) send_buf(s, sc);
    } else {
        gt_fail(GT_ERR_NOMEM, "cannot hold %zu pieces", n);
        send_error(s, sc, q->msgid, GT_RPC_INTERNAL);
    }
    free(pieces);
    free(lens);
    free(ids);
}

static void handle_detokenize(gt_server *s, srv_conn *sc, const gt_rpc_request *q) {
    if (gt_rpc_tokens_check("tokens", q->detokenize.tokens, q->detokenize.n_tokens, s->n_vocab) != GT_OK) {
        send_error(s, sc, q->msgid, GT_RPC_INVALID_PARAM);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    if (gt_detokenize(s->tok, q->detokenize.tokens, q->detokenize.n_tokens, 0, &text, &len) != GT_OK) {
        send_error(s, sc, q->msgid, GT_RPC_INTERNAL);
        return;
    }
    if (gt_rpc_encode_detokenize(&s->out, q->msgid, text, len) == GT_OK) send_buf(s, sc);
    free(text);
}

static const char *model_name(gt_server *s) {
    gt_str name = {0};
    static char name_buf[256];
    if (gt_gguf_get_str(gt_rank_gguf(gt_coord_rank(s->c)), "general.name", &name) != GT_OK) return NULL;
    snprintf(name_buf, sizeof name_buf, "%.*s", (int)name.len, name.ptr);
    return name_buf;
}

static const char *srv_model_name(gt_server *s) {
    const char *nm = model_name(s);
    return nm && *nm ? nm : "gantry";
}

static void handle_model_info(gt_server *s, srv_conn *sc, uint32_t msgid) {
    gt_rank *rk = gt_coord_rank(s->c);
    const gt_grid *g = &gt_rank_shard(rk)->grid;
    const char *nm = model_name(s);
    gt_rpc_model_info mi = {gt_rank_hparams(rk)->arch_name, nm,
                            s->have_tmpl ? gt_chat_format_name(s->tmpl.format) : NULL,
                            s->n_ctx, s->n_vocab, (uint32_t)g->tp, (uint32_t)g->pp, (uint32_t)g->ep, (uint32_t)g->world};
    if (gt_rpc_encode_model_info(&s->out, msgid, &mi) == GT_OK) send_buf(s, sc);
}

/* The `stats` numbers; counters into cs[40], histograms into h[4]. */
static void srv_stats(gt_server *s, gt_rpc_counter cs[40], gt_rpc_histogram h[4], gt_rpc_stats *out) {
    /* Rank 0's KV cache: every rank's holds the same blocks. */
    gt_engine_kv_stats kv = gt_engine_kv(gt_rank_engine(gt_coord_rank(s->c)));
    gt_sched_spec_stats ss = gt_sched_get_spec_stats(s->sched);
    gt_spec_draft_stats ds = {0};
    if (s->draft) ds = gt_spec_draft_get_stats(s->draft);
    gt_rpc_counter c[] = {
        {"requests", s->n_requests},
        {"finished_stop", s->n_finished[GT_RPC_FINISH_STOP]},
        {"finished_length", s->n_finished[GT_RPC_FINISH_LENGTH]},
        {"finished_cancelled", s->n_finished[GT_RPC_FINISH_CANCELLED]},
        {"finished_shutdown", s->n_finished[GT_RPC_FINISH_SHUTDOWN]},
        {"refused", s->n_refused},
        {"prompt_tokens", s->n_prompt_tokens},
        {"generated_tokens", s->n_generated},
        {"cached_tokens", s->n_cached},
        {"running", (uint64_t)gt_sched_n_running(s->sched)},
        {"preempted", gt_sched_n_preempted(s->sched)},
        {"kv_free_blocks", (uint64_t)kv.free_blocks},
        {"kv_cached_blocks", (uint64_t)kv.cached_blocks},
        {"kv_host_blocks", (uint64_t)kv.host_blocks},
        {"kv_to_host_bytes", kv.to_host_bytes},
        {"kv_from_host_bytes", kv.from_host_bytes},
        {"waiting", (uint64_t)gt_sched_n_waiting(s->sched)},
        {"spec_steps", gt_sched_get_spec_stats(s->sched).steps},
        {"spec_drafted_tokens", gt_sched_get_spec_stats(s->sched).drafted},
        {"spec_accepted_tokens", gt_sched_get_spec_stats(s->sched).accepted},
        {"spec_lookup_steps", ss.lookup.steps},
        {"spec_lookup_drafted_tokens", ss.lookup.drafted},
        {"spec_lookup_accepted_tokens", ss.lookup.accepted},
        {"spec_draft_steps", ss.draft.steps},
        {"spec_draft_drafted_tokens", ss.draft.drafted},
        {"spec_draft_accepted_tokens", ss.draft.accepted},
        {"spec_draft_forwards", ds.forwards},
        {"spec_draft_ms", (uint64_t)(ds.seconds * 1e3)},
    };
    const histo *hs[] = {&s->h_queue, &s->h_ttft, &s->h_itl, &s->h_e2e};
    static const char *const names[] = {"queue_ms", "ttft_ms", "inter_token_ms", "e2e_ms"};
    for (int i = 0; i < 4; i++)
        h[i] = (gt_rpc_histogram){names[i], k_bounds_ms, hs[i]->counts, N_BOUNDS, hs[i]->count, hs[i]->sum_ms};
    uint32_t n = (uint32_t)(sizeof c / sizeof c[0]);
    memcpy(cs, c, n * sizeof *c);
    *out = (gt_rpc_stats){cs, n, h, 4};
}

static void handle_stats(gt_server *s, srv_conn *sc, uint32_t msgid) {
    gt_rpc_counter c[40];
    gt_rpc_histogram h[4];
    gt_rpc_stats st;
    srv_stats(s, c, h, &st);
    if (gt_rpc_encode_stats(&s->out, msgid, &st) == GT_OK) send_buf(s, sc);
}

static void handle_cancel(gt_server *s, srv_conn *sc, const gt_rpc_request *q) {
    srv_req *hit = NULL;
    for (srv_req *r = s->reqs; r; r = r->next)
        if (r->msgid == q->cancel.id && (!hit || r->sc == sc)) hit = r;
    bool found = hit && gt_sched_cancel(s->sched, hit->id) == GT_OK;
    if (gt_rpc_encode_cancel(&s->out, q->msgid, found) == GT_OK) send_buf(s, sc);
}

static void handle(gt_server *s, srv_conn *sc, gt_rpc_request *q) {
    if (q->kind == GT_RPC_KIND_NOTIFICATION) return; /* ignored (pynvim sends one on connect) */
    if (s->cfg.auth_token && !sc->authed && q->method != GT_RPC_AUTH) {
        gt_fail(GT_ERR_INVALID_ARG, "this server needs an auth call with its token first");
        send_error(s, sc, q->msgid, GT_RPC_UNAUTHORIZED);
        return;
    }
    switch (q->method) {
    case GT_RPC_AUTH: {
        const char *want = s->cfg.auth_token ? s->cfg.auth_token : "";
        if (s->cfg.auth_token && !gt_rpc_token_equal(q->auth.token, q->auth.token_len, want, strlen(want))) {
            gt_fail(GT_ERR_INVALID_ARG, "the auth token is not this server's");
            send_error(s, sc, q->msgid, GT_RPC_UNAUTHORIZED);
            return;
        }
        sc->authed = true;
        if (gt_rpc_encode_ok(&s->out, q->msgid) == GT_OK) send_buf(s, sc);
        return;
    }
    case GT_RPC_GENERATE: handle_generate(s, sc, q->msgid, &q->generate); return;
    case GT_RPC_TOKENIZE: handle_tokenize(s, sc, q); return;
    case GT_RPC_DETOKENIZE: handle_detokenize(s, sc, q); return;
    case GT_RPC_CANCEL: handle_cancel(s, sc, q); return;
    case GT_RPC_MODEL_INFO: handle_model_info(s, sc, q->msgid); return;
    case GT_RPC_STATS: handle_stats(s, sc, q->msgid); return;
    case GT_RPC_HEALTH:
        if (s->draining) {
            gt_fail(GT_ERR_UNSUPPORTED, "the server is draining");
            send_error(s, sc, q->msgid, GT_RPC_DRAINING);
        } else if (gt_rpc_encode_health(&s->out, q->msgid, "serving") == GT_OK) {
            send_buf(s, sc);
        }
        return;
    case GT_RPC_METHOD_COUNT: break;
    }
    gt_fail(GT_ERR_NOT_FOUND, "unknown method");
    send_error(s, sc, q->msgid, GT_RPC_UNKNOWN_METHOD);
}

/* ---- connections ---- */

static void on_open(void *user, gt_conn *c) {
    gt_server *s = user;
    srv_conn *sc = calloc(1, sizeof *sc);
    if (!sc || gt_rpc_decoder_create(s->cfg.limits.max_frame_bytes, &sc->dec) != GT_OK) {
        free(sc);
        gt_conn_close(c);
        return;
    }
    sc->conn = c;
    gt_conn_set_user(c, sc);
}

static void on_data(void *user, gt_conn *c, const uint8_t *data, size_t n) {
    gt_server *s = user;
    srv_conn *sc = gt_conn_user(c);
    if (!sc) return;
    if (gt_rpc_decoder_feed(sc->dec, data, n) != GT_OK) {
        gt_conn_close(c);
        return;
    }
    for (;;) {
        gt_rpc_msg *m = NULL;
        gt_rpc_refusal ref = {0};
        gt_status st = gt_rpc_decoder_next(sc->dec, &m, &ref);
        if (st != GT_OK) { /* the stream cannot be resynchronised: answer if we can, then close */
            if (ref.has_msgid) send_error(s, sc, ref.msgid, ref.code);
            gt_conn_close(c);
            return;
        }
        if (!m) return;
        gt_rpc_request q;
        memset(&q, 0, sizeof q);
        st = gt_rpc_request_parse(m, &s->cfg.limits, &q, &ref);
        gt_rpc_msg_free(m);
        if (st != GT_OK) {
            if (ref.has_msgid) send_error(s, sc, ref.msgid, ref.code);
            continue;
        }
        handle(s, sc, &q);
        gt_rpc_request_free(&q);
    }
}

static void on_close(void *user, gt_conn *c) {
    gt_server *s = user;
    srv_conn *sc = gt_conn_user(c);
    if (!sc) return;
    /* Its requests are cancelled; their answers have nowhere to go. */
    uint64_t ids[256];
    for (;;) {
        int n = 0;
        for (srv_req *r = s->reqs; r && n < 256; r = r->next)
            if (r->sc == sc) {
                r->sc = NULL;
                ids[n++] = r->id;
            }
        if (!n) break;
        for (int i = 0; i < n; i++) gt_sched_cancel(s->sched, ids[i]);
    }
    gt_rpc_decoder_destroy(sc->dec);
    free(sc);
}

static void start_drain(gt_server *s, const char *why) {
    if (s->draining) return;
    GT_LOG_WARN(GT_SUB_NET, "%s: draining (%d requests in flight, %.0f s to finish)", why, s->n_reqs,
                s->cfg.drain_timeout_s);
    s->draining = true;
    s->drain_deadline_ns = gt_now_ns() + (uint64_t)(s->cfg.drain_timeout_s * 1e9);
    gt_net_stop_listening(s->net);
    srv_http_stop_listening(s);
}

static void on_signal(uv_signal_t *h, int signum) {
    char why[32];
    snprintf(why, sizeof why, "signal %d", signum);
    start_drain(h->data, why);
}

/* Grid only: a REPORT step (it also keeps the other ranks' watchdog quiet)
 * that tells whether another rank was asked to stop. */
static gt_status heartbeat(gt_server *s) {
    int n = gt_rank_world_size(gt_coord_rank(s->c));
    GT_TRY(gt_coord_report(s->c, false, s->ranks));
    for (int i = 1; i < n; i++)
        if (s->ranks[i].stop_requested) {
            char why[48];
            snprintf(why, sizeof why, "rank %d was signalled", i);
            start_drain(s, why);
        }
    return GT_OK;
}

static void on_heartbeat(uv_timer_t *t) {
    gt_server *s = t->data;
    s->heartbeat_due = true;
}

/* Answers every request still waiting with the error `internal` and the
 * failure's sentence; the caller's scheduler then drops them. */
static void fail_all(gt_server *s, const char *why) {
    char msg[1024];
    snprintf(msg, sizeof msg, "the server stopped: %s", why && *why ? why : "a step failed");
    GT_LOG_ERROR(GT_SUB_NET, "%s; answering %d waiting requests with the error", msg, s->n_reqs);
    while (s->reqs) {
        srv_req *r = s->reqs;
        if (r->sc && gt_rpc_encode_error(&s->out, r->msgid, GT_RPC_INTERNAL, msg) == GT_OK)
            send_buf(s, r->sc);
        if (r->hc) srv_http_fail(s, r, msg);
        req_free(s, r);
    }
}

static void on_walk_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static const srv_core k_core = {srv_submit, srv_model_name, gt_server_metrics_text};

/* --draft FILE or --self-draft L: the draft engine, a sequence per slot. */
static gt_status srv_draft_create(gt_server *s) {
    if (!s->cfg.draft_path && s->cfg.self_draft_layers <= 0) return GT_OK;
    if (s->cfg.spec_lookup > 0)
        return gt_fail(GT_ERR_INVALID_ARG, "--lookup %d and a draft model both set the requests' default "
                       "proposer; give one (a request may still ask for the other with `speculate`)",
                       s->cfg.spec_lookup);
    gt_step_limits lim = gt_rank_step_limits(gt_coord_rank(s->c));
    gt_spec_draft_config dc = GT_SPEC_DRAFT_CONFIG_INIT;
    dc.path = s->cfg.draft_path;
    dc.self_layers = s->cfg.self_draft_layers;
    dc.n_threads = s->cfg.draft_threads > 0 ? s->cfg.draft_threads : 1;
    dc.isa = s->cfg.draft_isa;
    dc.max_seqs = lim.max_seqs;
    dc.max_tokens = s->cfg.sched.max_batch_tokens > 0 && s->cfg.sched.max_batch_tokens < lim.max_tokens
                        ? s->cfg.sched.max_batch_tokens
                        : lim.max_tokens;
    int k = gt_coord_max_rows(s->c) - lim.max_seqs;
    dc.max_guesses = k < 1 ? 1 : k > 64 ? 64 : k;
    GT_TRY(gt_spec_draft_create(s->c, &dc, &s->draft));
    GT_LOG_INFO(GT_SUB_SCHED, "speculation: %s guesses for requests (up to %d per step)", gt_spec_draft_name(s->draft),
                dc.max_guesses);
    return GT_OK;
}

gt_status gt_server_run(gt_coord *c, const gt_server_config *cfg) {
    gt_server *s = calloc(1, sizeof *s);
    if (!s) return gt_fail(GT_ERR_NOMEM, "cannot allocate the server");
    s->cfg = *cfg;
    s->c = c;
    /* A peer that leaves while its answer is being written must not kill
     * the job: the write fails with EPIPE and the connection closes. */
    signal(SIGPIPE, SIG_IGN);
    gt_rank *rk = gt_coord_rank(c);
    s->n_ctx = gt_coord_n_ctx(c);
    s->n_vocab = gt_rank_hparams(rk)->n_vocab;
    gt_rpc_buf_init(&s->out);
    gt_status st = gt_tokenizer_load(gt_rank_gguf(rk), &s->tok);
    if (st == GT_OK) {
        s->have_tmpl = gt_text_model_template(gt_rank_gguf(rk), &s->tmpl) == GT_OK;
        gt_clear_error();
        st = srv_draft_create(s);
    }
    if (st == GT_OK) {
        gt_sched_config sc = cfg->sched;
        sc.draft = s->draft;
        st = gt_sched_create(c, &sc, &s->sched);
    }
    if (st != GT_OK) { /* a bad draft (or no scheduler): nothing listens yet */
        gt_sched_destroy(s->sched);
        gt_spec_draft_destroy(s->draft);
        gt_tokenizer_free(s->tok);
        gt_rpc_buf_free(&s->out);
        free(s);
        return st;
    }
    if (st == GT_OK && uv_loop_init(&s->loop) != 0) st = gt_fail(GT_ERR_IO, "cannot start the event loop");
    gt_net_callbacks cb = {on_open, on_data, on_close, s};
    if (st == GT_OK) st = gt_net_create(&s->loop, &cfg->net, &cb, &s->net);
    if (st == GT_OK) {
        uv_signal_init(&s->loop, &s->sig_term);
        uv_signal_init(&s->loop, &s->sig_int);
        s->sig_term.data = s->sig_int.data = s;
        uv_signal_start(&s->sig_term, on_signal, SIGTERM);
        uv_signal_start(&s->sig_int, on_signal, SIGINT);
        if (gt_rank_world_size(rk) > 1) {
            /* Every second, or a quarter of the watchdog's deadline when shorter. */
            uint64_t ms = (uint64_t)(gt_coord_step_timeout(c) * 1000.0 / 4.0);
            if (ms > 1000) ms = 1000;
            s->ranks = calloc((size_t)gt_rank_world_size(rk), sizeof *s->ranks);
            if (!s->ranks) st = gt_fail(GT_ERR_NOMEM, "cannot hold the ranks' counters");
            uv_timer_init(&s->loop, &s->heartbeat);
            s->heartbeat.data = s;
            uv_timer_start(&s->heartbeat, on_heartbeat, ms ? ms : 1, ms ? ms : 1);
        }
        if (cfg->on_ready) cfg->on_ready(cfg->user, gt_net_port(s->net));
        s->core = &k_core;
        if (cfg->http.port >= 0) st = srv_http_start(s);
    }
    bool worked = false;
    while (st == GT_OK) {
        /* Block for the network only when the last step did nothing: a step
         * that finished requests is followed by one that frees their KV. */
        bool busy = worked || gt_sched_n_running(s->sched) + gt_sched_n_waiting(s->sched) > 0;
        uv_run(&s->loop, busy ? UV_RUN_NOWAIT : UV_RUN_ONCE);
        st = gt_sched_step(s->sched, &worked);
        if (st == GT_OK && s->heartbeat_due) {
            s->heartbeat_due = false;
            st = heartbeat(s); /* even when busy: a signalled rank is heard within a second */
        }
        if (s->draining && (s->n_reqs == 0 || gt_now_ns() > s->drain_deadline_ns)) break;
    }
    /* A failed step (a rank died, a transfer timed out) ends the job: every
     * waiting request is answered with the failure, not left to see its
     * connection drop. Whatever is left after a drain is answered as shut
     * down. Then everything closes. */
    if (st != GT_OK) fail_all(s, gt_last_error());
    gt_sched_destroy(s->sched);
    gt_spec_draft_destroy(s->draft);
    uv_run(&s->loop, UV_RUN_NOWAIT); /* flush the last answers */
    gt_net_close(s->net);
    srv_http_close(s);
    if (s->sig_term.data) uv_walk(&s->loop, on_walk_close, NULL);
    while (uv_run(&s->loop, UV_RUN_ONCE)) {
    }
    /* The job is ending: a second SIGTERM (a supervisor repeating itself)
     * must not kill rank 0 before it has told the other ranks to stop.
     * Closing libuv's signal handles put back the default action, so the
     * stop signals are ignored from here on (SIGKILL still ends a process
     * that hangs). */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    uv_loop_close(&s->loop);
    srv_http_free(s);
    while (s->reqs) req_free(s, s->reqs);
    gt_tokenizer_free(s->tok);
    srv_grammar_free(s);
    gt_rpc_buf_free(&s->out);
    free(s->ranks);
    free(s);
    return st;
}

/* ---- Prometheus metrics (coordinator/metrics.h): the numbers `stats` returns ---- */


gt_status gt_server_metrics_text(const gt_server *s, gt_rpc_buf *out) {
    static double bounds_s[N_BOUNDS];
    for (int i = 0; i < N_BOUNDS; i++) bounds_s[i] = k_bounds_ms[i] * 1e-3;
    gt_engine *e = gt_rank_engine(gt_coord_rank(s->c));
    gt_engine_kv_stats kv = gt_engine_kv(e);
    gt_engine_expert_stats x = gt_engine_experts(e, -1);
    gt_metrics_snapshot m = {
        .submitted = s->n_requests, .refused = s->n_refused, .preempted = gt_sched_n_preempted(s->sched),
        .prompt_tokens = s->n_prompt_tokens, .generated_tokens = s->n_generated, .cached_tokens = s->n_cached,
        .waiting = (uint64_t)gt_sched_n_waiting(s->sched), .running = (uint64_t)gt_sched_n_running(s->sched),
        .kv_total_blocks = (uint64_t)kv.total_blocks, .kv_free_blocks = (uint64_t)kv.free_blocks,
        .kv_cached_blocks = (uint64_t)kv.cached_blocks, .kv_host_blocks = (uint64_t)kv.host_blocks,
        .kv_block_size = (uint64_t)kv.block_size, .kv_to_host_bytes = kv.to_host_bytes,
        .kv_from_host_bytes = kv.from_host_bytes,
        .has_experts = x.slots > 0, .expert_slots = (uint64_t)x.slots, .expert_hits = x.hits,
        .expert_misses = x.misses, .expert_evictions = x.evictions, .expert_bytes_copied = x.bytes_copied,
        .expert_prefetched = x.prefetched, .expert_prefetch_useful = x.prefetch_useful, .expert_wait_s = x.wait_s,
    };
    gt_sched_spec_stats ss = gt_sched_get_spec_stats(s->sched);
    m.spec_steps = ss.steps;
    m.spec_drafted = ss.drafted;
    m.spec_accepted = ss.accepted;
    const gt_sched_spec_counts *by[2] = {&ss.lookup, &ss.draft};
    for (int i = 0; i < 2; i++) {
        m.spec_method_steps[i] = by[i]->steps;
        m.spec_method_drafted[i] = by[i]->drafted;
        m.spec_method_accepted[i] = by[i]->accepted;
    }
    if (s->draft) {
        gt_spec_draft_stats ds = gt_spec_draft_get_stats(s->draft);
        m.has_draft = true;
        m.spec_draft_forwards = ds.forwards;
        m.spec_draft_seconds = ds.seconds;
    }
    int used = kv.total_blocks - kv.free_blocks - kv.cached_blocks;
    m.kv_used_blocks = used > 0 ? (uint64_t)used : 0;
    static const int fin[GT_METRICS_N_FINISH] = {GT_RPC_FINISH_STOP, GT_RPC_FINISH_LENGTH, GT_RPC_FINISH_CANCELLED,
                                                 GT_RPC_FINISH_SHUTDOWN};
    for (int i = 0; i < GT_METRICS_N_FINISH; i++) m.finished[i] = s->n_finished[fin[i]];
    const histo *hs[] = {&s->h_queue, &s->h_ttft, &s->h_itl, &s->h_e2e};
    gt_metrics_histogram *mh[] = {&m.queue, &m.ttft, &m.itl, &m.e2e};
    for (int i = 0; i < 4; i++)
        *mh[i] = (gt_metrics_histogram){bounds_s, hs[i]->counts, N_BOUNDS, hs[i]->count, hs[i]->sum_ms * 1e-3};
    gt_metrics_rank rk[64];
    int n = s->ranks ? gt_rank_world_size(gt_coord_rank(s->c)) : 0;
    if (n > 64) n = 64;
    for (int i = 0; i < n; i++)
        rk[i] = (gt_metrics_rank){s->ranks[i].busy_s, s->ranks[i].comm_s, s->ranks[i].bytes_sent, s->ranks[i].a2a_bytes};
    m.n_ranks = n;
    m.ranks = rk;
    return gt_metrics_render(&m, out);
}
