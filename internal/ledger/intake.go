package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

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

// Apply records an event's facts atomically (WATCH/MULTI: every key read is watched, so a
// concurrent intake or erase makes this one start over) and marks every changed row as owing a
// reconcile. It returns the rows whose facts changed; their version was bumped.
//
// A revocation or failing status also reaches facts stored by rules that are no longer in the
// mapping (or that matched under another mode), with the revoke settings stored in the fact.
func (l *Ledger) Apply(ctx context.Context, in Intake) ([]RowKey, error) {
	uid := in.Learner.UserID
	for attempt := 0; attempt < maxTxRetries; attempt++ {
		var changed []RowKey
		err := l.rdb.Watch(ctx, func(tx *redis.Tx) error {
			changed = nil
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
			updates := append([]Update(nil), in.Updates...)
			updates = append(updates, l.storedTargets(in, stored)...)

			writes := map[string]map[string]any{} // class → field → fact JSON
			for _, u := range updates {
				var old *Fact
				if raw, ok := stored[u.BadgeClass][in.Course+"|"+u.Rule]; ok {
					var f Fact
					if err := json.Unmarshal([]byte(raw), &f); err != nil {
						return fmt.Errorf("fact %s/%s of row %s: %w", in.Course, u.Rule, RowKey{u.BadgeClass, uid}, err)
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
				// The merged fact is the stored one for a later update of the same field.
				if stored[u.BadgeClass] == nil {
					stored[u.BadgeClass] = map[string]string{}
				}
				stored[u.BadgeClass][nf.Field()] = string(b)
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
					}
					p.HSetNX(ctx, l.rowKey(k), "created_at", ms(now))
					p.HSet(ctx, l.rowKey(k), "updated_at", ms(now))
					p.SAdd(ctx, l.userRowsKey(uid), c)
					p.SAdd(ctx, l.rowsKey(), k.String())
					p.ZAddArgs(ctx, l.owedKey(), redis.ZAddArgs{LT: true, Members: []redis.Z{{
						Score: float64(ms(now.Add(l.opts.IntakeGrace))), Member: k.String()}}})
				}
				return nil
			})
			return err
		}, l.userRowsKey(uid))
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("record facts of user %d: %w", uid, err)
		}
		sort.Slice(changed, func(i, j int) bool { return changed[i].String() < changed[j].String() })
		return changed, nil
	}
	return nil, fmt.Errorf("record facts of user %d: too much contention", uid)
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

// Retry puts a row back to work now with a fresh retry budget (admin retry).
func (l *Ledger) Retry(ctx context.Context, k RowKey) error {
	now := l.opts.Now()
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, l.rowKey(k), "state", StatePending, "reason", "", "retries", 0, "updated_at", ms(now))
		p.HIncrBy(ctx, l.rowKey(k), "version", 1)
		p.ZAdd(ctx, l.owedKey(), redis.Z{Score: float64(ms(now.Add(l.opts.IntakeGrace))), Member: k.String()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("retry row %s: %w", k, err)
	}
	return nil
}
