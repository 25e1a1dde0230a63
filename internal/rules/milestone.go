package rules

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// KindMilestone is the kind of a milestone rule: it reads the learner record, not one event.
const KindMilestone edx.Kind = "milestone"

// Requirement is one item of a milestone (contract 9.2): a group of courses of which Count must
// count, or all_of / any_of over nested items. The settings are already inherited from the items
// above, so each item carries the ones that apply to it.
type Requirement struct {
	Line int

	Courses []string       // a group's course patterns
	AllOf   []*Requirement // every item met
	AnyOf   []*Requirement // at least Count items met
	Count   int            // a group: distinct courses; any_of: items (default 1)

	EarnedBy    edx.Kind // what makes a course count: certificate, passing or enrollment
	Modes       []string // certificate and enrollment: the modes that count; empty = all
	MinGrade    float64  // certificate: the least grade; 0 = any
	IncludeCCX  bool     // CCX runs count as their master course
	RevokeAfter time.Duration
}

// Evaluation is a milestone's state over a learner record.
type Evaluation struct {
	Met bool
	// At is when the requirement became met (µs): the event time of the outcome that made it
	// met, the outcomes taken in event-time order.
	At int64
	// Until is when it stops being met by itself (a passing course whose revoke_after runs
	// out); 0 = not by itself.
	Until   int64
	Courses []string // one course key per counted course, its newest counted run, sorted
	Missing []string // the groups' course patterns with too few courses counted
}

// span is when something counts: from From on, until Until (0 = on).
type span struct{ From, Until int64 }

// course is one counted org+course: when it counts and its newest counted run.
type course struct {
	span
	run   string
	runAt int64
}

// Evaluate decides the requirement over the record at now (µs).
func (q *Requirement) Evaluate(rec Record, now int64) Evaluation {
	met, sp, counted, missing := q.eval(rec, now)
	ev := Evaluation{Met: met, Missing: missing}
	if met {
		ev.At, ev.Until = sp.From, sp.Until
	}
	for _, c := range counted {
		ev.Courses = append(ev.Courses, c.run)
	}
	sort.Strings(ev.Courses)
	ev.Courses = slices.Compact(ev.Courses)
	return ev
}

func (q *Requirement) eval(rec Record, now int64) (bool, span, map[string]course, []string) {
	counted := map[string]course{}
	var missing []string
	if len(q.Courses) > 0 {
		for id, c := range q.courses(rec, now) {
			counted[id] = c
		}
		spans := make([]span, 0, len(counted))
		for _, c := range counted {
			spans = append(spans, c.span)
		}
		met, sp := atLeast(spans, q.Count)
		if !met {
			missing = append(missing, q.Courses...)
		}
		return met, sp, counted, missing
	}
	var spans []span
	items := q.AllOf
	need := len(items)
	if len(q.AnyOf) > 0 {
		items, need = q.AnyOf, q.Count
	}
	for _, item := range items {
		met, sp, c, m := item.eval(rec, now)
		missing = append(missing, m...)
		if met {
			spans = append(spans, sp)
			for id, cc := range c {
				counted[id] = cc
			}
		}
	}
	met, sp := atLeast(spans, need)
	return met, sp, counted, missing
}

// atLeast says whether n of the spans hold, from when (the n-th earliest start) and until when
// (n of them still hold until the (k-n+1)-th earliest end, k the spans that hold).
func atLeast(spans []span, n int) (bool, span) {
	if n < 1 {
		n = 1
	}
	if len(spans) < n {
		return false, span{}
	}
	froms := make([]int64, len(spans))
	var untils []int64
	for i, s := range spans {
		froms[i] = s.From
		if s.Until > 0 {
			untils = append(untils, s.Until)
		}
	}
	slices.Sort(froms)
	slices.Sort(untils)
	out := span{From: froms[n-1]}
	// After the j-th earliest end, k-j-1 spans still hold: the requirement ends at the
	// (k-n)-th end, unless n of the spans never end.
	if forever := len(spans) - len(untils); forever < n {
		out.Until = untils[len(spans)-n]
	}
	return true, out
}

// courses finds the courses of the group that count at now, by org+course.
func (q *Requirement) courses(rec Record, now int64) map[string]course {
	out := map[string]course{}
	for run, r := range rec {
		key, err := edx.ParseCourseKey(run)
		if err != nil {
			continue
		}
		id, ok := q.matches(key)
		if !ok {
			continue
		}
		sp, at, ok := q.counts(r, now)
		if !ok {
			continue
		}
		c, seen := out[id]
		if !seen {
			out[id] = course{span: sp, run: run, runAt: at}
			continue
		}
		// Several runs of one course count once: from the earliest, until the latest.
		c.From = min(c.From, sp.From)
		if c.Until != 0 && (sp.Until == 0 || sp.Until > c.Until) {
			c.Until = sp.Until
		}
		if at > c.runAt {
			c.run, c.runAt = run, at
		}
		out[id] = c
	}
	return out
}

// matches tells whether a course run belongs to the group, and its course (org+course).
func (q *Requirement) matches(key edx.CourseKey) (string, bool) {
	if key.Style == styleCCX {
		if !q.IncludeCCX || key.Master == nil {
			return "", false
		}
		key = *key.Master
	}
	for _, pattern := range q.Courses {
		if matchPattern(pattern, key.Raw) {
			return strings.ToLower(key.Org) + "+" + strings.ToLower(key.Course), true
		}
	}
	return "", false
}

// counts says whether one run counts at now under the item's earned_by, from when and until
// when, and the time of its latest outcome.
func (q *Requirement) counts(r *RunRecord, now int64) (span, int64, bool) {
	switch q.EarnedBy {
	case edx.KindPassing:
		p := r.Pass
		if p == nil {
			return span{}, 0, false
		}
		if p.Passing {
			return span{From: p.LastTrue}, p.At, true
		}
		if p.LastTrue == 0 || q.RevokeAfter <= 0 {
			return span{}, 0, false
		}
		until := p.Since + q.RevokeAfter.Microseconds()
		if now >= until {
			return span{}, 0, false
		}
		return span{From: p.LastTrue, Until: until}, p.At, true
	case edx.KindEnrollment:
		e := r.Enroll
		if e == nil || !e.Active || !q.acceptsMode(e.Mode) {
			return span{}, 0, false
		}
		return span{From: e.At}, e.At, true
	default:
		c := r.Cert
		if c == nil || !c.Earned || !q.acceptsMode(c.Mode) {
			return span{}, 0, false
		}
		if q.MinGrade > 0 {
			if g, ok := grade(c.Grade); !ok || g < q.MinGrade {
				return span{}, 0, false
			}
		}
		return span{From: c.At}, c.At, true
	}
}

func (q *Requirement) acceptsMode(mode string) bool {
	if len(q.Modes) == 0 {
		return true
	}
	for _, m := range q.Modes {
		if strings.EqualFold(m, mode) {
			return true
		}
	}
	return false
}

// Keeps tells whether some rule of the mapping could use this course run: the runs the learner
// record keeps by default (BRIDGE_LEARNER_RECORD=mapped).
func (m *Mapping) Keeps(key edx.CourseKey) bool {
	if m == nil {
		return false
	}
	for _, r := range m.Rules {
		if r.Milestone != nil {
			if r.Milestone.anyMatches(key) {
				return true
			}
			continue
		}
		if r.matchesCourse(key) {
			return true
		}
	}
	return false
}

func (q *Requirement) anyMatches(key edx.CourseKey) bool {
	if len(q.Courses) > 0 {
		_, ok := q.matches(key)
		return ok
	}
	for _, item := range append(append([]*Requirement(nil), q.AllOf...), q.AnyOf...) {
		if item.anyMatches(key) {
			return true
		}
	}
	return false
}
