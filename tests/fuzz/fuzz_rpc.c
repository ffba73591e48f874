/* libFuzzer target for the msgpack-RPC codec (coordinator/rpc.h).
 *
 * The first input byte seeds the sizes of the pieces the rest is fed in (1
 * to 64 bytes, as reads from a socket would cut it); the rest is the byte
 * stream of a connection. Every message decoded is validated, and accepted
 * generate requests go through the model checks; a refusal must come with
 * a sentence and a valid code, and an answer to it must encode into one
 * whole frame. The same bytes fed in one piece must give the same messages
 * and the same end, so framing never depends on how the bytes arrive;
 * the frame scanner and msgpack-c must end every frame at the same byte.
 * Small limits make the refusals reachable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/rpc.h"

#define MAX_EVENTS 256

static void check_refusal(const gt_rpc_refusal *ref) {
    if (!*gt_last_error()) abort();
    if (ref->code <= 0 || ref->code >= GT_RPC_CODE_COUNT) abort();
    if (!ref->has_msgid) return;
    /* The answer is one whole frame that our own decoder reads back. */
    gt_rpc_buf b;
    gt_rpc_buf_init(&b);
    if (gt_rpc_encode_error(&b, ref->msgid, ref->code, gt_last_error()) != GT_OK) abort();
    gt_rpc_decoder *d;
    if (gt_rpc_decoder_create(1 << 16, &d) != GT_OK) abort();
    gt_rpc_msg *m;
    gt_rpc_refusal r2;
    if (gt_rpc_decoder_feed(d, b.data, b.len) != GT_OK ||
        gt_rpc_decoder_next(d, &m, &r2) != GT_OK || !m || gt_rpc_decoder_pending(d) != 0)
        abort();
    gt_rpc_msg_free(m);
    gt_rpc_decoder_destroy(d);
    gt_rpc_buf_free(&b);
}

static void check_request(gt_rpc_request *r, const gt_rpc_limits *lim) {
    if (r->kind != GT_RPC_KIND_REQUEST) return;
    if (r->method >= GT_RPC_METHOD_COUNT) abort();
    if (r->method == GT_RPC_GENERATE) {
        gt_rpc_generate *g = &r->generate;
        switch (g->input) {
        case GT_RPC_INPUT_PROMPT:
            if (!g->prompt || strlen(g->prompt) != g->prompt_len ||
                g->prompt_len > lim->max_text_bytes)
                abort();
            break;
        case GT_RPC_INPUT_MESSAGES:
            if (g->n_messages == 0 || g->n_messages > lim->max_messages) abort();
            for (uint32_t i = 0; i < g->n_messages; i++)
                if (strlen(g->messages[i].content) > lim->max_text_bytes) abort();
            break;
        case GT_RPC_INPUT_TOKENS:
            if (g->n_tokens == 0 || g->n_tokens > lim->max_tokens_in) abort();
            break;
        default:
            abort();
        }
        if (g->n_stop > lim->max_stop || g->logprobs > lim->max_logprobs) abort();
        if (!(g->sampling.temperature >= 0) || !(g->sampling.top_p > 0)) abort();
        gt_rpc_model_limits ml = {512, 300};
        gt_rpc_code code;
        uint32_t n_prompt = g->input == GT_RPC_INPUT_TOKENS ? g->n_tokens : (uint32_t)g->prompt_len;
        gt_clear_error();
        if (gt_rpc_generate_check(g, &ml, n_prompt, &code) != GT_OK) {
            if (!*gt_last_error() || (code != GT_RPC_INVALID_PARAM && code != GT_RPC_TOO_LONG))
                abort();
        } else if (!g->has_max_tokens || n_prompt + g->max_tokens > ml.n_ctx) {
            abort();
        }
    } else if (r->method == GT_RPC_DETOKENIZE) {
        if (r->detokenize.n_tokens > lim->max_tokens_in) abort();
        gt_clear_error();
        if (gt_rpc_tokens_check("tokens", r->detokenize.tokens, r->detokenize.n_tokens, 300) !=
                GT_OK &&
            !*gt_last_error())
            abort();
    }
}

/* Decodes data[n] in pieces (step_seed 0: one piece); records one number
 * per message and one for the end. Returns the number of events. */
static int run(const uint8_t *data, size_t n, uint32_t step_seed, uint64_t *events) {
    gt_rpc_limits lim = {2048, 256, 64, 8, 1024, 4, 16, 5, 64};
    gt_rpc_decoder *d;
    if (gt_rpc_decoder_create(lim.max_frame_bytes, &d) != GT_OK) abort();
    int n_ev = 0;
    uint32_t rng = step_seed * 2654435761u + 1;
    size_t off = 0;
    gt_status fatal = GT_OK;
    while (off < n && !fatal) {
        size_t take = n - off;
        if (step_seed) {
            rng = rng * 1103515245u + 12345u;
            size_t piece = 1 + (rng >> 16) % 64;
            if (piece < take) take = piece;
        }
        gt_clear_error();
        if (gt_rpc_decoder_feed(d, data + off, take) != GT_OK) {
            if (!*gt_last_error()) abort();
        }
        off += take;
        for (;;) {
            gt_rpc_msg *m;
            gt_rpc_refusal ref;
            gt_clear_error();
            gt_status st = gt_rpc_decoder_next(d, &m, &ref);
            if (st != GT_OK) {
                /* The scanner and msgpack-c must agree on every frame. */
                if (st == GT_ERR_INTERNAL || strstr(gt_last_error(), "msgpack-c")) abort();
                check_refusal(&ref);
                fatal = st;
                break;
            }
            if (!m) break;
            gt_rpc_request r;
            gt_clear_error();
            st = gt_rpc_request_parse(m, &lim, &r, &ref);
            gt_rpc_msg_free(m);
            uint64_t ev;
            if (st != GT_OK) {
                check_refusal(&ref);
                ev = 1000000000ull * (uint64_t)ref.code + (ref.has_msgid ? ref.msgid : 0) + 1;
            } else {
                check_request(&r, &lim);
                ev = ((uint64_t)r.kind << 40) + ((uint64_t)r.method << 36) + r.msgid;
            }
            gt_rpc_request_free(&r);
            if (n_ev < MAX_EVENTS) events[n_ev++] = ev;
        }
    }
    uint64_t end = fatal ? 0xf000 + (uint64_t)fatal : gt_rpc_decoder_pending(d);
    if (n_ev < MAX_EVENTS) events[n_ev++] = end;
    if (!fatal && gt_rpc_decoder_finish(d) != GT_OK && !*gt_last_error()) abort();
    gt_rpc_decoder_destroy(d);
    return n_ev;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static uint64_t a[MAX_EVENTS], b[MAX_EVENTS]; /* scratch, not state: rewritten every run */
    int na = run(data + 1, size - 1, data[0] + 1u, a);
    int nb = run(data + 1, size - 1, 0, b);
    if (na != nb || memcmp(a, b, (size_t)na * sizeof a[0]) != 0) abort();
    return 0;
}
