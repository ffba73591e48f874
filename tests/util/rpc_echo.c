/* rpc_echo: the RPC codec on a pipe, for tests/e2e/test_rpc_codec.py, which
 * checks it against Python's independent msgpack package.
 *
 *   rpc_echo [--read N] [--max-frame-bytes N]   frames on stdin, answers on stdout
 *   rpc_echo --samples                          one of each encoder's messages
 *
 * Stdin is read N bytes at a time (default 7) so frames arrive split. For
 * each message: an accepted request gets [1, msgid, nil, {"method": name,
 * "params": what validation made of them}]; a refused one gets the codec's
 * error response (gt_rpc_encode_error), or [2, "refused", [{"code",
 * "message"}]] when it had no msgid; a notification gets [2, "ignored",
 * [name]]. A fatal frame error is answered the same way (to its msgid if
 * the frame showed one), then [2, "fatal", [message]] and the end, as a
 * server would close the connection; so is a truncated last frame. */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator/rpc.h"

static void flush_buf(gt_rpc_buf *b) {
    fwrite(b->data, 1, b->len, stdout);
    gt_rpc_buf_consume(b, b->len);
}

/* msgpack-c writes straight to stdout for the echo messages. */
static int write_stdout(void *data, const char *p, size_t n) {
    (void)data;
    return fwrite(p, 1, n, stdout) == n ? 0 : -1;
}

static void pack_str(msgpack_packer *pk, const char *s) {
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pack_ids(msgpack_packer *pk, const int32_t *ids, uint32_t n) {
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++) msgpack_pack_int32(pk, ids[i]);
}

static void notify(const char *method, const char *code, const char *message) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, NULL, write_stdout);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 2);
    pack_str(&pk, method);
    msgpack_pack_array(&pk, 1);
    if (!code) {
        pack_str(&pk, message);
        return;
    }
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "code");
    pack_str(&pk, code);
    pack_str(&pk, "message");
    pack_str(&pk, message);
}

static void echo_generate(msgpack_packer *pk, const gt_rpc_generate *g) {
    msgpack_pack_map(pk, 14);
    static const char *const inputs[] = {"", "prompt", "messages", "tokens"};
    pack_str(pk, "input");
    pack_str(pk, inputs[g->input]);
    pack_str(pk, inputs[g->input]);
    if (g->input == GT_RPC_INPUT_PROMPT) {
        pack_str(pk, g->prompt);
    } else if (g->input == GT_RPC_INPUT_MESSAGES) {
        msgpack_pack_array(pk, g->n_messages);
        for (uint32_t i = 0; i < g->n_messages; i++) {
            msgpack_pack_array(pk, 2);
            pack_str(pk, g->messages[i].role);
            pack_str(pk, g->messages[i].content);
        }
    } else {
        pack_ids(pk, g->tokens, g->n_tokens);
    }
    pack_str(pk, "max_tokens");
    if (g->has_max_tokens)
        msgpack_pack_uint32(pk, g->max_tokens);
    else
        msgpack_pack_nil(pk);
    const struct {
        const char *name;
        float v;
    } floats[] = {{"temperature", g->sampling.temperature},
                  {"top_p", g->sampling.top_p},
                  {"min_p", g->sampling.min_p},
                  {"repetition_penalty", g->repetition_penalty},
                  {"presence_penalty", g->presence_penalty},
                  {"frequency_penalty", g->frequency_penalty}};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        pack_str(pk, floats[i].name);
        msgpack_pack_float(pk, floats[i].v);
    }
    pack_str(pk, "top_k");
    msgpack_pack_int(pk, g->sampling.top_k);
    pack_str(pk, "seed");
    msgpack_pack_uint64(pk, g->sampling.seed);
    pack_str(pk, "stop");
    msgpack_pack_array(pk, g->n_stop);
    for (uint32_t i = 0; i < g->n_stop; i++) pack_str(pk, g->stop[i]);
    pack_str(pk, "logprobs");
    msgpack_pack_uint32(pk, g->logprobs);
    pack_str(pk, "stream");
    if (g->stream)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static void echo(const gt_rpc_request *r) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, NULL, write_stdout);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_uint32(&pk, r->msgid);
    msgpack_pack_nil(&pk);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "method");
    pack_str(&pk, gt_rpc_method_name(r->method));
    pack_str(&pk, "params");
    switch (r->method) {
    case GT_RPC_GENERATE:
        echo_generate(&pk, &r->generate);
        break;
    case GT_RPC_TOKENIZE:
        msgpack_pack_map(&pk, 2);
        pack_str(&pk, "text");
        pack_str(&pk, r->tokenize.text);
        pack_str(&pk, "add_special");
        if (r->tokenize.add_special)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
        break;
    case GT_RPC_DETOKENIZE:
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "tokens");
        pack_ids(&pk, r->detokenize.tokens, r->detokenize.n_tokens);
        break;
    case GT_RPC_CANCEL:
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "id");
        msgpack_pack_uint32(&pk, r->cancel.id);
        break;
    case GT_RPC_AUTH:
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "token");
        pack_str(&pk, r->auth.token);
        break;
    default:
        msgpack_pack_map(&pk, 0);
        break;
    }
}

static void refused(gt_rpc_buf *b, const gt_rpc_refusal *ref) {
    if (ref->has_msgid) {
        if (gt_rpc_encode_error(b, ref->msgid, ref->code, gt_last_error()) != GT_OK) exit(1);
        flush_buf(b);
    } else {
        notify("refused", gt_rpc_code_name(ref->code), gt_last_error());
    }
}

/* One of each encoder's messages, in a fixed order the test knows. */
static int samples(void) {
    gt_rpc_buf b;
    gt_rpc_buf_init(&b);
    int32_t toks[] = {9906, 0, 2147483647};
    gt_rpc_logprob top[] = {{9906, -0.5f}, {11, -1.25f}};
    gt_rpc_token_logprobs lp[] = {
        {9906, -0.5f, top, 2}, {0, -2.0f, NULL, 0}, {2147483647, 0.0f, top, 1}};
    gt_rpc_generate_result gen = {"Berlin \xc3\xa9 \xff",
                                  11,
                                  toks,
                                  3,
                                  GT_RPC_FINISH_STOP,
                                  12,
                                  3,
                                  8,
                                  NULL,
                                  0.25,
                                  12.5,
                                  100.125,
                                  false,
                                  0,
                                  0,
                                  0,
                                  NULL,
                                  0,
                                  0.0,
                                  NULL,
                                  0};
    gt_rpc_token_event ev = {4000000000u, "\xe4\xb8\xad", 3, 104, NULL};
    gt_rpc_model_info mi = {"llama", "SmolLM2 135M", "chatml", 8192, 49152, 2, 1, 1, 2};
    double bounds[] = {1, 5, 25.5};
    uint64_t counts[] = {1, 2, 3, 18446744073709551615ull};
    gt_rpc_counter ctr[] = {{"requests_total", 42}, {"tokens_generated", 1234567890123ull}};
    gt_rpc_histogram hist[] = {{"ttft_ms", bounds, counts, 3, 6, 77.5}};
    gt_rpc_stats st = {ctr, 2, hist, 1};
    const char *pieces[] = {"Hello", " w\xc3", ""};
    size_t plens[] = {5, 3, 0};
    gt_status s = GT_OK;
    s |= gt_rpc_encode_error(&b, 1, GT_RPC_INVALID_PARAM, "generate: top_p 2 is outside (0, 1]");
    s |= gt_rpc_encode_generate(&b, 2, &gen);
    gen.logprobs = lp;
    gen.finish = GT_RPC_FINISH_CANCELLED;
    gen.has_spec = true; /* "spec" after "timing" */
    gen.spec_drafted = 7;
    gen.spec_accepted = 5;
    gen.spec_steps = 3;
    gen.spec_method = "draft";
    s |= gt_rpc_encode_generate(&b, 3, &gen);
    gen.logprobs = NULL; /* a beam search's answer with its runners-up */
    gen.has_spec = false;
    gen.finish = GT_RPC_FINISH_LENGTH;
    gen.beams = 4;
    gen.beam_score = -0.75;
    gt_rpc_alternative alts[] = {{"Paris", 5, toks, 2, GT_RPC_FINISH_STOP, -1.5},
                                 {NULL, 0, toks, 0, GT_RPC_FINISH_LENGTH, -2.25}};
    gen.alts = alts;
    gen.n_alts = 2;
    s |= gt_rpc_encode_generate(&b, 12, &gen);
    s |= gt_rpc_encode_token(&b, &ev);
    ev.logprobs = &lp[0];
    s |= gt_rpc_encode_token(&b, &ev);
    s |= gt_rpc_encode_tokenize(&b, 4, toks, 3, pieces, plens);
    s |= gt_rpc_encode_tokenize(&b, 5, toks, 0, NULL, NULL);
    s |= gt_rpc_encode_detokenize(&b, 6, "a\x00z", 3);
    s |= gt_rpc_encode_model_info(&b, 7, &mi);
    s |= gt_rpc_encode_stats(&b, 8, &st);
    s |= gt_rpc_encode_health(&b, 9, "serving");
    s |= gt_rpc_encode_cancel(&b, 10, true);
    s |= gt_rpc_encode_ok(&b, 4294967295u);
    for (int c = GT_RPC_BAD_FRAME; c < GT_RPC_CODE_COUNT; c++)
        s |= gt_rpc_encode_error(&b, (uint32_t)(100 + c), (gt_rpc_code)c,
                                 gt_rpc_code_name((gt_rpc_code)c));
    if (s != GT_OK) return 1;
    flush_buf(&b);
    gt_rpc_buf_free(&b);
    return 0;
}

int main(int argc, char **argv) {
    size_t read_size = 7, max_frame = (size_t)4 << 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--samples")) return samples();
        if (!strcmp(argv[i], "--read") && i + 1 < argc)
            read_size = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--max-frame-bytes") && i + 1 < argc)
            max_frame = strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: rpc_echo [--read N] [--max-frame-bytes N] | --samples\n");
            return 2;
        }
    }
    if (read_size < 1 || read_size > 65536) read_size = 7;
    gt_rpc_limits lim = GT_RPC_LIMITS_INIT;
    lim.max_frame_bytes = max_frame;
    gt_rpc_decoder *d;
    if (gt_rpc_decoder_create(max_frame, &d) != GT_OK) {
        fprintf(stderr, "rpc_echo: %s\n", gt_last_error());
        return 1;
    }
    gt_rpc_buf b;
    gt_rpc_buf_init(&b);
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t got = read(0, buf, read_size);
        if (got <= 0) {
            if (gt_rpc_decoder_finish(d) != GT_OK) notify("fatal", NULL, gt_last_error());
            break;
        }
        if (gt_rpc_decoder_feed(d, buf, (size_t)got) != GT_OK) return 1;
        gt_rpc_msg *m;
        gt_rpc_refusal ref;
        gt_status st;
        while ((st = gt_rpc_decoder_next(d, &m, &ref)) == GT_OK && m) {
            gt_rpc_request r;
            if (gt_rpc_request_parse(m, &lim, &r, &ref) != GT_OK)
                refused(&b, &ref);
            else if (r.kind == GT_RPC_KIND_NOTIFICATION)
                notify("ignored", NULL, r.notification);
            else
                echo(&r);
            gt_rpc_request_free(&r);
            gt_rpc_msg_free(m);
        }
        if (st != GT_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", gt_last_error());
            refused(&b, &ref);
            notify("fatal", NULL, msg);
            break;
        }
    }
    fflush(stdout);
    gt_rpc_buf_free(&b);
    gt_rpc_decoder_destroy(d);
    return rc;
}
