package rules

import (
	"strings"

	"github.com/badgebridge/bridge/internal/edx"
)

// styleCCX is the CourseKey.Style of a CCX run.
const styleCCX = "ccx-v1"

// Match returns the rules the event concerns, in mapping order: rules of the event's kind whose
// course patterns match its course key.
//
// The mode filter applies only to an event that supports the badge: a certificate revocation
// concerns every matching certificate rule whatever modes it lists, because the mode on a
// revocation may differ from the one the badge was awarded for (mark_unverified, a mode change)
// and the badge must still go. Whether a rule actually revokes (Revoke, RevokeAfter) is the
// ledger's decision.
func (m *Mapping) Match(ev edx.Event) []*Rule {
	if m == nil {
		return nil
	}
	var out []*Rule
	for _, r := range m.Rules {
		if r.Matches(ev) {
			out = append(out, r)
		}
	}
	return out
}

// Matches reports whether the rule concerns ev (see Match).
func (r *Rule) Matches(ev edx.Event) bool {
	if ev.Kind != r.Kind {
		return false
	}
	if !r.matchesCourse(ev.Course) {
		return false
	}
	if len(r.Modes) > 0 && ev.Signal() == edx.SignalSupports && !r.acceptsMode(ev.Mode) {
		return false
	}
	return true
}

// matchesCourse matches the rule's patterns against a course key. A CCX run is matched only by
// rules with include_ccx, through its master course (so "course-v1:Org+Course+*" covers the CCX
// runs of those courses) or through the CCX key itself.
func (r *Rule) matchesCourse(key edx.CourseKey) bool {
	keys := []string{key.Raw}
	if key.Style == styleCCX || strings.HasPrefix(key.Raw, ccxPrefix) {
		if !r.IncludeCCX {
			return false
		}
		if key.Master != nil && key.Master.Raw != "" {
			keys = append(keys, key.Master.Raw)
		}
	}
	for _, pattern := range r.Courses {
		for _, k := range keys {
			if matchPattern(pattern, k) {
				return true
			}
		}
	}
	return false
}

// acceptsMode compares case-insensitively: mode slugs are lowercase in Open edX, but a course
// team writing "Verified" in the mapping means the same mode.
func (r *Rule) acceptsMode(mode string) bool {
	for _, m := range r.Modes {
		if strings.EqualFold(m, mode) {
			return true
		}
	}
	return false
}
