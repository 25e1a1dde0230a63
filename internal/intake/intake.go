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

// Result is what intake did with one event.
type Result struct {
	Status  string   `json:"status"`
	Message string   `json:"message"`
	Reason  string   `json:"reason,omitempty"`
	Jobs    []string `json:"jobs,omitempty"` // rows whose reconcile was queued
}

// Enqueuer queues a reconcile job for a row (queue.Enqueuer).
type Enqueuer interface {
	Enqueue(ctx context.Context, k ledger.RowKey) error
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
}

// Handle records ev and queues the reconciles it makes owed. Steps: facts and owed marks in one
// atomic ledger write, then the jobs, then the event id. An error means the caller must not
// acknowledge (503 / no XACK): every step is idempotent, so the resend is safe.
func (in *Intake) Handle(ctx context.Context, ev edx.Event, via string) (Result, error) {
	if ev.ID != "" {
		rec, err := in.Ledger.SeenEvent(ctx, ev.ID)
		if err != nil {
			return Result{}, err
		}
		if rec != nil && rec.Digest != "" && rec.Digest != ev.Digest() {
			in.Metrics.conflict(via)
			in.log().Warn("event id reused with different content; refused", "event_id", ev.ID, "type", ev.Type, "user_id", ev.UserID, "via", via)
			return Result{Status: StatusConflict, Message: fmt.Sprintf("conflict: event %s was already handled with different content; give a new event its own id", ev.ID)}, nil
		}
		if rec != nil {
			return Result{Status: StatusDuplicate, Message: fmt.Sprintf("event %s was already handled (%s)", ev.ID, rec.Status)}, nil
		}
	}
	res, rows, err := in.apply(ctx, ev)
	var erased *ledger.ErasedError
	if errors.As(err, &erased) {
		// Recorded nowhere: an event record would hold the erased learner's id again.
		in.log().Info("event for an erased learner refused", "event_id", ev.ID, "type", ev.Type, "user_id", ev.UserID, "via", via)
		return ignored(erased.Error()), nil
	}
	if err != nil {
		return Result{}, err
	}
	for _, k := range rows {
		if err := in.Enqueuer.Enqueue(ctx, k); err != nil {
			return Result{}, err
		}
		res.Jobs = append(res.Jobs, k.String())
	}
	if ev.ID != "" {
		rec := ledger.EventRecord{
			ID: ev.ID, Type: ev.Type, Status: res.Status, Reason: res.Reason, UserID: ev.UserID,
			Course: ev.Course.Raw, EventTime: ev.Time, ReceivedAt: in.now(), Via: via, Rows: res.Jobs,
			Digest: ev.Digest(),
		}
		if err := in.Ledger.RecordEvent(ctx, rec); err != nil {
			return Result{}, err
		}
	}
	in.log().Info("event handled", "event_id", ev.ID, "type", ev.Type, "user_id", ev.UserID,
		"course", ev.Course.Raw, "status", res.Status, "reason", res.Reason, "jobs", len(res.Jobs), "via", via)
	return res, nil
}

func (in *Intake) apply(ctx context.Context, ev edx.Event) (Result, []ledger.RowKey, error) {
	c, warn := in.Mapping.Change(ev, in.RecordAll)
	if warn != nil {
		in.log().Warn("award text incomplete", "user_id", ev.UserID, "course", ev.Course.Raw, "err", warn)
	}
	if c.Signal == edx.SignalNone && c.Outcome == nil {
		return ignored(fmt.Sprintf("certificate status %q neither awards nor revokes", ev.Status)), nil, nil
	}
	if len(c.Updates) == 0 && c.Signal == edx.SignalSupports && c.Outcome == nil {
		reason := fmt.Sprintf("no badge is mapped to %s", ev.Course.Raw)
		if ev.Kind == edx.KindCertificate && ev.Mode != "" {
			reason += " in mode " + ev.Mode
		}
		return ignored(reason), nil, nil
	}
	applied, err := in.Ledger.Apply(ctx, ledger.Learner{UserID: ev.UserID, Email: strings.ToLower(ev.Email), EmailAt: c.At}, c)
	if err != nil {
		return Result{}, nil, err
	}
	rows := applied.Rows
	switch {
	case len(rows) > 0:
		return Result{Status: StatusAccepted, Message: fmt.Sprintf("accepted: %d reconcile job(s) queued", len(rows))}, rows, nil
	case applied.Record:
		return Result{Status: StatusAccepted, Message: "accepted: the learner record changed; no badge changes"}, nil, nil
	case len(c.Updates) == 0 && c.Outcome == nil:
		return ignored(fmt.Sprintf("no badge is mapped to %s and the ledger holds nothing to revoke for it", ev.Course.Raw)), nil, nil
	}
	return Result{Status: StatusUnchanged, Message: "unchanged: the ledger already knew this (or something newer)"}, nil, nil
}

func ignored(reason string) Result {
	return Result{Status: StatusIgnored, Reason: reason, Message: "ignored: " + reason}
}

func (in *Intake) log() *slog.Logger {
	if in.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Log
}

func (in *Intake) now() time.Time { return time.Now().UTC() }

// Metrics count what intake refused; a nil *Metrics records nothing.
type Metrics struct{ conflicts *prometheus.CounterVec }

// NewMetrics registers the intake series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_event_id_conflicts_total",
		Help: "Events refused because their id was already handled with different content, by source.",
	}, []string{"via"})}
	reg.MustRegister(m.conflicts)
	return m
}

func (m *Metrics) conflict(via string) {
	if m != nil {
		m.conflicts.WithLabelValues(via).Inc()
	}
}
