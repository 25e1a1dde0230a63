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
// On a Cluster it first counts what is due in each bucket and shares limit among them, so that a
// full claim means rows are left and a short one that none are.
func (l *Ledger) ClaimDue(ctx context.Context, now time.Time, limit int, requeue time.Duration) ([]RowKey, error) {
	args := []any{stamp(now), 0, stamp(now.Add(requeue))}
	var members []string
	if !l.Sharded() {
		args[1] = limit
		res, err := claimScript.Run(ctx, l.rdb, []string{l.owedKey("")}, args...).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("claim due rows: %w", err)
		}
		members = res
	} else {
		due, err := l.countOwed(ctx, now)
		if err != nil {
			return nil, fmt.Errorf("claim due rows: %w", err)
		}
		shares := share(due, limit)
		cmds := make([]*redis.Cmd, 0, len(l.tags))
		_, err = l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, n := range shares {
				if n > 0 {
					cmds = append(cmds, claimScript.Eval(ctx, p, []string{l.owedKey(l.tags[i])}, args[0], n, args[2]))
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("claim due rows: %w", err)
		}
		for _, c := range cmds {
			res, err := c.StringSlice()
			if err != nil {
				return nil, fmt.Errorf("claim due rows: %w", err)
			}
			members = append(members, res...)
		}
	}
	out := make([]RowKey, 0, len(members))
	for _, s := range members {
		k, err := ParseRowKey(s)
		if err != nil {
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

// share divides limit among buckets with due[i] rows each, evenly, giving what one bucket cannot
// use to the others.
func share(due []int64, limit int) []int {
	out := make([]int, len(due))
	left := limit
	for left > 0 {
		wanting := 0
		for i, d := range due {
			if d > int64(out[i]) {
				wanting++
			}
		}
		if wanting == 0 {
			break
		}
		each := max(left/wanting, 1)
		for i, d := range due {
			if left == 0 {
				break
			}
			if g := min(int64(each), d-int64(out[i]), int64(left)); g > 0 {
				out[i] += int(g)
				left -= int(g)
			}
		}
	}
	return out
}

// countOwed counts, per bucket, the rows due at now (all of them when now is zero).
func (l *Ledger) countOwed(ctx context.Context, now time.Time) ([]int64, error) {
	hi := "+inf"
	if !now.IsZero() {
		hi = strconv.FormatInt(stamp(now), 10)
	}
	cmds := make([]*redis.IntCmd, len(l.tags))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tag := range l.tags {
			cmds[i] = p.ZCount(ctx, l.owedKey(tag), "-inf", hi)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(cmds))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// Owed counts rows with a reconcile mark, and those due at now.
func (l *Ledger) Owed(ctx context.Context, now time.Time) (total, due int64, err error) {
	all, err := l.countOwed(ctx, time.Time{})
	if err != nil {
		return 0, 0, fmt.Errorf("count owed rows: %w", err)
	}
	dueNow, err := l.countOwed(ctx, now)
	if err != nil {
		return 0, 0, fmt.Errorf("count owed rows: %w", err)
	}
	for i := range all {
		total += all[i]
		due += dueNow[i]
	}
	return total, due, nil
}

// Parked counts the rows parked in state failed (the failed index of every bucket).
func (l *Ledger) Parked(ctx context.Context) (int64, error) {
	cmds := make([]*redis.IntCmd, len(l.tags))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tag := range l.tags {
			cmds[i] = p.ZCard(ctx, l.failedIndexKey(tag))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count parked rows: %w", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}
