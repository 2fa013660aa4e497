/*
 * proto_dump: prints Tessera's view of FlatBuffers binaries made elsewhere (flatc -b).
 *
 *   proto_dump [--frame] FILE...
 *
 * Each file is read into a heap buffer of exactly its size (so AddressSanitizer sees any
 * read past the end), verified and decoded with proto_message_decode (as a frame, u32
 * length + buffer, with --frame; else as a bare buffer), and dumped with
 * proto_message_json. One line per file, in order: the JSON, or
 * "error: FILE: reason". Exits 1 if any file fails, 2 on bad usage.
 *
 * Used by flatc_to_tessera.py (conformance test (b)); handy by hand as well.
 */
#include "core/util/err.h"
#include "core/util/mem.h"
#include "net/proto/proto_gen.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file into *buf (malloc'ed, exactly *len bytes; 1 byte when empty). */
static int read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t err_bytes)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_bytes, "cannot open: %s", strerror(errno));
        return -1;
    }
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) {
        size = ftell(f);
    }
    if (size < 0 || size > (long)TS_FRAME_BYTES_MAX * 2 || fseek(f, 0, SEEK_SET) != 0) {
        snprintf(err, err_bytes, "cannot size the file, or it is too large");
        fclose(f);
        return -1;
    }
    uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size) {
        snprintf(err, err_bytes, "cannot read %ld bytes", size);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    *buf = data;
    *len = (size_t)size;
    return 0;
}

/* Prints one file's line; returns 0 when Tessera decoded it. */
static int dump_one(const char *path, bool frame)
{
    char err[256];
    uint8_t *buf = NULL;
    size_t len = 0;
    if (read_file(path, &buf, &len, err, sizeof(err)) != 0) {
        printf("error: %s: %s\n", path, err);
        return -1;
    }
    struct proto_message m;
    err[0] = 0;
    int rc = proto_message_decode(buf, len, frame, &m, err, sizeof(err));
    if (rc != 0) {
        printf("error: %s: %s\n", path, err[0] != 0 ? err : ts_strerror(rc));
        free(buf);
        return -1;
    }
    struct proto_json j;
    proto_json_init(&j, ts_allocator_default());
    proto_message_json(&j, m);
    rc = j.err;
    if (rc != 0) {
        printf("error: %s: JSON dump failed: %s\n", path, ts_strerror(rc));
    } else {
        printf("%s\n", j.buf);
    }
    proto_json_fini(&j);
    free(buf);
    return rc == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    int first = 1;
    bool frame = false;
    if (argc > 1 && strcmp(argv[1], "--frame") == 0) {
        frame = true;
        first = 2;
    }
    if (first >= argc) {
        fprintf(stderr, "usage: %s [--frame] FILE...\n", argv[0]);
        return 2;
    }
    int failed = 0;
    for (int i = first; i < argc; i++) {
        if (dump_one(argv[i], frame) != 0) {
            failed++;
        }
    }
    return failed == 0 ? 0 : 1;
}
