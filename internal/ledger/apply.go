package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
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
	return l.apply(ctx, who, c, false, nil)
}

// ApplyRecorded is Apply for the event eventID that also writes its record, built from what the
// change did, in the same transaction (nil record: none). An event whose record exists already
// changes nothing and fails with *SeenError: its de-duplication is read in the transaction's
// first round trip, and watched, so two deliveries of one event never both apply.
func (l *Ledger) ApplyRecorded(ctx context.Context, who Learner, c rules.Change, eventID string, record func(Applied) *EventRecord) (Applied, error) {
	return l.applyEvent(ctx, who, c, false, eventID, record)
}

// SeenError is ApplyRecorded's answer for an event already recorded.
type SeenError struct{ Record EventRecord }

func (e *SeenError) Error() string { return fmt.Sprintf("event %s was already handled", e.Record.ID) }

// Preview is Apply without writing: the rows Apply would owe a reconcile, and whether the
// learner record would change (bridge reevaluate without --yes).
func (l *Ledger) Preview(ctx context.Context, who Learner, c rules.Change) (Applied, error) {
	return l.apply(ctx, who, c, true, nil)
}

func (l *Ledger) apply(ctx context.Context, who Learner, c rules.Change, dry bool, record func(Applied) *EventRecord) (Applied, error) {
	return l.applyEvent(ctx, who, c, dry, "", record)
}

func (l *Ledger) applyEvent(ctx context.Context, who Learner, c rules.Change, dry bool, eventID string, record func(Applied) *EventRecord) (Applied, error) {
	uid := who.UserID
	tag := l.bucket(uid)
	for attempt := 0; attempt < maxTxRetries; attempt++ {
		var changed []RowKey
		var recordChanged bool
		// The classes the change names are known before any read: their keys are watched and
		// read in the first round trips; only a revocation or failing status that reaches
		// other rows of the learner needs one more pair.
		initial := c.Classes(nil)
		var emailed string
		err := l.rdb.Watch(ctx, func(tx *redis.Tx) error {
			changed, recordChanged, emailed = nil, false, ""
			st := newSnapshot(c, uid)
			st.eventID = eventID
			if err := l.readSnapshot(ctx, tx, st, initial, true); err != nil {
				return err
			}
			if st.seen != nil {
				return &SeenError{Record: *st.seen}
			}
			if st.erasedAt != nil && c.At <= *st.erasedAt {
				return &ErasedError{UserID: uid, ErasedAt: time.UnixMicro(*st.erasedAt)}
			}
			classes := st.classes
			var extra []string
			for _, class := range c.Classes(classes) {
				if !slices.Contains(initial, class) {
					extra = append(extra, class)
				}
			}
			if len(extra) > 0 {
				if err := l.readSnapshot(ctx, tx, st, extra, false); err != nil {
					return err
				}
			}
			stored, failed, rec, userAt := st.stored, st.failed, st.record, st.userAt
			d := c.Decide(stored, rec, stamp(l.opts.Now()))
			writes := d.Facts
			recordChanged = d.Run != nil
			for class := range writes {
				// A reevaluation brings the facts of other rows up to date and owes them nothing.
				if d.Owed == nil || d.Owed[class] || !slices.Contains(classes, class) {
					changed = append(changed, RowKey{class, uid})
				}
			}
			sort.Slice(changed, func(i, j int) bool { return changed[i].String() < changed[j].String() })
			var event *EventRecord
			if record != nil {
				event = record(Applied{Rows: changed, Record: recordChanged})
			}
			if dry || (len(writes) == 0 && d.Run == nil && event == nil) {
				return nil
			}
			now := l.opts.Now()
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if event != nil {
					l.recordIn(ctx, p, *event)
				}
				if len(writes) == 0 && d.Run == nil {
					return nil // only the event record
				}
				if who.Email != "" {
					p.SAdd(ctx, l.userEmailsKey(uid), who.Email)
					if l.Sharded() {
						emailed = who.Email // the index is in another slot: written after
					} else {
						p.SAdd(ctx, l.emailKey(who.Email), uid)
					}
					if who.EmailAt >= userAt {
						p.HSet(ctx, l.userKey(uid), "email", who.Email, "email_at", who.EmailAt)
						// The learner record's current username and name come from the newest event.
						p.HSet(ctx, l.userKey(uid), "username", c.Learner.Username, "name", c.Learner.Name)
					}
				}
				if d.Run != nil {
					b, _ := json.Marshal(d.Run)
					p.HSet(ctx, l.recordKey(uid), c.Course, b)
				}
				for class, facts := range writes {
					k := RowKey{class, uid}
					p.HSet(ctx, l.factsKey(k), encodeFacts(facts))
					if !slices.Contains(changed, k) {
						continue
					}
					p.HIncrBy(ctx, l.rowKey(k), "version", 1)
					p.HSetNX(ctx, l.rowKey(k), "state", StatePending)
					if failed[class] {
						// A parked row resumes on a new fact, with a fresh retry budget.
						p.HSet(ctx, l.rowKey(k), "state", StatePending, "reason", "", "retries", 0)
						p.ZRem(ctx, l.failedIndexKey(tag), k.String())
					}
					p.HSetNX(ctx, l.rowKey(k), "created_at", stamp(now))
					p.HSet(ctx, l.rowKey(k), "updated_at", stamp(now))
					p.SAdd(ctx, l.userRowsKey(uid), class)
					p.ZAdd(ctx, l.rowIndexKey(tag), redis.Z{Member: k.String()})
					p.ZAddArgs(ctx, l.owedKey(tag), redis.ZAddArgs{LT: true, Members: []redis.Z{{
						Score: float64(stamp(now.Add(l.opts.IntakeGrace))), Member: k.String()}}})
				}
				return nil
			})
			return err
		}, l.watchRoute(uid)...)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if l.Sharded() && movedMidTransaction(err) && attempt < 3 {
			// A slot moved between the transaction's reads and its EXEC (a Cluster failover):
			// nothing was written, and the client has reloaded the slot map by now.
			time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
			continue
		}
		var erased *ErasedError
		var seen *SeenError
		if errors.As(err, &erased) || errors.As(err, &seen) {
			return Applied{}, err
		}
		if err != nil {
			return Applied{}, fmt.Errorf("record facts of user %d: %w", uid, err)
		}
		if emailed != "" {
			// Repeated by every change that records the address, so an index write lost here
			// is made good by the learner's next one.
			if err := l.rdb.SAdd(ctx, l.emailKey(emailed), uid).Err(); err != nil {
				return Applied{}, fmt.Errorf("index the address of user %d: %w", uid, err)
			}
		}
		sort.Slice(changed, func(i, j int) bool { return changed[i].String() < changed[j].String() })
		return Applied{Rows: changed, Record: recordChanged}, nil
	}
	return Applied{}, fmt.Errorf("record facts of user %d: too much contention", uid)
}

// snapshot is what an apply reads of a learner within its transaction.
type snapshot struct {
	c        rules.Change
	uid      int64
	erasedAt *int64   // the erasure tombstone, nil when none
	classes  []string // the learner's rows
	stored   rules.Stored
	failed   map[string]bool
	record   rules.Record
	userAt   int64        // event time of the learner's current address
	eventID  string       // the event applied, when it has an id
	seen     *EventRecord // its record, when it was handled before
}

func newSnapshot(c rules.Change, uid int64) *snapshot {
	return &snapshot{c: c, uid: uid, stored: rules.Stored{}, failed: map[string]bool{}}
}

// classKeys are the keys of the learner's rows of these classes (facts and row).
func (l *Ledger) classKeys(uid int64, classes []string) []string {
	keys := make([]string, 0, 2*len(classes))
	for _, class := range classes {
		keys = append(keys, l.factsKey(RowKey{class, uid}), l.rowKey(RowKey{class, uid}))
	}
	return keys
}

// readSnapshot watches and reads, in one round trip, the facts and state of classes and, with
// first, the learner's tombstone, rows, record and current address time. The WATCH goes in the
// same pipeline, ahead of the reads: Redis runs them in order, so the reads are watched.
func (l *Ledger) readSnapshot(ctx context.Context, tx *redis.Tx, st *snapshot, classes []string, first bool) error {
	uid := st.uid
	var erased *redis.StringCmd
	var rows *redis.StringSliceCmd
	var record *redis.MapStringStringCmd
	var userAt, seen *redis.StringCmd
	facts := make([]*redis.MapStringStringCmd, len(classes))
	states := make([]*redis.StringCmd, len(classes))
	watch := []any{"watch"}
	if first {
		watch = append(watch, l.userRowsKey(uid), l.erasedKey(uid), l.userKey(uid), l.recordKey(uid))
		if st.eventID != "" {
			watch = append(watch, l.eventKey(uid, st.eventID))
		}
	}
	for _, k := range l.classKeys(uid, classes) {
		watch = append(watch, k)
	}
	_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, watch...)
		if first {
			erased = p.Get(ctx, l.erasedKey(uid))
			rows = p.SMembers(ctx, l.userRowsKey(uid))
			userAt = p.HGet(ctx, l.userKey(uid), "email_at")
			if st.eventID != "" {
				seen = p.Get(ctx, l.eventKey(uid, st.eventID))
			}
			if st.c.Outcome != nil || st.c.Reevaluate {
				record = p.HGetAll(ctx, l.recordKey(uid))
			}
		}
		for i, class := range classes {
			facts[i] = p.HGetAll(ctx, l.factsKey(RowKey{class, uid}))
			states[i] = p.HGet(ctx, l.rowKey(RowKey{class, uid}), "state")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if first {
		if v, err := erased.Int64(); err == nil {
			st.erasedAt = &v
		}
		st.classes = rows.Val()
		st.userAt, _ = userAt.Int64()
		if seen != nil {
			if raw, err := seen.Bytes(); err == nil {
				if st.seen, err = decodeEventRecord(raw); err != nil {
					return err
				}
			}
		}
		if record != nil {
			if st.record, err = decodeRecord(uid, record.Val()); err != nil {
				return err
			}
		}
	}
	for i, class := range classes {
		k := RowKey{class, uid}
		if st.stored[class], err = decodeFacts(k, facts[i].Val()); err != nil {
			return err
		}
		st.failed[class] = states[i].Val() == StateFailed
	}
	return nil
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
			tag := l.bucket(k.UserID)
			cmds[i] = retryScript.Eval(ctx, p, []string{l.rowKey(k), l.failedIndexKey(tag), l.owedKey(tag)}, k.String(), now)
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

// movedMidTransaction recognises a transaction Redis Cluster discarded because its slot moved or
// was being failed over: EXECABORT after a redirected command, or the redirect itself.
func movedMidTransaction(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"EXECABORT", "MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
