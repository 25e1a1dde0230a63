package rules

import (
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// FactKind is what the latest event of one (course run, rule) says.
type FactKind string

const (
	Supports FactKind = "supports"
	Revoked  FactKind = "revoked"
	Failing  FactKind = "failing"
)

// AwardText is the award content rendered from the rule when the fact was recorded, so a later
// mapping change does not rewrite what an earlier event earned.
type AwardText struct {
	Narrative    string        `json:"narrative,omitempty"`
	EvidenceURL  string        `json:"evidence_url,omitempty"`
	Notify       bool          `json:"notify,omitempty"`
	ExpiresAfter time.Duration `json:"expires_after,omitempty"`
}

// Fact is the latest word of one (course run, rule) on one row. Times are Unix microseconds,
// because events are compared as instants to the microsecond.
type Fact struct {
	Course string   `json:"course"`
	Rule   string   `json:"rule"`
	Kind   FactKind `json:"kind"`
	At     int64    `json:"at"`              // time of the latest event that set this fact
	First  int64    `json:"first,omitempty"` // supports: when the current run of support began
	Since  int64    `json:"since,omitempty"` // failing: the earliest false after the latest true
	// LastTrue is the latest supporting event; a failing fact without one never held the badge.
	LastTrue int64 `json:"last_true,omitempty"`
	// Until ends a supporting fact by itself (a milestone held by a passing course whose
	// revoke_after runs out); 0 = it holds until a newer event says otherwise.
	Until int64 `json:"until,omitempty"`

	Event       edx.Kind      `json:"event"`
	Revoke      bool          `json:"revoke"`
	RevokeAfter time.Duration `json:"revoke_after,omitempty"`
	Order       int           `json:"order"`
	Award       AwardText     `json:"award"`
}

// Field is the fact's field in the row's facts hash.
func (f Fact) Field() string { return f.Course + "|" + f.Rule }

// Update is one rule's view of an incoming event, before ordering rules are applied.
type Update struct {
	BadgeClass  string
	Course      string
	Rule        string
	Signal      edx.Signal
	At          int64 // event time, µs
	Event       edx.Kind
	Revoke      bool
	RevokeAfter time.Duration
	Order       int
	Award       AwardText
}

// Merge applies the contract's ordering rules (section 5, "Facts") to the stored fact old (nil
// when there is none) and returns the fact to store and whether anything changed.
//
// A fact is replaced only by a newer event; at equal times a revocation (or a failing status)
// wins, because Open edX stamps the changed+revoked pair of one save with one time.
func Merge(old *Fact, u Update) (Fact, bool) {
	nf := Fact{
		Course: u.Course, Rule: u.Rule, At: u.At, Event: u.Event,
		Revoke: u.Revoke, RevokeAfter: u.RevokeAfter, Order: u.Order, Award: u.Award,
	}
	switch u.Signal {
	case edx.SignalSupports:
		nf.Kind, nf.First, nf.LastTrue = Supports, u.At, u.At
		if old == nil {
			return nf, true
		}
		switch {
		case u.At > old.At:
			if old.Kind == Supports {
				// Still the same run of support: keep when it began (issuedOn) and its text.
				nf.First = min(old.First, u.At)
				if nf.First == 0 {
					nf.First = u.At
				}
			}
			return nf, true
		case old.Kind == Supports && u.At < old.First:
			// An older re-send of the same support: it moves the start of the run back.
			f := *old
			f.First = u.At
			f.Award = u.Award
			return f, true
		case old.Kind == Failing && u.At > old.LastTrue && u.At < old.At:
			// A true between the failing run's start and its latest false: the failing run can
			// only have begun after it. Without the overwritten falses, the latest known one is
			// the safe (later) start.
			f := *old
			f.LastTrue = u.At
			if f.Since < u.At { // a false at the true's own time still starts the run: it wins
				f.Since = old.At
			}
			return f, f != *old
		}
		return *old, false
	case edx.SignalRevokes:
		nf.Kind = Revoked
		if old == nil || u.At >= old.At {
			if old != nil && old.Kind == Revoked && old.At == u.At {
				return *old, false
			}
			if old != nil {
				// The rule's revoke settings stay those stored with the fact.
				nf.Revoke, nf.RevokeAfter = old.Revoke, old.RevokeAfter
				nf.Award = old.Award
			}
			return nf, true
		}
		return *old, false
	case edx.SignalFailing:
		nf.Kind, nf.Since = Failing, u.At
		if old == nil {
			return nf, true
		}
		switch old.Kind {
		case Supports:
			if u.At >= old.At {
				nf.LastTrue = old.LastTrue
				if nf.LastTrue == 0 {
					nf.LastTrue = old.At
				}
				nf.Award = old.Award
				return nf, true
			}
		case Failing:
			if u.At < old.LastTrue {
				return *old, false
			}
			f := *old
			f.Since = min(old.Since, u.At)
			f.At = max(old.At, u.At)
			return f, f != *old
		case Revoked:
			if u.At > old.At {
				return nf, true
			}
		}
		return *old, false
	}
	if old == nil {
		return Fact{}, false
	}
	return *old, false
}

// Holds tells whether this fact alone keeps the badge held at now (µs), and when that ends.
func (f Fact) Holds(now int64) (held bool, until int64) {
	switch f.Kind {
	case Supports:
		if f.Until > 0 {
			if now < f.Until {
				return true, f.Until
			}
			return false, 0
		}
		return true, 0
	case Failing:
		if !f.Revoke {
			return f.LastTrue > 0, 0
		}
		if f.LastTrue == 0 {
			return false, 0
		}
		deadline := f.Since + f.RevokeAfter.Microseconds()
		if now < deadline {
			return true, deadline
		}
	}
	return false, 0
}

// Desired computes whether the row should be held at now (µs), and the earliest time (µs) at
// which that answer changes by itself (0 = never).
func Desired(facts []Fact, now int64) (held bool, next int64) {
	for _, f := range facts {
		h, until := f.Holds(now)
		if h {
			held = true
		}
		if until > 0 && (next == 0 || until < next) {
			next = until
		}
	}
	if held {
		for _, f := range facts {
			if f.Kind == Supports && f.Until == 0 {
				// A supporting fact holds forever: no failing deadline changes the answer.
				return true, 0
			}
		}
	}
	return held, next
}

// AwardFact picks the fact that supplies the award text: the earliest supporting one (ties:
// mapping order). ok is false when no fact holds the row.
func AwardFact(facts []Fact, now int64) (Fact, bool) {
	var best Fact
	found := false
	for _, f := range facts {
		if h, _ := f.Holds(now); !h {
			continue
		}
		start := f.First
		if f.Kind == Failing || start == 0 {
			start = f.LastTrue
		}
		bs := best.First
		if best.Kind == Failing || bs == 0 {
			bs = best.LastTrue
		}
		if !found || start < bs || (start == bs && f.Order < best.Order) {
			best, found = f, true
		}
	}
	return best, found
}

// Micros converts a time to the ledger's Unix microseconds.
func Micros(t time.Time) int64 { return t.UnixMicro() }
