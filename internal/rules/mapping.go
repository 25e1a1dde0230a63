// Package rules holds every decision of what a learner should hold. It reads the YAML mapping file (CONTRACT section 6) that says which Open edX
// certificate or course-passing signals make which badge class held, and renders the award text
// (narrative, evidence URL) for a matching event.
//
// Everything that can be checked without an event is checked by Parse, with the file line, so that
// a bad mapping stops the start (and `bridge check`) instead of failing award jobs later.
//
// Beyond the contract's example, the file format has these details:
//   - Course patterns are case-sensitive; * is the only wildcard, every other character is literal.
//     A pattern starting with "ccx-v1:" is an error unless the rule has include_ccx (it could
//     never match otherwise).
//   - Durations are Go durations ("72h", "90m") optionally led by whole days ("30d", "1d12h").
//     expires_after must be positive when given; revoke_after needs revoke: true.
//   - narrative and evidence_url are text/template templates (builtins such as urlquery and
//     printf included). Parse rejects fields the rule's kind lacks, even in branches the sample
//     event does not take, and an evidence_url that does not render to an absolute http(s) URL.
//   - Every value a template prints is escaped for where it goes, because learners choose their
//     names: in narrative (Markdown) each ASCII punctuation character gets a backslash and line
//     breaks become spaces; in evidence_url each value is url.PathEscape'd, which keeps a course
//     key's ':' and '+' and turns '/', '?', '#' and spaces into %XX. Exceptions: a value that
//     begins evidence_url is the URL itself ({{.CertificateURL}}) and is only checked as one;
//     a pipeline ending in urlquery is taken as already escaped; and raw prints a value as it is
//     ({{raw .Name}} or {{.Name | raw}}), for values the operator knows to be safe.
//   - Modes compare case-insensitively. badge_class accepts only letters, digits, -, _, . and ~.
package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"text/template"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// Rule is one entry of the mapping's badges list.
type Rule struct {
	Index int // position in the file, from 0: mapping order, used for tie breaks
	Line  int // line of the rule in the file

	Name       string // unique within the mapping; shown in logs and the admin API
	BadgeClass string // BadgeClass entityId on the badge host

	Kind       edx.Kind // which events the rule reads: certificate or passing
	Courses    []string // course key patterns; * matches any run of characters
	Modes      []string // certificate rules: the enrollment modes that award; empty = every mode
	IncludeCCX bool     // passing rules: also match CCX runs of the courses, via their master course
	MinGrade   float64  // certificate rules: the least grade that supports the rule (honours); 0 = any

	// Milestone is the requirement of a milestone rule (Kind KindMilestone), over the learner
	// record rather than one event; nil for single-course rules.
	Milestone *Requirement

	Revoke       bool          // take the badge away again (certificate revoked, or no longer passing)
	RevokeAfter  time.Duration // passing rules: how long "not passing" must last before the revocation
	Notify       bool          // ask the host to e-mail the learner
	ExpiresAfter time.Duration // validity of the assertion from its issue date; 0 = never expires

	// Parsed award templates; nil renders as the empty string (e.g. for a Rule built in a test).
	narrative   *template.Template
	evidenceURL *template.Template
}

// Mapping is a parsed, valid mapping file. The zero value (and a nil *Mapping) maps nothing.
type Mapping struct {
	Rules []*Rule // in file order
	// Warnings are what is likely wrong but does not stop the start: course patterns that no
	// valid course key can match (e.g. "course-v1:OpenedX+DemoX", without a run). Sorted by line.
	Warnings []Problem
	file     string // set by Load, to name the file in WarningLines
}

// WarningLines gives one "file: line N: message" line per warning (`bridge check` prints them;
// the services log them at start).
func (m *Mapping) WarningLines() []string {
	if m == nil {
		return nil
	}
	out := make([]string, 0, len(m.Warnings))
	for _, w := range m.Warnings {
		s := w.String()
		if m.file != "" {
			s = m.file + ": " + s
		}
		out = append(out, s)
	}
	return out
}

// Load reads and parses the mapping file at path. A *ValidationError (with File set to path) is
// returned when the file is readable but not a valid mapping.
func Load(path string) (*Mapping, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// A *fs.PathError already names the path; unwrap it so the message names it once.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("mapping file %s: %w", path, err)
	}
	m, err := Parse(data)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.File = path
			return nil, ve
		}
		return nil, fmt.Errorf("mapping file %s: %w", path, err)
	}
	m.file = path
	return m, nil
}

// BadgeClasses lists the distinct badge classes the mapping awards, in mapping order (what
// `bridge check --remote` confirms on the host).
func (m *Mapping) BadgeClasses() []string {
	if m == nil {
		return nil
	}
	seen := make(map[string]bool, len(m.Rules))
	var out []string
	for _, r := range m.Rules {
		if !seen[r.BadgeClass] {
			seen[r.BadgeClass] = true
			out = append(out, r.BadgeClass)
		}
	}
	return out
}

// Only is the mapping reduced to the rule named name (bridge reevaluate --rule); false when the
// mapping has no such rule.
func (m *Mapping) Only(name string) (*Mapping, bool) {
	if m == nil {
		return nil, false
	}
	for _, r := range m.Rules {
		if r.Name == name {
			return &Mapping{Rules: []*Rule{r}}, true
		}
	}
	return nil, false
}
