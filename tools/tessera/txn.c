/* tools/tessera: `tessera txn` input parser (txn.h). */
#include "tools/tessera/txn.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A cursor over one line, decoding words into the pool. */
struct cursor {
    const char *p;
    char *pool; /* where the next decoded word goes */
};

static void skip_space(struct cursor *c)
{
    while (*c->p == ' ' || *c->p == '\t') {
        c->p++;
    }
}

static int hex_digit(char ch)
{
    return isdigit((unsigned char)ch) ? ch - '0'
           : ch >= 'a' && ch <= 'f'   ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F'   ? ch - 'A' + 10
                                      : -1;
}

/* One escape after a backslash inside quotes; returns the byte or -1. */
static int unescape(struct cursor *c)
{
    char e = *c->p++;
    switch (e) {
    case '"':
    case '\\':
        return e;
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'x': {
        int hi = hex_digit(c->p[0]);
        int lo = hi >= 0 ? hex_digit(c->p[1]) : -1;
        if (lo < 0) {
            return -1;
        }
        c->p += 2;
        return hi * 16 + lo;
    }
    default:
        return -1;
    }
}

/* A word: "quoted with escapes" or bare up to a space or one of stop. Returns false on
 * a malformed word; an absent word gives *len 0 and *word NULL. */
static bool word(struct cursor *c, const char *stop, const char **w, size_t *len)
{
    skip_space(c);
    *w = NULL;
    *len = 0;
    char *out = c->pool;
    if (*c->p == '"') {
        c->p++;
        while (*c->p != '"') {
            if (*c->p == '\0') {
                return false;
            }
            int ch = *c->p == '\\' ? (c->p++, unescape(c)) : (unsigned char)*c->p++;
            if (ch < 0) {
                return false;
            }
            *out++ = (char)ch;
        }
        c->p++;
    } else {
        while (*c->p != '\0' && *c->p != ' ' && *c->p != '\t' && strchr(stop, *c->p) == NULL) {
            *out++ = *c->p++;
        }
        if (out == c->pool) {
            return true;
        }
    }
    *w = c->pool;
    *len = (size_t)(out - c->pool);
    c->pool = out;
    return true;
}

static bool parse_target(const char *name, size_t n, enum tessera_compare_target *t)
{
    static const char *names[] = {"value", "version", "create", "mod", "lease"};
    for (int i = 0; i < 5; i++) {
        if (strlen(names[i]) == n && strncmp(name, names[i], n) == 0) {
            *t = (enum tessera_compare_target)i;
            return true;
        }
    }
    return false;
}

static bool parse_result(struct cursor *c, enum tessera_compare_result *r)
{
    skip_space(c);
    if (strncmp(c->p, "!=", 2) == 0) {
        c->p += 2;
        *r = TESSERA_CMP_NOT_EQUAL;
        return true;
    }
    const char *ops = "=<>";
    const char *at = *c->p != '\0' ? strchr(ops, *c->p) : NULL;
    if (at == NULL) {
        return false;
    }
    c->p++;
    *r = at[0] == '=' ? TESSERA_CMP_EQUAL : at[0] == '<' ? TESSERA_CMP_LESS : TESSERA_CMP_GREATER;
    return true;
}

/* TARGET("KEY") OP ARG */
static const char *parse_compare(struct cursor *c, struct tessera_compare *m)
{
    const char *name;
    size_t n;
    *m = (struct tessera_compare){0};
    if (!word(c, "(", &name, &n) || name == NULL || !parse_target(name, n, &m->target)) {
        return "expected value|version|create|mod|lease(\"KEY\")";
    }
    c->pool -= n; /* the target's name need not be kept */
    if (*c->p++ != '(' || !word(c, ")", (const char **)&m->key, &m->key_len) || m->key == NULL) {
        return "expected (\"KEY\")";
    }
    skip_space(c);
    if (*c->p++ != ')') {
        return "expected )";
    }
    if (!parse_result(c, &m->result)) {
        return "expected = != < or >";
    }
    const char *arg;
    size_t alen;
    if (!word(c, "", &arg, &alen) || arg == NULL) {
        return "expected a number or a quoted value";
    }
    if (m->target == TESSERA_CMP_VALUE) {
        m->value = arg;
        m->value_len = alen;
        return NULL;
    }
    char num[32];
    char *end = NULL;
    if (alen >= sizeof(num)) {
        return "bad number";
    }
    memcpy(num, arg, alen);
    num[alen] = '\0';
    errno = 0;
    m->number = strtoll(num, &end, 10);
    return errno != 0 || *end != '\0' ? "bad number" : NULL;
}

/* put KEY VALUE | get KEY | del KEY [END] | range KEY [END] */
static const char *parse_op(struct cursor *c, struct tessera_txn_op *o)
{
    static const struct {
        const char *name;
        enum tessera_op op;
        int min, max;
    } verbs[] = {{"put", TESSERA_OP_PUT, 2, 2},
                 {"get", TESSERA_OP_GET, 1, 1},
                 {"del", TESSERA_OP_DELETE, 1, 2},
                 {"range", TESSERA_OP_RANGE, 1, 2}};
    const char *name;
    size_t n;
    *o = (struct tessera_txn_op){0};
    if (!word(c, "", &name, &n) || name == NULL) {
        return "expected put, get, del or range";
    }
    for (size_t v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++) {
        if (strlen(verbs[v].name) != n || strncmp(verbs[v].name, name, n) != 0) {
            continue;
        }
        const char *w[3] = {0};
        size_t wl[3] = {0};
        int got = 0;
        while (got < 3 && word(c, "", &w[got], &wl[got]) && w[got] != NULL) {
            got++;
        }
        skip_space(c);
        if (got < verbs[v].min || got > verbs[v].max || *c->p != '\0') {
            return "wrong number of words for this op";
        }
        o->op = verbs[v].op;
        o->key = w[0];
        o->key_len = wl[0];
        bool put = o->op == TESSERA_OP_PUT;
        o->value = put ? w[1] : NULL;
        o->value_len = put ? wl[1] : 0;
        o->range_end = put ? NULL : w[1];
        o->range_end_len = put ? 0 : wl[1];
        return NULL;
    }
    return "expected put, get, del or range";
}

static bool blank(const char *line)
{
    for (; *line != '\0'; line++) {
        if (!isspace((unsigned char)*line)) {
            return false;
        }
    }
    return true;
}

static int read_all(FILE *in, struct txn_input *t)
{
    size_t cap = 4096;
    size_t len = 0;
    t->text = malloc(cap);
    while (t->text != NULL) {
        len += fread(t->text + len, 1, cap - len - 1, in);
        if (len < cap - 1 || cap >= TXN_INPUT_BYTES_MAX) {
            break;
        }
        char *p = realloc(t->text, cap * 2);
        if (p == NULL) {
            break;
        }
        t->text = p;
        cap *= 2;
    }
    if (t->text == NULL || len >= TXN_INPUT_BYTES_MAX - 1) {
        return -1;
    }
    t->text[len] = '\0';
    t->pool = malloc(len + 1);
    return t->pool != NULL ? 0 : -1;
}

/* One non-blank line of group g. Returns NULL or an error. */
static const char *parse_line(struct txn_input *t, int g, struct cursor *c)
{
    if (g == 0) {
        if (t->ncmp == TESSERA_TXN_OPS_MAX) {
            return "too many compares";
        }
        const char *e = parse_compare(c, &t->cmp[t->ncmp]);
        skip_space(c);
        if (e == NULL && *c->p != '\0') {
            e = "unexpected words after the compare";
        }
        t->ncmp += e == NULL;
        return e;
    }
    if (g > 2) {
        return "more than three groups";
    }
    if (t->nops[g - 1] == TESSERA_TXN_OPS_MAX) {
        return "too many ops";
    }
    const char *e = parse_op(c, &t->ops[g - 1][t->nops[g - 1]]);
    t->nops[g - 1] += e == NULL;
    return e;
}

int txn_input_read(FILE *in, struct txn_input *t, char *err, size_t err_bytes)
{
    memset(t, 0, sizeof(*t));
    if (read_all(in, t) != 0) {
        snprintf(err, err_bytes, "cannot read the input (over %u bytes?)", TXN_INPUT_BYTES_MAX);
        return -1;
    }
    struct cursor c = {.pool = t->pool};
    int group = 0;
    char *line = t->text;
    for (int lineno = 1; *line != '\0'; lineno++) {
        char *nl = strchr(line, '\n');
        char *next = nl != NULL ? nl + 1 : line + strlen(line);
        if (nl != NULL) {
            *nl = '\0';
        }
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\r') {
            line[n - 1] = '\0';
        }
        if (blank(line)) {
            /* A blank line ends a group, even an empty one; trailing ones do nothing. */
            group += group < 3;
        } else {
            c.p = line;
            const char *e = parse_line(t, group, &c);
            if (e != NULL) {
                snprintf(err, err_bytes, "line %d: %s", lineno, e);
                return -1;
            }
        }
        line = next;
    }
    return 0;
}

void txn_input_free(struct txn_input *t)
{
    free(t->text);
    free(t->pool);
    t->text = NULL;
    t->pool = NULL;
}
