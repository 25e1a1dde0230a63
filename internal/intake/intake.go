// Package intake is the one path from a normalized Open edX event — from a webhook, the event
// bus, a backfill file or a reevaluation — to the ledger and the queue: de-duplicate by event id,
// ask the rules what the event changes, record it atomically, queue the reconciles it makes owed,
// and say what was done (Result).
package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/unmapped"
)

// Intake statuses (contract 4.1).
const (
	StatusAccepted  = "accepted"
	StatusUnchanged = "unchanged"
	StatusDuplicate = "duplicate"
	StatusIgnored   = "ignored"
	// StatusConflict: the event id was already handled with different content (contract 4.1:
	// 409); nothing is recorded.
	StatusConflict = "conflict"
)

// Why an event was ignored: the reason label of bridge_events_ignored_total. A fixed set, so the
// label never carries a course key or free text.
const (
	// IgnoredNoRule: no rule maps the event's course (and, for a revocation or a failing
	// status, the ledger holds nothing to take back for it). A course some rule maps is never
	// ignored for its mode: its outcome goes to the learner record (BRIDGE_LEARNER_RECORD).
	IgnoredNoRule = "no_rule"
	// IgnoredStatusNotMapped: a certificate status that neither awards nor revokes (requesting,
	// error, …).
	IgnoredStatusNotMapped = "status_not_mapped"
	// IgnoredErasedLearner: an event about an erased learner, no newer than the erasure.
	IgnoredErasedLearner = "erased_learner"
)

// IgnoredReasons are every value of the reason label.
var IgnoredReasons = []string{IgnoredNoRule, IgnoredStatusNotMapped, IgnoredErasedLearner}

// Result is what intake did with one event.
type Result struct {
	Status  string   `json:"status"`
	Message string   `json:"message"`
	Reason  string   `json:"reason,omitempty"`
	Jobs    []string `json:"jobs,omitempty"` // rows whose reconcile was queued

	why string // for an ignored event: one of the Ignored* reasons (the metric's label)
}

// Enqueuer queues a reconcile job for a row (queue.Enqueuer).
type Enqueuer interface {
	Enqueue(ctx context.Context, k ledger.RowKey) error
}

// Waiter holds an answer back until the writes it rests on are durable (durable.Gate): acknowledged
// by enough replicas, fsynced where that applies. Its error means "not confirmed": the caller
// must not acknowledge.
type Waiter interface {
	Wait(ctx context.Context) error
}

// Intake records events and queues the work they make owed.
type Intake struct {
	Ledger   *ledger.Ledger
	Mapping  *rules.Mapping
	Enqueuer Enqueuer
	Log      *slog.Logger
	Metrics  *Metrics
	// RecordAll keeps every course run in the learner record, not only those some rule could
	// match (BRIDGE_LEARNER_RECORD=all).
	RecordAll bool
	// Durable, when set, is waited on before every answer that rests on Redis
	// (BRIDGE_REDIS_MIN_REPLICAS, WAITAOF on Redis ≥ 7.2 with AOF).
	Durable Waiter
	// Unmapped, when set, is told the course key of every certificate or passing event ignored
	// because no rule maps it: it warns once per course key per hour and keeps the list of the
	// most ignored ones for GET /v1/status.
	Unmapped *unmapped.Tracker
}

// Handle records ev and queues the reconciles it makes owed. Steps: facts, owed marks and the
// event record in one atomic ledger write (contract 5 allows the event id there: the owed marks
// bring a lost enqueue back), then the jobs, then the durability wait. An error means the caller
// must not acknowledge (503 / no XACK): every step is idempotent, so the resend is safe.
//
// Every answer that rests on Redis waits, duplicates and conflicts included: a duplicate may be
// the resend of an event whose first answer was a 503 because its wait failed, and what it
// found may still be unreplicated. Only an event that touched Redis not at all (no id, nothing
// to change) does not wait.
func (in *Intake) Handle(ctx context.Context, ev edx.Event, via string) (Result, error) {
	c, warn := in.Mapping.Change(ev, in.RecordAll)
	if warn != nil {
		in.log().Warn("award text incomplete", "user_id", ev.UserID, "course", ev.Course.Raw, "err", warn)
	}
	skip, skipped := skipped(ev, c)
	if ev.ID != "" {
		// On a Redis Cluster, an id reused for a learner in another bucket is seen only here.
		other, err := in.Ledger.ClaimEvent(ctx, ev.ID, ev.Digest())
		if err != nil {
			return Result{}, err
		}
		if other != nil {
			return in.seen(ctx, ev, *other, via)
		}
	}
	if skipped && ev.ID != "" {
		// An event that changes nothing is looked up on its own; one that may change the
		// ledger is looked up within the ledger's transaction.
		rec, err := in.Ledger.SeenEvent(ctx, ev.UserID, ev.ID)
		if err != nil {
			return Result{}, err
		}
		if rec != nil {
			return in.seen(ctx, ev, *rec, via)
		}
	}
	var record func(Result, []ledger.RowKey) *ledger.EventRecord
	if ev.ID != "" {
		record = func(res Result, rows []ledger.RowKey) *ledger.EventRecord {
			rec := &ledger.EventRecord{
				ID: ev.ID, Type: ev.Type, Status: res.Status, Reason: res.Reason, UserID: ev.UserID,
				Course: ev.Course.Raw, EventTime: ev.Time, ReceivedAt: in.now(), Via: via, Digest: ev.Digest(),
			}
			for _, k := range rows {
				rec.Rows = append(rec.Rows, k.String())
			}
			return rec
		}
	}
	res, rows, recorded := skip, []ledger.RowKey(nil), false
	if !skipped {
		var err error
		res, rows, recorded, err = in.apply(ctx, ev, c, record)
		var erased *ledger.ErasedError
		var seen *ledger.SeenError
		switch {
		case errors.As(err, &seen):
			return in.seen(ctx, ev, seen.Record, via)
		case errors.As(err, &erased):
			// Recorded nowhere: an event record would hold the erased learner's id again.
			if err := in.confirm(ctx, ev, via); err != nil {
				return Result{}, err
			}
			in.log().Info("event for an erased learner refused", "event_id", ev.ID, "type", ev.Type, "user_id", ev.UserID, "via", via)
			res := ignored(IgnoredErasedLearner, erased.Error())
			in.Metrics.ignoredEvent(res.why)
			return res, nil
		case err != nil:
			return Result{}, err
		}
	}
	for _, k := range rows {
		if err := in.Enqueuer.Enqueue(ctx, k); err != nil {
			return Result{}, err
		}
		res.Jobs = append(res.Jobs, k.String())
	}
	if record != nil && !recorded {
		if err := in.Ledger.RecordEvent(ctx, *record(res, rows)); err != nil {
			return Result{}, err
		}
	}
	if !skipped || record != nil {
		if err := in.confirm(ctx, ev, via); err != nil {
			return Result{}, err
		}
	}
	in.log().Info("event handled", "event_id", ev.ID, "type", ev.Type, "user_id", ev.UserID,
		"course", ev.Course.Raw, "status", res.Status, "reason", res.Reason, "jobs", len(res.Jobs), "via", via)
	if res.Status == StatusIgnored {
		in.noteIgnored(ev, res.why)
	}
	return res, nil
}

// noteIgnored counts an ignored event by reason and tells the unmapped-course tracker about the
// course keys no rule maps. Enrollment events are counted but not tracked: Open edX sends them
// for every course, and they only ever count towards milestones, so an enrollment in a course no
// milestone lists is the normal case, not a mapping mistake.
func (in *Intake) noteIgnored(ev edx.Event, why string) {
	in.Metrics.ignoredEvent(why)
	if why == IgnoredNoRule && (ev.Kind == edx.KindCertificate || ev.Kind == edx.KindPassing) {
		in.Unmapped.Ignored(ev.Course.Raw)
	}
}

// confirm returns once the writes an answer about ev rests on are durable as configured, or an
// error (wrapping durable.ErrNotConfirmed) when they are not. It runs before the answer is
// decided, so a refused answer counts and logs nothing.
func (in *Intake) confirm(ctx context.Context, ev edx.Event, via string) error {
	if in.Durable == nil {
		return nil
	}
	if err := in.Durable.Wait(ctx); err != nil {
		// Debug: the callers report failures (the event bus once per outage, not per entry).
		in.log().Debug("event recorded but not confirmed durable; answered as not recorded (the resend waits again)",
			"event_id", ev.ID, "type", ev.Type, "user_id", ev.UserID, "via", via, "err", err)
		return fmt.Errorf("event %q: %w", ev.ID, err)
	}
	return nil
}

// seen answers an event whose id was handled before: a duplicate, or a conflict when the id
// comes back with other content. Like every answer that rests on Redis, it waits for
// durability first.
func (in *Intake) seen(ctx context.Context, ev edx.Event, rec ledger.EventRecord, via string) (Result, error) {
	if err := in.confirm(ctx, ev, via); err != nil {
		return Result{}, err
	}
	if rec.Digest != "" && rec.Digest != ev.Digest() {
		in.Metrics.conflict(via)
		in.log().Warn("event id reused with different content; refused", "event_id", ev.ID, "type", ev.Type, "user_id", ev.UserID, "via", via)
		return Result{Status: StatusConflict, Message: fmt.Sprintf("conflict: event %s was already handled with different content; give a new event its own id", ev.ID)}, nil
	}
	return Result{Status: StatusDuplicate, Message: fmt.Sprintf("event %s was already handled (%s)", ev.ID, rec.Status)}, nil
}

// skipped says, before any read, that the change of an event can change nothing in the ledger,
// and what to answer.
func skipped(ev edx.Event, c rules.Change) (Result, bool) {
	if c.Signal == edx.SignalNone && c.Outcome == nil {
		return ignored(IgnoredStatusNotMapped, fmt.Sprintf("certificate status %q neither awards nor revokes", ev.Status)), true
	}
	if len(c.Updates) == 0 && c.Signal == edx.SignalSupports && c.Outcome == nil {
		reason := fmt.Sprintf("no badge is mapped to %s", ev.Course.Raw)
		if ev.Kind == edx.KindCertificate && ev.Mode != "" {
			reason += " in mode " + ev.Mode
		}
		return ignored(IgnoredNoRule, reason), true
	}
	return Result{}, false
}

// apply decides and records the event's change c. recorded reports whether the event record was
// written with the ledger change (record is nil for an event without an id).
func (in *Intake) apply(ctx context.Context, ev edx.Event, c rules.Change, record func(Result, []ledger.RowKey) *ledger.EventRecord) (res Result, rows []ledger.RowKey, recorded bool, err error) {
	var withRecord func(ledger.Applied) *ledger.EventRecord
	if record != nil {
		withRecord = func(a ledger.Applied) *ledger.EventRecord { return record(resultOf(ev, c, a), a.Rows) }
	}
	applied, err := in.Ledger.ApplyRecorded(ctx, ledger.Learner{UserID: ev.UserID, Email: strings.ToLower(ev.Email), EmailAt: c.At}, c, ev.ID, withRecord)
	if err != nil {
		return Result{}, nil, false, err
	}
	return resultOf(ev, c, applied), applied.Rows, withRecord != nil, nil
}

// resultOf says what the ledger change of an event amounts to.
func resultOf(ev edx.Event, c rules.Change, applied ledger.Applied) Result {
	switch {
	case len(applied.Rows) > 0:
		return Result{Status: StatusAccepted, Message: fmt.Sprintf("accepted: %d reconcile job(s) queued", len(applied.Rows))}
	case applied.Record:
		return Result{Status: StatusAccepted, Message: "accepted: the learner record changed; no badge changes"}
	case len(c.Updates) == 0 && c.Outcome == nil:
		return ignored(IgnoredNoRule, fmt.Sprintf("no badge is mapped to %s and the ledger holds nothing to revoke for it", ev.Course.Raw))
	}
	return Result{Status: StatusUnchanged, Message: "unchanged: the ledger already knew this (or something newer)"}
}

func ignored(why, reason string) Result {
	return Result{Status: StatusIgnored, Reason: reason, Message: "ignored: " + reason, why: why}
}

func (in *Intake) log() *slog.Logger {
	if in.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Log
}

func (in *Intake) now() time.Time { return time.Now().UTC() }

// Metrics count what intake refused or ignored; a nil *Metrics records nothing.
type Metrics struct{ conflicts, ignored *prometheus.CounterVec }

// NewMetrics registers the intake series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_event_id_conflicts_total",
			Help: "Events refused because their id was already handled with different content, by source.",
		}, []string{"via"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_events_ignored_total",
			Help: "Events answered ignored, by reason: no_rule, status_not_mapped, erased_learner.",
		}, []string{"reason"}),
	}
	for _, r := range IgnoredReasons {
		m.ignored.WithLabelValues(r) // every reason shows, at 0, from the start
	}
	reg.MustRegister(m.conflicts, m.ignored)
	return m
}

func (m *Metrics) ignoredEvent(why string) {
	if m != nil && why != "" {
		m.ignored.WithLabelValues(why).Inc()
	}
}

func (m *Metrics) conflict(via string) {
	if m != nil {
		m.conflicts.WithLabelValues(via).Inc()
	}
}
