package rules

import (
	"strings"
	"unicode"
)

// wildcard is the only special character of a course pattern. Everything else is literal, because
// course keys are full of characters that are special elsewhere ("+", ".", ":", "@").
const wildcard = '*'

// matchPattern reports whether key matches pattern, where * matches any run of characters
// (including none) and every other byte matches itself. Comparison is case-sensitive, as course
// keys are.
//
// It is the classic greedy matcher with one backtrack point (the last *), which is linear in
// practice and never worse than len(pattern)*len(key); no regexp, so nothing in a pattern can be
// mistaken for syntax.
func matchPattern(pattern, key string) bool {
	p, k := 0, 0
	star, mark := -1, 0 // position of the last * in pattern, and where in key it started matching
	for k < len(key) {
		switch {
		case p < len(pattern) && pattern[p] == wildcard:
			star, mark = p, k
			p++
		case p < len(pattern) && pattern[p] == key[k]:
			p++
			k++
		case star >= 0:
			// Let the last * swallow one more byte and retry from there.
			mark++
			p, k = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == wildcard {
		p++
	}
	return p == len(pattern)
}

// checkPattern says what is wrong with a course pattern, or "" when it is fine.
func checkPattern(pattern string) string {
	if pattern == "" {
		return "empty course pattern"
	}
	if strings.IndexFunc(pattern, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "course pattern " + quote(pattern) + " contains whitespace"
	}
	return ""
}
