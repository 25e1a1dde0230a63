package ledger

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// minTombstone keeps an erasure tombstone at least as long as a Standard Webhooks signature is
// accepted (±5 minutes), with margin, even where the event retention is set shorter.
const minTombstone = 10 * time.Minute

// LearnerRows lists the learner's rows (an erase collects what it must delete elsewhere first).
func (l *Ledger) LearnerRows(ctx context.Context, uid int64) ([]RowKey, error) {
	classes, err := l.rdb.SMembers(ctx, l.userRowsKey(uid)).Result()
	if err != nil {
		return nil, fmt.Errorf("rows of user %d: %w", uid, err)
	}
	keys := make([]RowKey, 0, len(classes))
	for _, c := range classes {
		keys = append(keys, RowKey{c, uid})
	}
	return keys, nil
}

// Erasure is what Erase removed.
type Erasure struct {
	Rows   []RowKey
	Events int // event records
}

// Erase removes everything the ledger holds about a learner: rows, facts, owed marks, index
// entries, addresses, the e-mail index and event records. Assertions on the badge host stay. It
// collects every id first and deletes in one transaction, then leaves a tombstone that refuses
// events no newer than the erasure for the event retention (a replayed, validly signed event must
// not recreate the learner). A job working on one of the rows finds it gone and writes nothing.
func (l *Ledger) Erase(ctx context.Context, uid int64) (Erasure, error) {
	rows, err := l.LearnerRows(ctx, uid)
	if err != nil {
		return Erasure{}, fmt.Errorf("erase user %d: %w", uid, err)
	}
	var emails, events, legacyEvents *redis.StringSliceCmd
	_, err = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		emails = p.SMembers(ctx, l.userEmailsKey(uid))
		events = p.ZRange(ctx, l.userEventsKey(uid), 0, -1)
		legacyEvents = p.SMembers(ctx, l.legacyUserEventsKey(uid))
		return nil
	})
	if err != nil {
		return Erasure{}, fmt.Errorf("erase user %d: %w", uid, err)
	}
	ids := append(events.Val(), legacyEvents.Val()...)
	now := l.opts.Now()
	_, err = l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range rows {
			p.Del(ctx, l.rowKey(k), l.factsKey(k))
			p.ZRem(ctx, l.owedKey(), k.String())
			p.ZRem(ctx, l.rowIndexKey(), k.String())
			p.ZRem(ctx, l.failedIndexKey(), k.String())
			p.SRem(ctx, l.legacyRowsKey(), k.String())
		}
		for _, e := range emails.Val() {
			p.SRem(ctx, l.emailKey(e), strconv.FormatInt(uid, 10))
		}
		for _, id := range ids {
			p.Del(ctx, l.eventKey(id))
		}
		p.Del(ctx, l.userKey(uid), l.userRowsKey(uid), l.userEmailsKey(uid), l.userEventsKey(uid), l.legacyUserEventsKey(uid))
		p.Set(ctx, l.erasedKey(uid), now.UnixMicro(), max(l.opts.EventRetention, minTombstone))
		return nil
	})
	if err != nil {
		return Erasure{}, fmt.Errorf("erase user %d: %w", uid, err)
	}
	return Erasure{Rows: rows, Events: len(ids)}, nil
}
