// Package ledger is the bridge's record, in Redis, of which badge each learner should hold and
// what the badge host holds: one row per (badge class, LMS user id), its facts, and the "reconcile
// owed" marks that drive the workers.
package ledger

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Row states (the actual state on the badge host).
const (
	StatePending = "pending" // work owed, nothing confirmed on the host yet
	StateIssued  = "issued"
	StateRevoked = "revoked"
	StateFailed  = "failed"  // parked with the host's reason
	StateNone    = "none"    // not held and nothing ever issued
	StateExpired = "expired" // held, but the award would already be expired: recorded, not sent
)

// RowKey names one row. Badge class ids never contain ':' (the mapping refuses it), so the
// string form splits unambiguously at the last colon.
type RowKey struct {
	BadgeClass string
	UserID     int64
}

func (k RowKey) String() string { return k.BadgeClass + ":" + strconv.FormatInt(k.UserID, 10) }

// ParseRowKey reverses RowKey.String.
func ParseRowKey(s string) (RowKey, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return RowKey{}, fmt.Errorf("row key %q: want <badge class>:<user id>", s)
	}
	uid, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil {
		return RowKey{}, fmt.Errorf("row key %q: bad user id", s)
	}
	return RowKey{BadgeClass: s[:i], UserID: uid}, nil
}

// Options tune a Ledger.
type Options struct {
	Prefix         string        // key prefix, default "bb:"
	EventRetention time.Duration // how long per-event records live, default 720h
	// IntakeGrace is how long after intake a row may stay owed before the sweeper re-queues it
	// (the job queued at intake normally clears it well before).
	IntakeGrace time.Duration
	Now         func() time.Time
}

// Ledger reads and writes the ledger keys.
type Ledger struct {
	rdb  redis.UniversalClient
	opts Options
}

// ErrLockLost means another job holds the row now: this job's lease ran out.
var ErrLockLost = errors.New("row lock lost")

// New returns a Ledger on rdb.
func New(rdb redis.UniversalClient, o Options) *Ledger {
	if o.Prefix == "" {
		o.Prefix = "bb:"
	}
	if o.EventRetention <= 0 {
		o.EventRetention = 720 * time.Hour
	}
	if o.IntakeGrace <= 0 {
		o.IntakeGrace = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Ledger{rdb: rdb, opts: o}
}

func (l *Ledger) rowKey(k RowKey) string   { return l.opts.Prefix + "row:" + k.String() }
func (l *Ledger) factsKey(k RowKey) string { return l.opts.Prefix + "facts:" + k.String() }
func (l *Ledger) lockKey(k RowKey) string  { return l.opts.Prefix + "lock:" + k.String() }
func (l *Ledger) owedKey() string          { return l.opts.Prefix + "owed" }
func (l *Ledger) fenceKey() string         { return l.opts.Prefix + "fence" }

// The row indexes are sorted sets with one score, so that the admin API pages through them in
// key order (ZRANGE BYLEX) from an opaque cursor instead of reading every row.
func (l *Ledger) rowIndexKey() string    { return l.opts.Prefix + "rowidx" }
func (l *Ledger) failedIndexKey() string { return l.opts.Prefix + "failed" }

// legacyRowsKey is the unordered set of all rows that versions before the indexes kept; the
// index repair moves it into rowidx.
func (l *Ledger) legacyRowsKey() string { return l.opts.Prefix + "rows" }
func (l *Ledger) userKey(uid int64) string {
	return l.opts.Prefix + "user:" + strconv.FormatInt(uid, 10)
}
func (l *Ledger) userRowsKey(uid int64) string   { return l.userKey(uid) + ":rows" }
func (l *Ledger) userEmailsKey(uid int64) string { return l.userKey(uid) + ":emails" }
func (l *Ledger) emailKey(email string) string   { return l.opts.Prefix + "email:" + email }
func (l *Ledger) eventKey(id string) string      { return l.opts.Prefix + "evt:" + id }

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
	return l.opts.Prefix + "erased:" + strconv.FormatInt(uid, 10)
}

// stamp is how the ledger stores a time: Unix microseconds (events are compared to the
// microsecond), 0 for none.
func stamp(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// readStamp reverses stamp. Versions before 0.3 stored row times in milliseconds: a value below
// 10^14 (a millisecond count until the year 5138, a microsecond count before 1973) is one of those.
func readStamp(v int64) time.Time {
	switch {
	case v == 0:
		return time.Time{}
	case v < 1e14:
		return time.UnixMilli(v)
	}
	return time.UnixMicro(v)
}
