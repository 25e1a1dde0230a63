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

// SeenEvent loads the record of an event id; nil when the id is unknown.
func (l *Ledger) SeenEvent(ctx context.Context, id string) (*EventRecord, error) {
	raw, err := l.rdb.Get(ctx, l.eventKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read event record: %w", err)
	}
	return decodeEventRecord(raw)
}

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
	keys := []string{l.eventKey(rec.ID)}
	if rec.UserID != 0 {
		// Indexed by learner so an erase can find them.
		keys = append(keys, l.userEventsKey(rec.UserID))
	}
	// EVAL, not EVALSHA: in a pipeline or MULTI a missing script cache could not be retried.
	recordScript.Eval(ctx, p, keys, b, l.opts.EventRetention.Microseconds(), stamp(l.opts.Now()),
		MaxEventsPerLearner, l.eventKey(""), rec.ID)
}
