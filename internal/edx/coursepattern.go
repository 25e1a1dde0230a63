package edx

import "unicode/utf8"

// PatternWildcard is the one wildcard of the mapping's course patterns: it matches any run of
// characters, none included (rules.matchPattern).
const PatternWildcard = '*'

// PatternCanMatch reports whether some course key that ParseCourseKey accepts matches pattern,
// where PatternWildcard matches any run of characters and every other character only itself.
// A pattern for which it is false names no course at all, e.g. "course-v1:OpenedX+DemoX" (a
// course-v1 key has a run) or "OpenedX+DemoX+*" (no namespace, and no slashes either).
//
// The keys ParseCourseKey accepts are a regular language, one of three forms:
//
//	course-v1:L+ "+" L+ "+" L+            L: a locator character, [\w\-~.:]
//	ccx-v1:L+ "+" L+ "+" L+ "+ccx@" D+    D: a decimal digit
//	S+ "/" S+ "/" S+                       S: a character of the deprecated form, [\w.%-]
//
// each at most maxCourseKeyLen bytes. Each form is a chain of steps (a literal character, or
// one or more characters of a class), so its automaton only ever moves forward; the pattern is
// run through it as a set of positions, a wildcard taking a set to every position from its
// earliest on.
func PatternCanMatch(pattern string) bool {
	literal := 0
	for i := 0; i < len(pattern); i++ {
		if pattern[i] != PatternWildcard {
			literal++
		}
	}
	if literal > maxCourseKeyLen {
		return false
	}
	for _, f := range keyForms {
		if f.canMatch(pattern) {
			return true
		}
	}
	return false
}

// keyStep is one step of a key form: a literal character, or one or more characters of class.
type keyStep struct {
	lit   rune
	class func(rune) bool
}

type keyForm []keyStep

func lit(s string) []keyStep {
	var out []keyStep
	for _, r := range s {
		out = append(out, keyStep{lit: r})
	}
	return out
}

func form(parts ...[]keyStep) keyForm {
	var f keyForm
	for _, p := range parts {
		f = append(f, p...)
	}
	return f
}

func digitRune(r rune) bool { return r >= '0' && r <= '9' }

var (
	locator  = []keyStep{{class: locatorRune}}
	slash    = []keyStep{{class: slashKeyRune}}
	keyForms = []keyForm{
		form(lit(StyleCourseV1+":"), locator, lit("+"), locator, lit("+"), locator),
		form(lit(StyleCCXV1+":"), locator, lit("+"), locator, lit("+"), locator, lit("+ccx@"), []keyStep{{class: digitRune}}),
		form(slash, lit("/"), slash, lit("/"), slash),
	}
)

// The automaton of a form has, per step s, the positions 2s (before the step) and 2s+1 (after
// at least one character of a class step; unused for a literal), and 2·len(f), the end. Every
// character of a class step is outside the class of the step before it and differs from the
// literal after it, so the automaton is deterministic.
func (f keyForm) canMatch(pattern string) bool {
	end := 2 * len(f)
	set := make([]bool, end+1)
	set[0] = true
	next := make([]bool, end+1)
	for _, r := range pattern {
		if r == PatternWildcard {
			first := -1
			for i, in := range set {
				if in {
					first = i
					break
				}
			}
			for i := first; i >= 0 && i <= end; i++ {
				set[i] = true
			}
			continue
		}
		clear(next)
		moved := false
		for i, in := range set {
			if in {
				if j, ok := f.step(i, r); ok {
					next[j], moved = true, true
				}
			}
		}
		if !moved {
			return false
		}
		set, next = next, set
	}
	return set[end] || (f[len(f)-1].class != nil && set[end-1])
}

// step moves position i on character r.
func (f keyForm) step(i int, r rune) (int, bool) {
	if r == utf8.RuneError {
		return 0, false
	}
	s, after := i/2, i%2 == 1
	if s >= len(f) {
		return 0, false
	}
	st := f[s]
	switch {
	case st.class == nil:
		if after || r != st.lit {
			return 0, false
		}
		return 2 * (s + 1), true
	case st.class(r):
		return 2*s + 1, true
	case after:
		return f.step(2*(s+1), r) // the class is done: r starts the next step
	}
	return 0, false
}
