package queue

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
	"github.com/badgebridge/bridge/internal/mapping"
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

// Intake is the one path from a normalized event (webhook, event bus or backfill) to the
// ledger and the queue.
type Intake struct {
	Ledger   *ledger.Ledger
	Mapping  *mapping.Mapping
	Enqueuer *Enqueuer
	Log      *slog.Logger
	Metrics  *IntakeMetrics
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
		reason := erased.Error()
		in.log().Info("event for an erased learner refused", "event_id", ev.ID, "type", ev.Type, "user_id", ev.UserID, "via", via)
		return Result{Status: StatusIgnored, Reason: reason, Message: "ignored: " + reason}, nil
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
	sig := ev.Signal()
	if sig == edx.SignalNone {
		reason := fmt.Sprintf("certificate status %q neither awards nor revokes", ev.Status)
		return Result{Status: StatusIgnored, Reason: reason, Message: "ignored: " + reason}, nil, nil
	}
	updates := Updates(in.Mapping, ev, in.log())
	if len(updates) == 0 && sig == edx.SignalSupports {
		reason := fmt.Sprintf("no badge is mapped to %s", ev.Course.Raw)
		if ev.Kind == edx.KindCertificate && ev.Mode != "" {
			reason += " in mode " + ev.Mode
		}
		return Result{Status: StatusIgnored, Reason: reason, Message: "ignored: " + reason}, nil, nil
	}
	at := ledger.Micros(ev.Time)
	rows, err := in.Ledger.Apply(ctx, ledger.Intake{
		Learner: ledger.Learner{UserID: ev.UserID, Email: strings.ToLower(ev.Email), EmailAt: at},
		Course:  ev.Course.Raw, Kind: ev.Kind, Signal: sig, At: at, Updates: updates,
	})
	if err != nil {
		return Result{}, nil, err
	}
	if len(rows) == 0 {
		if len(updates) == 0 {
			reason := fmt.Sprintf("no badge is mapped to %s and the ledger holds nothing to revoke for it", ev.Course.Raw)
			return Result{Status: StatusIgnored, Reason: reason, Message: "ignored: " + reason}, nil, nil
		}
		return Result{Status: StatusUnchanged, Message: "unchanged: the ledger already knew this (or something newer)"}, nil, nil
	}
	return Result{Status: StatusAccepted, Message: fmt.Sprintf("accepted: %d reconcile job(s) queued", len(rows))}, rows, nil
}

// Updates turns the rules an event matches into ledger updates, rendering the award text now
// so that it is stored with the fact. A template one event's values break leaves that part of the
// text empty (logged) rather than holding the learner's badge back.
func Updates(m *mapping.Mapping, ev edx.Event, log *slog.Logger) []ledger.Update {
	sig := ev.Signal()
	var out []ledger.Update
	for _, r := range m.Match(ev) {
		if sig != edx.SignalSupports && !r.Revoke {
			continue // a revocation or a failing status touches only rules that ask for it
		}
		u := ledger.Update{
			BadgeClass: r.BadgeClass, Rule: r.Name, Signal: sig, At: ledger.Micros(ev.Time),
			Event: r.Kind, Revoke: r.Revoke, RevokeAfter: r.RevokeAfter, Order: r.Index,
		}
		if sig == edx.SignalSupports {
			a, err := r.Render(ev)
			if err != nil {
				log.Warn("award text incomplete", "rule", r.Name, "user_id", ev.UserID, "course", ev.Course.Raw, "err", err)
			}
			u.Award = ledger.AwardText{Narrative: a.Narrative, EvidenceURL: a.EvidenceURL, Notify: a.Notify, ExpiresAfter: a.ExpiresAfter}
		}
		out = append(out, u)
	}
	return out
}

func (in *Intake) log() *slog.Logger {
	if in.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Log
}

func (in *Intake) now() time.Time { return time.Now().UTC() }

// IntakeMetrics count what intake refused; a nil *IntakeMetrics records nothing.
type IntakeMetrics struct{ conflicts *prometheus.CounterVec }

// NewIntakeMetrics registers the intake series on reg.
func NewIntakeMetrics(reg prometheus.Registerer) *IntakeMetrics {
	m := &IntakeMetrics{conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_event_id_conflicts_total",
		Help: "Events refused because their id was already handled with different content, by source.",
	}, []string{"via"})}
	reg.MustRegister(m.conflicts)
	return m
}

func (m *IntakeMetrics) conflict(via string) {
	if m != nil {
		m.conflicts.WithLabelValues(via).Inc()
	}
}
