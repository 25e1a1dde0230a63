// Package unmapped keeps the course keys whose events the bridge ignored because no rule maps
// them from going unnoticed (issue 12, "nothing silent"): a WARN line at most once per course key
// per hour, and a bounded list of the most ignored course keys, shared by every replica through
// Redis, for GET /v1/status.
//
// Memory is bounded everywhere: a process remembers at most MaxWarnKeys course keys for its
// warnings and at most MaxPendingKeys not yet written to Redis; Redis keeps at most StoreCap.
package unmapped

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Bounds of what one process keeps.
const (
	// MaxWarnKeys is how many course keys a process remembers for its hourly warnings. Beyond
	// it, the events of further keys are counted together and warned about as one line per
	// period, so nothing goes unsaid and memory stays bounded.
	MaxWarnKeys = 1000
	// MaxPendingKeys is how many course keys a process collects between two writes to Redis.
	// Beyond it, events of further keys are left out of the shared list until the next write
	// (they are still counted by the metric and warned about).
	MaxPendingKeys = 1000
)

// Defaults of Options.
const (
	DefaultWarnEvery  = time.Hour
	DefaultFlushEvery = 10 * time.Second
	sweepEvery        = time.Minute
)

// Options configure a Tracker.
type Options struct {
	Log *slog.Logger
	// Store is where the shared list of the most ignored course keys lives; nil keeps only the
	// warnings.
	Store *Store
	// WarnEvery is the least time between two warnings about one course key (default 1h).
	WarnEvery time.Duration
	// FlushEvery is how often Run writes the counts collected since to the Store (default 10s).
	FlushEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Tracker counts the ignored events of unmapped course keys. A nil *Tracker records nothing.
// It is safe for concurrent use.
type Tracker struct {
	o Options

	mu        sync.Mutex
	warn      map[string]*warnState
	overflow  warnState // the events of course keys beyond MaxWarnKeys, as one
	lastPurge time.Time
	pending   map[string]*Count
	flushNow  chan struct{}
}

// warnState is what the warnings remember of one course key: the events ignored since the last
// warning about it, and when that was (zero: never).
type warnState struct {
	ignored int64
	last    time.Time
}

// warning is a line to log, built under the lock and logged after it.
type warning struct {
	course string // "" for the overflow line
	n      int64
	since  time.Time
}

// New makes a Tracker. Call Run to write to the Store and to warn about counts that no later
// event brings up.
func New(o Options) *Tracker {
	if o.WarnEvery <= 0 {
		o.WarnEvery = DefaultWarnEvery
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultFlushEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Tracker{o: o, warn: map[string]*warnState{}, pending: map[string]*Count{}, flushNow: make(chan struct{}, 1)}
}

// Ignored records one event of course that was ignored because no rule maps it. It warns at
// once for a course key it has not warned about within WarnEvery.
func (t *Tracker) Ignored(course string) {
	if t == nil || course == "" {
		return
	}
	now := t.o.Now()
	t.mu.Lock()
	w := t.count(course, now)
	full := t.collect(course, now)
	t.mu.Unlock()
	if w != nil {
		t.emit(*w)
	}
	if full {
		select {
		case t.flushNow <- struct{}{}:
		default:
		}
	}
}

// count adds the event to the warnings and returns the warning due now, if any.
func (t *Tracker) count(course string, now time.Time) *warning {
	w, ok := t.warn[course]
	if !ok {
		if len(t.warn) >= MaxWarnKeys && now.Sub(t.lastPurge) >= time.Minute {
			t.purge(now)
		}
		if len(t.warn) >= MaxWarnKeys {
			return t.due(&t.overflow, "", now)
		}
		w = &warnState{}
		t.warn[course] = w
	}
	return t.due(w, course, now)
}

// due counts one event on w and returns the warning when the last one is old enough.
func (t *Tracker) due(w *warnState, course string, now time.Time) *warning {
	w.ignored++
	if !w.last.IsZero() && now.Sub(w.last) < t.o.WarnEvery {
		return nil
	}
	out := &warning{course: course, n: w.ignored, since: w.last}
	w.ignored, w.last = 0, now
	return out
}

// purge forgets the course keys that have nothing to report and were last warned about long
// enough ago: the next event of such a key warns at once, as for a key never seen.
func (t *Tracker) purge(now time.Time) {
	t.lastPurge = now
	for k, w := range t.warn {
		if w.ignored == 0 && now.Sub(w.last) >= t.o.WarnEvery {
			delete(t.warn, k)
		}
	}
}

// Sweep warns about the course keys whose events were counted since a warning that is now old
// enough (no later event came to bring them up), and forgets the keys with nothing to report.
// Run calls it every minute.
func (t *Tracker) Sweep() {
	if t == nil {
		return
	}
	now := t.o.Now()
	var out []warning
	t.mu.Lock()
	for k, w := range t.warn {
		if now.Sub(w.last) < t.o.WarnEvery {
			continue
		}
		if w.ignored == 0 {
			delete(t.warn, k)
			continue
		}
		out = append(out, warning{course: k, n: w.ignored, since: w.last})
		w.ignored, w.last = 0, now
	}
	if o := &t.overflow; o.ignored > 0 && now.Sub(o.last) >= t.o.WarnEvery {
		out = append(out, warning{n: o.ignored, since: o.last})
		o.ignored, o.last = 0, now
	}
	t.lastPurge = now
	t.mu.Unlock()
	for _, w := range out {
		t.emit(w)
	}
}

func (t *Tracker) emit(w warning) {
	events := "events"
	if w.n == 1 {
		events = "event"
	}
	attrs := []any{"ignored", w.n}
	if !w.since.IsZero() {
		attrs = append(attrs, "since", w.since.UTC().Format(time.RFC3339))
	}
	if w.course == "" {
		t.o.Log.Warn(fmt.Sprintf("no rule maps further course keys (more than %d had events ignored within %s): %d %s ignored; GET /v1/status lists the most ignored",
			MaxWarnKeys, t.o.WarnEvery, w.n, events), attrs...)
		return
	}
	t.o.Log.Warn(fmt.Sprintf("no rule maps course %s: %d %s ignored", w.course, w.n, events),
		append([]any{"course", w.course}, attrs...)...)
}

// collect adds the event to the counts for the Store; full reports that the collection is at
// its bound, so Run should write it now.
func (t *Tracker) collect(course string, now time.Time) (full bool) {
	if t.o.Store == nil {
		return false
	}
	c, ok := t.pending[course]
	if !ok {
		if len(t.pending) >= MaxPendingKeys {
			return true
		}
		c = &Count{Course: course}
		t.pending[course] = c
	}
	c.N++
	c.LastSeen = now
	return len(t.pending) >= MaxPendingKeys
}

// Flush writes the counts collected since the last write to the Store. On an error they are
// kept (as far as the bound allows) for the next write.
func (t *Tracker) Flush(ctx context.Context) error {
	if t == nil || t.o.Store == nil {
		return nil
	}
	t.mu.Lock()
	batch := t.pending
	t.pending = map[string]*Count{}
	t.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	list := make([]Count, 0, len(batch))
	for _, c := range batch {
		list = append(list, *c)
	}
	err := t.o.Store.Add(ctx, list)
	if err != nil {
		t.mu.Lock()
		for k, c := range batch {
			if p, ok := t.pending[k]; ok {
				p.N += c.N
				p.LastSeen = later(p.LastSeen, c.LastSeen)
			} else if len(t.pending) < MaxPendingKeys {
				t.pending[k] = c
			}
		}
		t.mu.Unlock()
	}
	return err
}

// Run writes the collected counts to the Store every FlushEvery (and as soon as the collection
// is full) and sweeps the warnings every minute, until ctx ends; then it writes once more.
func (t *Tracker) Run(ctx context.Context) {
	if t == nil {
		return
	}
	flush := time.NewTicker(t.o.FlushEvery)
	defer flush.Stop()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			t.flush(fctx)
			cancel()
			return
		case <-flush.C:
			t.flush(ctx)
		case <-t.flushNow:
			t.flush(ctx)
		case <-sweep.C:
			t.Sweep()
		}
	}
}

func (t *Tracker) flush(ctx context.Context) {
	if err := t.Flush(ctx); err != nil {
		// Debug: a Redis that cannot be written is reported loudly by everything else; the
		// counts are kept for the next write.
		t.o.Log.Debug("could not write the ignored course keys to Redis; keeping them for the next write", "err", err)
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
