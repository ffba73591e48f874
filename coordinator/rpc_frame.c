/* The streaming frame decoder: finds where each msgpack message ends,
 * bounding it before msgpack-c allocates anything for it.
 *
 * A small incremental scanner walks every byte as it arrives: it reads each
 * value's header (1 to 18 bytes), skips string, bin and ext bodies, and
 * keeps a stack of the element counts still owed by open arrays and maps.
 * Every element owes at least one byte, so after each header the frame
 * needs at least (bytes so far + elements owed + body length) bytes; over
 * max_frame_bytes the frame is refused then, before its body arrives. Only
 * whole frames go to msgpack-c's unpacker, whose object arrays are then at
 * most one per byte of a frame within the limit. The scanner also notes the
 * first two elements of a top-level array, so that a refused request can
 * still be answered with its msgid. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/rpc_internal.h"

#define HDR_MAX 18 /* fixext16: marker, type, 16 bytes */

struct gt_rpc_decoder {
    msgpack_unpacker up;
    size_t max_frame;
    size_t ready; /* whole frames in the unpacker not yet returned */
    /* Bytes of whole frames as the scanner counted them and as msgpack-c
     * parsed them: a cross-check that both end each frame at one place. */
    uint64_t scanned, parsed;
    /* scanner state for the current frame */
    uint8_t hdr[HDR_MAX];
    unsigned hdr_have, hdr_need;
    uint64_t skip;        /* body bytes left of the current str/bin/ext */
    uint64_t frame_bytes; /* bytes of the current frame so far */
    uint64_t owed;        /* elements the open containers still owe */
    uint64_t rem[GT_RPC_MAX_DEPTH]; /* elements each open container still owes */
    int depth;
    bool root_array;
    uint64_t root_n, root_index;
    bool elem_ok[2];
    uint64_t elem[2];
    /* the fatal error, once one happened */
    gt_status fatal;
    char fatal_msg[256];
    gt_rpc_refusal fatal_ref;
};

gt_status gt_rpc_decoder_create(size_t max_frame_bytes, gt_rpc_decoder **out) {
    *out = NULL;
    if (max_frame_bytes < 16)
        return gt_fail(GT_ERR_INVALID_ARG, "--max-frame-bytes %zu is below the minimum of 16",
                       max_frame_bytes);
    gt_rpc_decoder *d = calloc(1, sizeof *d);
    if (!d) return gt_fail(GT_ERR_NOMEM, "out of memory for an RPC decoder");
    size_t init = max_frame_bytes < MSGPACK_UNPACKER_INIT_BUFFER_SIZE
                      ? max_frame_bytes
                      : MSGPACK_UNPACKER_INIT_BUFFER_SIZE;
    if (!msgpack_unpacker_init(&d->up, init)) {
        free(d);
        return gt_fail(GT_ERR_NOMEM, "out of memory for an RPC decoder");
    }
    d->max_frame = max_frame_bytes;
    *out = d;
    return GT_OK;
}

void gt_rpc_decoder_destroy(gt_rpc_decoder *d) {
    if (!d) return;
    msgpack_unpacker_destroy(&d->up);
    free(d);
}

void gt_rpc_msg_free(gt_rpc_msg *m) {
    if (!m) return;
    msgpack_unpacked_destroy(&m->up);
    free(m);
}

size_t gt_rpc_decoder_pending(const gt_rpc_decoder *d) { return (size_t)d->frame_bytes; }

gt_status gt_rpc_decoder_finish(const gt_rpc_decoder *d) {
    if (d->frame_bytes == 0) return GT_OK;
    return gt_fail(GT_ERR_FORMAT, "the connection closed %llu bytes into a frame",
                   (unsigned long long)d->frame_bytes);
}

/* Records the fatal error (with what the frame showed of its msgid). */
static gt_status die(gt_rpc_decoder *d, gt_status st, gt_rpc_code code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static gt_status die(gt_rpc_decoder *d, gt_status st, gt_rpc_code code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->fatal_msg, sizeof d->fatal_msg, fmt, ap);
    va_end(ap);
    d->fatal = st;
    d->fatal_ref.code = code;
    d->fatal_ref.has_msgid = d->root_array && d->root_n >= 2 && d->elem_ok[0] && d->elem[0] == 0 &&
                             d->elem_ok[1] && d->elem[1] <= UINT32_MAX;
    d->fatal_ref.msgid = d->fatal_ref.has_msgid ? (uint32_t)d->elem[1] : 0;
    return st;
}

/* Total header bytes for a first byte; 0 for 0xc1, which msgpack never uses. */
static unsigned header_bytes(uint8_t b) {
    if (b <= 0xbf || b >= 0xe0) return 1; /* fixint, fixmap, fixarray, fixstr, negative fixint */
    static const uint8_t n[0x20] = {
        1, 0, 1, 1,      /* c0 nil, c1 unused, c2 false, c3 true */
        2, 3, 5,         /* c4-c6 bin 8/16/32 */
        3, 4, 6,         /* c7-c9 ext 8/16/32 (length, then type) */
        5, 9,            /* ca float32, cb float64 */
        2, 3, 5, 9,      /* cc-cf uint */
        2, 3, 5, 9,      /* d0-d3 int */
        3, 4, 6, 10, 18, /* d4-d8 fixext 1/2/4/8/16, body included */
        2, 3, 5,         /* d9-db str 8/16/32 */
        3, 5,            /* dc-dd array 16/32 */
        3, 5,            /* de-df map 16/32 */
    };
    return n[b - 0xc0];
}

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* One value (and every container it completes) ended. */
static void value_done(gt_rpc_decoder *d) {
    while (d->depth > 0 && d->rem[d->depth - 1] == 0) d->depth--;
    if (d->depth > 0) return;
    d->ready++; /* the frame is whole */
    d->scanned += d->frame_bytes;
    d->frame_bytes = 0;
    d->owed = 0;
    d->root_array = false;
    d->root_n = d->root_index = 0;
    d->elem_ok[0] = d->elem_ok[1] = false;
}

static gt_status too_big(gt_rpc_decoder *d, uint64_t at_least) {
    return die(d, GT_ERR_RANGE, GT_RPC_TOO_LONG,
               "a frame of at least %llu bytes exceeds the limit of %zu bytes (--max-frame-bytes)",
               (unsigned long long)at_least, d->max_frame);
}

/* A whole header is in d->hdr: account for what it declares. */
static gt_status on_header(gt_rpc_decoder *d) {
    const uint8_t *h = d->hdr;
    uint8_t b = h[0];
    uint64_t count = 0, body = 0;
    bool container = false, is_array = false, scalar_uint = false;
    uint64_t uval = 0;
    if (b <= 0x7f) {
        scalar_uint = true;
        uval = b;
    } else if (b <= 0x8f) {
        container = true;
        count = (uint64_t)(b & 0x0f) * 2;
    } else if (b <= 0x9f) {
        container = is_array = true;
        count = b & 0x0f;
    } else if (b <= 0xbf) {
        body = b & 0x1f;
    } else if (b >= 0xe0) {
        /* negative fixint */
    } else {
        switch (b) {
        case 0xc4:
        case 0xd9:
            body = h[1];
            break;
        case 0xc5:
        case 0xda:
            body = be(h + 1, 2);
            break;
        case 0xc6:
        case 0xdb:
            body = be(h + 1, 4);
            break;
        case 0xc7:
            body = h[1];
            break;
        case 0xc8:
            body = be(h + 1, 2);
            break;
        case 0xc9:
            body = be(h + 1, 4);
            break;
        case 0xcc:
        case 0xcd:
        case 0xce:
        case 0xcf:
            scalar_uint = true;
            uval = be(h + 1, (int)d->hdr_need - 1);
            break;
        case 0xdc:
            container = is_array = true;
            count = be(h + 1, 2);
            break;
        case 0xdd:
            container = is_array = true;
            count = be(h + 1, 4);
            break;
        case 0xde:
            container = true;
            count = be(h + 1, 2) * 2;
            break;
        case 0xdf:
            container = true;
            count = be(h + 1, 4) * 2;
            break;
        default:
            break; /* nil, booleans, floats, signed ints, fixext: no body */
        }
    }
    if (d->depth == 1 && d->root_array && d->root_index < 2) {
        d->elem_ok[d->root_index] = scalar_uint;
        d->elem[d->root_index] = uval;
    }
    uint64_t at_least = d->frame_bytes + d->owed + count + body;
    if (at_least > d->max_frame) return too_big(d, at_least);
    if (container) {
        if (d->depth == 0) {
            d->root_array = is_array;
            d->root_n = count;
        }
        if (count == 0) {
            value_done(d);
            return GT_OK;
        }
        if (d->depth == GT_RPC_MAX_DEPTH)
            return die(d, GT_ERR_FORMAT, GT_RPC_BAD_FRAME,
                       "a frame nests arrays and maps deeper than %d levels", GT_RPC_MAX_DEPTH);
        d->rem[d->depth++] = count;
        d->owed += count;
        return GT_OK;
    }
    d->skip = body;
    if (body == 0) value_done(d);
    return GT_OK;
}

/* Scans p[n]; *used is how many bytes belong to whole frames or the
 * current one (all of them unless a fatal error stopped the scan). */
static gt_status scan(gt_rpc_decoder *d, const uint8_t *p, size_t n, size_t *used) {
    size_t i = 0;
    gt_status st = GT_OK;
    while (i < n) {
        if (d->skip) {
            size_t take = d->skip < (uint64_t)(n - i) ? (size_t)d->skip : n - i;
            d->skip -= take;
            d->frame_bytes += take;
            i += take;
            if (d->skip == 0) value_done(d);
            continue;
        }
        if (d->hdr_have == 0) {
            unsigned need = header_bytes(p[i]);
            if (need == 0) {
                st = die(d, GT_ERR_FORMAT, GT_RPC_BAD_FRAME,
                         "byte 0xc1 at offset %llu of a frame is not msgpack",
                         (unsigned long long)d->frame_bytes);
                break;
            }
            d->hdr_need = need;
            if (d->depth > 0) { /* an element of the innermost container starts */
                d->rem[d->depth - 1]--;
                d->owed--;
                if (d->depth == 1) d->root_index = d->root_n - d->rem[0] - 1;
            }
        }
        while (i < n && d->hdr_have < d->hdr_need) {
            d->hdr[d->hdr_have++] = p[i++];
            d->frame_bytes++;
        }
        if (d->hdr_have < d->hdr_need) break;
        d->hdr_have = 0;
        if ((st = on_header(d)) != GT_OK) break;
    }
    *used = i;
    return st;
}

gt_status gt_rpc_decoder_feed(gt_rpc_decoder *d, const void *data, size_t n) {
    if (d->fatal) return gt_fail(d->fatal, "%s", d->fatal_msg);
    size_t used = 0;
    gt_status st = scan(d, data, n, &used);
    /* The bytes up to the failure go in: the frames before it still count. */
    if (used > 0) {
        if (!msgpack_unpacker_reserve_buffer(&d->up, used))
            return die(d, GT_ERR_NOMEM, GT_RPC_INTERNAL, "out of memory for %zu bytes of RPC input",
                       used);
        memcpy(msgpack_unpacker_buffer(&d->up), data, used);
        msgpack_unpacker_buffer_consumed(&d->up, used);
    }
    (void)st; /* reported by gt_rpc_decoder_next after the whole frames */
    return GT_OK;
}

gt_status gt_rpc_decoder_next(gt_rpc_decoder *d, gt_rpc_msg **msg, gt_rpc_refusal *ref) {
    *msg = NULL;
    memset(ref, 0, sizeof *ref);
    if (d->ready == 0) {
        if (!d->fatal) return GT_OK;
        *ref = d->fatal_ref;
        return gt_fail(d->fatal, "%s", d->fatal_msg);
    }
    gt_rpc_msg *m = calloc(1, sizeof *m);
    if (!m) {
        ref->code = GT_RPC_INTERNAL;
        return gt_fail(GT_ERR_NOMEM, "out of memory for an RPC message");
    }
    msgpack_unpacked_init(&m->up);
    size_t bytes = 0;
    msgpack_unpack_return r = msgpack_unpacker_next_with_size(&d->up, &m->up, &bytes);
    d->parsed += bytes;
    if (r == MSGPACK_UNPACK_SUCCESS &&
        (d->parsed > d->scanned || (d->ready == 1 && d->parsed != d->scanned))) {
        gt_rpc_msg_free(m);
        d->ready = 0;
        die(d, GT_ERR_INTERNAL, GT_RPC_INTERNAL,
            "the frame scanner and msgpack-c disagree on where a frame ends (byte %llu or %llu)",
            (unsigned long long)d->scanned, (unsigned long long)d->parsed);
        d->fatal_ref.has_msgid = false;
        *ref = d->fatal_ref;
        return gt_fail(d->fatal, "%s", d->fatal_msg);
    }
    if (r != MSGPACK_UNPACK_SUCCESS) {
        gt_rpc_msg_free(m);
        /* The scanner saw a whole frame, so msgpack-c must decode it. */
        d->ready = 0;
        if (r == MSGPACK_UNPACK_NOMEM_ERROR)
            die(d, GT_ERR_NOMEM, GT_RPC_INTERNAL, "out of memory decoding an RPC frame");
        else
            die(d, GT_ERR_FORMAT, GT_RPC_BAD_FRAME, "msgpack-c could not decode a frame (%d)",
                (int)r);
        d->fatal_ref.has_msgid = false; /* what the scanner noted is a later frame's */
        *ref = d->fatal_ref;
        return gt_fail(d->fatal, "%s", d->fatal_msg);
    }
    d->ready--;
    *msg = m;
    return GT_OK;
}
