/*
 * shard/peer_codec: core/raft's messages on the wire (net/proto's RaftMessage).
 *
 * Field for field: the message's type numbers are the schema's (raft.h says so); the
 * heartbeat round and ReadIndex context travel in `round`, a transfer's vote in `force`,
 * a leader's last heartbeat before quiescence in `quiesce`. Entries keep their type
 * (Normal, ConfChange) and data; a snapshot's metadata carries its configuration as the
 * four role lists of ConfState.
 *
 * Decoding works on a verified view (net/proto verifies every frame before any field is
 * read) and checks what the verifier cannot know: the type is one raft knows, the
 * entries fit the caller's array, a configuration has at most TS_RAFT_MEMBERS_MAX
 * members and no id 0. Entries' data point into the frame: the decoded message is valid
 * as long as the frame is (raft_step copies what it keeps).
 */
#ifndef TS_SHARD_PEER_CODEC_H
#define TS_SHARD_PEER_CODEC_H

#include "core/raft/raft.h"
#include "net/proto/proto.h"
#include "net/proto/proto_gen.h"

/* Appends m as a RaftMessage table; returns its reference (0 after a builder error,
 * which is sticky: see proto.h). */
proto_ref peer_encode_raft_message(struct proto_builder *b, const struct raft_message *m);

/* Decodes v into *m. Entries go to entries[0..cap); the snapshot metadata, for a
 * SNAPSHOT message, to *snap. Returns 0 or TS_EPROTO (unknown type, more than cap
 * entries, a bad configuration). */
int peer_decode_raft_message(struct proto_raft_message v, struct raft_message *m,
                             struct raft_entry *entries, uint32_t cap,
                             struct raft_snapshot_meta *snap);

/* Heartbeats and their answers, coalesced: a RaftBatch carries them as fixed-size
 * structs (Heartbeat, HeartbeatAck), one per group. peer_heartbeat_compact tells whether
 * m is one that fits: a HEARTBEAT or HEARTBEAT_RESP with nothing set beyond group, from,
 * to, term, commit (heartbeat), context and quiesce (heartbeat). The decoders give back
 * the message the encoders were given. */
bool peer_heartbeat_compact(const struct raft_message *m);
struct proto_heartbeat peer_heartbeat_encode(const struct raft_message *m);
struct proto_heartbeat_ack peer_heartbeat_ack_encode(const struct raft_message *m);
void peer_heartbeat_decode(struct proto_heartbeat hb, struct raft_message *m);
void peer_heartbeat_ack_decode(struct proto_heartbeat_ack a, struct raft_message *m);

/* A snapshot's metadata (index, term, configuration) as a SnapshotMeta table, and back
 * (TS_EPROTO for a table without a configuration or with a bad one). The snapshot
 * stream's chunks carry it too. */
proto_ref peer_encode_snapshot_meta(struct proto_builder *b, const struct raft_snapshot_meta *s);
int peer_decode_snapshot_meta(struct proto_snapshot_meta v, struct raft_snapshot_meta *s);

#endif
