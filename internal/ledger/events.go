package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// EventRecord is what the bridge did with one event. It holds no e-mail address.
type EventRecord struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Status     string    `json:"status"` // accepted, unchanged, ignored
	Reason     string    `json:"reason,omitempty"`
	UserID     int64     `json:"user_id,omitempty"`
	Course     string    `json:"course,omitempty"`
	EventTime  time.Time `json:"event_time"`
	ReceivedAt time.Time `json:"received_at"`
	Via        string    `json:"via"` // webhook, eventbus, backfill
	Rows       []string  `json:"rows,omitempty"`
	// Digest identifies the event's content (edx.Event.Digest): the same id with another
	// digest is a different event reusing the id, answered 409.
	Digest string `json:"digest,omitempty"`
}

// MaxEventsPerLearner caps the per-learner index of event records; the oldest records beyond it
// are deleted with their index entries, so one learner's keys stay bounded whatever the rate.
// Losing an old record only loses its de-duplication: the ledger's ordering rules make a
// re-sent old event change nothing.
const MaxEventsPerLearner = 1000

// SeenEvent loads the record of event id about learner uid (0: an event that names none); nil
// when the id is unknown.
func (l *Ledger) SeenEvent(ctx context.Context, uid int64, id string) (*EventRecord, error) {
	raw, err := l.rdb.Get(ctx, l.eventKey(uid, id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read event record: %w", err)
	}
	return decodeEventRecord(raw)
}

// FindEvent loads the record of event id whatever learner it names (the admin API's look-up);
// nil when the id is unknown. On a Cluster it asks every bucket, in one round trip per shard.
func (l *Ledger) FindEvent(ctx context.Context, id string) (*EventRecord, error) {
	cmds := make([]*redis.StringCmd, len(l.tags))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tag := range l.tags {
			cmds[i] = p.Get(ctx, l.eventPrefixIn(tag)+id)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read event record: %w", err)
	}
	for _, c := range cmds {
		if raw, err := c.Bytes(); err == nil {
			return decodeEventRecord(raw)
		}
	}
	return nil, nil
}

// ClaimEvent, on a Cluster, claims event id for the content digest before the event is handled,
// and returns the claim of an earlier event that used the id with other content (nil: none, or
// the same content). An event's record lives in its learner's bucket and is read within the
// learner's transaction, which cannot see a record of the same id in another bucket: the claim
// is what answers such a reuse 409. On one Redis the record itself does that, and ClaimEvent
// writes nothing. A claim left by an event whose handling then failed holds the same digest, so
// the resend passes it.
func (l *Ledger) ClaimEvent(ctx context.Context, id, digest string) (*EventRecord, error) {
	if !l.Sharded() || id == "" || digest == "" {
		return nil, nil
	}
	prev, err := claimEventScript.Run(ctx, l.rdb, []string{l.eventClaimKey(id)}, digest, l.opts.EventRetention.Milliseconds()).Text()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("claim event id %s: %w", id, err)
	case prev == digest:
		return nil, nil
	}
	return &EventRecord{ID: id, Digest: prev, Status: "claimed"}, nil
}

// claimEventScript is SET NX GET, which Redis before 7.0 refuses.
var claimEventScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false`)

func decodeEventRecord(raw []byte) (*EventRecord, error) {
	var rec EventRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("read event record: %w", err)
	}
	return &rec, nil
}

// recordScript stores the record (kept if one exists) and indexes it under the learner, trimming
// the index by age and to MaxEventsPerLearner entries (deleting the records it trims).
// KEYS: the event record, then the learner's index (left out when the event names no learner).
// ARGV: record JSON, retention µs, now µs, cap, event key prefix, event id.
var recordScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', math.floor(tonumber(ARGV[2]) / 1000))
if #KEYS < 2 then return 0 end
local now, keep = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
local over = redis.call('ZCARD', KEYS[2]) - keep
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('DEL', ARGV[5] .. id)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
redis.call('PEXPIRE', KEYS[2], math.floor(tonumber(ARGV[2]) / 1000))
return 1`)

// RecordEvent stores the event record (an event whose record does not go with a ledger change:
// one answered ignored before any). An existing record is kept. The record expires after the
// event retention; so does the learner's index of records.
func (l *Ledger) RecordEvent(ctx context.Context, rec EventRecord) error {
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		l.recordIn(ctx, p, rec)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("record event: %w", err)
	}
	return nil
}

// recordIn queues the writes of an event record on p (a pipeline or a transaction).
func (l *Ledger) recordIn(ctx context.Context, p redis.Pipeliner, rec EventRecord) {
	b, _ := json.Marshal(rec)
	keys := []string{l.eventKey(rec.UserID, rec.ID)}
	if rec.UserID != 0 {
		// Indexed by learner so an erase can find them.
		keys = append(keys, l.userEventsKey(rec.UserID))
	}
	// EVAL, not EVALSHA: in a pipeline or MULTI a missing script cache could not be retried.
	recordScript.Eval(ctx, p, keys, b, l.opts.EventRetention.Microseconds(), stamp(l.opts.Now()),
		MaxEventsPerLearner, l.eventPrefix(rec.UserID), rec.ID)
}
