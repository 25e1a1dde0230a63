package ledger

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/rules"
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

// Erase removes everything the ledger holds about a learner: rows, facts, the learner record,
// owed marks, index entries, addresses, the e-mail index and event records. Assertions on the badge host stay. It
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
			p.ZRem(ctx, l.bulkKey(k.BadgeClass), strconv.FormatInt(uid, 10))
		}
		for _, e := range emails.Val() {
			p.SRem(ctx, l.emailKey(e), strconv.FormatInt(uid, 10))
		}
		for _, id := range ids {
			p.Del(ctx, l.eventKey(id))
		}
		p.Del(ctx, l.userKey(uid), l.userRowsKey(uid), l.userEmailsKey(uid), l.userEventsKey(uid), l.legacyUserEventsKey(uid), l.recordKey(uid))
		p.Set(ctx, l.erasedKey(uid), now.UnixMicro(), max(l.opts.EventRetention, minTombstone))
		return nil
	})
	if err != nil {
		return Erasure{}, fmt.Errorf("erase user %d: %w", uid, err)
	}
	return Erasure{Rows: rows, Events: len(ids)}, nil
}

// LearnerRecord is what the ledger holds of a learner for milestones: the record of course runs
// and who the learner is now.
type LearnerRecord struct {
	Record   rules.Record
	Username string
	Name     string
	Email    string
}

// Learner loads a learner's record; an empty record for a learner the ledger does not know.
func (l *Ledger) Learner(ctx context.Context, uid int64) (LearnerRecord, error) {
	var rec *redis.MapStringStringCmd
	var who *redis.SliceCmd
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGetAll(ctx, l.recordKey(uid))
		who = p.HMGet(ctx, l.userKey(uid), "username", "name", "email")
		return nil
	})
	if err != nil {
		return LearnerRecord{}, fmt.Errorf("learner record of user %d: %w", uid, err)
	}
	r, err := decodeRecord(uid, rec.Val())
	if err != nil {
		return LearnerRecord{}, err
	}
	out := LearnerRecord{Record: r}
	if v := who.Val(); len(v) == 3 {
		out.Username, _ = v[0].(string)
		out.Name, _ = v[1].(string)
		out.Email, _ = v[2].(string)
	}
	return out, nil
}

// Learners lists, a batch at a time, the learners the ledger has a record of (SCAN: a cursor of
// 0 starts, and a returned 0 means the scan is complete). A learner may come twice.
func (l *Ledger) Learners(ctx context.Context, cursor uint64, batch int64) ([]int64, uint64, error) {
	keys, next, err := l.rdb.Scan(ctx, cursor, l.opts.Prefix+"user:*:record", batch).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("list learners: %w", err)
	}
	out := make([]int64, 0, len(keys))
	for _, k := range keys {
		s := strings.TrimSuffix(strings.TrimPrefix(k, l.opts.Prefix+"user:"), ":record")
		if uid, err := strconv.ParseInt(s, 10, 64); err == nil {
			out = append(out, uid)
		}
	}
	return out, next, nil
}
