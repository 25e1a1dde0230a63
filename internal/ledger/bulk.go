package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/redislock"
)

// A row waiting for a bulk run of its badge class sits in the class's bulk set (user ids scored
// by when they were added), and the class in the set of classes with rows waiting. The bulk set
// only says who should go in one batch: the row's owed mark stays in the owed set, so a row
// taken from it by a run that then dies is still found by the sweeper.
//
// The bulk keys share one hash tag: taking rows also forgets an emptied class in one script,
// which Redis Cluster allows only within one slot.
func (l *Ledger) bulkKey(badgeClass string) string {
	return l.opts.Prefix + "{bulk}:class:" + badgeClass
}
func (l *Ledger) bulkClassesKey() string { return l.opts.Prefix + "{bulk}:classes" }

// AddBulk puts rows in the bulk sets of their badge classes; a row already waiting keeps its
// place.
func (l *Ledger) AddBulk(ctx context.Context, keys ...RowKey) error {
	if len(keys) == 0 {
		return nil
	}
	now := float64(stamp(l.opts.Now()))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		classes := map[string]bool{}
		for _, k := range keys {
			p.ZAddNX(ctx, l.bulkKey(k.BadgeClass), redis.Z{Score: now, Member: strconv.FormatInt(k.UserID, 10)})
			if !classes[k.BadgeClass] {
				classes[k.BadgeClass] = true
				p.SAdd(ctx, l.bulkClassesKey(), k.BadgeClass)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add %d rows to bulk runs: %w", len(keys), err)
	}
	return nil
}

// takeBulkScript pops the oldest rows of a class's bulk set and forgets the class once its set
// is empty, in one step, so that a row added meanwhile never sits in a set the sweeper does not
// look at.
var takeBulkScript = redis.NewScript(`
local got = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
local out = {}
for i = 1, #got, 2 do out[#out + 1] = got[i] end
return out`)

// TakeBulk takes up to n rows of badgeClass waiting for a bulk run, oldest first.
func (l *Ledger) TakeBulk(ctx context.Context, badgeClass string, n int) ([]RowKey, error) {
	ids, err := takeBulkScript.Run(ctx, l.rdb, []string{l.bulkKey(badgeClass), l.bulkClassesKey()}, n, badgeClass).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("take bulk rows of %s: %w", badgeClass, err)
	}
	out := make([]RowKey, 0, len(ids))
	for _, s := range ids {
		uid, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, RowKey{BadgeClass: badgeClass, UserID: uid})
	}
	return out, nil
}

// BulkClasses lists the badge classes with rows waiting for a bulk run.
func (l *Ledger) BulkClasses(ctx context.Context) ([]string, error) {
	classes, err := l.rdb.SMembers(ctx, l.bulkClassesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list bulk classes: %w", err)
	}
	return classes, nil
}

// BulkWaiting counts the rows of badgeClass waiting for a bulk run.
func (l *Ledger) BulkWaiting(ctx context.Context, badgeClass string) (int64, error) {
	n, err := l.rdb.ZCard(ctx, l.bulkKey(badgeClass)).Result()
	if err != nil {
		return 0, fmt.Errorf("count bulk rows of %s: %w", badgeClass, err)
	}
	return n, nil
}

// InBulk reports, for each row, whether it waits in its class's bulk set.
func (l *Ledger) InBulk(ctx context.Context, keys []RowKey) ([]bool, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.FloatCmd, len(keys))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.ZScore(ctx, l.bulkKey(k.BadgeClass), strconv.FormatInt(k.UserID, 10))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("look up %d rows in bulk runs: %w", len(keys), err)
	}
	out := make([]bool, len(keys))
	for i, c := range cmds {
		switch err := c.Err(); {
		case err == nil:
			out[i] = true
		case !errors.Is(err, redis.Nil):
			return nil, fmt.Errorf("look up row %s in bulk runs: %w", keys[i], err)
		}
	}
	return out, nil
}

// ClassRows counts the rows of badgeClass (from the row index, in O(log n)): about as many
// assertions as the host holds for the class, which tells a bulk run whether listing the whole
// class costs fewer requests than looking its learners up.
func (l *Ledger) ClassRows(ctx context.Context, badgeClass string) (int64, error) {
	// Row keys are "<class>:<user id>", and ';' sorts right after ':'.
	counts := make([]*redis.IntCmd, len(l.tags))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tag := range l.tags {
			counts[i] = p.ZLexCount(ctx, l.rowIndexKey(tag), "["+badgeClass+":", "("+badgeClass+";")
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", badgeClass, err)
	}
	var n int64
	for _, c := range counts {
		n += c.Val()
	}
	return n, nil
}

// bulkRunKey holds the lease of the bulk run of a class that is working: one run at a time,
// whatever asynq thinks is active (a run whose "done" mark was lost in a failover stays active
// in asynq until its recoverer looks, a minute or two later).
func (l *Ledger) bulkRunKey(badgeClass string) string {
	return l.opts.Prefix + "{bulk}:run:" + badgeClass
}

// StartBulkRun takes the lease of badgeClass's bulk run; ok is false while another run holds it.
func (l *Ledger) StartBulkRun(ctx context.Context, badgeClass string, lease time.Duration) (token string, ok bool, err error) {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	token = hex.EncodeToString(nonce[:])
	ok, err = l.rdb.SetNX(ctx, l.bulkRunKey(badgeClass), token, lease).Result()
	if err != nil {
		return "", false, fmt.Errorf("start bulk run of %s: %w", badgeClass, err)
	}
	return token, ok, nil
}

// RenewBulkRun extends the run's lease; ErrLockLost when it no longer holds it.
func (l *Ledger) RenewBulkRun(ctx context.Context, badgeClass, token string, lease time.Duration) error {
	n, err := renewScript.Run(ctx, l.rdb, []string{l.bulkRunKey(badgeClass)}, token, lease.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("renew bulk run of %s: %w", badgeClass, err)
	}
	if n == 0 {
		return fmt.Errorf("bulk run of %s: %w", badgeClass, ErrLockLost)
	}
	return nil
}

// EndBulkRun releases the run's lease if it still holds it.
func (l *Ledger) EndBulkRun(ctx context.Context, badgeClass, token string) error {
	if _, err := redislock.Release(ctx, l.rdb, l.bulkRunKey(badgeClass), token); err != nil {
		return fmt.Errorf("end bulk run of %s: %w", badgeClass, err)
	}
	return nil
}

// BulkRunning reports whether a bulk run of badgeClass holds its lease.
func (l *Ledger) BulkRunning(ctx context.Context, badgeClass string) (bool, error) {
	n, err := l.rdb.Exists(ctx, l.bulkRunKey(badgeClass)).Result()
	if err != nil {
		return false, fmt.Errorf("look up bulk run of %s: %w", badgeClass, err)
	}
	return n == 1, nil
}
