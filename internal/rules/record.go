package rules

import (
	"strconv"
	"strings"

	"github.com/badgebridge/bridge/internal/edx"
)

// Record is a learner's record (contract 9.1): per course run the latest certificate, passing and
// enrollment outcome. Milestone rules are decided over it.
type Record map[string]*RunRecord

// RunRecord is what the bridge knows of one course run of a learner. Times are µs.
type RunRecord struct {
	Cert   *CertOutcome   `json:"cert,omitempty"`
	Pass   *PassOutcome   `json:"pass,omitempty"`
	Enroll *EnrollOutcome `json:"enroll,omitempty"`
}

// CertOutcome is the latest certificate outcome: earned (downloadable or generating) or not.
type CertOutcome struct {
	Earned bool   `json:"earned"`
	Mode   string `json:"mode,omitempty"`
	Grade  string `json:"grade,omitempty"`
	At     int64  `json:"at"`
}

// PassOutcome is the latest passing outcome. LastTrue is the latest passing event, Since the
// earliest not-passing event after it (when not passing).
type PassOutcome struct {
	Passing  bool  `json:"passing"`
	At       int64 `json:"at"`
	LastTrue int64 `json:"last_true,omitempty"`
	Since    int64 `json:"since,omitempty"`
}

// EnrollOutcome is the latest enrollment outcome.
type EnrollOutcome struct {
	Active bool   `json:"active"`
	Mode   string `json:"mode,omitempty"`
	At     int64  `json:"at"`
}

// newer applies section 5's ordering to two outcomes: the later one wins, and at equal times
// the negative one.
func newer(at int64, positive bool, oldAt int64, oldPositive bool) bool {
	return at > oldAt || (at == oldAt && !positive && oldPositive)
}

// Outcome is what one event says of its course run, for the learner record; nil for an event
// that says nothing there (a transient certificate status).
func Outcome(ev edx.Event) *RunRecord {
	at := Micros(ev.Time)
	switch ev.Kind {
	case edx.KindCertificate:
		sig := ev.Signal()
		if sig == edx.SignalNone {
			return nil
		}
		return &RunRecord{Cert: &CertOutcome{Earned: sig == edx.SignalSupports, Mode: strings.ToLower(ev.Mode), Grade: ev.Grade, At: at}}
	case edx.KindPassing:
		p := &PassOutcome{Passing: ev.IsPassing, At: at}
		if ev.IsPassing {
			p.LastTrue = at
		} else {
			p.Since = at
		}
		return &RunRecord{Pass: p}
	case edx.KindEnrollment:
		return &RunRecord{Enroll: &EnrollOutcome{Active: ev.IsActive, Mode: strings.ToLower(ev.Mode), At: at}}
	}
	return nil
}

// Merge folds the outcomes of o into r with the ordering rules and reports whether r changed.
func (r *RunRecord) Merge(o *RunRecord) bool {
	changed := false
	if c := o.Cert; c != nil && (r.Cert == nil || newer(c.At, c.Earned, r.Cert.At, r.Cert.Earned)) {
		if r.Cert == nil || *r.Cert != *c {
			cp := *c
			r.Cert, changed = &cp, true
		}
	}
	if e := o.Enroll; e != nil && (r.Enroll == nil || newer(e.At, e.Active, r.Enroll.At, r.Enroll.Active)) {
		if r.Enroll == nil || *r.Enroll != *e {
			cp := *e
			r.Enroll, changed = &cp, true
		}
	}
	if p := o.Pass; p != nil {
		if next := mergePass(r.Pass, p); r.Pass == nil || *next != *r.Pass {
			r.Pass, changed = next, true
		}
	}
	return changed
}

// mergePass keeps the latest passing outcome, the latest passing time and the start of the
// current run of not passing (the earliest false after the latest true).
func mergePass(old, p *PassOutcome) *PassOutcome {
	if old == nil {
		cp := *p
		return &cp
	}
	out := *old
	switch {
	case p.Passing && p.At > old.At:
		out = PassOutcome{Passing: true, At: p.At, LastTrue: p.At}
	case p.Passing:
		// An older true: it can only move the latest true forward.
		out.LastTrue = max(old.LastTrue, p.At)
		if !old.Passing && out.Since < out.LastTrue {
			// The falses between are not kept: the latest known one is the safe (later) start.
			// (A false at the same time as the true still starts the run: the negative wins.)
			out.Since = old.At
		}
	case p.At >= old.At && old.Passing:
		out = PassOutcome{Passing: false, At: p.At, LastTrue: old.LastTrue, Since: p.At}
	case p.At >= old.At:
		out.At = p.At // still not passing; the run began at old.Since
	case !old.Passing && p.At >= old.LastTrue && p.At < old.Since:
		out.Since = p.At // an older false of the same run of not passing (at the true's time, it wins)
	}
	return &out
}

// grade parses a grade (a decimal in 0–1); ok is false for anything else. Only digits and a
// point are a decimal: ParseFloat alone would also take "NaN" (which compares false with
// everything, so it would pass a min_grade), "Inf", hex and exponents.
func grade(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }) {
		return 0, false
	}
	g, err := strconv.ParseFloat(s, 64)
	if err != nil || g < 0 || g > 1 {
		return 0, false
	}
	return g, true
}

// With is the record with o merged into run, leaving r as it is; changed reports whether the
// outcome changed anything.
func (r Record) With(run string, o *RunRecord) (out Record, changed bool) {
	out = make(Record, len(r)+1)
	for k, v := range r {
		out[k] = v
	}
	cp := RunRecord{}
	if old := r[run]; old != nil {
		cp = *old
	}
	changed = cp.Merge(o)
	out[run] = &cp
	return out, changed
}
