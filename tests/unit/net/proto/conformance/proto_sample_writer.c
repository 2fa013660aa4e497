/*
 * proto_sample_writer: writes random Tessera messages for the tests that read them
 * with other implementations (flatc_to_tessera.py, python_reader_test.py).
 *
 *   proto_sample_writer OUTDIR [--per-variant N] [--first-seed S]
 *
 * For every variant V of proto_gen_rand.h and seed s in S .. S+N-1 it writes
 *   OUTDIR/<V>_s<s>.bin    the message as a frame (u32 length + buffer)
 *   OUTDIR/<V>_s<s>.json   Tessera's JSON of that frame (proto_message_json)
 * with the dots of V replaced by '_' ("Request_PutRequest_s3.bin"). The seed in the name
 * rebuilds the message: proto_oracle_test --variant V --first-seed s --seeds 1.
 * Old .bin and .json files in OUTDIR are removed first, so the directory holds exactly
 * one run. Each written pair counts as passed; a message Tessera cannot build or
 * decode again counts as failed. Ends with "N passed, M failed".
 */
#include "tests/unit/net/proto/conformance/cf_tessera.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SAMPLE_PER_VARIANT_DEFAULT 20u
#define SAMPLE_FIRST_SEED_DEFAULT 1000u
#define SAMPLE_PATH_BYTES_MAX 4096u

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -errno;
    }
    size_t n = fwrite(data, 1, len, f);
    int rc = fclose(f);
    return n == len && rc == 0 ? 0 : -EIO;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Creates dir if needed and removes the .bin and .json files of a previous run. */
static int prepare_dir(const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        return -errno;
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        return -errno;
    }
    struct dirent *e;
    char path[SAMPLE_PATH_BYTES_MAX];
    while ((e = readdir(d)) != NULL) {
        if (has_suffix(e->d_name, ".bin") || has_suffix(e->d_name, ".json")) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
    return 0;
}

/* Writes one sample; returns 0, or prints why not and returns -1. */
static int write_sample(struct cf_codec *c, const char *dir, uint32_t v, uint64_t seed)
{
    const uint8_t *frame = NULL;
    size_t len = 0;
    int rc = cf_build_random(c, seed, v, true, &frame, &len);
    if (rc != 0) {
        printf("FAIL variant %" PRIu32 " (%s) seed %" PRIu64 ": build error %d\n", v,
               cf_variant_name(v), seed, rc);
        return -1;
    }
    /* Decode a copy: the codec's view of the frame is reused by the JSON dump. */
    uint8_t *copy = malloc(len);
    if (copy == NULL) {
        printf("FAIL: out of memory\n");
        return -1;
    }
    memcpy(copy, frame, len);
    const char *json = NULL;
    char errmsg[256];
    rc = cf_decode_json(c, copy, len, true, &json, errmsg, sizeof(errmsg));
    if (rc != 0) {
        printf("FAIL variant %" PRIu32 " (%s) seed %" PRIu64
               ": Tessera rejects its own frame: %s\n",
               v, cf_variant_name(v), seed, errmsg);
        free(copy);
        return -1;
    }
    char name[128];
    snprintf(name, sizeof(name), "%s", cf_variant_name(v));
    for (char *p = name; *p != 0; p++) {
        *p = *p == '.' ? '_' : *p;
    }
    char path[SAMPLE_PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "%s/%s_s%" PRIu64 ".bin", dir, name, seed);
    rc = write_file(path, copy, len);
    free(copy);
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/%s_s%" PRIu64 ".json", dir, name, seed);
        rc = write_file(path, json, strlen(json));
    }
    if (rc != 0) {
        printf("FAIL: cannot write %s: %s\n", path, strerror(-rc));
        return -1;
    }
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || end == s || *end != 0 || *s == '-') {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t per_variant = SAMPLE_PER_VARIANT_DEFAULT;
    uint64_t first_seed = SAMPLE_FIRST_SEED_DEFAULT;
    int bad = argc < 2 || argc % 2 != 0;
    for (int i = 2; !bad && i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--per-variant") == 0) {
            bad = parse_u64(argv[i + 1], &per_variant) != 0;
        } else if (strcmp(argv[i], "--first-seed") == 0) {
            bad = parse_u64(argv[i + 1], &first_seed) != 0;
        } else {
            bad = 1;
        }
    }
    if (bad) {
        fprintf(stderr, "usage: %s OUTDIR [--per-variant N] [--first-seed S]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int rc = prepare_dir(dir);
    struct cf_codec *c = rc == 0 ? cf_codec_new() : NULL;
    if (c == NULL) {
        printf("FAIL: cannot prepare %s: %s\n0 passed, 1 failed\n", dir,
               rc != 0 ? strerror(-rc) : "out of memory");
        return 1;
    }
    uint64_t passed = 0;
    uint64_t failed = 0;
    for (uint32_t v = 0; v < cf_variant_count(); v++) {
        for (uint64_t s = first_seed; s < first_seed + per_variant; s++) {
            if (write_sample(c, dir, v, s) == 0) {
                passed++;
            } else {
                failed++;
            }
        }
    }
    cf_codec_free(c);
    printf("proto_sample_writer: %" PRIu32 " variants x %" PRIu64 " seeds from %" PRIu64 " in %s\n",
           cf_variant_count(), per_variant, first_seed, dir);
    printf("%" PRIu64 " passed, %" PRIu64 " failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
