package rules

import (
	"errors"
	"sort"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// Change is what one event asks of a learner's rows: for its course run, one Update per rule of
// the current mapping that it matches.
type Change struct {
	Course  string
	Kind    edx.Kind
	Signal  edx.Signal
	At      int64 // event time, µs
	Updates []Update

	// Outcome is what the event says of its run for the learner record; nil when the record
	// does not keep the run (BRIDGE_LEARNER_RECORD) or the event says nothing there.
	Outcome *RunRecord
	// Milestones are the mapping's milestone rules, decided again when the record changes.
	Milestones []*Rule
	Learner    Learner // for the award text of milestones
	// Reevaluate decides the milestones again even when the record did not change, and owes a
	// reconcile only to rows whose desired state changes (bridge reevaluate).
	Reevaluate bool
}

// Decision is what a change does to a learner: the facts that change, by badge class, and the
// run's record when it changed.
type Decision struct {
	Facts map[string][]Fact
	Run   *RunRecord
	// Owed, when not nil, names the classes whose desired state changes: the only rows a
	// reevaluation owes a reconcile; the others only have their facts brought up to date.
	Owed map[string]bool
}

// Stored is a learner's facts as the ledger holds them: by badge class, then by fact field.
type Stored map[string]map[string]Fact

// Classes are the badge classes a change may touch, sorted: those its rules map to and, for a
// revocation or a failing status, every class the learner has a row of (held names them).
func (c Change) Classes(held []string) []string {
	want := map[string]bool{}
	for _, u := range c.Updates {
		want[u.BadgeClass] = true
	}
	if c.Outcome != nil || c.Reevaluate {
		for _, r := range c.Milestones {
			want[r.BadgeClass] = true
		}
	}
	if c.reachesStored() {
		for _, class := range held {
			want[class] = true
		}
	}
	out := make([]string, 0, len(want))
	for class := range want {
		out = append(out, class)
	}
	sort.Strings(out)
	return out
}

func (c Change) reachesStored() bool {
	return c.Signal == edx.SignalRevokes || c.Signal == edx.SignalFailing
}

// Decide applies the change to a learner: the run's outcome to the learner record (rec, which it
// updates), the rules' updates to the stored facts, and, when the record changed, every milestone
// decided again over it at now (µs). stored is not modified.
func (c Change) Decide(stored Stored, rec Record, now int64) Decision {
	d := Decision{Facts: c.Apply(stored)}
	if c.Outcome != nil {
		run := rec[c.Course]
		if run == nil {
			run = &RunRecord{}
		}
		if run.Merge(c.Outcome) {
			rec[c.Course] = run
			d.Run = run
		}
	}
	if d.Run == nil && !c.Reevaluate {
		return d
	}
	for _, r := range c.Milestones {
		if f, ok := c.milestone(r, stored[r.BadgeClass][milestoneField(r.Name)], rec, now); ok {
			d.Facts[r.BadgeClass] = append(d.Facts[r.BadgeClass], f)
		}
	}
	if c.Reevaluate {
		d.owedOnly(stored, now)
	}
	return d
}

// owedOnly keeps, of the classes whose facts change, those whose desired state at now changes.
func (d *Decision) owedOnly(stored Stored, now int64) {
	d.Owed = map[string]bool{}
	for class, facts := range d.Facts {
		before := make([]Fact, 0, len(stored[class]))
		after := map[string]Fact{}
		for field, f := range stored[class] {
			before = append(before, f)
			after[field] = f
		}
		for _, f := range facts {
			after[f.Field()] = f
		}
		merged := make([]Fact, 0, len(after))
		for _, f := range after {
			merged = append(merged, f)
		}
		was, _ := Desired(before, now)
		will, _ := Desired(merged, now)
		if was != will {
			d.Owed[class] = true
		}
	}
}

func milestoneField(rule string) string { return "|" + rule }

// milestone decides one milestone rule over the record: the fact to store, and false when the
// stored one (old, zero when none) already says it.
func (c Change) milestone(r *Rule, old Fact, rec Record, now int64) (Fact, bool) {
	ev := r.Milestone.Evaluate(rec, now)
	if !ev.Met {
		if !r.Revoke || old.Kind != Supports {
			return Fact{}, false // never held, already taken away, or kept by revoke: false
		}
		f := old
		f.Kind, f.At, f.Until = Revoked, max(c.At, old.At), 0
		return f, true
	}
	if old.Kind == Supports && old.First == ev.At && old.Until == ev.Until {
		return Fact{}, false // still met since the same time: the text it was awarded with stays
	}
	f := Fact{
		Rule: r.Name, Kind: Supports, At: ev.At, First: ev.At, LastTrue: ev.At, Until: ev.Until,
		Event: KindMilestone, Revoke: r.Revoke, Order: r.Index,
	}
	who := c.Learner
	f.Award, _ = r.RenderMilestone(who, ev.Courses, time.UnixMicro(ev.At).UTC())
	return f, true
}

// Apply merges the change into the stored facts with the ordering rules (Merge) and returns the
// facts that change, by badge class. A revocation or failing status also reaches facts of this
// course run stored by rules no longer in the mapping (or that matched under another mode), with
// the revoke settings stored in the fact. stored is not modified.
func (c Change) Apply(stored Stored) map[string][]Fact {
	current := map[string]map[string]Fact{}
	lookup := func(class, field string) (Fact, bool) {
		if f, ok := current[class][field]; ok {
			return f, true
		}
		f, ok := stored[class][field]
		return f, ok
	}
	out := map[string][]Fact{}
	for _, u := range append(append([]Update(nil), c.Updates...), c.storedTargets(stored)...) {
		u.Course = c.Course
		var old *Fact
		if f, ok := lookup(u.BadgeClass, c.Course+"|"+u.Rule); ok {
			old = &f
		}
		nf, ok := Merge(old, u)
		if !ok {
			continue
		}
		// A later update of the same field merges with this one.
		if current[u.BadgeClass] == nil {
			current[u.BadgeClass] = map[string]Fact{}
		}
		if _, again := current[u.BadgeClass][nf.Field()]; again {
			for i, f := range out[u.BadgeClass] {
				if f.Field() == nf.Field() {
					out[u.BadgeClass][i] = nf
				}
			}
		} else {
			out[u.BadgeClass] = append(out[u.BadgeClass], nf)
		}
		current[u.BadgeClass][nf.Field()] = nf
	}
	return out
}

// storedTargets finds stored facts of this course run that a revocation or a failing status must
// reach although no current rule matched them.
func (c Change) storedTargets(stored Stored) []Update {
	if !c.reachesStored() {
		return nil
	}
	seen := map[string]bool{}
	for _, u := range c.Updates {
		seen[u.BadgeClass+"\x00"+u.Rule] = true
	}
	var out []Update
	for class, facts := range stored {
		for _, f := range facts {
			if f.Course != c.Course || seen[class+"\x00"+f.Rule] || f.Event != c.Kind || !f.Revoke {
				continue
			}
			out = append(out, Update{
				BadgeClass: class, Rule: f.Rule, Signal: c.Signal, At: c.At, Event: f.Event,
				Revoke: f.Revoke, RevokeAfter: f.RevokeAfter, Order: f.Order, Award: f.Award,
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].BadgeClass+out[i].Rule < out[j].BadgeClass+out[j].Rule
	})
	return out
}

// Change is what ev asks of the learner's rows under this mapping: one Update per matching rule
// that the event concerns (a revocation or a failing status only rules that revoke), with the
// award text rendered now so that it is stored with the fact. A template that one event's values
// break leaves that part of the text empty rather than holding the badge back: the error says
// which, for a warning.
func (m *Mapping) Change(ev edx.Event, keepAll bool) (Change, error) {
	sig := ev.Signal()
	c := Change{Course: ev.Course.Raw, Kind: ev.Kind, Signal: sig, At: Micros(ev.Time),
		Learner: Learner{UserID: ev.UserID, Username: ev.Username, Name: ev.Name}}
	if keepAll || m.Keeps(ev.Course) {
		c.Outcome = Outcome(ev)
	}
	if m != nil {
		for _, r := range m.Rules {
			if r.Milestone != nil {
				c.Milestones = append(c.Milestones, r)
			}
		}
	}
	var errs []error
	for _, r := range m.Match(ev) {
		s := sig
		if s == edx.SignalSupports && r.MinGrade > 0 {
			// Honours: a certificate below the grade does not support the rule, and as a newer
			// outcome it takes the badge away where the rule revokes.
			if g, ok := grade(ev.Grade); !ok || g < r.MinGrade {
				s = edx.SignalRevokes
			}
		}
		if s != edx.SignalSupports && !r.Revoke {
			continue
		}
		u := Update{
			BadgeClass: r.BadgeClass, Rule: r.Name, Signal: s, At: c.At,
			Event: r.Kind, Revoke: r.Revoke, RevokeAfter: r.RevokeAfter, Order: r.Index,
		}
		if s == edx.SignalSupports {
			a, err := r.Render(ev)
			if err != nil {
				errs = append(errs, err)
			}
			u.Award = a
		}
		c.Updates = append(c.Updates, u)
	}
	return c, errors.Join(errs...)
}
