package rules

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/badgebridge/bridge/internal/edx"
)

// maxMilestoneDepth is how deep all_of / any_of may nest (contract 9.2).
const maxMilestoneDepth = 4

var milestoneKeys = []string{"courses", "count", "all_of", "any_of", "earned_by", "modes", "min_grade", "include_ccx", "revoke_after"}

// milestone reads when.milestone into r: the short form is one group.
func (p *parser) milestone(r *Rule, e entry) {
	r.Kind = KindMilestone
	inherited := Requirement{EarnedBy: edx.KindCertificate}
	r.Milestone = p.requirement(e, "when.milestone", inherited, 1)
}

// requirement reads one item; settings set on it apply to it and the items below.
func (p *parser) requirement(e entry, where string, in Requirement, depth int) *Requirement {
	n := resolve(e.value)
	if n.Kind != yaml.MappingNode {
		p.addf(e.line, "%s: want a mapping with courses (and count), all_of or any_of", where)
		return nil
	}
	if depth > maxMilestoneDepth {
		p.addf(e.line, "%s: all_of / any_of nest deeper than %d", where, maxMilestoneDepth)
		return nil
	}
	f := p.fields(n, where, milestoneKeys)
	q := &Requirement{Line: e.line, EarnedBy: in.EarnedBy, Modes: in.Modes, MinGrade: in.MinGrade,
		IncludeCCX: in.IncludeCCX, RevokeAfter: in.RevokeAfter, Count: 1}
	p.settings(q, f, where)

	_, hasCourses := f["courses"]
	all, hasAll := f["all_of"]
	anyOf, hasAny := f["any_of"]
	switch {
	case hasCourses && (hasAll || hasAny):
		p.addf(e.line, "%s: an item has either courses or all_of / any_of, not both", where)
		return q
	case hasAll && hasAny:
		p.addf(all.line, "%s: all_of and any_of in one item; nest one in the other", where)
		return q
	case hasAll:
		q.AllOf = p.items(all, where+".all_of", *q, depth)
		if c, ok := f["count"]; ok {
			p.addf(c.line, "%s.count: all_of needs every item; count goes with courses or any_of", where)
		}
	case hasAny:
		q.AnyOf = p.items(anyOf, where+".any_of", *q, depth)
		if q.Count > len(q.AnyOf) && len(q.AnyOf) > 0 {
			p.addf(anyOf.line, "%s.any_of: count %d is more than its %d items", where, q.Count, len(q.AnyOf))
		}
	case hasCourses:
		p.group(q, f, where)
	default:
		p.addf(e.line, "%s: a group with no courses (give courses, all_of or any_of)", where)
	}
	return q
}

func (p *parser) items(e entry, where string, in Requirement, depth int) []*Requirement {
	v := resolve(e.value)
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		p.addf(e.line, "%s: want a list of items", where)
		return nil
	}
	in.Count = 1
	var out []*Requirement
	for i, n := range v.Content {
		if q := p.requirement(entry{line: n.Line, value: n}, fmt.Sprintf("%s[%d]", where, i), in, depth+1); q != nil {
			out = append(out, q)
		}
	}
	return out
}

// settings reads count and the inherited settings of one item.
func (p *parser) settings(q *Requirement, f map[string]entry, where string) {
	if e, ok := f["count"]; ok {
		v := resolve(e.value)
		n, err := strconv.Atoi(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil || n < 1 {
			p.addf(e.line, "%s.count: want a whole number of at least 1", where)
		} else {
			q.Count = n
		}
	}
	if e, ok := f["earned_by"]; ok {
		s, _ := p.str(where+".earned_by", e)
		switch kind := edx.Kind(s); kind {
		case edx.KindCertificate, edx.KindPassing, edx.KindEnrollment:
			q.EarnedBy = kind
		default:
			p.addf(e.line, "%s.earned_by: %s is not certificate, passing or enrollment", where, quote(s))
		}
	}
	if e, ok := f["modes"]; ok {
		if modes, ok := p.list(where+".modes", e); ok {
			q.Modes = nil
			for _, m := range modes {
				if m.value == "" || strings.IndexFunc(m.value, unicode.IsSpace) >= 0 {
					p.addf(m.line, "%s.modes: %s is not a mode", where, quote(m.value))
					continue
				}
				q.Modes = append(q.Modes, m.value)
			}
		}
	}
	if e, ok := f["min_grade"]; ok {
		if g, ok := p.minGrade(where+".min_grade", e); ok {
			q.MinGrade = g
		}
	}
	if e, ok := f["include_ccx"]; ok {
		q.IncludeCCX, _ = p.boolean(where+".include_ccx", e)
	}
	if e, ok := f["revoke_after"]; ok {
		if d, ok := p.duration(where+".revoke_after", e); ok {
			q.RevokeAfter = d
		}
	}
	if q.MinGrade > 0 && q.EarnedBy != edx.KindCertificate {
		line := q.Line
		if e, ok := f["min_grade"]; ok {
			line = e.line
		}
		p.addf(line, "%s: min_grade applies only to courses earned_by certificate (here %s)", where, q.EarnedBy)
	}
	if len(q.Modes) > 0 && q.EarnedBy == edx.KindPassing {
		if e, ok := f["modes"]; ok {
			p.addf(e.line, "%s.modes: courses earned_by passing have no modes", where)
		}
	}
}

// group reads a group's courses and checks its count against them.
func (p *parser) group(q *Requirement, f map[string]entry, where string) {
	e := f["courses"]
	items, ok := p.list(where+".courses", e)
	if !ok {
		return
	}
	if len(items) == 0 {
		p.addf(e.line, "%s.courses: empty list; the group could never be met", where)
	}
	exact := map[string]bool{}
	allExact := true
	for _, it := range items {
		if msg := checkPattern(it.value); msg != "" {
			p.addf(it.line, "%s.courses: %s", where, msg)
			continue
		}
		q.Courses = append(q.Courses, it.value)
		if strings.Contains(it.value, "*") {
			allExact = false
			p.deadPattern(where+".courses", it) // an exact key that does not parse is an error below
			continue
		}
		key, err := edx.ParseCourseKey(it.value)
		if err != nil {
			p.addf(it.line, "%s.courses: %s: %v", where, quote(it.value), err)
			continue
		}
		exact[strings.ToLower(key.Org)+"+"+strings.ToLower(key.Course)] = true
	}
	if allExact && len(q.Courses) > 0 && q.Count > len(exact) {
		line := e.line
		if c, ok := f["count"]; ok {
			line = c.line
		}
		p.addf(line, "%s.count: %d, but the group names only %d distinct course(s)", where, q.Count, len(exact))
	}
}

// minGrade reads a grade threshold: a decimal in 0–1.
func (p *parser) minGrade(key string, e entry) (float64, bool) {
	v := resolve(e.value)
	g, err := strconv.ParseFloat(v.Value, 64)
	if v.Kind != yaml.ScalarNode || err != nil || !(g >= 0 && g <= 1) { // NaN is neither
		p.addf(e.line, "%s: want a grade from 0 to 1, such as 0.8", key)
		return 0, false
	}
	return g, true
}

// passingOnly tells whether every group of the milestone counts courses by passing: such a
// milestone does not revoke by default (contract 9.2).
func (q *Requirement) passingOnly() bool {
	if q == nil {
		return false
	}
	if len(q.Courses) > 0 {
		return q.EarnedBy == edx.KindPassing
	}
	for _, item := range append(append([]*Requirement(nil), q.AllOf...), q.AnyOf...) {
		if !item.passingOnly() {
			return false
		}
	}
	return len(q.AllOf)+len(q.AnyOf) > 0
}
