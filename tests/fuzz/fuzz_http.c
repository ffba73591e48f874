/* libFuzzer target for the HTTP front's parsing (coordinator/http.h): the
 * first byte seeds the sizes of the pieces the rest is fed in (1 to 64
 * bytes, as socket reads cut it); every whole request's body then goes
 * through the OpenAI validation as a completion, a chat completion, a
 * tokenize and a detokenize body. A refusal must come with a sentence; an
 * error request must carry a 4xx/5xx status; the same bytes fed in one piece
 * must give the same requests. Small limits make the refusals reachable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/http.h"

#define MAX_REQ 64

static int run(const uint8_t *d, size_t n, unsigned seed, char (*paths)[64], int *statuses) {
    gt_http_limits lim = {512, 1024, MAX_REQ};
    gt_rpc_limits rl = GT_RPC_LIMITS_INIT;
    rl.max_text_bytes = 256;
    rl.max_messages = 4;
    rl.max_stop = 2;
    gt_http_parser *p;
    if (gt_http_parser_create(&lim, &p) != GT_OK) abort();
    int k = 0;
    size_t at = 0;
    while (at < n) {
        size_t piece = seed ? 1 + (seed = seed * 1103515245u + 12345u) % 64 : n;
        if (piece > n - at) piece = n - at;
        gt_status st = gt_http_parser_feed(p, d + at, piece);
        at += piece;
        gt_http_request *r;
        while ((r = gt_http_parser_next(p))) {
            if (k < MAX_REQ) {
                strncpy(paths[k], r->path ? r->path : "", 63);
                statuses[k] = r->error_status;
                k++;
            }
            if (r->error_status && (r->error_status < 400 || !r->error_msg[0])) abort();
            if (!r->error_status) {
                if (!r->path || r->body_len > lim.max_body_bytes || r->body[r->body_len]) abort();
                for (int kind = 0; kind < 2; kind++) {
                    gt_oai_request o;
                    const char *param;
                    gt_rpc_code code;
                    if (gt_oai_parse((gt_oai_kind)kind, r->body, r->body_len, &rl, &o, &param, &code) != GT_OK) {
                        if (!*gt_last_error()) abort();
                    } else if (o.g.input == 0 || (o.want_logprobs && !o.g.logprobs)) {
                        abort();
                    }
                    gt_oai_request_free(&o);
                }
                char *text;
                size_t tl;
                bool add;
                const char *param;
                if (gt_oai_parse_tokenize(r->body, r->body_len, &rl, &text, &tl, &add, &param) == GT_OK) free(text);
                int32_t *ids;
                uint32_t nt;
                if (gt_oai_parse_detokenize(r->body, r->body_len, &rl, &ids, &nt, &param) == GT_OK) free(ids);
            }
            gt_http_request_free(r);
        }
        if (st != GT_OK) break;
    }
    gt_http_parser_destroy(p);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static char pa[MAX_REQ][64], pb[MAX_REQ][64];
    int sa[MAX_REQ], sb[MAX_REQ];
    memset(pa, 0, sizeof pa);
    memset(pb, 0, sizeof pb);
    int na = run(data + 1, size - 1, data[0] | 1u, pa, sa);
    int nb = run(data + 1, size - 1, 0, pb, sb);
    /* Framing must not depend on how the bytes arrive (when nothing broke:
     * an error's position within a read may differ). */
    bool broke = (na && sa[na - 1]) || (nb && sb[nb - 1]);
    if (!broke && na != nb) abort();
    for (int i = 0; !broke && i < na; i++)
        if (strcmp(pa[i], pb[i]) || sa[i] != sb[i]) abort();
    return 0;
}
