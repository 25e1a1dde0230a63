package ledger

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var claimScript = redis.NewScript(`
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], m) end
return due`)

// ClaimDue takes up to limit rows whose reconcile is due at now and pushes their mark to
// now+requeue, so one sweeper (of many replicas) queues each due row once per period. The mark
// stays until a job that saw the latest version clears it: a lost job is re-queued next period.
func (l *Ledger) ClaimDue(ctx context.Context, now time.Time, limit int, requeue time.Duration) ([]RowKey, error) {
	res, err := claimScript.Run(ctx, l.rdb, []string{l.owedKey()}, stamp(now), limit, stamp(now.Add(requeue))).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("claim due rows: %w", err)
	}
	out := make([]RowKey, 0, len(res))
	for _, s := range res {
		k, err := ParseRowKey(s)
		if err != nil {
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

// Owed counts rows with a reconcile mark, and those due at now.
func (l *Ledger) Owed(ctx context.Context, now time.Time) (total, due int64, err error) {
	total, err = l.rdb.ZCard(ctx, l.owedKey()).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("count owed rows: %w", err)
	}
	due, err = l.rdb.ZCount(ctx, l.owedKey(), "-inf", strconv.FormatInt(stamp(now), 10)).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("count owed rows: %w", err)
	}
	return total, due, nil
}
