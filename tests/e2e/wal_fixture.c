/*
 * wal_fixture: writes a known WAL into a directory for tessera_admin_test.sh, then
 * optionally damages it.
 *
 *   wal_fixture DIR [--tear] [--flip OFFSET [--segment SEQ]]
 *
 * The log is written through storage/wal on the io_uring backend with 64 KiB segments
 * (the minimum), so that it spans several segments and each new segment opens with
 * GROUP_STATE records. Every step is flushed and waited for before the next one, so the
 * batches, and therefore every offset, are the same on every run.
 *
 * The sequence: 40 rounds in which groups 1, 2 and 3 each append 2 entries (term 1,
 * then 2 from round 20 on) and group 1 saves its hard state; then group 2 truncates its
 * last 2 entries and appends 2 in a new term; group 3 compacts to index 10; group 9
 * installs a snapshot at (100, 5), saves a hard state and is removed. Group 1 keeps
 * every entry, so no segment is ever deleted and every record written stays visible.
 *
 * Damage, after the WAL is closed, with plain pwrite:
 *   --tear         writes 200 bytes of garbage right after the last batch (what a write
 *                  torn by a crash leaves); recovery must report it and cut it.
 *   --flip OFFSET  flips bit 4 of byte OFFSET of segment SEQ (default 1).
 *
 * Prints, on stdout, the records it made by type ("expect ENTRY 242"...), then "tear SEQ
 * OFFSET" or "flip SEQ OFFSET" for the damage done. Exits 0, 1 on failure, 2 on usage
 * errors, 77 when io_uring is not available.
 */
#include "core/util/err.h"
#include "core/util/mem.h"
#include "storage/disk/disk_uring.h"
#include "storage/wal/wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE_SEGMENT_BYTES (64u * 1024u)
#define FIXTURE_ROUNDS 40u
#define FIXTURE_DATA_BYTES_MAX 1024u

struct fixture {
    struct disk *disk;
    struct wal *wal;
    uint64_t last[16];                  /* last index per group id (ids are small) */
    uint64_t made[WAL_GROUP_STATE + 1]; /* records staged, by type */
    uint8_t data[FIXTURE_DATA_BYTES_MAX];
};

static int fail(const char *what, int rc)
{
    fprintf(stderr, "wal_fixture: %s: %s\n", what, ts_strerror(rc));
    return 1;
}

/* Flushes and runs the disk until everything staged is durable. */
static int settle(struct fixture *f)
{
    int rc = wal_flush(f->wal);
    while (rc == 0 && !wal_idle(f->wal)) {
        rc = disk_run(f->disk, true);
        rc = rc < 0 ? rc : wal_error(f->wal);
    }
    return rc;
}

static uint32_t entry_bytes(uint64_t group, uint64_t index)
{
    return 100u + (uint32_t)((group * 37u + index * 13u) % 900u);
}

static int append(struct fixture *f, uint64_t group, uint64_t index, uint64_t term, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        uint64_t idx = index + i;
        uint32_t len = entry_bytes(group, idx);
        for (uint32_t b = 0; b < len; b++) {
            f->data[b] = (uint8_t)(group * 31u + idx * 7u + term + b);
        }
        struct wal_entry e = {.term = term, .index = idx, .data = f->data, .len = len};
        int rc = wal_append(f->wal, group, &e, 1);
        if (rc != 0) {
            return rc;
        }
        f->made[WAL_ENTRY]++;
        f->last[group] = idx;
    }
    return 0;
}

static int write_rounds(struct fixture *f)
{
    for (uint32_t round = 0; round < FIXTURE_ROUNDS; round++) {
        uint64_t term = round < FIXTURE_ROUNDS / 2 ? 1 : 2;
        for (uint64_t g = 1; g <= 3; g++) {
            int rc = append(f, g, f->last[g] + 1, term, 2);
            if (rc != 0) {
                return rc;
            }
        }
        struct wal_hard_state hs = {.term = term, .vote = 1, .commit = f->last[1]};
        int rc = wal_save_hard_state(f->wal, 1, &hs);
        if (rc != 0) {
            return rc;
        }
        f->made[WAL_HARD_STATE]++;
        rc = settle(f);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int write_changes(struct fixture *f)
{
    uint64_t cut = f->last[2] - 1; /* drops the last 2 entries */
    int rc = wal_truncate(f->wal, 2, cut);
    f->made[WAL_TRUNCATE]++;
    f->last[2] = cut - 1;
    if (rc == 0) {
        rc = append(f, 2, cut, 3, 2);
    }
    if (rc == 0 && (rc = settle(f)) == 0) {
        rc = wal_compact(f->wal, 3, 10);
        f->made[WAL_COMPACT]++;
    }
    if (rc == 0 && (rc = settle(f)) == 0) {
        rc = wal_snapshot(f->wal, 9, 100, 5);
        f->made[WAL_SNAPSHOT]++;
    }
    struct wal_hard_state hs = {.term = 5, .vote = 2, .commit = 100};
    if (rc == 0 && (rc = wal_save_hard_state(f->wal, 9, &hs)) == 0) {
        f->made[WAL_HARD_STATE]++;
        rc = settle(f);
    }
    if (rc == 0 && (rc = wal_remove_group(f->wal, 9)) == 0) {
        f->made[WAL_REMOVE]++;
        rc = settle(f);
    }
    return rc;
}

static int write_log(struct fixture *f, const char *dir)
{
    char errmsg[512] = "";
    struct wal_config cfg = {.dir = dir, .segment_bytes = FIXTURE_SEGMENT_BYTES};
    int rc = wal_open(&cfg, f->disk, ts_allocator_default(), &f->wal, errmsg, sizeof(errmsg));
    if (rc != 0) {
        fprintf(stderr, "wal_fixture: wal_open: %s\n", errmsg);
        return rc;
    }
    struct wal_group_info info;
    if (wal_group_info(f->wal, 1, &info) == 0) {
        fprintf(stderr, "wal_fixture: %s already holds a log\n", dir);
        wal_close(f->wal);
        return TS_EINVAL;
    }
    rc = write_rounds(f);
    if (rc == 0) {
        rc = write_changes(f);
    }
    wal_close(f->wal);
    f->wal = NULL;
    return rc;
}

/* Where the last batch ends: the end of the last record wal_inspect reports. */
struct log_end {
    uint64_t seq;
    uint64_t offset;
};

static int on_record(void *arg, const struct wal_record_info *r)
{
    struct log_end *end = arg;
    end->seq = r->seq;
    end->offset = r->offset + ((WAL_RECORD_HEADER_BYTES + (uint64_t)r->len + 7) & ~7ull);
    return 0;
}

static int segment_pwrite(const char *dir, uint64_t seq, uint64_t offset, bool flip)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%016" PRIx64 ".wal", dir, seq);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    uint8_t buf[200];
    size_t n = sizeof(buf);
    if (flip) {
        n = 1;
        if (pread(fd, buf, 1, (off_t)offset) != 1) {
            close(fd);
            return TS_EINVAL;
        }
        buf[0] ^= 0x10;
    } else {
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)(0xa5u ^ (i * 29u));
        }
    }
    int rc = 0;
    ssize_t w = pwrite(fd, buf, n, (off_t)offset);
    if (w < 0) {
        rc = -errno;
    } else if (w != (ssize_t)n) {
        rc = -EIO;
    } else if (fsync(fd) != 0) {
        rc = -errno;
    }
    close(fd);
    return rc;
}

static int tear(struct fixture *f, const char *dir)
{
    struct log_end end = {0};
    char errmsg[512] = "";
    int rc = wal_inspect(dir, f->disk, ts_allocator_default(), on_record, NULL, &end, NULL, errmsg,
                         sizeof(errmsg));
    if (rc != 0) {
        fprintf(stderr, "wal_fixture: wal_inspect: %s\n", errmsg);
        return rc;
    }
    rc = segment_pwrite(dir, end.seq, end.offset, false);
    if (rc == 0) {
        printf("tear %016" PRIx64 " %" PRIu64 "\n", end.seq, end.offset);
    }
    return rc;
}

static void print_expect(const struct fixture *f)
{
    for (uint8_t t = WAL_ENTRY; t < WAL_GROUP_STATE; t++) {
        printf("expect %s %" PRIu64 "\n", wal_record_type_name(t), f->made[t]);
    }
}

struct options {
    const char *dir;
    bool tear;
    bool flip;
    uint64_t flip_offset;
    uint64_t flip_seq;
};

static int parse(int argc, char **argv, struct options *o)
{
    *o = (struct options){.flip_seq = 1};
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (strcmp(argv[i], "--tear") == 0) {
            o->tear = true;
        } else if (strcmp(argv[i], "--flip") == 0 && more) {
            o->flip = true;
            o->flip_offset = strtoull(argv[++i], NULL, 0);
        } else if (strcmp(argv[i], "--segment") == 0 && more) {
            o->flip_seq = strtoull(argv[++i], NULL, 0);
        } else if (argv[i][0] != '-' && o->dir == NULL) {
            o->dir = argv[i];
        } else {
            return -1;
        }
    }
    return o->dir == NULL ? -1 : 0;
}

int main(int argc, char **argv)
{
    struct options o;
    if (parse(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: wal_fixture DIR [--tear] [--flip OFFSET [--segment SEQ]]\n");
        return 2;
    }
    struct fixture f = {0};
    struct disk_uring_config dcfg = {0};
    int rc = disk_uring_create(&dcfg, ts_allocator_default(), &f.disk);
    if (rc == -ENOSYS || rc == -EPERM) {
        fprintf(stderr, "wal_fixture: io_uring unavailable (%s): skipped\n", ts_strerror(rc));
        return 77;
    }
    if (rc != 0) {
        return fail("disk_uring_create", rc);
    }
    rc = write_log(&f, o.dir);
    if (rc == 0) {
        print_expect(&f);
    }
    if (rc == 0 && o.tear) {
        rc = tear(&f, o.dir);
    }
    if (rc == 0 && o.flip) {
        rc = segment_pwrite(o.dir, o.flip_seq, o.flip_offset, true);
        if (rc == 0) {
            printf("flip %016" PRIx64 " %" PRIu64 "\n", o.flip_seq, o.flip_offset);
        }
    }
    disk_destroy(f.disk);
    return rc == 0 ? 0 : fail(o.dir, rc);
}
