package rules

import (
	"errors"
	"sort"

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
func (m *Mapping) Change(ev edx.Event) (Change, error) {
	sig := ev.Signal()
	c := Change{Course: ev.Course.Raw, Kind: ev.Kind, Signal: sig, At: Micros(ev.Time)}
	var errs []error
	for _, r := range m.Match(ev) {
		if sig != edx.SignalSupports && !r.Revoke {
			continue
		}
		u := Update{
			BadgeClass: r.BadgeClass, Rule: r.Name, Signal: sig, At: c.At,
			Event: r.Kind, Revoke: r.Revoke, RevokeAfter: r.RevokeAfter, Order: r.Index,
		}
		if sig == edx.SignalSupports {
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
