package ledger

import (
	"context"
	"fmt"
	"sort"
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
	tag := l.bucket(uid)
	if l.Sharded() {
		// What lies outside the learner's slot goes first: should the transaction then fail,
		// the erase is repeated and finds the addresses and rows again.
		if err := l.eraseOutside(ctx, uid, rows, emails.Val(), ids); err != nil {
			return Erasure{}, fmt.Errorf("erase user %d: %w", uid, err)
		}
	}
	_, err = l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range rows {
			p.Del(ctx, l.rowKey(k), l.factsKey(k))
			p.ZRem(ctx, l.owedKey(tag), k.String())
			p.ZRem(ctx, l.rowIndexKey(tag), k.String())
			p.ZRem(ctx, l.failedIndexKey(tag), k.String())
			if !l.Sharded() {
				p.SRem(ctx, l.legacyRowsKey(), k.String())
				p.ZRem(ctx, l.bulkKey(k.BadgeClass), strconv.FormatInt(uid, 10))
			}
		}
		if !l.Sharded() {
			for _, e := range emails.Val() {
				p.SRem(ctx, l.emailKey(e), strconv.FormatInt(uid, 10))
			}
		}
		for _, id := range ids {
			p.Del(ctx, l.eventKey(uid, id))
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

// eraseOutside removes, on a Cluster, what an erase of uid must delete outside the learner's
// slot: bulk-set entries, e-mail index entries and event-id claims. Pipelined, not atomic:
// every step is idempotent.
func (l *Ledger) eraseOutside(ctx context.Context, uid int64, rows []RowKey, emails, events []string) error {
	member := strconv.FormatInt(uid, 10)
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range rows {
			p.ZRem(ctx, l.bulkKey(k.BadgeClass), member)
		}
		for _, e := range emails {
			p.SRem(ctx, l.emailKey(e), member)
		}
		for _, id := range events {
			p.Del(ctx, l.eventClaimKey(id))
		}
		return nil
	})
	return err
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
//
// On a Cluster it scans the primaries that hold a bucket one after the other, in address order;
// the cursor carries the primary's place in its low byte and SCAN's cursor above it. A failover
// during the walk can make it skip a primary's learners: a reevaluation is then run again.
func (l *Ledger) Learners(ctx context.Context, cursor uint64, batch int64) ([]int64, uint64, error) {
	pattern := l.opts.Prefix + "user:*:record"
	if !l.Sharded() {
		keys, next, err := l.rdb.Scan(ctx, cursor, pattern, batch).Result()
		if err != nil {
			return nil, 0, fmt.Errorf("list learners: %w", err)
		}
		return l.learnerIDs(keys), next, nil
	}
	nodes, err := l.primaries(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("list learners: %w", err)
	}
	node, scan := 0, cursor>>8
	if cursor != 0 {
		node = int(cursor&0xff) - 1
	}
	if node < 0 || node >= len(nodes) || scan >= 1<<56 {
		return nil, 0, fmt.Errorf("list learners: cursor %d is not one this scan handed out", cursor)
	}
	keys, next, err := nodes[node].Scan(ctx, scan, l.opts.Prefix+"{b*}:user:*:record", batch).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("list learners: %w", err)
	}
	switch {
	case next != 0:
		next = next<<8 | uint64(node+1)
	case node+1 < len(nodes):
		next = uint64(node + 2) // the next primary, from its start
	}
	return l.learnerIDs(keys), next, nil
}

// learnerIDs reads the user ids of learner record keys.
func (l *Ledger) learnerIDs(keys []string) []int64 {
	out := make([]int64, 0, len(keys))
	for _, k := range keys {
		_, s, _ := strings.Cut(k, "user:")
		if uid, err := strconv.ParseInt(strings.TrimSuffix(s, ":record"), 10, 64); err == nil {
			out = append(out, uid)
		}
	}
	return out
}

// primaries lists, in address order, the Cluster primaries that hold a bucket.
func (l *Ledger) primaries(ctx context.Context) ([]*redis.Client, error) {
	cc, ok := l.rdb.(*redis.ClusterClient)
	if !ok {
		// The Cluster layout on one Redis (tests): that Redis holds every bucket.
		c, ok := l.rdb.(*redis.Client)
		if !ok {
			return nil, fmt.Errorf("the sharded layout needs a Redis Cluster client, not %T", l.rdb)
		}
		return []*redis.Client{c}, nil
	}
	byAddr := map[string]*redis.Client{}
	for _, tag := range l.tags {
		c, err := cc.MasterForKey(ctx, tag)
		if err != nil {
			return nil, err
		}
		byAddr[c.Options().Addr] = c
	}
	addrs := make([]string, 0, len(byAddr))
	for a := range byAddr {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	out := make([]*redis.Client, len(addrs))
	for i, a := range addrs {
		out[i] = byAddr[a]
	}
	return out, nil
}
