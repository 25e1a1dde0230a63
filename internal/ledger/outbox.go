package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/redislock"
)

// The outbox of contract 9.4: assertions the reconcile created or revoked on the badge host, to
// be announced on the Open edX event bus. An announcement is written in the same script as the
// row's new state (Step, Finish), so a change the row records is never without its announcement;
// internal/announce moves the entries to the bus and only then deletes them (at least once).
//
// The outbox is a Redis stream in the bridge's own Redis: every worker process appends, one
// publisher at a time (ClaimOutbox) reads in id order and deletes by id, so a publisher that dies
// between its XADD to the bus and the delete sends the same entries again, never fewer. An entry
// holds no personal data (row, assertion ids, kind, time): the publisher reads the learner's
// contact data when it publishes, so an erased learner's addresses are not kept here.

// Announcement kinds.
const (
	AnnounceAwarded = "awarded"
	AnnounceRevoked = "revoked"
)

// OutboxCap bounds the outbox. It only fills while the event bus is unreachable: at about 300
// bytes an entry it is some 30 MB of the bridge's Redis. Beyond it the oldest entries go and are
// counted (OutboxStats.Dropped): the bus stream keeps only ~10,000 entries anyway, so a consumer
// that was not reading during a longer outage loses old announcements on the bus side regardless.
const OutboxCap = 100_000

// Announcement is one change on the badge host to announce: Kind (AnnounceAwarded or
// AnnounceRevoked) of the assertion EntityID / OpenBadgeID of Row, confirmed by the host at At.
type Announcement struct {
	Kind        string
	Row         RowKey
	EntityID    string
	OpenBadgeID string
	At          time.Time
}

// outboxRecord is an Announcement as the outbox stores it (field "a" of a stream entry).
type outboxRecord struct {
	Kind        string `json:"kind"`
	Row         string `json:"row"`
	EntityID    string `json:"entity_id"`
	OpenBadgeID string `json:"open_badge_id,omitempty"`
	At          int64  `json:"at"` // Unix µs, as the ledger stores times
}

// OutboxEntry is one announcement waiting in the outbox. Err is set when the entry cannot be
// read (a corrupt or foreign value); the publisher removes such an entry rather than stall.
type OutboxEntry struct {
	ID string // the stream entry id, for RemoveOutbox
	Announcement
	Err error
}

// OutboxStats measure the outbox.
type OutboxStats struct {
	Len     int64
	Oldest  time.Time // when the oldest waiting entry was written (zero: empty)
	Dropped int64     // entries pushed out by OutboxCap since the Redis began
}

// There is one outbox per key bucket (one on a single Redis), since a row write appends to its
// learner's bucket's outbox in the same script. OutboxCap is shared among them.
func (l *Ledger) outboxKey(tag string) string        { return l.opts.Prefix + tag + "announce:outbox" }
func (l *Ledger) outboxDroppedKey(tag string) string { return l.opts.Prefix + tag + "announce:dropped" }
func (l *Ledger) outboxLockKey() string              { return l.opts.Prefix + "announce:lock" }
func (l *Ledger) outboxCap() int                     { return OutboxCap / len(l.tags) }

// An entry's id is its stream id, preceded on a Cluster by its bucket ("b17/1700000000000-0").
func (l *Ledger) outboxEntryID(bucket int, streamID string) string {
	if !l.Sharded() {
		return streamID
	}
	return "b" + strconv.Itoa(bucket) + "/" + streamID
}

func (l *Ledger) parseOutboxEntryID(id string) (bucket int, streamID string, err error) {
	if !l.Sharded() {
		return 0, id, nil
	}
	b, sid, ok := strings.Cut(id, "/")
	if n, err := strconv.Atoi(strings.TrimPrefix(b, "b")); ok && err == nil && n >= 0 && n < len(l.tags) {
		return n, sid, nil
	}
	return 0, "", fmt.Errorf("outbox entry id %q: want b<bucket>/<stream id>", id)
}

// outboxLua appends ARGV[from..to] to the outbox key capped at cap, counting what the cap
// pushes out in dropped. Shared by the fenced row write and AppendOutbox.
const outboxLua = `
local function outbox(key, dropped, from, to, cap)
  for i = from, to do
    if redis.call('XLEN', key) >= cap then redis.call('INCR', dropped) end
    redis.call('XADD', key, 'MAXLEN', cap, '*', 'a', ARGV[i])
  end
end
`

// outboxArgs encodes announcements for the scripts: cap, count, then one JSON value each.
func outboxArgs(list []Announcement, cap int) ([]any, error) {
	out := make([]any, 0, 2+len(list))
	out = append(out, cap, len(list))
	for _, a := range list {
		if a.Kind != AnnounceAwarded && a.Kind != AnnounceRevoked {
			return nil, fmt.Errorf("announcement of %s: unknown kind %q", a.Row, a.Kind)
		}
		b, err := json.Marshal(outboxRecord{Kind: a.Kind, Row: a.Row.String(), EntityID: a.EntityID, OpenBadgeID: a.OpenBadgeID, At: stamp(a.At)})
		if err != nil {
			return nil, fmt.Errorf("announcement of %s: %w", a.Row, err)
		}
		out = append(out, string(b))
	}
	return out, nil
}

var appendOutboxScript = redis.NewScript(outboxLua + `
outbox(KEYS[1], KEYS[2], 3, 2 + tonumber(ARGV[2]), tonumber(ARGV[1]))
return 1`)

// AppendOutbox records announcements without a row write. The reconcile uses it only when a pass
// that changed the host cannot write its outcome (shutdown, lost lease): the row state is then
// left to the next pass, but what the host already did must still be announced. An
// announcement is a fact about the host, not row state, so it needs no fence.
func (l *Ledger) AppendOutbox(ctx context.Context, list []Announcement) error {
	if len(list) == 0 {
		return nil
	}
	byTag := map[string][]Announcement{}
	for _, a := range list {
		tag := l.bucket(a.Row.UserID)
		byTag[tag] = append(byTag[tag], a)
	}
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for tag, group := range byTag {
			args, err := outboxArgs(group, l.outboxCap())
			if err != nil {
				return err
			}
			appendOutboxScript.Eval(ctx, p, []string{l.outboxKey(tag), l.outboxDroppedKey(tag)}, args...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d announcement(s) to the outbox: %w", len(list), err)
	}
	return nil
}

// ReadOutbox returns up to n of the oldest waiting announcements, oldest first (on a Cluster,
// in the order of their stream ids across the buckets).
func (l *Ledger) ReadOutbox(ctx context.Context, n int64) ([]OutboxEntry, error) {
	cmds := make([]*redis.XMessageSliceCmd, len(l.tags))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tag := range l.tags {
			cmds[i] = p.XRangeN(ctx, l.outboxKey(tag), "-", "+", n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the outbox: %w", err)
	}
	type entry struct {
		ms, seq int64
		e       OutboxEntry
	}
	var all []entry
	for i, c := range cmds {
		for _, m := range c.Val() {
			e := parseOutbox(m)
			e.ID = l.outboxEntryID(i, m.ID)
			ms, seq, _ := strings.Cut(m.ID, "-")
			a := entry{e: e}
			a.ms, _ = strconv.ParseInt(ms, 10, 64)
			a.seq, _ = strconv.ParseInt(seq, 10, 64)
			all = append(all, a)
		}
	}
	if len(cmds) > 1 {
		sort.SliceStable(all, func(i, j int) bool {
			if all[i].ms != all[j].ms {
				return all[i].ms < all[j].ms
			}
			return all[i].seq < all[j].seq
		})
	}
	out := make([]OutboxEntry, 0, min(int64(len(all)), n))
	for _, a := range all[:min(int64(len(all)), n)] {
		out = append(out, a.e)
	}
	return out, nil
}

func parseOutbox(m redis.XMessage) OutboxEntry {
	e := OutboxEntry{ID: m.ID}
	raw, _ := m.Values["a"].(string)
	var rec outboxRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		e.Err = fmt.Errorf("outbox entry %s: %w", m.ID, err)
		return e
	}
	k, err := ParseRowKey(rec.Row)
	if err != nil {
		e.Err = fmt.Errorf("outbox entry %s: %w", m.ID, err)
		return e
	}
	if rec.Kind != AnnounceAwarded && rec.Kind != AnnounceRevoked {
		e.Err = fmt.Errorf("outbox entry %s: unknown kind %q", m.ID, rec.Kind)
		return e
	}
	e.Announcement = Announcement{Kind: rec.Kind, Row: k, EntityID: rec.EntityID, OpenBadgeID: rec.OpenBadgeID, At: readStamp(rec.At)}
	return e
}

// RemoveOutbox deletes announcements once they are on the bus.
func (l *Ledger) RemoveOutbox(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	byBucket := map[int][]string{}
	for _, id := range ids {
		b, sid, err := l.parseOutboxEntryID(id)
		if err != nil {
			return fmt.Errorf("remove %d outbox entr(ies): %w", len(ids), err)
		}
		byBucket[b] = append(byBucket[b], sid)
	}
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b, sids := range byBucket {
			p.XDel(ctx, l.outboxKey(l.tags[b]), sids...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove %d outbox entr(ies): %w", len(ids), err)
	}
	return nil
}

// OutboxStatus measures the outbox in one round trip.
func (l *Ledger) OutboxStatus(ctx context.Context) (OutboxStats, error) {
	length := make([]*redis.IntCmd, len(l.tags))
	first := make([]*redis.XMessageSliceCmd, len(l.tags))
	dropped := make([]*redis.StringCmd, len(l.tags))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, tag := range l.tags {
			length[i] = p.XLen(ctx, l.outboxKey(tag))
			first[i] = p.XRangeN(ctx, l.outboxKey(tag), "-", "+", 1)
			dropped[i] = p.Get(ctx, l.outboxDroppedKey(tag))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return OutboxStats{}, fmt.Errorf("outbox status: %w", err)
	}
	var s OutboxStats
	for i := range l.tags {
		s.Len += length[i].Val()
		d, _ := strconv.ParseInt(dropped[i].Val(), 10, 64)
		s.Dropped += d
		if msgs := first[i].Val(); len(msgs) > 0 {
			// A stream id starts with the Unix milliseconds of the XADD.
			ms, _, _ := strings.Cut(msgs[0].ID, "-")
			if v, err := strconv.ParseInt(ms, 10, 64); err == nil && (s.Oldest.IsZero() || time.UnixMilli(v).Before(s.Oldest)) {
				s.Oldest = time.UnixMilli(v)
			}
		}
	}
	return s, nil
}

var claimOutboxScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`)

// ClaimOutbox takes or renews the publisher lease for holder. One publisher at a time keeps the
// worker replicas from each sending every entry (which would be harmless, as consumers
// de-duplicate by id, but wasteful).
func (l *Ledger) ClaimOutbox(ctx context.Context, holder string, lease time.Duration) (bool, error) {
	n, err := claimOutboxScript.Run(ctx, l.rdb, []string{l.outboxLockKey()}, holder, lease.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("claim the outbox: %w", err)
	}
	return n == 1, nil
}

// ReleaseOutbox gives the publisher lease up if holder still has it.
func (l *Ledger) ReleaseOutbox(ctx context.Context, holder string) error {
	if _, err := redislock.Release(ctx, l.rdb, l.outboxLockKey(), holder); err != nil {
		return fmt.Errorf("release the outbox: %w", err)
	}
	return nil
}

// AnnouncedLearner is what an announcement says of the learner (the event's UserData).
type AnnouncedLearner struct {
	Email, Username, Name string
	Known                 bool // false when the ledger holds nothing of the learner (erased)
}

// AnnouncedLearner reads the learner's current contact data. The e-mail is the address new
// awards go to (Row.Email). Username and name come from the same hash under "username" and
// "name": HOOK for the learner record of contract 9.1, which keeps them; until it writes them
// there (or this reads them from where it keeps them), they are empty strings.
func (l *Ledger) AnnouncedLearner(ctx context.Context, uid int64) (AnnouncedLearner, error) {
	vals, err := l.rdb.HMGet(ctx, l.userKey(uid), "email", "username", "name").Result()
	if err != nil {
		return AnnouncedLearner{}, fmt.Errorf("learner %d for an announcement: %w", uid, err)
	}
	str := func(v any) string { s, _ := v.(string); return s }
	a := AnnouncedLearner{Email: str(vals[0]), Username: str(vals[1]), Name: str(vals[2])}
	a.Known = vals[0] != nil || vals[1] != nil || vals[2] != nil
	return a, nil
}
