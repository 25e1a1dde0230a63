package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

func TestLoadExample(t *testing.T) {
	m, err := Load("testdata/mapping.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(m.Rules) != 3 {
		t.Fatalf("got %d rules, want 3", len(m.Rules))
	}
	type want struct {
		index, line  int
		name, class  string
		kind         edx.Kind
		courses      []string
		modes        []string
		includeCCX   bool
		revoke       bool
		revokeAfter  time.Duration
		notify       bool
		expiresAfter time.Duration
	}
	wants := []want{
		{0, 5, "Demo course completion", "K829IK8RS6ercwkpeFOn-Q", edx.KindCertificate,
			[]string{"course-v1:OpenedX+DemoX+*"}, []string{"verified", "honor"}, false, true, 0, false, 8760 * time.Hour},
		{1, 19, "Data science participation", "pD3sRH5eQ6yO0bVbq2jE4w", edx.KindPassing,
			[]string{"course-v1:Example+DS101+*", "course-v1:Example+DS102+2024_T1"}, nil, true, true, 72 * time.Hour, false, 0},
		{2, 34, "Legacy certificate", "q1w2e3r4t5y6u7i8o9p0aa", edx.KindCertificate,
			[]string{"Example/Legacy101/*"}, nil, false, true, 0, false, 0},
	}
	for i, w := range wants {
		r := m.Rules[i]
		got := want{r.Index, r.Line, r.Name, r.BadgeClass, r.Kind, r.Courses, r.Modes, r.IncludeCCX,
			r.Revoke, r.RevokeAfter, r.Notify, r.ExpiresAfter}
		if !equalWant(got.courses, w.courses) || !equalWant(got.modes, w.modes) {
			t.Errorf("rule %d: courses/modes = %v/%v, want %v/%v", i, got.courses, got.modes, w.courses, w.modes)
		}
		got.courses, got.modes, w.courses, w.modes = nil, nil, nil, nil
		if got.index != w.index || got.line != w.line || got.name != w.name || got.class != w.class ||
			got.kind != w.kind || got.includeCCX != w.includeCCX || got.revoke != w.revoke ||
			got.revokeAfter != w.revokeAfter || got.notify != w.notify || got.expiresAfter != w.expiresAfter {
			t.Errorf("rule %d:\n got %+v\nwant %+v", i, got, w)
		}
	}
	if r := ruleNamed(m, "Legacy certificate"); r != m.Rules[2] {
		t.Errorf("Rule(name) = %v, want the third rule", r)
	}
	if r := ruleNamed(m, "nope"); r != nil {
		t.Errorf("Rule(unknown) = %v, want nil", r)
	}
	wantClasses := []string{"K829IK8RS6ercwkpeFOn-Q", "pD3sRH5eQ6yO0bVbq2jE4w", "q1w2e3r4t5y6u7i8o9p0aa"}
	if got := m.BadgeClasses(); !equalWant(got, wantClasses) {
		t.Errorf("BadgeClasses = %v, want %v", got, wantClasses)
	}
}

func equalWant(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name       string
		yaml       string
		kind       edx.Kind
		revoke     bool
		notify     bool
		includeCCX bool
		revokeAft  time.Duration
	}{
		{"certificate by default, revoking", `
badges:
  - name: a
    badge_class: abc
    when: {courses: [x]}
`, edx.KindCertificate, true, false, false, 0},
		{"passing does not revoke by default", `
badges:
  - name: a
    badge_class: abc
    when: {event: passing, courses: [x]}
`, edx.KindPassing, false, false, false, 0},
		{"certificate revoke can be turned off", `
badges:
  - name: a
    badge_class: abc
    when: {event: certificate, courses: [x]}
    revoke: false
    notify: true
`, edx.KindCertificate, false, true, false, 0},
		{"passing revoke with delay in days and hours", `
badges:
  - name: a
    badge_class: abc
    when: {event: passing, courses: [x], include_ccx: true}
    revoke: true
    revoke_after: 1d12h
`, edx.KindPassing, true, false, true, 36 * time.Hour},
		{"passing revoke at once", `
badges:
  - name: a
    badge_class: abc
    when: {event: passing, courses: [x]}
    revoke: true
`, edx.KindPassing, true, false, false, 0},
		{"aliases resolve", `
badges:
  - name: a
    badge_class: &id abc
    when: {courses: &c [x]}
  - name: b
    badge_class: *id
    when: {courses: *c}
`, edx.KindCertificate, true, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			r := m.Rules[0]
			if r.Kind != tt.kind || r.Revoke != tt.revoke || r.Notify != tt.notify ||
				r.IncludeCCX != tt.includeCCX || r.RevokeAfter != tt.revokeAft {
				t.Errorf("got kind=%s revoke=%v notify=%v include_ccx=%v revoke_after=%v",
					r.Kind, r.Revoke, r.Notify, r.IncludeCCX, r.RevokeAfter)
			}
			for _, r := range m.Rules {
				if r.BadgeClass != "abc" || len(r.Courses) != 1 || r.Courses[0] != "x" {
					t.Errorf("rule %q: badge_class=%q courses=%v", r.Name, r.BadgeClass, r.Courses)
				}
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "\n", "# nothing yet\n", "---\n", "badges:\n", "badges: []\n", "badges: ~\n"} {
		m, err := Parse([]byte(src))
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if m == nil || len(m.Rules) != 0 {
			t.Errorf("Parse(%q) = %+v, want a mapping without rules", src, m)
		}
	}
}

// problem is an expected Problem: its line and a fragment of its message.
type problem struct {
	line int
	text string
}

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []problem
	}{
		{"syntax error", "badges:\n  - name: a\n    when: [\n", []problem{{3, "YAML syntax error"}}},
		{"tab indentation", "badges:\n\t- name: a\n", []problem{{2, "YAML syntax error"}}},
		{"top level is a list", "- name: a\n", []problem{{1, "top level: want a mapping"}}},
		{"top level lacks badges", "rules: []\n", []problem{{1, `unknown key "rules"`}, {1, "missing badges"}}},
		{"unknown top-level key", "badges: []\nversion: 2\n", []problem{{2, `unknown key "version" in the top level`}}},
		{"badges not a list", "badges:\n  name: a\n", []problem{{1, "badges: want a list"}}},
		{"rule not a mapping", "badges:\n  - just a string\n", []problem{{2, "each entry must be a rule"}}},
		{"second document", "badges: []\n---\nbadges: []\n", []problem{{2, "second YAML document"}}},
		{"unknown rule key", `
badges:
  - name: a
    badge_class: abc
    when: {courses: [x]}
    evidence: http://x
`, []problem{{6, `unknown key "evidence" in a rule`}}},
		{"unknown when key", `
badges:
  - name: a
    badge_class: abc
    when:
      courses: [x]
      course: y
`, []problem{{7, `unknown key "course" in when`}}},
		{"key given twice", `
badges:
  - name: a
    badge_class: abc
    badge_class: def
    when: {courses: [x]}
`, []problem{{5, "badge_class given twice (first at line 4)"}}},
		{"merge key", `
badges:
  - <<: {name: a}
    badge_class: abc
    when: {courses: [x]}
`, []problem{{3, "merge keys"}, {3, "missing name"}}},
		{"duplicate name", `
badges:
  - name: Same
    badge_class: abc
    when: {courses: [x]}
  - badge_class: def
    name: Same
    when: {courses: [y]}
`, []problem{{7, `name "Same" is already used by the rule at line 3`}}},
		{"missing name, badge_class, when", `
badges:
  - notify: true
`, []problem{{3, "missing name"}, {3, "missing badge_class"}, {3, "missing when"}}},
		{"empty name and badge_class", `
badges:
  - name: ""
    badge_class:
    when: {courses: [x]}
`, []problem{{3, "missing name"}, {4, "missing badge_class"}}},
		{"missing courses", `
badges:
  - name: a
    badge_class: abc
    when:
      event: certificate
`, []problem{{5, "missing when.courses"}}},
		{"empty courses", `
badges:
  - name: a
    badge_class: abc
    when: {courses: []}
`, []problem{{5, "when.courses: empty list"}}},
		{"courses as a string", `
badges:
  - name: a
    badge_class: abc
    when:
      courses: course-v1:A+B+C
`, []problem{{6, "when.courses: want a list"}}},
		{"bad course patterns", `
badges:
  - name: a
    badge_class: abc
    when:
      courses:
        - course-v1:A+B+C
        - ""
        - course-v1:A+B C+D
        - [nested]
`, []problem{{8, "empty course pattern"}, {9, "contains whitespace"}, {10, "want a list of strings"}}},
		{"bad event", `
badges:
  - name: a
    badge_class: abc
    when:
      event: enrollment
      courses: [x]
      include_ccx: true
`, []problem{{6, `"enrollment" is not certificate or passing`}}},
		{"modes on a passing rule", `
badges:
  - name: a
    badge_class: abc
    when:
      event: passing
      courses: [x]
      modes: [verified]
`, []problem{{8, "only certificate rules have modes"}}},
		{"empty and bad modes", `
badges:
  - name: a
    badge_class: abc
    when:
      courses: [x]
      modes: []
  - name: b
    badge_class: abc
    when:
      courses: [x]
      modes: ["", "no id"]
`, []problem{{7, "when.modes: empty list"}, {12, `"" is not a mode`}, {12, `"no id" is not a mode`}}},
		{"include_ccx on a certificate rule", `
badges:
  - name: a
    badge_class: abc
    when:
      courses: [x]
      include_ccx: false
`, []problem{{7, "only passing rules match CCX runs"}}},
		{"ccx key without include_ccx", `
badges:
  - name: a
    badge_class: abc
    when:
      event: passing
      courses: ["ccx-v1:A+B+C+ccx@1"]
  - name: b
    badge_class: abc
    when:
      courses: ["ccx-v1:A+B+C+ccx@*"]
`, []problem{{7, "matches only with include_ccx: true"}, {11, "certificate rules never match CCX runs"}}},
		{"revoke_after on a certificate rule", `
badges:
  - name: a
    badge_class: abc
    when: {courses: [x]}
    revoke_after: 1h
`, []problem{{6, "revoke_after: only passing rules"}}},
		{"revoke_after with revoke false", `
badges:
  - name: a
    badge_class: abc
    when: {event: passing, courses: [x]}
    revoke: false
    revoke_after: 1h
  - name: b
    badge_class: abc
    when: {event: passing, courses: [x]}
    revoke_after: 1h
`, []problem{{7, "meaningless with revoke: false"}, {11, "meaningless without revoke: true"}}},
		{"bad durations", `
badges:
  - name: a
    badge_class: abc
    when: {event: passing, courses: [x]}
    revoke: true
    revoke_after: -1h
    expires_after: 10
  - name: b
    badge_class: abc
    when: {courses: [x]}
    expires_after: 0s
  - name: c
    badge_class: abc
    when: {courses: [x]}
    expires_after: [1h]
  - name: d
    badge_class: abc
    when: {courses: [x]}
    expires_after: -2d
`, []problem{{7, "revoke_after: must not be negative"}, {8, `expires_after: invalid duration "10"`},
			{12, "expires_after: must be positive"}, {16, "expires_after: want a duration"},
			{20, "expires_after: must not be negative"}}},
		{"bad badge classes", `
badges:
  - {name: a, badge_class: "a/b", when: {courses: [x]}}
  - {name: b, badge_class: "a b", when: {courses: [x]}}
  - {name: c, badge_class: "a:b", when: {courses: [x]}}
  - {name: d, badge_class: "a{b}", when: {courses: [x]}}
  - {name: e, badge_class: "a|b", when: {courses: [x]}}
  - {name: f, badge_class: "a?b", when: {courses: [x]}}
`, []problem{{3, `'/'`}, {4, "whitespace"}, {5, `':'`}, {6, `'{'`}, {7, `'|'`}, {8, `'?'`}}},
		{"bad names", `
badges:
  - name: "a|b"
    badge_class: abc
    when: {courses: [x]}
  - name: "two\nlines"
    badge_class: abc
    when: {courses: [x]}
`, []problem{{3, "contains |"}, {6, "line break"}}},
		{"wrong types", `
badges:
  - name: [a]
    badge_class: {id: abc}
    when: [courses]
    revoke: maybe
    notify: 3
    narrative: {text: x}
`, []problem{{3, "name: want a string"}, {4, "badge_class: want a string"}, {5, "when: want a mapping"},
			{6, "revoke: want true or false"}, {7, "notify: want true or false"}, {8, "narrative: want a string"}}},
		{"one mistake, one problem", `
badges:
  - name: a
    badge_class: abc
    when:
      event: [passing]
      courses: [x]
      modes: [verified]
      include_ccx: true
  - name: b
    badge_class: abc
    when: {event: passing, courses: [x]}
    revoke: maybe
    revoke_after: 1h
`, []problem{{6, "when.event: want a string"}, {13, "revoke: want true or false"}}},
		{"template does not parse", `
badges:
  - name: a
    badge_class: abc
    when: {courses: [x]}
    narrative: "Completed {{.CourseKey"
`, []problem{{6, "narrative: bad template"}}},
		{"unknown function", `
badges:
  - name: a
    badge_class: abc
    when: {courses: [x]}
    narrative: "{{shout .Name}}"
`, []problem{{6, `function "shout" not defined`}}},
		{"passing rule uses .Grade", `
badges:
  - name: a
    badge_class: abc
    when: {event: passing, courses: [x]}
    narrative: |
      Passed with {{.Grade}}
`, []problem{{6, "narrative: passing events have no field .Grade"}}},
		{"passing rule uses .Mode in a branch the sample skips", `
badges:
  - name: a
    badge_class: abc
    when: {event: passing, courses: [x]}
    narrative: "{{if false}}{{$.Mode}}{{end}}"
    evidence_url: "https://x/{{with .Name}}{{.}}{{else}}{{.CertificateURL}}{{end}}"
`, []problem{{6, "no field .Mode"}, {7, "no field .CertificateURL"}}},
		{"unknown field on a certificate rule", `
badges:
  - name: a
    badge_class: abc
    when: {courses: [x]}
    narrative: "{{.Email}}"
`, []problem{{6, "certificate events have no field .Email"}}},
		{"template fails on execution", `
badges:
  - name: a
    badge_class: abc
    when: {courses: [x]}
    narrative: "{{index .Name 99}}"
`, []problem{{6, "narrative: template fails"}}},
		{"evidence_url not absolute http", `
badges:
  - name: a
    badge_class: abc
    when: {courses: [x]}
    evidence_url: "lms.example.org/certificates/{{.UserID}}"
  - name: b
    badge_class: abc
    when: {courses: [x]}
    evidence_url: "ftp://lms.example.org/{{.UserID}}"
  - name: c
    badge_class: abc
    when: {courses: [x]}
    evidence_url: "{{.Username}}"
`, []problem{{6, "not an absolute http(s) URL"}, {10, "not an absolute http(s) URL"}, {14, "not an absolute http(s) URL"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %d rules, want problems %v", len(m.Rules), tt.want)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T %v, want *ValidationError", err, err)
			}
			assertProblems(t, ve.Problems, tt.want)
		})
	}
}

func assertProblems(t *testing.T, got []Problem, want []problem) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), (&ValidationError{Problems: got}).Error())
	}
	for i, w := range want {
		if got[i].Line != w.line || !strings.Contains(got[i].Message, w.text) {
			t.Errorf("problem %d = line %d: %s\nwant line %d: …%s…", i, got[i].Line, got[i].Message, w.line, w.text)
		}
	}
}

func TestParseReportsEveryProblemSortedByLine(t *testing.T) {
	src := `badges:
  - name: first
    badge_class: a/b
    when:
      event: passing
      courses: []
      modes: [verified]
    revoke_after: 1h
    narrative: "{{.Grade}}"
  - name: first
    when: {courses: [" x"]}
    colour: blue
extra: true
`
	_, err := Parse([]byte(src))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v, want *ValidationError", err)
	}
	assertProblems(t, ve.Problems, []problem{
		{3, "badge_class"},
		{6, "when.courses: empty list"},
		{7, "only certificate rules have modes"},
		{8, "revoke_after: meaningless"},
		{9, "no field .Grade"},
		{10, "already used by the rule at line 2"},
		{10, "missing badge_class"},
		{11, "contains whitespace"},
		{12, `unknown key "colour"`},
		{13, `unknown key "extra"`},
	})
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(ve.Problems) {
		t.Fatalf("Error() has %d lines, want one per problem:\n%s", len(lines), err)
	}
	if !strings.HasPrefix(lines[0], "line 3: badge_class: ") || !strings.HasPrefix(lines[9], "line 13: unknown key") {
		t.Errorf("Error() lines not in the form \"line N: message\":\n%s", err)
	}
}

func TestLoadErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("badges:\n  - name: a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != bad {
		t.Fatalf("Load(bad) = %v, want a *ValidationError for %s", err, bad)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, bad+": line 2: ") {
			t.Errorf("line %q does not start with the path and line", line)
		}
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want a not-exist error", err)
	}
	if !strings.HasPrefix(err.Error(), "mapping file "+missing+": ") || strings.Count(err.Error(), missing) != 1 {
		t.Errorf("Load(missing) error %q should name the path once, in front", err)
	}
}
