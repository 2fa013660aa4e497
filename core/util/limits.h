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

/* storage/disk: the simulated disk (tests) */
/* Longest path accepted (Linux's PATH_MAX, terminator included). */
#define TS_DISK_SIM_PATH_BYTES_MAX 4096u
/* Open handles at once, like a process's descriptor limit. */
#define TS_DISK_SIM_HANDLES_MAX 65536u
/* Largest file: everything lives in memory, and a runaway offset must fail (-EFBIG)
 * rather than ask the allocator (or ASan) for terabytes. */
#define TS_DISK_SIM_FILE_BYTES_MAX (1ull << 30)
/* Smallest buffer allocation, so that small appends do not reallocate each time. */
#define TS_DISK_SIM_BUF_BYTES_MIN 4096u
/* Steps one disk_run may take beyond those of the requests queued when it starts: a
 * callback that always resubmits must not keep disk_run from returning. */
#define TS_DISK_SIM_RUN_EXTRA_STEPS_MAX 65536u

/* storage/disk: the io_uring backend */
/* io_uring disk backend defaults (disk_uring_config fields left 0). */
#define TS_DISK_URING_RING_ENTRIES_DEFAULT 256u
#define TS_DISK_URING_INFLIGHT_DEFAULT 256u
#define TS_DISK_URING_FILES_DEFAULT 1024u
/* The kernel's limits on the submission and completion queue sizes. */
#define TS_DISK_URING_RING_ENTRIES_MAX 32768u
#define TS_DISK_URING_CQ_ENTRIES_MAX 65536u
/* Slot indexes live in user_data above the step byte. A request has at most two CQEs
 * due at once, and the completion queue holds two per slot, so it never overflows (an
 * overflowing ring would refuse submissions with -EBUSY). */
#define TS_DISK_URING_STEP_BITS 8
#define TS_DISK_URING_INFLIGHT_MAX (TS_DISK_URING_CQ_ENTRIES_MAX / 2)
#define TS_DISK_URING_FILES_MAX (1u << 20)
/* Reissues of a request without any progress (-EAGAIN, -EINTR, -ECANCELED) before it
 * fails with that error: a device that keeps refusing must not be retried forever. */
#define TS_DISK_URING_RETRIES_MAX 64u
/* CQEs copied out of the ring at a time, so the ring is advanced before any handling
 * (which may submit) runs. */
#define TS_DISK_URING_CQE_BATCH 64u
/* Blocking passes of one disk_run(wait) that complete nothing a caller sees (only
 * reissued short transfers): a bound on the loop, never reached in practice. */
#define TS_DISK_URING_WAIT_PASSES_MAX 1024u

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

/* B-tree page sizes (storage/btree). A page is the unit of copy-on-write and of the
 * CRC32C check. 4 KiB matches the OS page and the usual SSD write unit, and is the
 * smallest power of two in which a branch or leaf still holds three cells with keys of
 * TS_KEY_BYTES_MAX (checked below). 512 is the smallest sector a device can write
 * atomically; 64 KiB is the largest size whose in-page offsets fit the page format's
 * 16-bit fields. Pages below 4 KiB are allowed for tests and small shards; they lower
 * the key limit (btp_key_bytes_max in storage/btree/page.h). */
#define TS_BTREE_PAGE_BYTES_MIN 512u
#define TS_BTREE_PAGE_BYTES_MAX 65536u
#define TS_BTREE_PAGE_BYTES_DEFAULT 4096u

_Static_assert((TS_BTREE_PAGE_BYTES_MIN & (TS_BTREE_PAGE_BYTES_MIN - 1)) == 0, "power of two");
_Static_assert((TS_BTREE_PAGE_BYTES_MAX & (TS_BTREE_PAGE_BYTES_MAX - 1)) == 0, "power of two");
_Static_assert((TS_BTREE_PAGE_BYTES_DEFAULT & (TS_BTREE_PAGE_BYTES_DEFAULT - 1)) == 0,
               "power of two");
_Static_assert(TS_BTREE_PAGE_BYTES_MIN <= TS_BTREE_PAGE_BYTES_DEFAULT &&
                   TS_BTREE_PAGE_BYTES_DEFAULT <= TS_BTREE_PAGE_BYTES_MAX,
               "the default page size lies in the allowed range");
_Static_assert(TS_BTREE_PAGE_BYTES_MAX <= 65536u, "in-page offsets are 16-bit");
/* 40-byte page header; a cell with a full key costs 2 (slot) + 8 or 16 (cell header)
 * + key + 8 (overflow page number), and a page must hold three of them. */
_Static_assert(3u * (2u + 16u + TS_KEY_BYTES_MAX) <= TS_BTREE_PAGE_BYTES_DEFAULT - 40u,
               "a default page holds three cells with the longest key");
_Static_assert(TS_VALUE_BYTES_MAX <= 0xffffffffu, "a leaf cell stores the value length in u32");

/* The B-tree page cache's default budget per shard (storage/btree). Coordination data
 * is small: 64 MiB holds ~16,000 pages, the whole state of a shard serving a few
 * hundred thousand keys, so reads rarely wait for the disk. The server sets it from
 * --cache-mb; a tree larger than the budget works, with misses read from the file. */
#define TS_BTREE_CACHE_BYTES_DEFAULT (64u * 1024u * 1024u)
/* Fewer frames than this could not hold one operation's path and splits. */
#define TS_BTREE_CACHE_PAGES_MIN 16u

/* Members of one Raft group, voters and learners together, old and new during joint
 * consensus. Ranges have 3 or 5 voters; replacing all five through joint consensus
 * while learners catch up needs at most 15. A fixed bound lets a configuration travel
 * in one fixed-size struct (core/raft). */
#define TS_RAFT_MEMBERS_MAX 16u
/* One Raft entry: a command carrying one key and one value (or a batch that fits one
 * frame), with the frame's envelope around it. */
#define TS_RAFT_ENTRY_BYTES_MAX (TS_FRAME_BYTES_MAX - TS_FRAME_OVERHEAD_BYTES_MAX)
_Static_assert(TS_RAFT_ENTRY_BYTES_MAX >= TS_KEY_BYTES_MAX + TS_VALUE_BYTES_MAX + 1024u,
               "one entry carries the largest put");
/* ReadIndex requests waiting for one group's leader to confirm a round. Clients beyond
 * it get TS_EFULL: a leader that cannot reach a quorum must not queue without end. */
/* Entries in one APPEND, whatever their size (the receiver's decoder holds this many
 * entry views: shard/peer_codec.h). */
#define TS_RAFT_MSG_ENTRIES_MAX 4096u
#define TS_RAFT_READS_PENDING_MAX 4096u
/* Messages one instance may queue between two readies (an unbounded input burst is
 * answered with at most this many; the rest are dropped and retried by Raft). */
#define TS_RAFT_MSGS_PENDING_MAX 4096u

/* ---- net/io (nio.h) ---- */

/* Connection slots per nio (inbound + outbound). 4,096 per shard covers thousands of
 * clients per node with a few shards; a slot costs ~200 bytes plus its buffers, which
 * are allocated only while they hold data. The hard maximum is what 20 bits of
 * user_data can name. */
#define TS_NIO_CONNS_DEFAULT 4096u
#define TS_NIO_CONNS_MAX (1u << 20)
/* Listeners per nio: one per address a shard serves (client port, peer port). */
#define TS_NIO_LISTENERS_MAX 8u
/* Provided receive buffers: 256 x 16 KiB = 4 MiB per shard. A recv fills at most one
 * buffer, and a buffer goes back to the ring as soon as its bytes are consumed, so the
 * ring runs dry only when a shard falls far behind (then -ENOBUFS and a re-arm). */
#define TS_NIO_RECV_BUFS_DEFAULT 256u
#define TS_NIO_RECV_BUFS_MAX 32768u /* the kernel's limit for a buffer ring */
#define TS_NIO_RECV_BUF_BYTES_DEFAULT (16u * 1024u)
/* Buffered output per connection above which reading stops (back-pressure). 1 MiB
 * is hundreds of pipelined answers; the hard limit adds one maximal frame. */
#define TS_NIO_OUT_BYTES_DEFAULT (1024u * 1024u)
/* Reconnect back-off of outbound links, and their connect timeout. */
#define TS_NIO_RECONNECT_MIN_NS_DEFAULT (50ull * 1000 * 1000)
#define TS_NIO_RECONNECT_MAX_NS_DEFAULT (5ull * 1000 * 1000 * 1000)
#define TS_NIO_CONNECT_TIMEOUT_NS_DEFAULT (5ull * 1000 * 1000 * 1000)
/* Input and output buffers larger than this are freed once empty, so an idle
 * connection that once carried a large frame does not keep megabytes. */
#define TS_NIO_BUF_KEEP_BYTES (64u * 1024u)

/* ---- shard/loop.h ---- */

/* Submission queue entries. One iteration rarely queues more than a few hundred SQEs
 * (a send per connection, a log write, wake-ups); a full queue is submitted and reused
 * (shard_loop_sqe), so this bounds memory, not throughput. */
#define TS_SHARD_LOOP_SQ_ENTRIES_DEFAULT 256u
#define TS_SHARD_LOOP_SQ_ENTRIES_MAX 32768u

/* Completion queue entries: 16 per SQE slot leaves room for multishot receives and
 * accepts, which post many CQEs per SQE, before the kernel has to buffer overflow. */
#define TS_SHARD_LOOP_CQ_ENTRIES_DEFAULT 4096u
#define TS_SHARD_LOOP_CQ_ENTRIES_MAX 65536u

/* CQEs copied out per batch. Copying a batch then advancing the head once lets a
 * handler queue new SQEs without touching CQ memory still owned by the kernel. */
#define TS_SHARD_LOOP_CQE_BATCH 64u

/* Timers armed at once per shard: Raft groups share a per-shard tick timer, so this
 * covers connection idle timers, lease checks and retries with a wide margin. */
#define TS_SHARD_LOOP_TIMERS_MAX 65536u

/* Iteration hooks per shard: one per subsystem that batches output (net/io, Raft ready
 * processing, the WAL, the router...). */
#define TS_SHARD_LOOP_HOOKS_MAX 16u

/* Times shard_loop_sqe submits to make room before giving up: the kernel consumes the
 * whole SQ on each successful submit, so more than a few failures means it is wedged. */
#define TS_SHARD_LOOP_SQE_RETRIES_MAX 8u

/* CQEs of other subsystems set aside while one waits synchronously for its own (the
 * disk on a B-tree miss): at most this many; past it the wait fails with TS_ENOMEM and
 * the rest stay in the CQ. The stash starts at the CQ's size and doubles as needed. */
#define TS_SHARD_LOOP_STASH_MAX (1u << 20)

/* Passes of a synchronous wait for one tag's CQE before it gives up with -EAGAIN (each
 * pass blocks until some CQE arrives, so this bounds a wait flooded by other traffic). */
#define TS_SHARD_LOOP_WAIT_TAG_PASSES_MAX 65536u

/* ---- shard/node.h ---- */

/* How long a node waits, from STOP, for every shard's stop callback to say "done" before
 * it gives up on the late ones (logging which) and tears down anyway: a stop callback that
 * never finishes (a peer that never acknowledges, a bug) must not hold the process forever.
 * 10 s leaves a loaded shard time to flush its log and answer what it accepted; a service
 * manager's own stop timeout (systemd: 90 s) is longer. */
#define TS_SHARD_NODE_STOP_MS_DEFAULT 10000u
#define TS_SHARD_NODE_STOP_MS_MAX (3600u * 1000u)
_Static_assert(TS_SHARD_NODE_STOP_MS_DEFAULT <= TS_SHARD_NODE_STOP_MS_MAX,
               "the default stop deadline is allowed");

/* ---- shard/host.h ---- */

/* Ranges a cluster starts with (tesserad --ranges) and at most. */
#define TS_HOST_RANGES_DEFAULT 64u
#define TS_HOST_RANGES_MAX 4096u
/* Raft's tick; with 10 ticks per election timeout a failed leader is replaced in 1-2 s. */
#define TS_HOST_TICK_MS_DEFAULT 100u
/* Applied entries between two B-tree checkpoints of a shard (etcd's --snapshot-count
 * default). A checkpoint still blocks its shard while it writes the dirty pages: at
 * 1,000 clients on one range, 100,000 halves the 1,000-client p99 of 50,000 (the stalls
 * come half as often); the fix is a checkpoint written in the background. */
#define TS_HOST_CHECKPOINT_ENTRIES 100000u
/* Entries kept in a group's log behind the last checkpoint, so that a follower that
 * lags a little catches up by log; one further behind gets a snapshot. */
#define TS_HOST_LOG_RETAIN_ENTRIES 10000u
/* Snapshot stream: bytes of records per chunk (each acknowledged before the next), and
 * the most a follower holds in memory while a snapshot arrives. */
#define TS_HOST_SNAPSHOT_CHUNK_BYTES (256u * 1024u)
#define TS_HOST_SNAPSHOT_BYTES_MAX (1024ull * 1024u * 1024u)
/* A request forwarded to the leader's node and not answered by then is answered
 * Unavailable: under the client's 5 s default deadline, so the client can still retry. */
#define TS_HOST_FWD_TIMEOUT_NS (4ull * 1000 * 1000 * 1000)
/* A node that hosts no replica of a range passes a request on to the leader a NotLeader
 * answer names, at most this many times more. */
#define TS_HOST_FWD_HOPS_MAX 2u
/* A snapshot chunk not acknowledged in this time aborts the stream (raft retries it); a
 * follower drops a half-received snapshot after this long without a chunk. */
#define TS_HOST_SNAPSHOT_ACK_TIMEOUT_NS (10ull * 1000 * 1000 * 1000)
#define TS_HOST_SNAPSHOT_RECV_TIMEOUT_NS (30ull * 1000 * 1000 * 1000)
/* Inputs a group holds back while its ready waits for the log's fdatasync (peer
 * messages with their entries, proposals): the most one group keeps. The fdatasync takes
 * a few ms, in which a group at a network's pace receives far less; beyond this a
 * proposal is refused (TooManyRequests) and a peer message dropped (raft resends it). */
#define TS_HOST_HELD_BYTES_MAX (8u * 1024u * 1024u)
/* A member's "ip:port" in --initial-cluster. */
#define TS_HOST_ADDR_BYTES 64u
/* --initial-cluster as written ("id=ip:port,..."), with its NUL. */
#define TS_HOST_SPEC_BYTES 2048u
/* Descriptors in one Route answer when the request sets no limit, and at most. */
#define TS_HOST_ROUTE_LIMIT_DEFAULT 64u
#define TS_HOST_ROUTE_LIMIT_MAX 1024u
/* How often a node retries announcing itself to the meta range, and a range 1 leader
 * its bootstrap proposal, until they apply. */
#define TS_HOST_META_RETRY_NS (1000ull * 1000 * 1000)
/* Bytes of log entries read at once when a shard restarts its groups. */
#define TS_HOST_RECOVER_READ_BYTES (4u * 1024u * 1024u)

/* ---- shard/xring.h ---- */

/* Shards per node. The mesh grows with the square of this: at 64 shards it holds 4032
 * rings. Machines with more cores than this run one node per socket. */
#define TS_XRING_SHARDS_MAX 64u

/* Slots per ring when the config says 0: 1024 slots (64 KiB) absorb an iteration's
 * burst from one shard to another; above 16 shards the default drops to 256 so that the
 * mesh stays below 64 MiB at TS_XRING_SHARDS_MAX. */
#define TS_XRING_SLOTS_DEFAULT 1024u
#define TS_XRING_SLOTS_DEFAULT_LARGE 256u
#define TS_XRING_SLOTS_MIN 2u
#define TS_XRING_SLOTS_MAX 65536u

/* The consumer publishes its head at least this often while draining, so a producer
 * facing a full ring sees room before the whole drain ends. */
#define TS_XRING_HEAD_PUBLISH_EVERY 64u

/* ---- net/client (client_int.h) ---- */

/* A connection's first receive buffer; it grows to the largest frame, up to
 * TS_FRAME_BYTES_MAX, and is then reused. */
#define TS_CLIENT_RECV_BYTES_INITIAL (64u * 1024u)

/* recv() calls per connection per processing pass, so one busy connection cannot starve
 * the others or the timers. */
#define TS_CLIENT_RECV_CALLS_MAX 16u

/* Longest "host:port" accepted (a DNS name is at most 253 characters). */
#define TS_CLIENT_ENDPOINT_BYTES_MAX 300u

/* Addresses kept per endpoint from name resolution; a refused connect moves on to the
 * next one (a name may resolve to ::1 and 127.0.0.1 with a server on only one). */
#define TS_CLIENT_ENDPOINT_ADDRS_MAX 4u

/* Back-off bounds accepted from a configuration: past a minute a retry is pointless. */
#define TS_CLIENT_BACKOFF_MS_MAX 60000u

/* Processing passes of one tessera_client_run call before it returns 0 with nothing
 * completed: a bound on the loop (STYLE R19) when only timers fire and none completes;
 * in practice the deadline ends it first. */
#define TS_CLIENT_RUN_PASSES_MAX 1000000u

_Static_assert(TS_SHARD_LOOP_CQ_ENTRIES_DEFAULT >= 2 * TS_SHARD_LOOP_SQ_ENTRIES_DEFAULT,
               "multishot accepts and receives post many completions per submission");
_Static_assert(TS_SHARD_LOOP_SQ_ENTRIES_DEFAULT <= TS_SHARD_LOOP_SQ_ENTRIES_MAX &&
                   TS_SHARD_LOOP_CQ_ENTRIES_DEFAULT <= TS_SHARD_LOOP_CQ_ENTRIES_MAX,
               "the loop's defaults lie within its limits");
_Static_assert(TS_NIO_CONNS_DEFAULT <= TS_NIO_CONNS_MAX &&
                   TS_NIO_RECV_BUFS_DEFAULT <= TS_NIO_RECV_BUFS_MAX,
               "net/io's defaults lie within its limits");
_Static_assert(TS_XRING_SLOTS_MIN <= TS_XRING_SLOTS_DEFAULT_LARGE &&
                   TS_XRING_SLOTS_DEFAULT <= TS_XRING_SLOTS_MAX,
               "the ring defaults lie within the ring limits");
_Static_assert((TS_XRING_SLOTS_DEFAULT & (TS_XRING_SLOTS_DEFAULT - 1)) == 0 &&
                   (TS_XRING_SLOTS_DEFAULT_LARGE & (TS_XRING_SLOTS_DEFAULT_LARGE - 1)) == 0,
               "ring indices wrap with a mask: slot counts are powers of two");
_Static_assert(TS_NIO_RECV_BUF_BYTES_DEFAULT <= TS_FRAME_BYTES_MAX,
               "a frame may span receive buffers, never the other way round");

/* ---- core/kv (kv.h) ----
 * Appended by core/kv. A stored key is a 1-byte prefix + the user key, a stored value a
 * 33-byte header + the user value (kv.h's layout), and the B-tree refuses stored keys
 * over TS_KEY_BYTES_MAX and values over TS_VALUE_BYTES_MAX, so the user's limits are
 * those minus the framing. */
#define TS_KV_KEY_BYTES_MAX (TS_KEY_BYTES_MAX - 1u)
#define TS_KV_VALUE_BYTES_MAX (TS_VALUE_BYTES_MAX - 33u)
/* Compares, success ops and failure ops per txn, each: etcd's --max-txn-ops default. */
#define TS_KV_TXN_OPS_MAX 128u
/* Opaque per-range blobs (descriptor, Raft conf state, ...) and their size: a
 * descriptor with TS_RAFT_MEMBERS_MAX replicas and two 1 KiB keys is well below. */
#define TS_KV_BLOBS_MAX 8u
#define TS_KV_BLOB_BYTES_MAX (64u * 1024u)
/* Row bytes one read or txn call reports when the sink names no budget: half a frame,
 * so the answer, with the one row that may go over the budget, fits a frame. */
#define TS_KV_READ_BYTES_DEFAULT (TS_FRAME_BYTES_MAX / 2u)
/* What a row costs besides its key and value in a FlatBuffers KeyValue (table, vtable,
 * four u64 fields, two vector headers and padding), counted against the budget. */
#define TS_KV_ROW_OVERHEAD_BYTES 64u
/* The scratch area kv_apply and kv_read need: one stored value and four stored keys. */
#define TS_KV_SCRATCH_BYTES (TS_VALUE_BYTES_MAX + 4u * (TS_KEY_BYTES_MAX + 8u))
_Static_assert(TS_KV_BLOB_BYTES_MAX <= TS_VALUE_BYTES_MAX, "a blob is one B-tree value");
_Static_assert(TS_KV_READ_BYTES_DEFAULT + TS_FRAME_OVERHEAD_BYTES_MAX + TS_KEY_BYTES_MAX +
                       TS_VALUE_BYTES_MAX <=
                   TS_FRAME_BYTES_MAX,
               "a full default budget plus the one row that may go over it fits a frame");

#endif
