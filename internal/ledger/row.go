package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/redislock"
	"github.com/badgebridge/bridge/internal/rules"
)

// Row is one (badge class, learner) as stored.
type Row struct {
	Key           RowKey
	Version       int64
	SyncedVersion int64 // the version the last complete reconcile saw
	Generation    int64 // award generation: bumped when a held badge is taken away
	State         string
	Desired       string // "held" / "not held", as the last reconcile computed it
	EntityID      string
	OpenBadgeID   string
	Reason        string
	Retries       int
	AttemptAt     time.Time // an award POST whose outcome is not known yet (zero: none)
	NextCheck     time.Time // when the row must be looked at again by itself (zero: never)
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Email         string   // the address new awards go to (lowercased)
	Emails        []string // every address the bridge ever used or looked up for the learner
	Facts         []rules.Fact
}

// Read loads a row with its facts and the learner's addresses; nil when the row does not exist.
func (l *Ledger) Read(ctx context.Context, k RowKey) (*Row, error) {
	rows, err := l.ReadMany(ctx, []RowKey{k})
	if err != nil {
		return nil, err
	}
	return rows[0], nil
}

// ReadMany loads rows in one round trip; an entry is nil where that row does not exist.
func (l *Ledger) ReadMany(ctx context.Context, keys []RowKey) ([]*Row, error) {
	type cmds struct {
		h, facts *redis.MapStringStringCmd
		emails   *redis.StringSliceCmd
		email    *redis.StringCmd
	}
	c := make([]cmds, len(keys))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			c[i].h = p.HGetAll(ctx, l.rowKey(k))
			c[i].facts = p.HGetAll(ctx, l.factsKey(k))
			c[i].emails = p.SMembers(ctx, l.userEmailsKey(k.UserID))
			c[i].email = p.HGet(ctx, l.userKey(k.UserID), "email")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read %d row(s): %w", len(keys), err)
	}
	out := make([]*Row, len(keys))
	for i, k := range keys {
		r, err := parseRow(k, c[i].h.Val(), c[i].facts.Val(), c[i].emails.Val(), c[i].email.Val())
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

func parseRow(k RowKey, m, facts map[string]string, emails []string, email string) (*Row, error) {
	if len(m) == 0 {
		return nil, nil
	}
	r := &Row{
		Key: k, State: m["state"], Desired: m["desired"], EntityID: m["entity_id"],
		OpenBadgeID: m["open_badge_id"], Reason: m["reason"], Email: email,
	}
	r.Version = atoi(m["version"])
	r.SyncedVersion = atoi(m["synced_version"])
	r.Generation = atoi(m["gen"])
	r.Retries = int(atoi(m["retries"]))
	r.AttemptAt = readStamp(atoi(m["attempt_at"]))
	r.NextCheck = readStamp(atoi(m["next_check"]))
	r.CreatedAt = readStamp(atoi(m["created_at"]))
	r.UpdatedAt = readStamp(atoi(m["updated_at"]))
	r.Emails = emails
	sort.Strings(r.Emails)
	decoded, err := decodeFacts(k, facts)
	if err != nil {
		return nil, fmt.Errorf("read row %s: %w", k, err)
	}
	for _, f := range decoded {
		r.Facts = append(r.Facts, f)
	}
	sort.Slice(r.Facts, func(i, j int) bool {
		if r.Facts[i].Order != r.Facts[j].Order {
			return r.Facts[i].Order < r.Facts[j].Order
		}
		return r.Facts[i].Field() < r.Facts[j].Field()
	})
	return r, nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Lock takes the row's lock with a lease. The lock value is a fencing token from a global
// counter, so every later write can prove it still holds the lease. ok is false when another job
// holds it.
func (l *Ledger) Lock(ctx context.Context, k RowKey, lease time.Duration) (token string, ok bool, err error) {
	n, err := l.rdb.Incr(ctx, l.fenceKey(l.bucket(k.UserID))).Result()
	if err != nil {
		return "", false, fmt.Errorf("lock row %s: %w", k, err)
	}
	token = strconv.FormatInt(n, 10)
	ok, err = l.rdb.SetNX(ctx, l.lockKey(k), token, lease).Result()
	if err != nil {
		return "", false, fmt.Errorf("lock row %s: %w", k, err)
	}
	return token, ok, nil
}

var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// Renew extends the lease; ErrLockLost when the token no longer holds the lock. Call it before
// every badge-host write, so a job whose lease ran out never writes to the host.
func (l *Ledger) Renew(ctx context.Context, k RowKey, token string, lease time.Duration) error {
	n, err := renewScript.Run(ctx, l.rdb, []string{l.lockKey(k)}, token, lease.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("renew lock of row %s: %w", k, err)
	}
	if n == 0 {
		return fmt.Errorf("row %s: %w", k, ErrLockLost)
	}
	return nil
}

// Unlock releases the lock if the token still holds it.
func (l *Ledger) Unlock(ctx context.Context, k RowKey, token string) error {
	if _, err := redislock.Release(ctx, l.rdb, l.lockKey(k), token); err != nil {
		return fmt.Errorf("unlock row %s: %w", k, err)
	}
	return nil
}

// writeScript: every ledger write of a reconcile job checks the fencing token first.
// ARGV: token, member, mode, seen version, next check ms, now ms, outbox cap, n, then n
// announcements (outboxArgs), then field/value pairs.
// mode "step" only writes fields; mode "final" also settles the owed mark: when the version is
// still the one the job read, the mark moves to the next check (or goes); otherwise the row is
// owed now and the caller queues a fresh job. Announcements go to the outbox in the same script
// as the fields, so the row never records a change on the host without its announcement.
var writeScript = redis.NewScript(outboxLua + `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
local n = tonumber(ARGV[8])
local first = 9 + n
if #ARGV >= first then
  redis.call('HSET', KEYS[2], unpack(ARGV, first))
  if redis.call('HGET', KEYS[2], 'state') == 'failed' then
    redis.call('ZADD', KEYS[4], 0, ARGV[2])
  else
    redis.call('ZREM', KEYS[4], ARGV[2])
  end
end
outbox(KEYS[5], KEYS[6], 9, 8 + n, tonumber(ARGV[7]))
if ARGV[3] ~= 'final' then return 1 end
local v = redis.call('HGET', KEYS[2], 'version') or '0'
if v ~= ARGV[4] then
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
  return 2
end
redis.call('HSET', KEYS[2], 'synced_version', v, 'next_check', ARGV[5])
if tonumber(ARGV[5]) > 0 then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
else
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return 1`)

// Fields is a set of row fields to write; a time.Time value is stored as the ledger stores
// times (the zero time as 0, "none").
type Fields map[string]any

func (f Fields) args() []any {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		v := f[k]
		if t, ok := v.(time.Time); ok {
			v = stamp(t)
		}
		out = append(out, k, v)
	}
	return out
}

// Step writes fields during a job, fenced by token, with the announcements of what the job
// changed on the host so far (contract 9.4; none is the usual case).
func (l *Ledger) Step(ctx context.Context, k RowKey, token string, f Fields, outbox ...Announcement) error {
	_, err := l.write(ctx, k, token, "step", 0, time.Time{}, f, outbox)
	return err
}

// Finish writes the job's outcome, fenced by token, and settles the owed mark: next is when
// the row must be looked at again (zero: never). moved is true when the row changed since
// the job read version seen; the row is then owed now and the caller must queue a fresh job.
// outbox holds the announcements of the job's changes on the host, recorded atomically with
// the outcome.
func (l *Ledger) Finish(ctx context.Context, k RowKey, token string, seen int64, next time.Time, f Fields, outbox ...Announcement) (moved bool, err error) {
	n, err := l.write(ctx, k, token, "final", seen, next, f, outbox)
	return n == 2, err
}

func (l *Ledger) write(ctx context.Context, k RowKey, token, mode string, seen int64, next time.Time, f Fields, outbox []Announcement) (int, error) {
	if f == nil {
		f = Fields{}
	}
	f["updated_at"] = l.opts.Now()
	ob, err := outboxArgs(outbox, l.outboxCap())
	if err != nil {
		return 0, fmt.Errorf("write row %s: %w", k, err)
	}
	args := append([]any{token, k.String(), mode, seen, stamp(next), stamp(l.opts.Now())}, ob...)
	args = append(args, f.args()...)
	tag := l.bucket(k.UserID)
	keys := []string{l.lockKey(k), l.rowKey(k), l.owedKey(tag), l.failedIndexKey(tag), l.outboxKey(tag), l.outboxDroppedKey(tag)}
	n, err := writeScript.Run(ctx, l.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("write row %s: %w", k, err)
	}
	switch n {
	case -1:
		return n, fmt.Errorf("write row %s: %w", k, ErrLockLost)
	case -2:
		// Erased while the job ran (admin erase): nothing to write.
		return n, fmt.Errorf("write row %s: %w", k, ErrRowGone)
	}
	return n, nil
}

// ErrRowGone means the row was erased.
var ErrRowGone = errors.New("row erased")
