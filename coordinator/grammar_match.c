/* The grammar matcher and the token mask; see grammar.h.
 *
 * A state is a set of stacks plus an incomplete UTF-8 character. A stack
 * is a hash-consed node index (node = element position + parent node; -1
 * is the empty stack, which means "the sentence is complete"), so sets are
 * small integer arrays deduplicated by comparison. Advancing by a code
 * point keeps the stacks whose top character set matches it, pops that
 * set, and expands the new top through rule references (every alternative
 * of a referenced rule, empty ones falling through to the rest of the
 * stack) until every top is a character set: llama.cpp's algorithm.
 *
 * Sets being built live in one growing buffer, each a range [from, to);
 * the trie walk of gt_gmatch_mask pushes a child's set after its parent's
 * and pops it on the way back, so a mask costs one advance per trie node
 * visited, and a prefix the grammar rejects ends its whole subtree. */
#include <stdlib.h>
#include <string.h>

#include "coordinator/grammar_internal.h"

enum {
    MAX_SET = 4096,          /* stacks in one set: more is a pathological grammar */
    MAX_NODES = 1 << 22,     /* hash-consed stack nodes before the matcher gives up */
    COMPACT_NODES = 1 << 18, /* nodes after which an accept compacts the table */
    MAX_EXPAND_DEPTH = 2048,
};

typedef struct gnode {
    int32_t pos, parent;
} gnode;

struct gt_gmatch {
    const gt_grammar *g; /* borrowed */
    gnode *nodes;
    int n_nodes, cap_nodes;
    int32_t *hash; /* [hash_cap] node index or -1 */
    int hash_cap;
    int32_t *cur; /* the state's stacks [n_cur] */
    int n_cur, cap_cur;
    uint32_t pval; /* incomplete UTF-8 character: bits so far, bytes left, its length */
    int pleft, plen;
    int32_t *buf; /* sets being built */
    int n_buf, cap_buf;
    bool overflow; /* a limit was passed: the current operation fails */
};

static bool is_end(const gt_gelem *e) { return e->type == GT_GE_END || e->type == GT_GE_ALT; }

static uint32_t hash2(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32);
}

static bool rehash(gt_gmatch *m, int cap) {
    int32_t *h = malloc((size_t)cap * sizeof *h);
    if (!h) return false;
    memset(h, 0xff, (size_t)cap * sizeof *h);
    for (int i = 0; i < m->n_nodes; i++) {
        uint32_t k = hash2(m->nodes[i].pos, m->nodes[i].parent) & (uint32_t)(cap - 1);
        while (h[k] >= 0) k = (k + 1) & (uint32_t)(cap - 1);
        h[k] = i;
    }
    free(m->hash);
    m->hash = h;
    m->hash_cap = cap;
    return true;
}

/* The node (pos, parent), made once. -2 on overflow. */
static int32_t cons(gt_gmatch *m, int32_t pos, int32_t parent) {
    uint32_t mask = (uint32_t)(m->hash_cap - 1);
    uint32_t k = hash2(pos, parent) & mask;
    for (; m->hash[k] >= 0; k = (k + 1) & mask) {
        const gnode *n = &m->nodes[m->hash[k]];
        if (n->pos == pos && n->parent == parent) return m->hash[k];
    }
    if (m->n_nodes >= MAX_NODES) {
        m->overflow = true;
        return -2;
    }
    if (m->n_nodes == m->cap_nodes) {
        int cap = m->cap_nodes * 2;
        gnode *nn = realloc(m->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            m->overflow = true;
            return -2;
        }
        m->nodes = nn;
        m->cap_nodes = cap;
    }
    int32_t id = m->n_nodes++;
    m->nodes[id] = (gnode){pos, parent};
    m->hash[k] = id;
    if (2 * m->n_nodes > m->hash_cap && !rehash(m, m->hash_cap * 2)) m->overflow = true;
    return id;
}

static void push_unique(gt_gmatch *m, int start, int32_t s) {
    for (int k = start; k < m->n_buf; k++)
        if (m->buf[k] == s) return;
    if (m->n_buf - start >= MAX_SET) {
        m->overflow = true;
        return;
    }
    if (m->n_buf == m->cap_buf) {
        int cap = m->cap_buf * 2;
        int32_t *b = realloc(m->buf, (size_t)cap * sizeof *b);
        if (!b) {
            m->overflow = true;
            return;
        }
        m->buf = b;
        m->cap_buf = cap;
    }
    m->buf[m->n_buf++] = s;
}

/* Adds to the set starting at `start` every stack that s expands to. */
static void expand(gt_gmatch *m, int32_t s, int start, int depth) {
    if (m->overflow) return;
    if (depth > MAX_EXPAND_DEPTH) {
        m->overflow = true;
        return;
    }
    if (s < 0) {
        push_unique(m, start, s);
        return;
    }
    const gt_grammar *g = m->g;
    int32_t pos = m->nodes[s].pos, parent = m->nodes[s].parent;
    if (g->elems[pos].type != GT_GE_REF) {
        push_unique(m, start, s);
        return;
    }
    int32_t rest = parent;
    if (!is_end(&g->elems[pos + 1])) rest = cons(m, pos + 1, parent);
    if (rest == -2) return;
    int32_t a = g->rule_start[g->elems[pos].value];
    for (;;) {
        if (is_end(&g->elems[a])) {
            expand(m, rest, start, depth + 1);
        } else {
            int32_t t = cons(m, a, rest);
            if (t == -2) return;
            expand(m, t, start, depth + 1);
        }
        while (!is_end(&g->elems[a])) a++;
        if (g->elems[a].type == GT_GE_END) break;
        a++;
    }
}

/* Whether the character set at pos matches cp; *next: the element after
 * the set. */
static bool match_char(const gt_grammar *g, int32_t pos, uint32_t cp, int32_t *next) {
    const gt_gelem *e = &g->elems[pos];
    bool positive = e->type == GT_GE_CHAR || e->type == GT_GE_ANY;
    bool found = false;
    do {
        if (e->type == GT_GE_ANY) {
            found = true;
            e++;
        } else if (e[1].type == GT_GE_RNG_UPPER) {
            found = found || (e->value <= cp && cp <= e[1].value);
            e += 2;
        } else {
            found = found || e->value == cp;
            e++;
        }
    } while (e->type == GT_GE_CHAR_ALT);
    *next = (int32_t)(e - g->elems);
    return found == positive;
}

/* Whether some code point in [lo, hi] can match the set at pos. */
static bool match_range(const gt_grammar *g, int32_t pos, uint32_t lo, uint32_t hi) {
    const gt_gelem *e = &g->elems[pos];
    if (e->type != GT_GE_CHAR) return true; /* negated or any: some code point is left */
    do {
        uint32_t a = e->value, b = e[1].type == GT_GE_RNG_UPPER ? e[1].value : a;
        if (a <= hi && lo <= b) return true;
        e += e[1].type == GT_GE_RNG_UPPER ? 2 : 1;
    } while (e->type == GT_GE_CHAR_ALT);
    return false;
}

/* The set [from, to) advanced by cp, appended to the buffer; returns its
 * start (empty when nothing matches). */
static int advance(gt_gmatch *m, int from, int to, uint32_t cp) {
    int start = m->n_buf;
    const gt_grammar *g = m->g;
    for (int k = from; k < to && !m->overflow; k++) {
        int32_t s = m->buf[k];
        if (s < 0) continue;
        int32_t next;
        if (!match_char(g, m->nodes[s].pos, cp, &next)) continue;
        int32_t ns = m->nodes[s].parent;
        if (!is_end(&g->elems[next])) ns = cons(m, next, ns);
        if (ns == -2) break;
        expand(m, ns, start, 0);
    }
    if (m->overflow) m->n_buf = start;
    return start;
}

/* One byte into the incomplete character (val, left, len): 1 when a code
 * point is complete (*cp), 0 when more bytes are needed, -1 for invalid
 * UTF-8 (including overlong forms, which would let a grammar's ASCII be
 * spelled with other bytes, and code points past U+10FFFF). */
static int utf8_step(uint32_t *val, int *left, int *len, uint8_t b, uint32_t *cp) {
    if (*left == 0) {
        if (b < 0x80) {
            *cp = b;
            return 1;
        }
        if (b >= 0xC2 && b <= 0xDF)
            *val = b & 0x1Fu, *left = 1;
        else if ((b >> 4) == 14)
            *val = b & 0x0Fu, *left = 2;
        else if (b >= 0xF0 && b <= 0xF4)
            *val = b & 0x07u, *left = 3;
        else
            return -1;
        *len = *left + 1;
        return 0;
    }
    if ((b & 0xC0) != 0x80) return -1;
    *val = (*val << 6) | (b & 0x3Fu);
    if (--*left > 0) {
        /* Refuse a prefix that can only complete overlong or too large. */
        uint32_t lo = *val << (6 * *left), hi = lo | ((1u << (6 * *left)) - 1);
        uint32_t min = *len == 3 ? 0x800 : 0x10000;
        if (hi < min || lo > 0x10FFFF) return -1;
        return 0;
    }
    uint32_t min = *len == 2 ? 0x80 : *len == 3 ? 0x800 : 0x10000;
    if (*val < min || *val > 0x10FFFF) return -1;
    *cp = *val;
    *val = 0;
    return 1;
}

static bool partial_possible(const gt_gmatch *m, int from, int to, uint32_t val, int left,
                             int len) {
    uint32_t lo = val << (6 * left), hi = lo | ((1u << (6 * left)) - 1);
    uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (lo < min) lo = min;
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    if (lo > hi) return false;
    for (int k = from; k < to; k++)
        if (m->buf[k] >= 0 && match_range(m->g, m->nodes[m->buf[k]].pos, lo, hi)) return true;
    return false;
}

/* Walks bytes from the current state; the final set is [*from, *to) of the
 * buffer. Returns the offset of the first rejected byte, or n. */
static size_t walk_bytes(gt_gmatch *m, const uint8_t *bytes, size_t n, int *from, int *to,
                         uint32_t *val, int *left, int *len) {
    m->overflow = false;
    m->n_buf = 0;
    for (int k = 0; k < m->n_cur; k++) m->buf[m->n_buf++] = m->cur[k];
    *from = 0;
    *to = m->n_buf;
    *val = m->pval;
    *left = m->pleft;
    *len = m->plen;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp;
        int r = utf8_step(val, left, len, bytes[i], &cp);
        if (r < 0) return i;
        if (r == 0) {
            if (!partial_possible(m, *from, *to, *val, *left, *len)) return i;
            continue;
        }
        int start = advance(m, *from, *to, cp);
        if (start == m->n_buf) return i;
        *from = start;
        *to = m->n_buf;
    }
    return n;
}

bool gt_gmatch_try(gt_gmatch *m, const uint8_t *bytes, size_t n) {
    int from, to, left, len;
    uint32_t val;
    return walk_bytes(m, bytes, n, &from, &to, &val, &left, &len) == n;
}

/* Copies the stacks reachable from the state into a fresh node table. */
static int32_t recons(gt_gmatch *m, const gnode *old, int32_t s, int32_t *memo) {
    if (s < 0) return s;
    if (memo[s] != -3) return memo[s];
    int32_t parent = recons(m, old, old[s].parent, memo);
    return memo[s] = cons(m, old[s].pos, parent);
}

static void compact(gt_gmatch *m) {
    int n_old = m->n_nodes;
    gnode *old = malloc((size_t)n_old * sizeof *old);
    int32_t *memo = malloc((size_t)n_old * sizeof *memo);
    if (!old || !memo) goto done;
    memcpy(old, m->nodes, (size_t)n_old * sizeof *old);
    for (int i = 0; i < n_old; i++) memo[i] = -3;
    m->n_nodes = 0;
    memset(m->hash, 0xff, (size_t)m->hash_cap * sizeof *m->hash);
    for (int k = 0; k < m->n_cur; k++) m->cur[k] = recons(m, old, m->cur[k], memo);
done:
    free(old);
    free(memo);
}

static bool set_cur(gt_gmatch *m, int from, int to) {
    int n = to - from;
    if (n > m->cap_cur) {
        int32_t *c = realloc(m->cur, (size_t)n * sizeof *c);
        if (!c) return false;
        m->cur = c;
        m->cap_cur = n;
    }
    memmove(m->cur, m->buf + from, (size_t)n * sizeof *m->cur);
    m->n_cur = n;
    return true;
}

gt_status gt_gmatch_accept(gt_gmatch *m, const uint8_t *bytes, size_t n) {
    int from, to, left, len;
    uint32_t val;
    size_t at = walk_bytes(m, bytes, n, &from, &to, &val, &left, &len);
    if (m->overflow)
        return gt_fail(GT_ERR_RANGE,
                       "the grammar needs more than %d stacks at once at byte %zu of the "
                       "token",
                       MAX_SET, at);
    if (at < n)
        return gt_fail(GT_ERR_INVALID_ARG,
                       "the grammar rejects byte %zu (0x%02x) of the %zu-byte token", at, bytes[at],
                       n);
    if (!set_cur(m, from, to)) return gt_fail(GT_ERR_NOMEM, "cannot allocate the grammar state");
    m->pval = val;
    m->pleft = left;
    m->plen = len;
    if (m->n_nodes > COMPACT_NODES) compact(m);
    if (m->overflow) return gt_fail(GT_ERR_NOMEM, "cannot compact the grammar state");
    return GT_OK;
}

bool gt_gmatch_can_end(const gt_gmatch *m) {
    if (m->pleft) return false;
    for (int k = 0; k < m->n_cur; k++)
        if (m->cur[k] < 0) return true;
    return false;
}

bool gt_gmatch_done(const gt_gmatch *m) { return gt_gmatch_can_end(m) && m->n_cur == 1; }

gt_status gt_gmatch_reset(gt_gmatch *m) {
    m->overflow = false;
    m->n_buf = 0;
    m->pval = 0;
    m->pleft = m->plen = 0;
    const gt_grammar *g = m->g;
    int32_t a = g->rule_start[g->root];
    for (;;) {
        if (is_end(&g->elems[a])) {
            expand(m, -1, 0, 0);
        } else {
            int32_t t = cons(m, a, -1);
            if (t == -2) break;
            expand(m, t, 0, 0);
        }
        while (!is_end(&g->elems[a])) a++;
        if (g->elems[a].type == GT_GE_END) break;
        a++;
    }
    if (m->overflow)
        return gt_fail(GT_ERR_RANGE, "the grammar's start needs more than %d stacks at once",
                       MAX_SET);
    if (!set_cur(m, 0, m->n_buf)) return gt_fail(GT_ERR_NOMEM, "cannot allocate the grammar state");
    return GT_OK;
}

gt_status gt_gmatch_create(const gt_grammar *g, gt_gmatch **out) {
    *out = NULL;
    gt_gmatch *m = calloc(1, sizeof *m);
    if (!m) return gt_fail(GT_ERR_NOMEM, "cannot allocate a grammar matcher");
    m->g = g;
    m->cap_nodes = 1024;
    m->cap_buf = 2 * MAX_SET;
    m->nodes = malloc((size_t)m->cap_nodes * sizeof *m->nodes);
    m->buf = malloc((size_t)m->cap_buf * sizeof *m->buf);
    if (!m->nodes || !m->buf || !rehash(m, 4096)) {
        gt_gmatch_free(m);
        return gt_fail(GT_ERR_NOMEM, "cannot allocate a grammar matcher");
    }
    gt_status st = gt_gmatch_reset(m);
    if (st != GT_OK) {
        gt_gmatch_free(m);
        return st;
    }
    *out = m;
    return GT_OK;
}

void gt_gmatch_free(gt_gmatch *m) {
    if (!m) return;
    free(m->nodes);
    free(m->hash);
    free(m->cur);
    free(m->buf);
    free(m);
}

/* ---- the vocabulary trie and the mask ---- */

struct gt_vocab_trie {
    int n_vocab, n_nodes, cap;
    int32_t *child, *sibling,
        *tok;          /* [n_nodes]: first child, next sibling, first token (-1: none) */
    uint8_t *byte;     /* [n_nodes] the edge into the node */
    int32_t *tok_next; /* [n_vocab] the next token with the same bytes */
    char *bytes;       /* every piece, concatenated */
    size_t *off;       /* [n_vocab + 1] piece i is bytes[off[i], off[i + 1]) */
};

static int32_t trie_node(gt_vocab_trie *t, uint8_t b) {
    if (t->n_nodes == t->cap) {
        int cap = t->cap ? 2 * t->cap : 4096;
        int32_t *c = realloc(t->child, (size_t)cap * sizeof *c);
        if (c) t->child = c;
        int32_t *s = realloc(t->sibling, (size_t)cap * sizeof *s);
        if (s) t->sibling = s;
        int32_t *k = realloc(t->tok, (size_t)cap * sizeof *k);
        if (k) t->tok = k;
        uint8_t *y = realloc(t->byte, (size_t)cap);
        if (y) t->byte = y;
        if (!c || !s || !k || !y) return -1;
        t->cap = cap;
    }
    int32_t id = t->n_nodes++;
    t->child[id] = t->sibling[id] = t->tok[id] = -1;
    t->byte[id] = b;
    return id;
}

gt_status gt_vocab_trie_create(const char *const *pieces, const size_t *lens, int n_vocab,
                               gt_vocab_trie **out) {
    *out = NULL;
    gt_vocab_trie *t = calloc(1, sizeof *t);
    if (!t) return gt_fail(GT_ERR_NOMEM, "cannot allocate a vocabulary trie");
    t->n_vocab = n_vocab;
    t->tok_next = malloc((size_t)(n_vocab > 0 ? n_vocab : 1) * sizeof *t->tok_next);
    t->off = malloc((size_t)(n_vocab + 1) * sizeof *t->off);
    if (!t->tok_next || !t->off || trie_node(t, 0) < 0) goto nomem;
    t->off[0] = 0;
    for (int id = 0; id < n_vocab; id++) t->off[id + 1] = t->off[id] + lens[id];
    t->bytes = malloc(t->off[n_vocab] + 1);
    if (!t->bytes) goto nomem;
    for (int id = 0; id < n_vocab; id++)
        if (lens[id]) memcpy(t->bytes + t->off[id], pieces[id], lens[id]);
    for (int id = n_vocab - 1; id >= 0; id--) { /* backwards, so each list is in id order */
        t->tok_next[id] = -1;
        if (lens[id] == 0) continue;
        int32_t node = 0;
        for (size_t i = 0; i < lens[id]; i++) {
            uint8_t b = (uint8_t)pieces[id][i];
            int32_t c = t->child[node];
            while (c >= 0 && t->byte[c] != b) c = t->sibling[c];
            if (c < 0) {
                c = trie_node(t, b);
                if (c < 0) goto nomem;
                t->sibling[c] = t->child[node];
                t->child[node] = c;
            }
            node = c;
        }
        t->tok_next[id] = t->tok[node];
        t->tok[node] = id;
    }
    *out = t;
    return GT_OK;
nomem:
    gt_vocab_trie_free(t);
    return gt_fail(GT_ERR_NOMEM, "cannot allocate a vocabulary trie of %d tokens", n_vocab);
}

void gt_vocab_trie_free(gt_vocab_trie *t) {
    if (!t) return;
    free(t->child);
    free(t->sibling);
    free(t->tok);
    free(t->byte);
    free(t->tok_next);
    free(t->bytes);
    free(t->off);
    free(t);
}

int gt_vocab_trie_n_vocab(const gt_vocab_trie *t) { return t->n_vocab; }

const uint8_t *gt_vocab_trie_piece(const gt_vocab_trie *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return (const uint8_t *)"";
    }
    *len = t->off[id + 1] - t->off[id];
    return (const uint8_t *)t->bytes + t->off[id];
}

static int walk_trie(gt_gmatch *m, const gt_vocab_trie *t, int32_t node, int from, int to,
                     uint32_t val, int left, int len, uint8_t *allowed) {
    int count = 0;
    for (int32_t c = t->child[node]; c >= 0; c = t->sibling[c]) {
        int save = m->n_buf;
        uint32_t v = val, cp;
        int l = left, ln = len, nfrom = from, nto = to;
        int r = utf8_step(&v, &l, &ln, t->byte[c], &cp);
        if (r < 0) continue;
        if (r == 0) {
            if (!partial_possible(m, from, to, v, l, ln)) continue;
        } else {
            nfrom = advance(m, from, to, cp);
            nto = m->n_buf;
            if (nfrom == nto) {
                m->n_buf = save;
                m->overflow = false;
                continue;
            }
        }
        for (int32_t id = t->tok[c]; id >= 0; id = t->tok_next[id]) {
            allowed[id] = 1;
            count++;
        }
        count += walk_trie(m, t, c, nfrom, nto, v, l, ln, allowed);
        m->n_buf = save;
    }
    return count;
}

int gt_gmatch_mask(gt_gmatch *m, const gt_vocab_trie *t, uint8_t *allowed) {
    memset(allowed, 0, (size_t)t->n_vocab);
    m->overflow = false;
    m->n_buf = 0;
    for (int k = 0; k < m->n_cur; k++) m->buf[m->n_buf++] = m->cur[k];
    return walk_trie(m, t, 0, 0, m->n_buf, m->pval, m->pleft, m->plen, allowed);
}
