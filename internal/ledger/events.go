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
}

// SeenEvent loads the record of an event id; nil when the id is unknown.
func (l *Ledger) SeenEvent(ctx context.Context, id string) (*EventRecord, error) {
	raw, err := l.rdb.Get(ctx, l.eventKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read event record: %w", err)
	}
	var rec EventRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("read event record: %w", err)
	}
	return &rec, nil
}

// RecordEvent stores the event record last, after its jobs are queued, so a failure before it
// leaves the event unseen and a resend redoes the (idempotent) steps. An existing record is kept.
func (l *Ledger) RecordEvent(ctx context.Context, rec EventRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	// One round trip: this is the last step before a webhook is answered.
	_, err = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SetNX(ctx, l.eventKey(rec.ID), b, l.opts.EventRetention)
		if rec.UserID != 0 {
			// Indexed by learner so an erase can find them.
			k := l.userKey(rec.UserID) + ":events"
			p.SAdd(ctx, k, rec.ID)
			p.Expire(ctx, k, l.opts.EventRetention)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record event: %w", err)
	}
	return nil
}
