package ledger

import (
	"strconv"
)

// Key layout.
//
// Every key about one learner (rows, facts, locks, the learner hash and record, addresses,
// event records, the erasure tombstone) carries the learner's bucket, and so do the indexes that
// a learner's writes change in the same transaction or script (owed marks, row and failed
// indexes, the fencing counter, the announcement outbox): one bucket per index. Every multi-key
// step then touches one bucket only.
//
// On one Redis (standalone or Sentinel) there is one bucket and its tag is empty, which gives
// the key names of every earlier version: nothing to migrate. On a Redis Cluster the bucket is
// the user id modulo Buckets and its tag a hash tag, "{b17}:", so one bucket is one slot and the
// learners spread over every shard, while a learner's keys stay together. The Cluster layout is
// new (the ledger could not run on a Cluster before), so it has no legacy keys either.
//
// What no bucket can hold is written outside the learner's transaction: the e-mail index (a
// lookup by address) and the event-id claims that detect an id reused for another learner.

// ClusterBuckets is the number of buckets on a Redis Cluster: enough for learners to spread
// evenly over many shards, few enough that a pass over every bucket's index (the sweeper, the
// admin API's paging, the outbox) is one pipelined round trip per shard.
const ClusterBuckets = 256

// bucket is the tag of uid's keys: "" with one bucket.
func (l *Ledger) bucket(uid int64) string {
	n := int64(len(l.tags))
	if n == 1 {
		return l.tags[0]
	}
	return l.tags[((uid%n)+n)%n]
}

// bucketTags lists the key tags of n buckets.
func bucketTags(n int) []string {
	if n <= 1 {
		return []string{""}
	}
	out := make([]string, n)
	for i := range out {
		out[i] = "{b" + strconv.Itoa(i) + "}:"
	}
	return out
}

// Sharded reports whether the ledger uses the Redis Cluster layout.
func (l *Ledger) Sharded() bool { return len(l.tags) > 1 }

func (l *Ledger) rowKey(k RowKey) string {
	return l.opts.Prefix + l.bucket(k.UserID) + "row:" + k.String()
}
func (l *Ledger) factsKey(k RowKey) string {
	return l.opts.Prefix + l.bucket(k.UserID) + "facts:" + k.String()
}
func (l *Ledger) lockKey(k RowKey) string {
	return l.opts.Prefix + l.bucket(k.UserID) + "lock:" + k.String()
}

// The per-bucket indexes, named by the bucket's tag.
func (l *Ledger) owedKey(tag string) string  { return l.opts.Prefix + tag + "owed" }
func (l *Ledger) fenceKey(tag string) string { return l.opts.Prefix + tag + "fence" }

// The row indexes are sorted sets with one score, so that the admin API pages through them in
// key order (ZRANGE BYLEX) from an opaque cursor instead of reading every row.
func (l *Ledger) rowIndexKey(tag string) string    { return l.opts.Prefix + tag + "rowidx" }
func (l *Ledger) failedIndexKey(tag string) string { return l.opts.Prefix + tag + "failed" }

// legacyRowsKey is the unordered set of all rows that versions before the indexes kept; the
// index repair moves it into rowidx. Only the one-bucket layout can have it.
func (l *Ledger) legacyRowsKey() string { return l.opts.Prefix + "rows" }

func (l *Ledger) userKey(uid int64) string {
	return l.opts.Prefix + l.bucket(uid) + "user:" + strconv.FormatInt(uid, 10)
}
func (l *Ledger) userRowsKey(uid int64) string   { return l.userKey(uid) + ":rows" }
func (l *Ledger) userEmailsKey(uid int64) string { return l.userKey(uid) + ":emails" }

// emailKey indexes learners by address. It has no bucket: a lookup starts from the address.
func (l *Ledger) emailKey(email string) string { return l.opts.Prefix + "email:" + email }

// eventKey is the record of event id, kept in the bucket of the learner it names (uid 0 for an
// event that names none), so that an intake reads and writes it in the learner's transaction.
func (l *Ledger) eventKey(uid int64, id string) string { return l.eventPrefix(uid) + id }
func (l *Ledger) eventPrefix(uid int64) string         { return l.eventPrefixIn(l.bucket(uid)) }
func (l *Ledger) eventPrefixIn(tag string) string      { return l.opts.Prefix + tag + "evt:" }

// eventClaimKey, on a Cluster only, maps an event id to the digest of the event first recorded
// under it, whatever learner it named: the per-learner record cannot see an id reused for a
// learner in another bucket.
func (l *Ledger) eventClaimKey(id string) string { return l.opts.Prefix + "evtid:" + id }

// recordKey is the learner record (contract 9.1): one field per course run.
func (l *Ledger) recordKey(uid int64) string { return l.userKey(uid) + ":record" }

// userEventsKey indexes the learner's event records by receive time, so that an erase finds them
// and old ones are trimmed. (Older versions kept an unordered set under ":events".)
func (l *Ledger) userEventsKey(uid int64) string { return l.userKey(uid) + ":evidx" }
func (l *Ledger) legacyUserEventsKey(uid int64) string {
	return l.userKey(uid) + ":events"
}

// erasedKey is the learner's erasure tombstone: the erase time, µs.
func (l *Ledger) erasedKey(uid int64) string {
	return l.opts.Prefix + l.bucket(uid) + "erased:" + strconv.FormatInt(uid, 10)
}

// watchRoute is what a WATCH transaction on uid's keys passes to Watch: nothing on one Redis
// (the WATCH goes in the first pipeline, saving a round trip), and on a Cluster one of the
// learner's keys, which the cluster client needs to pick the shard.
func (l *Ledger) watchRoute(uid int64) []string {
	if !l.Sharded() {
		return nil
	}
	return []string{l.userRowsKey(uid)}
}
