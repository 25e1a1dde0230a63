package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/edx"
)

// Learner identifies whom an event is about. Email must already be lowercased.
type Learner struct {
	UserID  int64
	Email   string
	EmailAt int64 // event time, µs: the newest event decides the address new awards go to
}

// Intake is one event's change request: the learner, the course run, and one Update per rule
// of the current mapping that the event matches.
type Intake struct {
	Learner Learner
	Course  string
	Kind    edx.Kind
	Signal  edx.Signal
	At      int64
	Updates []Update
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

// Apply records an event's facts atomically (WATCH/MULTI: every key read is watched, so a
// concurrent intake or erase makes this one start over) and marks every changed row as owing a
// reconcile. It returns the rows whose facts changed; their version was bumped. An event that
// changes no fact writes nothing at all, not even the learner's address: what an unauthenticated
// sender cannot do, a sender of no-op events should not be able to grow either.
//
// A revocation or failing status also reaches facts stored by rules that are no longer in the
// mapping (or that matched under another mode), with the revoke settings stored in the fact.
// An event no newer than the learner's erasure fails with *ErasedError.
func (l *Ledger) Apply(ctx context.Context, in Intake) ([]RowKey, error) {
	uid := in.Learner.UserID
	for attempt := 0; attempt < maxTxRetries; attempt++ {
		var changed []RowKey
		err := l.rdb.Watch(ctx, func(tx *redis.Tx) error {
			changed = nil
			erasedAt, err := tx.Get(ctx, l.erasedKey(uid)).Int64()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			if err == nil && in.At <= erasedAt {
				return &ErasedError{UserID: uid, ErasedAt: time.UnixMicro(erasedAt)}
			}
			classes, err := tx.SMembers(ctx, l.userRowsKey(uid)).Result()
			if err != nil {
				return err
			}
			want := map[string]bool{}
			for _, u := range in.Updates {
				want[u.BadgeClass] = true
			}
			if in.Signal == edx.SignalRevokes || in.Signal == edx.SignalFailing {
				for _, c := range classes {
					want[c] = true
				}
			}
			keys := []string{l.userKey(uid)}
			ordered := make([]string, 0, len(want))
			for c := range want {
				ordered = append(ordered, c)
			}
			sort.Strings(ordered)
			for _, c := range ordered {
				keys = append(keys, l.factsKey(RowKey{c, uid}), l.rowKey(RowKey{c, uid}))
			}
			if err := tx.Watch(ctx, keys...).Err(); err != nil {
				return err
			}
			stored := map[string]map[string]string{}
			failed := map[string]bool{}
			for _, c := range ordered {
				m, err := tx.HGetAll(ctx, l.factsKey(RowKey{c, uid})).Result()
				if err != nil {
					return err
				}
				stored[c] = m
				state, err := tx.HGet(ctx, l.rowKey(RowKey{c, uid}), "state").Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				failed[c] = state == StateFailed
			}
			writes, err := mergeUpdates(in, stored, l.storedTargets(in, stored))
			if err != nil {
				return err
			}
			if len(writes) == 0 {
				return nil
			}
			userAt, _ := tx.HGet(ctx, l.userKey(uid), "email_at").Int64()
			now := l.opts.Now()
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if in.Learner.Email != "" {
					p.SAdd(ctx, l.userEmailsKey(uid), in.Learner.Email)
					p.SAdd(ctx, l.emailKey(in.Learner.Email), uid)
					if in.Learner.EmailAt >= userAt {
						p.HSet(ctx, l.userKey(uid), "email", in.Learner.Email, "email_at", in.Learner.EmailAt)
					}
				}
				for c, fields := range writes {
					k := RowKey{c, uid}
					changed = append(changed, k)
					p.HSet(ctx, l.factsKey(k), fields)
					p.HIncrBy(ctx, l.rowKey(k), "version", 1)
					p.HSetNX(ctx, l.rowKey(k), "state", StatePending)
					if failed[c] {
						// A parked row resumes on a new fact, with a fresh retry budget.
						p.HSet(ctx, l.rowKey(k), "state", StatePending, "reason", "", "retries", 0)
						p.ZRem(ctx, l.failedIndexKey(), k.String())
					}
					p.HSetNX(ctx, l.rowKey(k), "created_at", ms(now))
					p.HSet(ctx, l.rowKey(k), "updated_at", ms(now))
					p.SAdd(ctx, l.userRowsKey(uid), c)
					p.ZAdd(ctx, l.rowIndexKey(), redis.Z{Member: k.String()})
					p.ZAddArgs(ctx, l.owedKey(), redis.ZAddArgs{LT: true, Members: []redis.Z{{
						Score: float64(ms(now.Add(l.opts.IntakeGrace))), Member: k.String()}}})
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
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("record facts of user %d: %w", uid, err)
		}
		sort.Slice(changed, func(i, j int) bool { return changed[i].String() < changed[j].String() })
		return changed, nil
	}
	return nil, fmt.Errorf("record facts of user %d: too much contention", uid)
}

// mergeUpdates applies the ordering rules to every update against the stored facts and returns
// the facts to write, by badge class and field. stored is updated in place, so that a later
// update of the same field merges with the earlier one.
func mergeUpdates(in Intake, stored map[string]map[string]string, targets []Update) (map[string]map[string]any, error) {
	uid := in.Learner.UserID
	updates := append(append([]Update(nil), in.Updates...), targets...)
	writes := map[string]map[string]any{}
	for _, u := range updates {
		var old *Fact
		if raw, ok := stored[u.BadgeClass][in.Course+"|"+u.Rule]; ok {
			var f Fact
			if err := json.Unmarshal([]byte(raw), &f); err != nil {
				return nil, fmt.Errorf("fact %s/%s of row %s: %w", in.Course, u.Rule, RowKey{u.BadgeClass, uid}, err)
			}
			old = &f
		}
		u.Course = in.Course
		nf, ok := Merge(old, u)
		if !ok {
			continue
		}
		b, _ := json.Marshal(nf)
		if writes[u.BadgeClass] == nil {
			writes[u.BadgeClass] = map[string]any{}
		}
		writes[u.BadgeClass][nf.Field()] = string(b)
		if stored[u.BadgeClass] == nil {
			stored[u.BadgeClass] = map[string]string{}
		}
		stored[u.BadgeClass][nf.Field()] = string(b)
	}
	return writes, nil
}

// storedTargets finds facts of this course run already in the ledger that a revocation or a
// failing status must reach although no current rule matched them.
func (l *Ledger) storedTargets(in Intake, stored map[string]map[string]string) []Update {
	if in.Signal != edx.SignalRevokes && in.Signal != edx.SignalFailing {
		return nil
	}
	seen := map[string]bool{}
	for _, u := range in.Updates {
		seen[u.BadgeClass+"\x00"+u.Rule] = true
	}
	var out []Update
	for class, fields := range stored {
		for field, raw := range fields {
			course, rule, ok := strings.Cut(field, "|")
			if !ok || course != in.Course || seen[class+"\x00"+rule] {
				continue
			}
			var f Fact
			if json.Unmarshal([]byte(raw), &f) != nil || f.Event != in.Kind || !f.Revoke {
				continue
			}
			out = append(out, Update{
				BadgeClass: class, Rule: rule, Signal: in.Signal, At: in.At, Event: f.Event,
				Revoke: f.Revoke, RevokeAfter: f.RevokeAfter, Order: f.Order, Award: f.Award,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].BadgeClass+out[i].Rule < out[j].BadgeClass+out[j].Rule
	})
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
	now := ms(l.opts.Now())
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
