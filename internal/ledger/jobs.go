package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// jobField holds, in the row hash, the id of the reconcile job queued for the row and not yet
// started (the row's job slot). Keeping it in the row hash means an erase removes it with the
// row, and a slot can never outlive or recreate its row.
const jobField = "job"

// claimJobScript fills an empty slot. EXISTS first: an HSET on a missing row would bring an
// erased row back as a hash holding only the slot. With ARGV[3] "idle" it also refuses while a
// job holds the row's lock (KEYS[2]) or once the row owes nothing (no member ARGV[4] in the owed
// set KEYS[3]): a job that finished since the sweeper claimed the row settled it.
// Returns {1, id} when claimed, {0, current} when a job is already waiting, and with an empty
// string 2 when a job runs, 3 when nothing is owed (both idle only), -1 when the row is gone.
var claimJobScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, ''} end
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if cur then return {0, cur} end
if ARGV[3] == 'idle' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {2, ''} end
  if not redis.call('ZSCORE', KEYS[3], ARGV[4]) then return {3, ''} end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
return {1, ARGV[1]}`)

// Outcomes of claimJobScript.
const (
	claimGone    = -1
	claimWaiting = 0
	claimTaken   = 1
	claimRunning = 2
	claimSettled = 3
)

func (l *Ledger) claimJob(ctx context.Context, k RowKey, id, mode string) (code int64, current string, err error) {
	res, err := claimJobScript.Run(ctx, l.rdb, []string{l.rowKey(k), l.lockKey(k), l.owedKey(l.bucket(k.UserID))},
		id, jobField, mode, k.String()).Slice()
	if err != nil {
		return 0, "", fmt.Errorf("claim job slot of row %s: %w", k, err)
	}
	if len(res) != 2 {
		return 0, "", fmt.Errorf("claim job slot of row %s: unexpected reply %v", k, res)
	}
	code, _ = res[0].(int64)
	current, _ = res[1].(string)
	if code == claimGone {
		return code, "", fmt.Errorf("claim job slot of row %s: %w", k, ErrRowGone)
	}
	return code, current, nil
}

// ClaimJob puts id in the row's job slot if it is empty. ok is false when another job is
// already waiting (current is its id): that job will read the row's latest version when it
// runs, so no other is needed. ErrRowGone when the row does not exist.
func (l *Ledger) ClaimJob(ctx context.Context, k RowKey, id string) (ok bool, current string, err error) {
	code, current, err := l.claimJob(ctx, k, id, "")
	return code == claimTaken, current, err
}

// ClaimIdleJob is ClaimJob that also refuses while a job runs on the row (holds its lock) or
// when the row owes no reconcile: for the sweeper, which queues a row only when it is owed and
// no job waits or works on it. A running job settles the owed mark itself, or leaves it for the
// next sweep.
func (l *Ledger) ClaimIdleJob(ctx context.Context, k RowKey, id string) (ok bool, err error) {
	code, _, err := l.claimJob(ctx, k, id, "idle")
	return code == claimTaken, err
}

// startJobScript takes the row lock (with a fencing token, as Lock) and empties the slot of the
// starting job in one step, so no moment exists where a sweeper sees neither a waiting nor a
// running job. The slot is emptied even when the lock is busy: the holder queues again if the
// row moved under it.
var startJobScript = redis.NewScript(`
local token = redis.call('INCR', KEYS[1])
if redis.call('HGET', KEYS[3], ARGV[3]) == ARGV[2] then redis.call('HDEL', KEYS[3], ARGV[3]) end
if redis.call('SET', KEYS[2], token, 'NX', 'PX', ARGV[1]) then return {1, token} end
return {0, token}`)

// StartJob is Lock for the job id: it also empties the row's job slot if it holds id, so a
// change recorded from now on queues a new job instead of counting on this one.
func (l *Ledger) StartJob(ctx context.Context, k RowKey, id string, lease time.Duration) (token string, ok bool, err error) {
	res, err := startJobScript.Run(ctx, l.rdb, []string{l.fenceKey(l.bucket(k.UserID)), l.lockKey(k), l.rowKey(k)},
		lease.Milliseconds(), id, jobField).Slice()
	if err != nil {
		return "", false, fmt.Errorf("start job on row %s: %w", k, err)
	}
	if len(res) != 2 {
		return "", false, fmt.Errorf("start job on row %s: unexpected reply %v", k, res)
	}
	code, _ := res[0].(int64)
	n, _ := res[1].(int64)
	return strconv.FormatInt(n, 10), code == 1, nil
}

// releaseJobScript empties the slot only if it still holds this job's id, so a job never
// clears the slot of a newer one.
var releaseJobScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[1], ARGV[2])
  return 1
end
return 0`)

// ReleaseJob empties the row's job slot if it holds id (a job that starts, an enqueue that
// failed, or a job the queue lost). released is false when the slot held something else.
func (l *Ledger) ReleaseJob(ctx context.Context, k RowKey, id string) (released bool, err error) {
	n, err := releaseJobScript.Run(ctx, l.rdb, []string{l.rowKey(k)}, id, jobField).Int()
	if err != nil {
		return false, fmt.Errorf("release job slot of row %s: %w", k, err)
	}
	return n == 1, nil
}

// QueuedJob is the id of the job queued for the row and not yet started ("" when none). The
// admin erase reads it before erasing, to delete the task from the queue.
func (l *Ledger) QueuedJob(ctx context.Context, k RowKey) (string, error) {
	id, err := l.rdb.HGet(ctx, l.rowKey(k), jobField).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read job slot of row %s: %w", k, err)
	}
	return id, nil
}

// QueuedJobs is QueuedJob for many rows in one round trip; ids[i] belongs to keys[i].
func (l *Ledger) QueuedJobs(ctx context.Context, keys []RowKey) ([]string, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HGet(ctx, l.rowKey(k), jobField)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read job slots of %d rows: %w", len(keys), err)
	}
	ids := make([]string, len(keys))
	for i, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read job slot of row %s: %w", keys[i], err)
		}
		ids[i] = c.Val()
	}
	return ids, nil
}
