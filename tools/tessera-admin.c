/*
 * tessera-admin: offline inspection of a shard's files.
 *
 *   tessera-admin wal dump [--json] DIR   one line per record of the log in DIR, then
 *                                         recovery's report lines on stderr
 *   tessera-admin wal check DIR           reads the log as recovery would and prints a
 *                                         summary; exit 0 sound, 1 corrupt, 2 usage
 *   tessera-admin btree check FILE        verifies a B-tree file (every page's CRC and
 *                                         structure, each page reached once, key order
 *                                         across pages, height, overflow chains, subtree
 *                                         sizes, the free list, no page leaked) and
 *                                         prints a summary; exit 0 sound, 1 corrupt
 *   tessera-admin btree stat [--json] FILE  the same check, printing its numbers
 *
 * The main is thin (STYLE R1): it parses the command line, calls storage/wal's
 * wal_inspect() or storage/btree's btree_check(), which read the files exactly as
 * wal_open() and btree_open() would without changing anything, and prints what comes
 * back. Nothing here knows the on-disk formats.
 *
 * Exit codes: 0 success (a torn tail is normal after a crash and still exits 0; so is a
 * B-tree file that never completed a checkpoint), 1 the data is corrupt or cannot be
 * read, 2 usage error (unknown command or option, missing or extra argument, DIR not a
 * directory, FILE not a regular file).
 */
#include "core/util/assert.h"
#include "core/util/err.h"
#include "core/util/map64.h"
#include "core/util/mem.h"
#include "storage/btree/btree_check.h"
#include "storage/disk/disk_uring.h"
#include "storage/wal/wal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum {
    ADMIN_EXIT_OK = 0,
    ADMIN_EXIT_FAIL = 1,
    ADMIN_EXIT_USAGE = 2,
};

#define ADMIN_TYPES_MAX (WAL_GROUP_STATE + 1)

static const char usage_main[] =
    "usage: tessera-admin COMMAND ...\n"
    "\n"
    "Offline inspection of a shard's files. Commands:\n"
    "  wal dump [--json] DIR   print every record of the write-ahead log in DIR\n"
    "  wal check DIR           verify the log in DIR as recovery would\n"
    "  btree check FILE        verify a B-tree file\n"
    "  btree stat [--json] FILE  print a B-tree file's statistics\n"
    "\n"
    "Run 'tessera-admin COMMAND --help' for a command's details.\n"
    "Exit codes: 0 success, 1 corrupt or unreadable data, 2 usage error.\n";

static const char usage_wal[] =
    "usage: tessera-admin wal dump [--json] DIR\n"
    "       tessera-admin wal check DIR\n"
    "\n"
    "DIR is a shard's WAL directory (the <seq>.wal segment files). Nothing is changed:\n"
    "a torn tail is reported, not cut.\n";

static const char usage_dump[] =
    "usage: tessera-admin wal dump [--json] DIR\n"
    "\n"
    "Prints one line per record, in log order: segment, offset in the segment file, LSN,\n"
    "type, group, term, index and payload bytes ('-' where a type has no term or index).\n"
    "Each write is one batch, listed first as its BATCH record. With --json, prints one\n"
    "JSON object per record instead (null where a type has no term or index).\n"
    "Recovery's report (segments found, a torn tail) goes to stderr.\n"
    "Exit codes: 0 the whole log was read, 1 corrupt or unreadable, 2 usage error.\n";

static const char usage_check[] =
    "usage: tessera-admin wal check DIR\n"
    "\n"
    "Reads the log as recovery would and prints a summary: segments, records by type,\n"
    "groups, the LSN range and the torn tail if there is one.\n"
    "Exit codes: 0 the log is sound (a torn tail included), 1 corrupt or unreadable\n"
    "(the message names the file, the offset and the group), 2 usage error.\n";

/* What one wal_inspect() run accumulates for the command that asked for it. */
struct admin_scan {
    bool json;          /* dump: print JSON objects */
    bool print_records; /* dump: print each record */
    uint64_t records;
    uint64_t by_type[ADMIN_TYPES_MAX];
    uint64_t lsn_first;
    uint64_t lsn_end;
    uint64_t seq_first;
    uint64_t seq_last;
    struct ts_map64 groups_seen; /* values are a dummy non-NULL pointer */
    int map_err;
    char torn[512]; /* recovery's torn tail line, if any */
};

static bool has_term(uint8_t type)
{
    return type == WAL_ENTRY || type == WAL_HARD_STATE || type == WAL_COMPACT ||
           type == WAL_SNAPSHOT || type == WAL_GROUP_STATE;
}

static bool has_index(uint8_t type)
{
    return type == WAL_ENTRY || type == WAL_TRUNCATE || type == WAL_COMPACT ||
           type == WAL_SNAPSHOT || type == WAL_GROUP_STATE;
}

static void print_header(void)
{
    printf("%-16s %10s %14s  %-11s %10s %8s %10s %8s\n", "SEGMENT", "OFFSET", "LSN", "TYPE",
           "GROUP", "TERM", "INDEX", "LEN");
}

static void print_text(const struct wal_record_info *r)
{
    char term[24] = "-";
    char index[24] = "-";
    if (has_term(r->type)) {
        snprintf(term, sizeof(term), "%" PRIu64, r->term);
    }
    if (has_index(r->type)) {
        snprintf(index, sizeof(index), "%" PRIu64, r->index);
    }
    printf("%016" PRIx64 " %10" PRIu64 " %14" PRIu64 "  %-11s %10" PRIu64 " %8s %10s %8" PRIu32
           "\n",
           r->seq, r->offset, r->lsn, wal_record_type_name(r->type), r->group, term, index, r->len);
}

static void print_json(const struct wal_record_info *r)
{
    char term[24] = "null";
    char index[24] = "null";
    if (has_term(r->type)) {
        snprintf(term, sizeof(term), "%" PRIu64, r->term);
    }
    if (has_index(r->type)) {
        snprintf(index, sizeof(index), "%" PRIu64, r->index);
    }
    /* The type names are fixed identifiers: nothing needs escaping. */
    printf("{\"segment\":%" PRIu64 ",\"offset\":%" PRIu64 ",\"lsn\":%" PRIu64
           ",\"type\":\"%s\",\"group\":%" PRIu64 ",\"term\":%s,\"index\":%s,\"len\":%" PRIu32 "}\n",
           r->seq, r->offset, r->lsn, wal_record_type_name(r->type), r->group, term, index, r->len);
}

/* wal_inspect's record callback: counts, and prints for dump. */
static int on_record(void *arg, const struct wal_record_info *r)
{
    struct admin_scan *s = arg;
    TS_ASSERT(r->lsn >= s->lsn_end); /* wal_inspect reports records in log order */
    TS_ASSERT(r->offset >= WAL_SEGMENT_HEADER_BYTES);
    if (s->records == 0) {
        s->lsn_first = r->lsn;
        s->seq_first = r->seq;
    }
    s->records++;
    s->by_type[r->type < ADMIN_TYPES_MAX ? r->type : 0]++;
    s->lsn_end = r->lsn + ((WAL_RECORD_HEADER_BYTES + (uint64_t)r->len + 7) & ~7ull);
    s->seq_last = r->seq;
    if (r->group != 0 && s->map_err == 0 && ts_map64_get(&s->groups_seen, r->group) == NULL) {
        s->map_err = ts_map64_put(&s->groups_seen, r->group, s);
    }
    if (s->print_records) {
        if (s->json) {
            print_json(r);
        } else {
            print_text(r);
        }
    }
    return 0;
}

/* wal_inspect's report callback: every line to stderr; the torn tail is kept. */
static void on_report(void *arg, const char *line)
{
    struct admin_scan *s = arg;
    fflush(stdout); /* keep the report after the records it follows */
    fprintf(stderr, "%s\n", line);
    if (strstr(line, "torn tail") != NULL && s->torn[0] == 0) {
        snprintf(s->torn, sizeof(s->torn), "%s", line);
    }
}

static int usage_error(const char *usage, const char *fmt, const char *what)
{
    fprintf(stderr, "tessera-admin: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n%s", usage);
    return ADMIN_EXIT_USAGE;
}

/* The io_uring disk both inspections read through; NULL (reported) when it cannot be
 * set up. */
static struct disk *open_disk(const char *module, const char *cmd,
                              const struct ts_allocator *alloc)
{
    struct disk_uring_config dcfg = {0};
    struct disk *disk = NULL;
    int rc = disk_uring_create(&dcfg, alloc, &disk);
    if (rc != 0) {
        fprintf(stderr, "tessera-admin: %s %s: cannot set up io_uring: %s\n", module, cmd,
                ts_strerror(rc));
        return NULL;
    }
    return disk;
}

/* Runs wal_inspect over dir with the io_uring backend. Returns an exit code. */
static int inspect(const char *cmd, const char *dir, struct admin_scan *s, struct wal_stats *st)
{
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "tessera-admin: wal %s: %s is not a directory\n", cmd, dir);
        return ADMIN_EXIT_USAGE;
    }
    const struct ts_allocator *alloc = ts_allocator_default();
    struct disk *disk = open_disk("wal", cmd, alloc);
    if (disk == NULL) {
        return ADMIN_EXIT_FAIL;
    }
    int rc;
    char errmsg[1024] = "";
    rc = wal_inspect(dir, disk, alloc, on_record, on_report, s, st, errmsg, sizeof(errmsg));
    disk_destroy(disk);
    fflush(stdout);
    if (rc == 0 && s->map_err != 0) {
        rc = s->map_err;
        snprintf(errmsg, sizeof(errmsg), "counting groups: %s", ts_strerror(rc));
    }
    if (rc != 0) {
        fprintf(stderr, "tessera-admin: wal %s: %s\n", cmd,
                errmsg[0] != 0 ? errmsg : ts_strerror(rc));
        return ADMIN_EXIT_FAIL;
    }
    return ADMIN_EXIT_OK;
}

static void print_summary(const char *dir, const struct admin_scan *s, const struct wal_stats *st)
{
    TS_ASSERT(s->records == 0 || s->lsn_end > s->lsn_first);
    TS_ASSERT(s->records == 0 || st->segments > 0);
    printf("wal check %s: ok\n", dir);
    if (s->records == 0) {
        printf("segments: %" PRIu32 "\nrecords: 0 (empty log)\n", st->segments);
    } else {
        printf("segments: %" PRIu32 " (%016" PRIx64 ".wal .. %016" PRIx64 ".wal)\n", st->segments,
               s->seq_first, s->seq_last);
        printf("records: %" PRIu64 "\n", s->records);
        for (uint8_t t = WAL_BATCH; t < ADMIN_TYPES_MAX; t++) {
            if (s->by_type[t] > 0) {
                printf("  %-11s %10" PRIu64 "\n", wal_record_type_name(t), s->by_type[t]);
            }
        }
        if (s->by_type[0] > 0) {
            printf("  %-11s %10" PRIu64 "\n", "?", s->by_type[0]);
        }
    }
    printf("groups: %" PRIu32 " live, %" PRIu32 " named in the log\n", st->groups,
           s->groups_seen.count);
    if (s->records > 0) {
        printf("lsn: %" PRIu64 " .. %" PRIu64 "\n", s->lsn_first, s->lsn_end);
    }
    printf("torn tail: %s\n", s->torn[0] != 0 ? s->torn : "none");
}

/* tessera-admin wal dump|check [--json] DIR */
static int cmd_wal(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(usage_wal, argc < 1 ? stderr : stdout);
        return argc < 1 ? ADMIN_EXIT_USAGE : ADMIN_EXIT_OK;
    }
    bool dump = strcmp(argv[0], "dump") == 0;
    if (!dump && strcmp(argv[0], "check") != 0) {
        return usage_error(usage_wal, "unknown wal command '%s'", argv[0]);
    }
    const char *usage = dump ? usage_dump : usage_check;
    struct admin_scan s = {.print_records = dump};
    ts_map64_init(&s.groups_seen, ts_allocator_default());
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return ADMIN_EXIT_OK;
        } else if (dump && strcmp(argv[i], "--json") == 0) {
            s.json = true;
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            return usage_error(usage, "unknown option '%s'", argv[i]);
        } else if (dir != NULL) {
            return usage_error(usage, "unexpected argument '%s'", argv[i]);
        } else {
            dir = argv[i];
        }
    }
    if (dir == NULL) {
        return usage_error(usage, "%s", "missing DIR");
    }
    if (dump && !s.json) {
        print_header();
    }
    struct wal_stats st = {0};
    int code = inspect(argv[0], dir, &s, &st);
    if (code == ADMIN_EXIT_OK && !dump) {
        print_summary(dir, &s, &st);
    }
    ts_map64_fini(&s.groups_seen);
    return code;
}

static const char usage_btree[] = "usage: tessera-admin btree check FILE\n"
                                  "       tessera-admin btree stat [--json] FILE\n"
                                  "\n"
                                  "FILE is a shard's B-tree file. Nothing is changed.\n";

static const char usage_btree_check[] =
    "usage: tessera-admin btree check FILE\n"
    "\n"
    "Verifies the newest checkpoint of a B-tree file: every page reachable from the root\n"
    "(its CRC and structure, reached exactly once, keys within its parent's bounds, the\n"
    "meta's height), overflow chains (exactly their value's length), subtree sizes (each\n"
    "branch cell's, and the meta's tree bytes), the free list (its chain of pages and the\n"
    "pages it lists, none reachable, none twice), page numbers below the page count, and\n"
    "that no page is leaked (every page is reachable or free). Prints a summary. A file\n"
    "that never completed a checkpoint is sound.\n"
    "Exit codes: 0 sound, 1 corrupt or unreadable (the message names the file, the page\n"
    "and the reason), 2 usage error.\n";

static const char usage_btree_stat[] =
    "usage: tessera-admin btree stat [--json] FILE\n"
    "\n"
    "Checks the file as 'btree check' does and prints its numbers, one 'name: value' per\n"
    "line: page size, checkpoint, height, pages by type (freelist_pages: the free list's\n"
    "own pages; free_pages: the pages it lists), keys, key and value bytes, tree_bytes\n"
    "(the meta's logical size: key plus value bytes), fill (used bytes over page bytes of\n"
    "leaves and branches) and the user blob's length. With --json, prints one JSON object\n"
    "instead.\n"
    "Exit codes: 0 sound, 1 corrupt or unreadable, 2 usage error.\n";

/* Runs btree_check over file with the io_uring backend. Returns an exit code. */
static int btree_inspect(const char *cmd, const char *file, struct btree_check_report *r)
{
    struct stat sb;
    if (stat(file, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "tessera-admin: btree %s: %s is not a regular file\n", cmd, file);
        return ADMIN_EXIT_USAGE;
    }
    const struct ts_allocator *alloc = ts_allocator_default();
    struct disk *disk = open_disk("btree", cmd, alloc);
    if (disk == NULL) {
        return ADMIN_EXIT_FAIL;
    }
    int rc;
    char errmsg[1024] = "";
    rc = btree_check(file, disk, alloc, r, errmsg, sizeof(errmsg));
    disk_destroy(disk);
    if (rc != 0 && errmsg[0] != 0) {
        fprintf(stderr, "tessera-admin: %s\n", errmsg); /* it names the command and the file */
    } else if (rc != 0) {
        fprintf(stderr, "tessera-admin: btree %s: %s: %s\n", cmd, file, ts_strerror(rc));
    }
    if (rc != 0) {
        return ADMIN_EXIT_FAIL;
    }
    return ADMIN_EXIT_OK;
}

/* Pages the check accounted for: reachable (meta pages included) or free. A sound file
 * accounts for every page below its page count. */
static uint64_t btree_accounted(const struct btree_check_report *r)
{
    return r->meta_pages + r->branch_pages + r->leaf_pages + r->overflow_pages + r->freelist_pages +
           r->free_pages;
}

static void print_btree_summary(const char *file, const struct btree_check_report *r)
{
    TS_ASSERT(r->never_checkpointed || btree_accounted(r) == r->page_count);
    TS_ASSERT(r->never_checkpointed || r->page_bytes > 0);
    if (r->never_checkpointed) {
        printf("btree check %s: ok (never checkpointed: opens as an empty tree)\n", file);
        return;
    }
    printf("btree check %s: ok\n", file);
    printf("checkpoint: %" PRIu64 " (meta page %" PRIu64 ")\n", r->checkpoint_id, r->meta_page);
    printf("page size: %" PRIu32 "\nheight: %" PRIu32 "\n", r->page_bytes, r->height);
    printf("pages: %" PRIu64 " (meta %" PRIu64 ", branch %" PRIu64 ", leaf %" PRIu64
           ", overflow %" PRIu64 ", freelist %" PRIu64 ", free %" PRIu64 ")\n",
           r->page_count, r->meta_pages, r->branch_pages, r->leaf_pages, r->overflow_pages,
           r->freelist_pages, r->free_pages);
    printf("keys: %" PRIu64 " (%" PRIu64 " key bytes, %" PRIu64 " value bytes)\n", r->keys,
           r->key_bytes, r->value_bytes);
    printf("tree bytes: %" PRIu64 "\n", r->tree_bytes);
    printf("fill: %.1f%%\n", 100.0 * btree_check_fill(r));
}

static void print_btree_stat(const struct btree_check_report *r, bool json)
{
    TS_ASSERT(r->never_checkpointed || btree_accounted(r) == r->page_count);
    TS_ASSERT(r->never_checkpointed || r->tree_bytes == r->key_bytes + r->value_bytes);
    /* One table for both forms: the names are fixed identifiers (nothing to escape). */
    const struct {
        const char *name;
        uint64_t value;
    } f[] = {
        {"file_bytes", r->file_bytes},
        {"page_bytes", r->page_bytes},
        {"checkpoint_id", r->checkpoint_id},
        {"meta_page", r->meta_page},
        {"root_page", r->root_page},
        {"height", r->height},
        {"page_count", r->page_count},
        {"meta_pages", r->meta_pages},
        {"branch_pages", r->branch_pages},
        {"leaf_pages", r->leaf_pages},
        {"overflow_pages", r->overflow_pages},
        {"freelist_pages", r->freelist_pages},
        {"free_pages", r->free_pages},
        {"keys", r->keys},
        {"key_bytes", r->key_bytes},
        {"value_bytes", r->value_bytes},
        {"tree_bytes", r->tree_bytes},
        {"branch_used_bytes", r->branch_used_bytes},
        {"leaf_used_bytes", r->leaf_used_bytes},
        {"user_len", r->user_len},
    };
    const char *never = r->never_checkpointed ? "true" : "false";
    printf(json ? "{\"never_checkpointed\":%s" : "never_checkpointed: %s\n", never);
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        printf(json ? ",\"%s\":%" PRIu64 : "%s: %" PRIu64 "\n", f[i].name, f[i].value);
    }
    printf(json ? ",\"fill\":%.4f}\n" : "fill: %.4f\n", btree_check_fill(r));
}

/* tessera-admin btree check|stat [--json] FILE */
static int cmd_btree(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        fputs(usage_btree, argc < 1 ? stderr : stdout);
        return argc < 1 ? ADMIN_EXIT_USAGE : ADMIN_EXIT_OK;
    }
    bool stat_cmd = strcmp(argv[0], "stat") == 0;
    if (!stat_cmd && strcmp(argv[0], "check") != 0) {
        return usage_error(usage_btree, "unknown btree command '%s'", argv[0]);
    }
    const char *usage = stat_cmd ? usage_btree_stat : usage_btree_check;
    const char *file = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return ADMIN_EXIT_OK;
        } else if (stat_cmd && strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            return usage_error(usage, "unknown option '%s'", argv[i]);
        } else if (file != NULL) {
            return usage_error(usage, "unexpected argument '%s'", argv[i]);
        } else {
            file = argv[i];
        }
    }
    if (file == NULL) {
        return usage_error(usage, "%s", "missing FILE");
    }
    struct btree_check_report r;
    int code = btree_inspect(argv[0], file, &r);
    if (code == ADMIN_EXIT_OK && stat_cmd) {
        print_btree_stat(&r, json);
    } else if (code == ADMIN_EXIT_OK) {
        print_btree_summary(file, &r);
    }
    return code;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return ADMIN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return ADMIN_EXIT_OK;
    }
    if (strcmp(cmd, "wal") == 0) {
        return cmd_wal(argc - 2, argv + 2);
    }
    if (strcmp(cmd, "btree") == 0) {
        return cmd_btree(argc - 2, argv + 2);
    }
    return usage_error(usage_main, "unknown command '%s'", cmd);
}
