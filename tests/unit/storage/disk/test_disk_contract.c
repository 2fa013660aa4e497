/* The backend-independent checks of storage/disk (see disk_contract.h). */
#include "disk_contract.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTRACT_PATH_BYTES_MAX 512
#define CONTRACT_DRAIN_RUNS_MAX 100000
#define CONTRACT_NAMES_MAX 16
#define CONTRACT_BAD_HANDLE 12345u

struct counter {
    int calls;
};

static void count_cb(struct disk_req *req)
{
    struct counter *c = req->data;
    c->calls++;
}

static void join(char *out, const char *root, const char *name)
{
    int n = snprintf(out, CONTRACT_PATH_BYTES_MAX, "%s/%s", root, name);
    cr_assert(n > 0 && n < CONTRACT_PATH_BYTES_MAX, "path too long");
}

static uint32_t open_at(struct disk *d, const char *root, const char *name, uint32_t flags)
{
    char path[CONTRACT_PATH_BYTES_MAX];
    join(path, root, name);
    uint32_t f = UINT32_MAX;
    int rc = disk_open(d, path, flags, &f);
    cr_assert_eq(rc, 0, "open %s: %d", path, rc);
    return f;
}

static int open_rc(struct disk *d, const char *root, const char *name, uint32_t flags)
{
    char path[CONTRACT_PATH_BYTES_MAX];
    join(path, root, name);
    uint32_t f = UINT32_MAX;
    int rc = disk_open(d, path, flags, &f);
    if (rc == 0) {
        cr_assert_eq(disk_close(d, f), 0);
    }
    return rc;
}

int disk_contract_drain(struct disk *d)
{
    int total = 0;
    for (int i = 0; i < CONTRACT_DRAIN_RUNS_MAX && disk_inflight(d) > 0; i++) {
        int rc = disk_run(d, true);
        cr_assert_geq(rc, 0, "disk_run: %d", rc);
        total += rc;
    }
    cr_assert_eq(disk_inflight(d), 0, "drained");
    return total;
}

int32_t disk_contract_req(struct disk *d, uint8_t op, uint32_t file, void *buf, uint32_t len,
                          uint64_t offset)
{
    struct counter c = {0};
    struct disk_req req = {.op = op,
                           .file = file,
                           .buf = buf,
                           .len = len,
                           .offset = offset,
                           .cb = count_cb,
                           .data = &c};
    disk_submit(d, &req);
    cr_assert_eq(c.calls, 0, "no callback from disk_submit");
    cr_assert_eq(disk_inflight(d), 1);
    cr_assert_eq(disk_contract_drain(d), 1);
    cr_assert_eq(c.calls, 1, "exactly one completion");
    return req.res;
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 31u + i * 7u + (i >> 8));
    }
}

static bool all_zero(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != 0) {
            return false;
        }
    }
    return true;
}

void disk_contract_write_read_round_trip(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "rt", DISK_OPEN_CREATE);
    uint8_t wbuf[4096], rbuf[8192];
    fill(wbuf, sizeof(wbuf), 1);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, f, wbuf, sizeof(wbuf), 8192), 4096);
    memset(rbuf, 0xaa, sizeof(rbuf));
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, rbuf, 4096, 8192), 4096);
    cr_assert(memcmp(rbuf, wbuf, 4096) == 0, "read returns what was written");
    memset(rbuf, 0xaa, sizeof(rbuf));
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, rbuf, 8192, 0), 8192);
    cr_assert(all_zero(rbuf, 8192), "the hole before the write reads as zeros");
    memset(rbuf, 0, sizeof(rbuf));
    cr_assert_eq(disk_pread(d, f, rbuf, 4096, 8192), 4096);
    cr_assert(memcmp(rbuf, wbuf, 4096) == 0, "pread sees the same bytes");
    uint64_t size = 0;
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 12288);
    cr_assert_eq(disk_close(d, f), 0);
}

void disk_contract_write_fdatasync_completes_once(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "wf", DISK_OPEN_CREATE);
    uint8_t wbuf[1000], rbuf[1000];
    fill(wbuf, sizeof(wbuf), 2);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE_FDATASYNC, f, wbuf, sizeof(wbuf), 0), 1000,
                 "res is the whole length");
    cr_assert_eq(disk_run(d, false), 0, "nothing more completes");
    cr_assert_eq(disk_run(d, true), 0, "nothing in flight: returns at once");
    cr_assert_eq(disk_pread(d, f, rbuf, sizeof(rbuf), 0), 1000);
    cr_assert(memcmp(rbuf, wbuf, sizeof(wbuf)) == 0);
    cr_assert_eq(disk_close(d, f), 0);
}

void disk_contract_fdatasync_alone(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "fs", DISK_OPEN_CREATE);
    uint8_t wbuf[512];
    fill(wbuf, sizeof(wbuf), 3);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, f, wbuf, sizeof(wbuf), 0), 512);
    cr_assert_eq(disk_contract_req(d, DISK_OP_FDATASYNC, f, NULL, 0, 0), 0, "a sync's res is 0");
    cr_assert_eq(disk_close(d, f), 0);
}

void disk_contract_reads_past_eof_are_short(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "eof", DISK_OPEN_CREATE);
    uint8_t wbuf[100], rbuf[64];
    fill(wbuf, sizeof(wbuf), 4);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, f, wbuf, sizeof(wbuf), 0), 100);
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, rbuf, 50, 80), 20, "straddles the end");
    cr_assert(memcmp(rbuf, wbuf + 80, 20) == 0);
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, rbuf, 10, 100), 0, "at the end");
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, rbuf, 10, 1000), 0, "beyond the end");
    cr_assert_eq(disk_pread(d, f, rbuf, 50, 80), 20);
    cr_assert_eq(disk_pread(d, f, rbuf, 50, 5000), 0);
    cr_assert_eq(disk_close(d, f), 0);
}

#define MANY_REQS 300
#define MANY_BYTES 64

void disk_contract_many_requests_in_flight(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "many", DISK_OPEN_CREATE);
    struct disk_req *reqs = calloc(MANY_REQS, sizeof(*reqs));
    uint8_t *bufs = calloc(MANY_REQS, MANY_BYTES);
    cr_assert(reqs != NULL && bufs != NULL);
    struct counter c = {0};
    for (uint32_t i = 0; i < MANY_REQS; i++) {
        memset(bufs + i * MANY_BYTES, (int)(i & 0xff), MANY_BYTES);
        reqs[i] = (struct disk_req){.op = i % 10 == 0 ? DISK_OP_WRITE_FDATASYNC : DISK_OP_WRITE,
                                    .file = f,
                                    .buf = bufs + i * MANY_BYTES,
                                    .len = MANY_BYTES,
                                    .offset = (uint64_t)i * MANY_BYTES,
                                    .cb = count_cb,
                                    .data = &c};
        disk_submit(d, &reqs[i]);
    }
    cr_assert_eq(disk_inflight(d), MANY_REQS);
    cr_assert_eq(disk_contract_drain(d), MANY_REQS);
    cr_assert_eq(c.calls, MANY_REQS);
    memset(bufs, 0, (size_t)MANY_REQS * MANY_BYTES);
    for (uint32_t i = 0; i < MANY_REQS; i++) {
        cr_assert_eq(reqs[i].res, MANY_BYTES, "write %u: %d", i, reqs[i].res);
        reqs[i].op = DISK_OP_READ;
        disk_submit(d, &reqs[i]);
    }
    cr_assert_eq(disk_contract_drain(d), MANY_REQS);
    for (uint32_t i = 0; i < MANY_REQS; i++) {
        cr_assert_eq(reqs[i].res, MANY_BYTES, "read %u: %d", i, reqs[i].res);
        cr_assert_eq(bufs[i * MANY_BYTES], (uint8_t)i);
        cr_assert_eq(bufs[i * MANY_BYTES + MANY_BYTES - 1], (uint8_t)i);
    }
    free(reqs);
    free(bufs);
    cr_assert_eq(disk_close(d, f), 0);
}

#define CHAIN_LINKS 40
#define CHAIN_BYTES 32

struct chain {
    struct disk *d;
    struct disk_req req;
    uint8_t buf[CHAIN_BYTES];
    int calls;
};

/* Each completion submits the next write, right after the previous one. */
static void chain_cb(struct disk_req *req)
{
    struct chain *ch = req->data;
    cr_assert_eq(req->res, CHAIN_BYTES);
    ch->calls++;
    if (ch->calls < CHAIN_LINKS) {
        memset(ch->buf, ch->calls, CHAIN_BYTES);
        req->offset += CHAIN_BYTES;
        req->op = ch->calls % 2 == 0 ? DISK_OP_WRITE : DISK_OP_WRITE_FDATASYNC;
        disk_submit(ch->d, req);
    }
}

void disk_contract_callbacks_submit_new_requests(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "chain", DISK_OPEN_CREATE);
    struct chain ch = {.d = d};
    memset(ch.buf, 0, sizeof(ch.buf));
    ch.req = (struct disk_req){.op = DISK_OP_WRITE,
                               .file = f,
                               .buf = ch.buf,
                               .len = CHAIN_BYTES,
                               .cb = chain_cb,
                               .data = &ch};
    disk_submit(d, &ch.req);
    cr_assert_eq(disk_contract_drain(d), CHAIN_LINKS);
    cr_assert_eq(ch.calls, CHAIN_LINKS);
    uint64_t size = 0;
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, (uint64_t)CHAIN_LINKS * CHAIN_BYTES);
    uint8_t b = 0xff;
    for (int i = 0; i < CHAIN_LINKS; i++) {
        cr_assert_eq(disk_pread(d, f, &b, 1, (uint64_t)i * CHAIN_BYTES + 5), 1);
        cr_assert_eq(b, i, "link %d", i);
    }
    cr_assert_eq(disk_close(d, f), 0);
}

void disk_contract_run_with_nothing_in_flight(struct disk *d, const char *root)
{
    (void)root;
    cr_assert_eq(disk_inflight(d), 0);
    cr_assert_eq(disk_run(d, true), 0, "returns at once");
    cr_assert_eq(disk_run(d, false), 0);
}

void disk_contract_zero_length_requests(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "zero", DISK_OPEN_CREATE);
    uint8_t b[1] = {0};
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, f, b, 0, 0), 0);
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, b, 0, 0), 0);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE_FDATASYNC, f, b, 0, 0), 0);
    uint64_t size = 1;
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 0);
    cr_assert_eq(disk_close(d, f), 0);
}

void disk_contract_open_flags(struct disk *d, const char *root)
{
    cr_assert_eq(open_rc(d, root, "missing", 0), -ENOENT);
    cr_assert_eq(open_rc(d, root, "missing", DISK_OPEN_READONLY), -ENOENT);
    cr_assert_eq(open_rc(d, root, "x", DISK_OPEN_CREATE | DISK_OPEN_EXCL), 0);
    cr_assert_eq(open_rc(d, root, "x", DISK_OPEN_CREATE | DISK_OPEN_EXCL), -EEXIST);
    cr_assert_eq(open_rc(d, root, "x", DISK_OPEN_CREATE), 0);
    cr_assert_eq(open_rc(d, root, "x", 0), 0);
    cr_assert_eq(open_rc(d, root, "nodir/y", DISK_OPEN_CREATE), -ENOENT);
    cr_assert_eq(disk_mkdir(d, root), -EEXIST);
    char sub[CONTRACT_PATH_BYTES_MAX];
    join(sub, root, "sub");
    cr_assert_eq(disk_mkdir(d, sub), 0);
    cr_assert_eq(open_rc(d, root, "sub", 0), -EISDIR);
    cr_assert_eq(open_rc(d, root, "sub", DISK_OPEN_READONLY), -EISDIR);
    /* Two handles on one file are distinct and both work. */
    uint32_t a = open_at(d, root, "x", 0);
    uint32_t b = open_at(d, root, "x", DISK_OPEN_READONLY);
    cr_assert_neq(a, b);
    uint8_t buf[16];
    fill(buf, sizeof(buf), 5);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, a, buf, sizeof(buf), 0), 16);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, b, buf, sizeof(buf), 0), -EBADF, "read-only");
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE_FDATASYNC, b, buf, sizeof(buf), 0), -EBADF);
    cr_assert_eq(disk_allocate(d, b, 4096), -EBADF);
    cr_assert_eq(disk_truncate(d, b, 0), -EBADF);
    memset(buf, 0, sizeof(buf));
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, b, buf, sizeof(buf), 0), 16);
    cr_assert_eq(buf[3], (uint8_t)(5 * 31 + 3 * 7));
    cr_assert_eq(disk_close(d, a), 0);
    cr_assert_eq(disk_close(d, b), 0);
}

void disk_contract_bad_handles(struct disk *d, const char *root)
{
    uint64_t size;
    uint8_t buf[8] = {0};
    cr_assert_eq(disk_close(d, CONTRACT_BAD_HANDLE), -EBADF);
    cr_assert_eq(disk_size(d, CONTRACT_BAD_HANDLE, &size), -EBADF);
    cr_assert_eq(disk_allocate(d, CONTRACT_BAD_HANDLE, 10), -EBADF);
    cr_assert_eq(disk_truncate(d, CONTRACT_BAD_HANDLE, 10), -EBADF);
    cr_assert_eq(disk_pread(d, CONTRACT_BAD_HANDLE, buf, sizeof(buf), 0), -EBADF);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, CONTRACT_BAD_HANDLE, buf, sizeof(buf), 0),
                 -EBADF);
    cr_assert_eq(disk_contract_req(d, DISK_OP_FDATASYNC, CONTRACT_BAD_HANDLE, NULL, 0, 0), -EBADF);
    uint32_t f = open_at(d, root, "closed", DISK_OPEN_CREATE);
    cr_assert_eq(disk_close(d, f), 0);
    cr_assert_eq(disk_close(d, f), -EBADF, "closed twice");
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, buf, sizeof(buf), 0), -EBADF);
}

struct names {
    char name[CONTRACT_NAMES_MAX][64];
    int n;
    int stop_with;
};

static int names_add(void *arg, const char *name)
{
    struct names *ns = arg;
    cr_assert_lt(ns->n, CONTRACT_NAMES_MAX);
    cr_assert_lt(strlen(name), sizeof(ns->name[0]));
    strcpy(ns->name[ns->n++], name);
    return ns->stop_with;
}

static int names_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Lists dir and checks its entries against the sorted, comma-separated `expect`. */
static void expect_list(struct disk *d, const char *dir, const char *expect)
{
    struct names ns = {.n = 0};
    cr_assert_eq(disk_list(d, dir, names_add, &ns), 0);
    qsort(ns.name, (size_t)ns.n, sizeof(ns.name[0]), names_cmp);
    char got[CONTRACT_NAMES_MAX * 65] = "";
    for (int i = 0; i < ns.n; i++) {
        strcat(got, i > 0 ? "," : "");
        strcat(got, ns.name[i]);
    }
    cr_assert_str_eq(got, expect, "list %s", dir);
}

void disk_contract_list_and_remove(struct disk *d, const char *root)
{
    char path[CONTRACT_PATH_BYTES_MAX];
    expect_list(d, root, "");
    cr_assert_eq(open_rc(d, root, "a", DISK_OPEN_CREATE), 0);
    cr_assert_eq(open_rc(d, root, "b", DISK_OPEN_CREATE), 0);
    join(path, root, "sub");
    cr_assert_eq(disk_mkdir(d, path), 0);
    cr_assert_eq(open_rc(d, root, "sub/c", DISK_OPEN_CREATE), 0);
    expect_list(d, root, "a,b,sub");
    expect_list(d, path, "c");
    cr_assert_eq(disk_remove(d, path), -EISDIR, "remove removes files only");
    join(path, root, "a");
    cr_assert_eq(disk_remove(d, path), 0);
    cr_assert_eq(disk_remove(d, path), -ENOENT);
    expect_list(d, root, "b,sub");
    cr_assert_eq(open_rc(d, root, "a", 0), -ENOENT);
    cr_assert_eq(disk_sync_dir(d, root), 0);
    join(path, root, "nothere");
    cr_assert_eq(disk_list(d, path, names_add, &(struct names){.n = 0}), -ENOENT);
    cr_assert_eq(disk_sync_dir(d, path), -ENOENT);
    join(path, root, "b");
    cr_assert_eq(disk_list(d, path, names_add, &(struct names){.n = 0}), -ENOTDIR);
    /* A file removed while open stays readable through its handle. */
    uint32_t f = open_at(d, root, "b", 0);
    uint8_t buf[4] = {1, 2, 3, 4};
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, f, buf, 4, 0), 4);
    cr_assert_eq(disk_remove(d, path), 0);
    memset(buf, 0, sizeof(buf));
    cr_assert_eq(disk_pread(d, f, buf, 4, 0), 4);
    cr_assert_eq(buf[3], 4);
    cr_assert_eq(disk_close(d, f), 0);
    expect_list(d, root, "sub");
}

void disk_contract_list_stops_on_nonzero(struct disk *d, const char *root)
{
    cr_assert_eq(open_rc(d, root, "one", DISK_OPEN_CREATE), 0);
    cr_assert_eq(open_rc(d, root, "two", DISK_OPEN_CREATE), 0);
    cr_assert_eq(open_rc(d, root, "three", DISK_OPEN_CREATE), 0);
    struct names ns = {.n = 0, .stop_with = 7};
    cr_assert_eq(disk_list(d, root, names_add, &ns), 7, "fn's value is returned");
    cr_assert_eq(ns.n, 1, "and the listing stops there");
}

void disk_contract_mkdir_and_directories(struct disk *d, const char *root)
{
    char path[CONTRACT_PATH_BYTES_MAX];
    join(path, root, "d");
    cr_assert_eq(disk_mkdir(d, path), 0);
    cr_assert_eq(disk_mkdir(d, path), -EEXIST);
    join(path, root, "x/y");
    cr_assert_eq(disk_mkdir(d, path), -ENOENT);
    cr_assert_eq(open_rc(d, root, "d/f", DISK_OPEN_CREATE), 0);
    join(path, root, "d");
    cr_assert_eq(disk_sync_dir(d, path), 0);
    expect_list(d, path, "f");
    join(path, root, "d/f");
    cr_assert_eq(disk_mkdir(d, path), -EEXIST, "a file is in the way");
}

void disk_contract_size_truncate_allocate(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "sz", DISK_OPEN_CREATE);
    uint64_t size = 1;
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 0);
    uint8_t buf[4096];
    fill(buf, 100, 6);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE, f, buf, 100, 0), 100);
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 100);
    cr_assert_eq(disk_truncate(d, f, 10), 0);
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 10);
    cr_assert_eq(disk_contract_req(d, DISK_OP_READ, f, buf + 1000, 100, 0), 10);
    cr_assert_eq(disk_truncate(d, f, 4096), 0, "truncate grows too");
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 4096);
    memset(buf, 0xaa, sizeof(buf));
    cr_assert_eq(disk_pread(d, f, buf, sizeof(buf), 10), 4096 - 10);
    cr_assert(all_zero(buf, 4096 - 10), "growth reads as zeros");
    cr_assert_eq(disk_allocate(d, f, 8192), 0);
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 8192);
    cr_assert_eq(disk_allocate(d, f, 100), 0, "allocate never shrinks");
    cr_assert_eq(disk_allocate(d, f, 0), 0);
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 8192);
    uint8_t head[10], want[100];
    fill(want, 100, 6);
    cr_assert_eq(disk_pread(d, f, head, 10, 0), 10);
    cr_assert(memcmp(head, want, 10) == 0, "data below the sizes is kept");
    cr_assert_eq(disk_close(d, f), 0);
}

void disk_contract_reopen_sees_data(struct disk *d, const char *root)
{
    uint32_t f = open_at(d, root, "re", DISK_OPEN_CREATE);
    uint8_t wbuf[300], rbuf[300];
    fill(wbuf, sizeof(wbuf), 7);
    cr_assert_eq(disk_contract_req(d, DISK_OP_WRITE_FDATASYNC, f, wbuf, sizeof(wbuf), 0), 300);
    cr_assert_eq(disk_close(d, f), 0);
    cr_assert_eq(disk_sync_dir(d, root), 0);
    f = open_at(d, root, "re", DISK_OPEN_READONLY);
    uint64_t size = 0;
    cr_assert_eq(disk_size(d, f, &size), 0);
    cr_assert_eq(size, 300);
    cr_assert_eq(disk_pread(d, f, rbuf, sizeof(rbuf), 0), 300);
    cr_assert(memcmp(rbuf, wbuf, sizeof(wbuf)) == 0);
    cr_assert_eq(disk_close(d, f), 0);
}
