/*
 * The contract every storage/disk backend must meet (STYLE R17: the modules above cannot
 * tell the backends apart), written once and run against each backend by its suite.
 *
 * Each check takes a fresh, empty disk and `root`, an existing, empty directory on it,
 * under which it creates whatever it needs. It leaves everything it opened closed and
 * nothing in flight, so the caller can destroy the disk right after. A check fails
 * through Criterion's assertions.
 */
#ifndef TS_TESTS_UNIT_STORAGE_DISK_DISK_CONTRACT_H
#define TS_TESTS_UNIT_STORAGE_DISK_DISK_CONTRACT_H

#include "storage/disk/disk.h"

/* X(name): one line per check; the suites expand it into one Test each. */
#define DISK_CONTRACT_CHECKS(X)                                                                    \
    X(write_read_round_trip)                                                                       \
    X(write_fdatasync_completes_once)                                                              \
    X(fdatasync_alone)                                                                             \
    X(reads_past_eof_are_short)                                                                    \
    X(many_requests_in_flight)                                                                     \
    X(callbacks_submit_new_requests)                                                               \
    X(run_with_nothing_in_flight)                                                                  \
    X(zero_length_requests)                                                                        \
    X(open_flags)                                                                                  \
    X(bad_handles)                                                                                 \
    X(list_and_remove)                                                                             \
    X(list_stops_on_nonzero)                                                                       \
    X(mkdir_and_directories)                                                                       \
    X(size_truncate_allocate)                                                                      \
    X(reopen_sees_data)

#define DISK_CONTRACT_DECLARE_(name) void disk_contract_##name(struct disk *d, const char *root);
DISK_CONTRACT_CHECKS(DISK_CONTRACT_DECLARE_)
#undef DISK_CONTRACT_DECLARE_

/* Runs the disk until nothing is in flight; returns the callbacks run. */
int disk_contract_drain(struct disk *d);

/* Submits one request, checks that it completes exactly once (and not from disk_submit)
 * and returns its res. */
int32_t disk_contract_req(struct disk *d, uint8_t op, uint32_t file, void *buf, uint32_t len,
                          uint64_t offset);

#endif
