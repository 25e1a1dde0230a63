package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/rules"
)

// Learner identifies whom an event is about. Email must already be lowercased.
type Learner struct {
	UserID  int64
	Email   string
	EmailAt int64 // event time, µs: the newest event decides the address new awards go to
}

const maxTxRetries = 50

// ErasedError refuses an event about a learner erased after the event's time: a captured event
// replayed after DELETE /v1/learners/{id} must not bring the learner back.
type ErasedError struct {
	UserID   int64
	ErasedAt time.Time
}

func (e *ErasedError) Error() string {
	return fmt.Sprintf("learner %d was erased at %s; events from before that are refused",
		e.UserID, e.ErasedAt.UTC().Format(time.RFC3339))
}

// Applied is what Apply changed: the rows whose facts changed (their version was bumped and a
// reconcile is owed), and whether the learner record changed.
type Applied struct {
	Rows   []RowKey
	Record bool
}

// Apply records an event's facts and its outcome in the learner record atomically (WATCH/MULTI: every key read is watched, so a
// concurrent intake or erase makes this one start over) and marks every changed row as owing a
// reconcile. It returns the rows whose facts changed; their version was bumped. An event that
// changes no fact writes nothing at all, not even the learner's address: what an unauthenticated
// sender cannot do, a sender of no-op events should not be able to grow either.
//
// A revocation or failing status also reaches facts stored by rules that are no longer in the
// mapping (or that matched under another mode), with the revoke settings stored in the fact.
// An event no newer than the learner's erasure fails with *ErasedError.
func (l *Ledger) Apply(ctx context.Context, who Learner, c rules.Change) (Applied, error) {
	return l.apply(ctx, who, c, false)
}

// Preview is Apply without writing: the rows Apply would owe a reconcile, and whether the
// learner record would change (bridge reevaluate without --yes).
func (l *Ledger) Preview(ctx context.Context, who Learner, c rules.Change) (Applied, error) {
	return l.apply(ctx, who, c, true)
}

func (l *Ledger) apply(ctx context.Context, who Learner, c rules.Change, dry bool) (Applied, error) {
	uid := who.UserID
	for attempt := 0; attempt < maxTxRetries; attempt++ {
		var changed []RowKey
		var recordChanged bool
		err := l.rdb.Watch(ctx, func(tx *redis.Tx) error {
			changed, recordChanged = nil, false
			erasedAt, err := tx.Get(ctx, l.erasedKey(uid)).Int64()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if err == nil && c.At <= erasedAt {
				return &ErasedError{UserID: uid, ErasedAt: time.UnixMicro(erasedAt)}
			}
			classes, err := tx.SMembers(ctx, l.userRowsKey(uid)).Result()
			if err != nil {
				return err
			}
			ordered := c.Classes(classes)
			keys := []string{l.userKey(uid), l.recordKey(uid)}
			for _, class := range ordered {
				keys = append(keys, l.factsKey(RowKey{class, uid}), l.rowKey(RowKey{class, uid}))
			}
			if err := tx.Watch(ctx, keys...).Err(); err != nil {
				return err
			}
			stored := rules.Stored{}
			failed := map[string]bool{}
			for _, class := range ordered {
				k := RowKey{class, uid}
				m, err := tx.HGetAll(ctx, l.factsKey(k)).Result()
				if err != nil {
					return err
				}
				if stored[class], err = decodeFacts(k, m); err != nil {
					return err
				}
				state, err := tx.HGet(ctx, l.rowKey(k), "state").Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				failed[class] = state == StateFailed
			}
			var rec rules.Record
			if c.Outcome != nil || c.Reevaluate {
				if rec, err = l.readRecord(ctx, tx, uid); err != nil {
					return err
				}
			}
			d := c.Decide(stored, rec, stamp(l.opts.Now()))
			writes := d.Facts
			if len(writes) == 0 && d.Run == nil {
				return nil
			}
			if dry {
				recordChanged = d.Run != nil
				for class := range writes {
					if d.Owed == nil || d.Owed[class] || !slices.Contains(classes, class) {
						changed = append(changed, RowKey{class, uid})
					}
				}
				return nil
			}
			userAt, _ := tx.HGet(ctx, l.userKey(uid), "email_at").Int64()
			now := l.opts.Now()
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if who.Email != "" {
					p.SAdd(ctx, l.userEmailsKey(uid), who.Email)
					p.SAdd(ctx, l.emailKey(who.Email), uid)
					if who.EmailAt >= userAt {
						p.HSet(ctx, l.userKey(uid), "email", who.Email, "email_at", who.EmailAt)
						// The learner record's current username and name come from the newest event.
						p.HSet(ctx, l.userKey(uid), "username", c.Learner.Username, "name", c.Learner.Name)
					}
				}
				if d.Run != nil {
					recordChanged = true
					b, _ := json.Marshal(d.Run)
					p.HSet(ctx, l.recordKey(uid), c.Course, b)
				}
				for class, facts := range writes {
					k := RowKey{class, uid}
					p.HSet(ctx, l.factsKey(k), encodeFacts(facts))
					if d.Owed != nil && !d.Owed[class] && slices.Contains(classes, class) {
						continue // a reevaluation: the facts are brought up to date, nothing is owed
					}
					changed = append(changed, k)
					p.HIncrBy(ctx, l.rowKey(k), "version", 1)
					p.HSetNX(ctx, l.rowKey(k), "state", StatePending)
					if failed[class] {
						// A parked row resumes on a new fact, with a fresh retry budget.
						p.HSet(ctx, l.rowKey(k), "state", StatePending, "reason", "", "retries", 0)
						p.ZRem(ctx, l.failedIndexKey(), k.String())
					}
					p.HSetNX(ctx, l.rowKey(k), "created_at", stamp(now))
					p.HSet(ctx, l.rowKey(k), "updated_at", stamp(now))
					p.SAdd(ctx, l.userRowsKey(uid), class)
					p.ZAdd(ctx, l.rowIndexKey(), redis.Z{Member: k.String()})
					p.ZAddArgs(ctx, l.owedKey(), redis.ZAddArgs{LT: true, Members: []redis.Z{{
						Score: float64(stamp(now.Add(l.opts.IntakeGrace))), Member: k.String()}}})
				}
				return nil
			})
			return err
		}, l.userRowsKey(uid), l.erasedKey(uid))
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		var erased *ErasedError
		if errors.As(err, &erased) {
			return Applied{}, err
		}
		if err != nil {
			return Applied{}, fmt.Errorf("record facts of user %d: %w", uid, err)
		}
		sort.Slice(changed, func(i, j int) bool { return changed[i].String() < changed[j].String() })
		return Applied{Rows: changed, Record: recordChanged}, nil
	}
	return Applied{}, fmt.Errorf("record facts of user %d: too much contention", uid)
}

// readRecord loads the learner record within the transaction.
func (l *Ledger) readRecord(ctx context.Context, tx *redis.Tx, uid int64) (rules.Record, error) {
	m, err := tx.HGetAll(ctx, l.recordKey(uid)).Result()
	if err != nil {
		return nil, err
	}
	return decodeRecord(uid, m)
}

func decodeRecord(uid int64, m map[string]string) (rules.Record, error) {
	rec := make(rules.Record, len(m))
	for run, raw := range m {
		var r rules.RunRecord
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, fmt.Errorf("learner record of user %d, run %s: %w", uid, run, err)
		}
		rec[run] = &r
	}
	return rec, nil
}

// decodeFacts reads a row's facts hash.
func decodeFacts(k RowKey, m map[string]string) (map[string]rules.Fact, error) {
	out := make(map[string]rules.Fact, len(m))
	for field, raw := range m {
		var f rules.Fact
		if err := json.Unmarshal([]byte(raw), &f); err != nil {
			return nil, fmt.Errorf("fact %s of row %s: %w", field, k, err)
		}
		out[field] = f
	}
	return out, nil
}

// encodeFacts gives the facts hash fields to write.
func encodeFacts(facts []rules.Fact) map[string]any {
	out := make(map[string]any, len(facts))
	for _, f := range facts {
		b, _ := json.Marshal(f)
		out[f.Field()] = string(b)
	}
	return out
}

var retryScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'reason', '', 'retries', 0, 'updated_at', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1`)

// Retry puts rows back to work now with a fresh retry budget (admin retry), in one round trip.
// Each is due at once: the sweeper queues it at its next pass, so a retry of thousands of rows
// needs no enqueue per row. A row erased meanwhile is skipped. It returns how many it put back.
func (l *Ledger) Retry(ctx context.Context, keys ...RowKey) (int, error) {
	now := stamp(l.opts.Now())
	cmds := make([]*redis.Cmd, len(keys))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = retryScript.Eval(ctx, p, []string{l.rowKey(k), l.failedIndexKey(), l.owedKey()}, k.String(), now)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("retry %d row(s): %w", len(keys), err)
	}
	n := 0
	for _, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			n++
		}
	}
	return n, nil
}
