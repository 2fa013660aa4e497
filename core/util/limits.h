/*
 * Every limit in Tessera, each with its reason (STYLE R19).
 *
 * Going over a limit returns an explicit error (usually TS_ETOOBIG or TS_EFULL);
 * nothing grows silently. Relations between limits are checked at compile time below.
 * Names end in the unit, then _max or _min.
 */
#ifndef TS_CORE_UTIL_LIMITS_H
#define TS_CORE_UTIL_LIMITS_H

/* Keys are paths and identifiers (etcd and ZooKeeper keys are rarely above a few
 * hundred bytes). 1 KiB keeps at least three keys in a 4 KiB B-tree branch page, so
 * the tree's fan-out and height stay bounded without key overflow pages. */
#define TS_KEY_BYTES_MAX 1024u

/* Values are configuration blobs and small records. 1 MiB matches what the B-tree's
 * overflow pages are sized for and stays below etcd's 1.5 MiB request default. */
#define TS_VALUE_BYTES_MAX (1024u * 1024u)

/* One frame on the wire: a length prefix and one FlatBuffers message. It must carry the
 * largest single put with room for its envelope, and bounds the memory a peer can make
 * a connection buffer. Raft batches and snapshot chunks are cut to fit. */
#define TS_FRAME_BYTES_MAX (8u * 1024u * 1024u)

/* Envelope allowance: everything in a frame besides one key and one value (tables,
 * vtables, headers, a range descriptor). */
#define TS_FRAME_OVERHEAD_BYTES_MAX (16u * 1024u)

/* Nesting depth of tables in a message. Tessera's deepest message is about eight
 * levels (Message > Response > TxnResponse > TxnOpResult > RangeResponse > KeyValue);
 * 32 leaves room and is below the FlatBuffers C++ verifier's 64, so Tessera never
 * accepts a buffer that verifier rejects for depth. */
#define TS_PROTO_DEPTH_MAX 32u

/* Tables visited while verifying one message, which bounds verification time even
 * when offsets share sub-objects. Equal to the FlatBuffers C++ verifier's default. */
#define TS_PROTO_TABLES_MAX 1000000u

/* Distinct vtables the builder remembers for deduplication per message. Tessera's
 * messages use a handful of shapes; a miss only costs a few bytes. */
#define TS_PROTO_VTABLE_CACHE_MAX 32u

/* Fields a single table may declare (vtable slots). */
#define TS_PROTO_FIELDS_MAX 64u

/* The longest log line, newline included. Equal to Linux's PIPE_BUF, the largest write a
 * pipe guarantees to be atomic, so lines from different threads never interleave; it
 * also fits a message quoting a key of TS_KEY_BYTES_MAX with room for the prefix.
 * (Checked against PIPE_BUF in log.c.) */
#define TS_LOG_LINE_BYTES_MAX 4096u

/* WAL segment size. Large enough that creating a segment (open, allocate, fsync of the
 * directory) is rare, small enough that compaction frees space promptly. */
#define TS_WAL_SEGMENT_BYTES_DEFAULT (64ull * 1024 * 1024)
#define TS_WAL_SEGMENT_BYTES_MIN (64ull * 1024)

/* Bytes staged in memory or being written, per shard. Over it appends get TS_EFULL
 * (back-pressure) instead of memory growing while the disk is slow. */
#define TS_WAL_INFLIGHT_BYTES_MAX (64u * 1024 * 1024)

/* One WAL write (batch). Buffers of this size are allocated once and reused, so the
 * append path never reallocates; a fuller batch is sealed and the next one started.
 * 1 MiB writes already reach the disk's sequential bandwidth here (bench/RESULTS.md),
 * and at ~1,000 fsyncs/s they carry millions of small records per second. A single
 * record larger than this gets a batch of its own. */
#define TS_WAL_BATCH_BYTES_MAX (1024u * 1024)

/* Recent log kept in memory per shard for replication and watch replay reads. */
#define TS_WAL_CACHE_BYTES_DEFAULT (16u * 1024 * 1024)

/* One entry's data: a Raft entry carries one client request, so a frame bounds it. */
#define TS_WAL_ENTRY_BYTES_MAX TS_FRAME_BYTES_MAX

/* Raft groups one shard's WAL tracks. Each new segment begins with one 80-byte state
 * record per group, which must leave room for the largest entry. */
#define TS_WAL_GROUPS_MAX 100000u

_Static_assert(TS_WAL_BATCH_BYTES_MAX * 4 <= TS_WAL_INFLIGHT_BYTES_MAX,
               "several batches can queue behind the one being written");
_Static_assert(TS_WAL_INFLIGHT_BYTES_MAX >= 2 * (TS_WAL_ENTRY_BYTES_MAX + 64),
               "two of the largest entries can be staged while one is written");
_Static_assert(TS_WAL_SEGMENT_BYTES_DEFAULT >=
                   TS_WAL_GROUPS_MAX * 80ull + TS_WAL_ENTRY_BYTES_MAX + 4096,
               "a fresh segment holds every group's state and the largest entry");

_Static_assert(TS_LOG_LINE_BYTES_MAX > 2 * TS_KEY_BYTES_MAX, "a log line can quote a key");
_Static_assert(TS_FRAME_BYTES_MAX >=
                   2 * (TS_KEY_BYTES_MAX + TS_VALUE_BYTES_MAX + TS_FRAME_OVERHEAD_BYTES_MAX),
               "a frame must hold a put of the largest key and value, twice over "
               "(a response may carry the previous value as well)");
_Static_assert(TS_FRAME_BYTES_MAX < (1u << 31), "FlatBuffers offsets are below 2^31");
_Static_assert(TS_PROTO_DEPTH_MAX <= 64, "never looser than the C++ verifier's depth");
_Static_assert(TS_PROTO_TABLES_MAX <= 1000000, "never looser than the C++ verifier");

#endif
