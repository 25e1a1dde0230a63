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
	// Buckets is the number of key buckets (see keys.go): 0 chooses by the client, ClusterBuckets
	// on a Redis Cluster and 1 otherwise. Tests set it to run the Cluster layout on one Redis.
	Buckets int
}

// Ledger reads and writes the ledger keys.
type Ledger struct {
	rdb  redis.UniversalClient
	opts Options
	tags []string // the bucket tags, one ("") on one Redis
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
	if o.Buckets == 0 {
		o.Buckets = 1
		if _, ok := rdb.(*redis.ClusterClient); ok {
			o.Buckets = ClusterBuckets
		}
	}
	return &Ledger{rdb: rdb, opts: o, tags: bucketTags(o.Buckets)}
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
