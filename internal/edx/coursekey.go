package edx

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// CourseKey is a parsed Open edX course key.
//
//	course-v1:Org+Course+Run           (Style "course-v1")
//	Org/Course/Run                     (Style "slash", pre-2014 courses)
//	ccx-v1:Org+Course+Run+ccx@3        (Style "ccx-v1", Master is the course-v1 key)
type CourseKey struct {
	Raw    string // exactly as received
	Style  string // "course-v1", "slash" or "ccx-v1"
	Org    string
	Course string
	Run    string
	CCX    string     // CCX id, for ccx-v1 keys
	Master *CourseKey // the master course, for ccx-v1 keys
}

// String gives the canonical form of the key.
func (k CourseKey) String() string { return k.Raw }

// Course key styles.
const (
	StyleCourseV1 = "course-v1"
	StyleSlash    = "slash"
	StyleCCXV1    = "ccx-v1"
)

// maxCourseKeyLen is the length of the platform's course key columns (CourseKeyField).
const maxCourseKeyLen = 255

// ParseCourseKey parses a course key the way openedx/opaque-keys and openedx/ccx-keys do:
//
//	course-v1:Org+Course+Run      parts of [\w\-~.:] (Python's Unicode \w)
//	Org/Course/Run                parts of [\w.%-] (the deprecated form)
//	ccx-v1:Org+Course+Run+ccx@N   N decimal digits; Master is course-v1:Org+Course+Run
//
// Keys qualified with +branch@ or +version@ are rejected: they name a draft or a specific
// version of a course, never the course a certificate belongs to, and accepting them would let
// one course appear under several keys. Likewise only the lower-case "ccx@" the platform
// writes is accepted, although ccx-keys ignores case there. Raw is the input without
// surrounding white space.
func ParseCourseKey(s string) (CourseKey, error) {
	raw := strings.TrimSpace(s)
	fail := func(format string, args ...any) (CourseKey, error) {
		return CourseKey{}, fmt.Errorf("course key %s: %s", show(raw), fmt.Sprintf(format, args...))
	}
	if raw == "" {
		return CourseKey{}, errors.New("course key is empty")
	}
	if len(raw) > maxCourseKeyLen {
		return fail("longer than %d bytes", maxCourseKeyLen)
	}
	namespace, rest, hasNamespace := strings.Cut(raw, ":")
	// Only namespaced keys contain ':' before any '/': the deprecated form allows neither ':'
	// in its parts nor a namespace.
	if !hasNamespace || strings.Contains(namespace, "/") {
		return parseSlashKey(raw, fail)
	}
	switch namespace {
	case StyleCourseV1:
		parts := strings.Split(rest, "+")
		if problem := checkQualifiers(parts); problem != "" {
			return fail("%s", problem)
		}
		if len(parts) != 3 {
			return fail("expected course-v1:ORG+COURSE+RUN")
		}
		if problem := checkParts(parts, "org", "course", "run"); problem != "" {
			return fail("%s", problem)
		}
		return CourseKey{Raw: raw, Style: StyleCourseV1, Org: parts[0], Course: parts[1], Run: parts[2]}, nil
	case StyleCCXV1:
		parts := strings.Split(rest, "+")
		if problem := checkQualifiers(parts); problem != "" {
			return fail("%s", problem)
		}
		if len(parts) != 4 || !strings.HasPrefix(parts[3], "ccx@") {
			return fail("expected ccx-v1:ORG+COURSE+RUN+ccx@N")
		}
		if problem := checkParts(parts[:3], "org", "course", "run"); problem != "" {
			return fail("%s", problem)
		}
		ccx := strings.TrimPrefix(parts[3], "ccx@")
		if ccx == "" || strings.Trim(ccx, "0123456789") != "" {
			return fail("ccx id %s is not a number", show(ccx))
		}
		master := CourseKey{
			Raw:   StyleCourseV1 + ":" + parts[0] + "+" + parts[1] + "+" + parts[2],
			Style: StyleCourseV1, Org: parts[0], Course: parts[1], Run: parts[2],
		}
		return CourseKey{
			Raw: raw, Style: StyleCCXV1, Org: parts[0], Course: parts[1], Run: parts[2],
			CCX: ccx, Master: &master,
		}, nil
	}
	return fail("unsupported namespace %s (want course-v1 or ccx-v1)", show(namespace))
}

func parseSlashKey(raw string, fail func(string, ...any) (CourseKey, error)) (CourseKey, error) {
	parts := strings.Split(raw, "/")
	if len(parts) != 3 {
		return fail("expected course-v1:ORG+COURSE+RUN")
	}
	for i, name := range []string{"org", "course", "run"} {
		if parts[i] == "" {
			return fail("%s is empty", name)
		}
		if r, ok := badRune(parts[i], slashKeyRune); !ok {
			return fail("%s contains %s, not allowed in an ORG/COURSE/RUN key", name, strconv.QuoteRune(r))
		}
	}
	return CourseKey{Raw: raw, Style: StyleSlash, Org: parts[0], Course: parts[1], Run: parts[2]}, nil
}

// checkQualifiers reports branch@ or version@ parts after ORG+COURSE+RUN.
func checkQualifiers(parts []string) string {
	if len(parts) <= 3 {
		return ""
	}
	for _, p := range parts[3:] {
		if strings.HasPrefix(p, "branch@") || strings.HasPrefix(p, "version@") {
			return "branch- or version-qualified keys are not accepted"
		}
	}
	return ""
}

func checkParts(parts []string, names ...string) string {
	for i, name := range names {
		if parts[i] == "" {
			return name + " is empty"
		}
		if r, ok := badRune(parts[i], locatorRune); !ok {
			return name + " contains " + strconv.QuoteRune(r) + ", not allowed in a course key"
		}
	}
	return ""
}

// badRune gives the first rune of s that allowed rejects.
func badRune(s string, allowed func(rune) bool) (rune, bool) {
	for _, r := range s {
		if !allowed(r) {
			return r, false
		}
	}
	return 0, true
}

// wordRune is Python's Unicode \w: letters, numbers and the underscore.
func wordRune(r rune) bool {
	return r == '_' || (r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsNumber(r)))
}

// locatorRune is opaque-keys' Locator.ALLOWED_ID_CHARS, [\w\-~.:].
func locatorRune(r rune) bool {
	return wordRune(r) || r == '-' || r == '~' || r == '.' || r == ':'
}

// slashKeyRune is what CourseLocator allows in the deprecated form: [\w.%-].
func slashKeyRune(r rune) bool {
	return wordRune(r) || r == '.' || r == '%' || r == '-'
}
