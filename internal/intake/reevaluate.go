package intake

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
)

// Reevaluated is what reevaluating one learner did (or, without apply, would do): the rows owed.
type Reevaluated struct {
	Rows   []ledger.RowKey
	Erased bool // the learner was erased: nothing was done
}

// Reevaluate applies m (the current mapping, or one rule of it) to a learner's record through
// the same path as live events: every recorded outcome is offered to the rules again, then the
// milestones are decided again. Facts change only where a new or changed rule makes them (the
// ordering rules make a repeated outcome change nothing), and only rows whose desired state
// changes are owed a reconcile, so a second run costs no host request. Without apply nothing is
// written: the rows are those that would be owed.
func (in *Intake) Reevaluate(ctx context.Context, uid int64, lr ledger.LearnerRecord, m *rules.Mapping, apply bool) (Reevaluated, error) {
	var out Reevaluated
	who := rules.Learner{UserID: uid, Username: lr.Username, Name: lr.Name}
	// EmailAt 0: a reevaluation never makes an old address the current one.
	learner := ledger.Learner{UserID: uid, Email: strings.ToLower(lr.Email)}
	var changes []rules.Change
	for run, r := range lr.Record {
		for _, ev := range recordedEvents(uid, run, r, lr) {
			c, _ := m.Change(ev, true)
			c.Milestones, c.Reevaluate = nil, true
			changes = append(changes, c)
		}
	}
	final := rules.Change{Milestones: milestones(m), Learner: who, Reevaluate: true, At: rules.Micros(time.Now())}
	changes = append(changes, final)
	for _, c := range changes {
		do := in.Ledger.Preview
		if apply {
			do = in.Ledger.Apply
		}
		applied, err := do(ctx, learner, c)
		var erased *ledger.ErasedError
		if errors.As(err, &erased) {
			return Reevaluated{Erased: true}, nil
		}
		if err != nil {
			return out, fmt.Errorf("reevaluate user %d: %w", uid, err)
		}
		for _, k := range applied.Rows {
			if apply {
				if err := in.Enqueuer.Enqueue(ctx, k); err != nil {
					return out, err
				}
			}
			out.Rows = append(out.Rows, k)
		}
	}
	if apply && in.Durable != nil {
		// As for live events: the learner counts as done only once its writes are durable.
		if err := in.Durable.Wait(ctx); err != nil {
			return out, fmt.Errorf("reevaluate user %d: %w", uid, err)
		}
	}
	return out, nil
}

func milestones(m *rules.Mapping) []*rules.Rule {
	var out []*rules.Rule
	for _, r := range m.Rules {
		if r.Milestone != nil {
			out = append(out, r)
		}
	}
	return out
}

// recordedEvents turns a run's recorded outcomes back into the events that reported them.
func recordedEvents(uid int64, run string, r *rules.RunRecord, lr ledger.LearnerRecord) []edx.Event {
	key, err := edx.ParseCourseKey(run)
	if err != nil {
		return nil
	}
	base := edx.Event{UserID: uid, Username: lr.Username, Name: lr.Name, Email: lr.Email, Course: key}
	var out []edx.Event
	if c := r.Cert; c != nil {
		ev := base
		ev.Kind, ev.Type, ev.Time, ev.Mode, ev.Grade = edx.KindCertificate, edx.TypeCertificateChanged, time.UnixMicro(c.At), c.Mode, c.Grade
		ev.Status = "downloadable"
		if !c.Earned {
			ev.Status = "notpassing"
		}
		out = append(out, ev)
	}
	if p := r.Pass; p != nil {
		ev := base
		ev.Kind, ev.Type, ev.Time, ev.IsPassing = edx.KindPassing, edx.TypePassingStatus, time.UnixMicro(p.At), p.Passing
		if key.Style == "ccx-v1" {
			ev.Type = edx.TypeCCXPassingStatus
		}
		out = append(out, ev)
	}
	if e := r.Enroll; e != nil {
		ev := base
		ev.Kind, ev.Type, ev.Time, ev.IsActive, ev.Mode = edx.KindEnrollment, edx.TypeEnrollmentChanged, time.UnixMicro(e.At), e.Active, e.Mode
		out = append(out, ev)
	}
	return out
}
