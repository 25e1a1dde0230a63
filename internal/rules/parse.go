package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/badgebridge/bridge/internal/edx"
)

// The keys each level of the file allows, in documentation order (they are listed in the
// message about an unknown key).
var (
	topKeys  = []string{"badges"}
	ruleKeys = []string{"name", "badge_class", "when", "revoke", "revoke_after", "notify", "narrative", "evidence_url", "expires_after"}
	whenKeys = []string{"event", "courses", "modes", "include_ccx", "min_grade", "milestone"}
)

// ccxPrefix starts a CCX course key; CCX runs only match rules with include_ccx.
const ccxPrefix = "ccx-v1:"

// Parse parses and validates a mapping file. On any problem it returns a *ValidationError listing
// all of them with their lines. An empty file, or an empty badges list, is a valid mapping with no
// rules; the caller decides whether to warn.
//
// The file is walked as a yaml.Node tree rather than decoded into structs so that every problem
// carries its line, unknown keys are caught at every level, and all problems are collected.
func Parse(data []byte) (*Mapping, error) {
	p := &parser{names: make(map[string]int)}
	m := p.file(data)
	if len(p.problems) > 0 {
		sortProblems(p.problems)
		return nil, &ValidationError{Problems: p.problems}
	}
	if m != nil {
		sortProblems(p.warnings)
		m.Warnings = p.warnings
	}
	return m, nil
}

type parser struct {
	problems []Problem
	warnings []Problem      // Mapping.Warnings
	names    map[string]int // rule name -> line of its name key, for duplicate names
}

func (p *parser) addf(line int, format string, args ...any) {
	p.problems = append(p.problems, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(line int, format string, args ...any) {
	p.warnings = append(p.warnings, Problem{Line: line, Message: fmt.Sprintf(format, args...)})
}

// deadPattern warns about a course pattern that no valid course key can match (where names the
// list): the rule or group would wait for events that never come. It is a warning, not an
// error, so that a mapping that loaded before keeps loading.
func (p *parser) deadPattern(where string, it item) {
	if edx.PatternCanMatch(it.value) {
		return
	}
	msg := fmt.Sprintf("%s: %s can never match a course key", where, quote(it.value))
	if !strings.ContainsRune(it.value, edx.PatternWildcard) {
		if _, err := edx.ParseCourseKey(it.value); err != nil {
			// The parser's reason without its own "course key "…": " lead, which repeats the value.
			detail := err.Error()
			if rest, ok := strings.CutPrefix(detail, "course key "); ok {
				if q, qerr := strconv.QuotedPrefix(rest); qerr == nil {
					detail = strings.TrimPrefix(rest[len(q):], ": ")
				}
			}
			msg += ": " + detail
		}
	} else {
		msg += " (course-v1:ORG+COURSE+RUN, ccx-v1:ORG+COURSE+RUN+ccx@N or ORG/COURSE/RUN)"
	}
	if fix := it.value + "+*"; edx.PatternCanMatch(fix) {
		msg += fmt.Sprintf("; did you mean %s?", quote(fix))
	}
	p.warnf(it.line, "%s", msg)
}

// yamlErrLine picks the line out of a yaml.v3 syntax error ("yaml: line 3: did not find …").
var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) syntaxError(err error) {
	msg := err.Error()
	if m := yamlErrLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.addf(line, "YAML syntax error: %s", m[2])
		return
	}
	p.addf(0, "YAML syntax error: %s", strings.TrimPrefix(msg, "yaml: "))
}

func (p *parser) file(data []byte) *Mapping {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &Mapping{} // empty, or only comments
		}
		p.syntaxError(err)
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.addf(extra.Line, "a second YAML document: the mapping file holds one")
	case !errors.Is(err, io.EOF):
		p.syntaxError(err)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return &Mapping{}
		}
		root = root.Content[0]
	}
	root = resolve(root)
	if isNull(root) {
		return &Mapping{}
	}
	if root.Kind != yaml.MappingNode {
		p.addf(root.Line, "top level: want a mapping with a badges list")
		return nil
	}
	top := p.fields(root, "the top level", topKeys)
	badges, ok := top["badges"]
	if !ok {
		p.addf(root.Line, "missing badges (the list of rules)")
		return nil
	}
	m := &Mapping{}
	list := resolve(badges.value)
	if isNull(list) {
		return m
	}
	if list.Kind != yaml.SequenceNode {
		p.addf(badges.line, "badges: want a list of rules")
		return m
	}
	for i, item := range list.Content {
		if r := p.rule(i, item); r != nil {
			m.Rules = append(m.Rules, r)
		}
	}
	return m
}

// entry is a key's value with the line of the key, which is where problems with it are reported.
type entry struct {
	line  int
	value *yaml.Node
}

// fields collects the keys of a mapping node, reporting unknown, duplicate and non-string keys.
func (p *parser) fields(n *yaml.Node, where string, known []string) map[string]entry {
	out := make(map[string]entry, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		line := n.Content[i].Line
		switch {
		case k.Kind == yaml.ScalarNode && k.Tag == "!!merge":
			p.addf(line, "merge keys (<<) are not supported; repeat the keys")
			continue
		case k.Kind != yaml.ScalarNode:
			p.addf(line, "keys in %s must be plain words", where)
			continue
		}
		name := k.Value
		if !slices.Contains(known, name) {
			p.addf(line, "unknown key %q in %s (known keys: %s)", name, where, strings.Join(known, ", "))
			continue
		}
		if prev, dup := out[name]; dup {
			p.addf(line, "%s given twice (first at line %d)", name, prev.line)
			continue
		}
		out[name] = entry{line: line, value: v}
	}
	return out
}

// rule reads one entry of the badges list. It returns nil when the entry is not a mapping at all;
// otherwise a rule whose problems, if any, are recorded.
func (p *parser) rule(index int, item *yaml.Node) *Rule {
	line := item.Line
	n := resolve(item)
	if n.Kind != yaml.MappingNode {
		p.addf(line, "badges: each entry must be a rule (a mapping with name, badge_class and when)")
		return nil
	}
	f := p.fields(n, "a rule", ruleKeys)
	r := &Rule{Index: index, Line: line, Kind: edx.KindCertificate}

	if name, at, ok := p.required(f, "name", line); ok {
		r.Name = name
		p.checkName(name, at)
	}
	if class, at, ok := p.required(f, "badge_class", line); ok {
		r.BadgeClass = class
		if msg := checkBadgeClass(class); msg != "" {
			p.addf(at, "badge_class: %s", msg)
		}
	}

	kindKnown := p.when(r, f, line)
	p.revocation(r, f, kindKnown)
	if e, ok := f["notify"]; ok {
		r.Notify, _ = p.boolean("notify", e)
	}
	if e, ok := f["expires_after"]; ok {
		if d, ok := p.duration("expires_after", e); ok {
			if d == 0 {
				p.addf(e.line, "expires_after: must be positive; leave it out for badges that never expire")
			}
			r.ExpiresAfter = d
		}
	}

	p.templates(r, f)
	return r
}

// when reads the rule's when block (kind, courses, modes, include_ccx) into r. kindKnown is false
// after a bad event value: the kind-specific checks are skipped then, here and in revocation, as
// they would only report consequences of that one mistake.
func (p *parser) when(r *Rule, f map[string]entry, ruleLine int) (kindKnown bool) {
	kindKnown = true
	when, hasWhen := f["when"]
	var w map[string]entry
	switch wn := resolve(when.value); {
	case !hasWhen || isNull(wn):
		at := ruleLine
		if hasWhen {
			at = when.line
		}
		p.addf(at, "missing when (with at least courses)")
	case wn.Kind != yaml.MappingNode:
		p.addf(when.line, "when: want a mapping with event, courses, modes, include_ccx")
	default:
		w = p.fields(wn, "when", whenKeys)
		if e, ok := w["milestone"]; ok {
			for _, key := range []string{"event", "courses", "modes", "include_ccx", "min_grade"} {
				if other, ok := w[key]; ok {
					p.addf(other.line, "when.%s: a milestone rule sets it inside when.milestone", key)
				}
			}
			p.milestone(r, e)
			return true
		}
		if e, ok := w["event"]; ok {
			s, isStr := p.str("when.event", e)
			switch kind := edx.Kind(s); {
			case !isStr:
				kindKnown = false
			case kind == edx.KindCertificate || kind == edx.KindPassing:
				r.Kind = kind
			default:
				p.addf(e.line, "when.event: %s is not certificate or passing", quote(s))
				kindKnown = false
			}
		}
		p.courses(r, w, when.line)
	}

	if e, ok := w["modes"]; ok {
		if kindKnown && r.Kind != edx.KindCertificate {
			p.addf(e.line, "when.modes: only certificate rules have modes")
		} else if modes, ok := p.list("when.modes", e); ok {
			if len(modes) == 0 {
				p.addf(e.line, "when.modes: empty list; leave modes out to accept every mode")
			}
			for _, m := range modes {
				if m.value == "" || strings.IndexFunc(m.value, unicode.IsSpace) >= 0 {
					p.addf(m.line, "when.modes: %s is not a mode", quote(m.value))
					continue
				}
				r.Modes = append(r.Modes, m.value)
			}
		}
	}
	if e, ok := w["include_ccx"]; ok {
		if kindKnown && r.Kind != edx.KindPassing {
			p.addf(e.line, "when.include_ccx: only passing rules match CCX runs")
		} else if b, ok := p.boolean("when.include_ccx", e); ok {
			r.IncludeCCX = b
		}
	}
	if e, ok := w["min_grade"]; ok {
		if kindKnown && r.Kind != edx.KindCertificate {
			p.addf(e.line, "when.min_grade: only certificate rules have a grade")
		} else if g, ok := p.minGrade("when.min_grade", e); ok {
			r.MinGrade = g
		}
	}
	if kindKnown && !r.IncludeCCX {
		p.ccxPatterns(r, w)
	}
	return kindKnown
}

// revocation reads revoke and revoke_after, whose default and meaning depend on the kind.
func (p *parser) revocation(r *Rule, f map[string]entry, kindKnown bool) {
	r.Revoke = r.Kind == edx.KindCertificate || (r.Kind == KindMilestone && !r.Milestone.passingOnly())
	revokeGiven, revokeValid := false, true
	if e, ok := f["revoke"]; ok {
		b, valid := p.boolean("revoke", e)
		revokeGiven, revokeValid = true, valid
		if valid {
			r.Revoke = b
		}
	}
	if e, ok := f["revoke_after"]; ok {
		switch {
		case r.Kind == KindMilestone:
			p.addf(e.line, "revoke_after: a milestone sets it on its passing items, inside when.milestone")
		case kindKnown && r.Kind != edx.KindPassing:
			p.addf(e.line, "revoke_after: only passing rules have it (a certificate revocation applies at once)")
		case revokeValid && !r.Revoke && revokeGiven:
			p.addf(e.line, "revoke_after: meaningless with revoke: false")
		case revokeValid && !r.Revoke:
			p.addf(e.line, "revoke_after: meaningless without revoke: true (passing rules do not revoke by default)")
		default:
			if d, ok := p.duration("revoke_after", e); ok {
				r.RevokeAfter = d
			}
		}
	}
}

// templates compiles the rule's narrative and evidence_url. With an unknown kind r.Kind is
// certificate, whose fields are the superset, so no field is reported missing because of the bad
// event value.
func (p *parser) templates(r *Rule, f map[string]entry) {
	if e, ok := f["narrative"]; ok {
		if src, ok := p.str("narrative", e); ok {
			t, err := compileTemplate("narrative", src, r.Kind)
			if err != nil {
				p.addf(e.line, "narrative: %v", err)
			}
			r.narrative = t
		}
	}
	if e, ok := f["evidence_url"]; ok {
		if src, ok := p.str("evidence_url", e); ok {
			t, err := compileTemplate("evidence_url", src, r.Kind)
			if err == nil {
				var sample string
				if sample, err = execute(t, templateData(sampleEvent(r.Kind))); err == nil {
					err = checkEvidenceURL(sample)
				}
			}
			if err != nil {
				p.addf(e.line, "evidence_url: %v", err)
			}
			r.evidenceURL = t
		}
	}
}

// required reads a string key that must be present and non-blank; it reports the problem and
// returns false otherwise. at is the line of the key (of the rule when the key is absent).
func (p *parser) required(f map[string]entry, key string, ruleLine int) (value string, at int, ok bool) {
	e, present := f[key]
	if !present {
		p.addf(ruleLine, "missing %s", key)
		return "", ruleLine, false
	}
	s, ok := p.str(key, e)
	if !ok {
		return "", e.line, false
	}
	if strings.TrimSpace(s) == "" {
		p.addf(e.line, "missing %s (it is empty)", key)
		return "", e.line, false
	}
	return s, e.line, true
}

// checkName reports a name that cannot serve as the rule's identity in logs, ledger facts and
// the admin API, or that another rule already has.
func (p *parser) checkName(name string, at int) {
	if strings.Contains(name, "|") {
		p.addf(at, "name %s contains |, which the ledger uses as a separator", quote(name))
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		p.addf(at, "name %s contains a line break or control character", quote(name))
	}
	if first, dup := p.names[name]; dup {
		p.addf(at, "name %s is already used by the rule at line %d; names must be unique", quote(name), first)
		return
	}
	p.names[name] = at
}

// checkBadgeClass says what is wrong with a badge class id, or "". The id goes into host API
// paths and Redis keys (where "/", ":", "{}" and "|" would change the meaning), so only URL
// unreserved characters are accepted: Badgr-family hosts (Badgr, Canvas Credentials, Parchment)
// make entityIds of URL-safe base64, which never needs more.
func checkBadgeClass(id string) string {
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.ContainsRune("-_.~", c):
		case unicode.IsSpace(c):
			return fmt.Sprintf("%s contains whitespace", quote(id))
		default:
			return fmt.Sprintf("%s contains %q; a badge class id has only letters, digits, -, _, . and ~", quote(id), c)
		}
	}
	return ""
}

// courses reads when.courses into r.
func (p *parser) courses(r *Rule, w map[string]entry, whenLine int) {
	e, ok := w["courses"]
	if !ok {
		p.addf(whenLine, "missing when.courses")
		return
	}
	items, ok := p.list("when.courses", e)
	if !ok {
		return
	}
	if len(items) == 0 {
		p.addf(e.line, "when.courses: empty list; the rule would match nothing")
	}
	for _, it := range items {
		if msg := checkPattern(it.value); msg != "" {
			p.addf(it.line, "when.courses: %s", msg)
			continue
		}
		p.deadPattern("when.courses", it)
		r.Courses = append(r.Courses, it.value)
	}
}

// ccxPatterns reports course patterns that name a CCX run on a rule that never matches CCX runs,
// so that a dead rule does not go unnoticed.
func (p *parser) ccxPatterns(r *Rule, w map[string]entry) {
	e, ok := w["courses"]
	if !ok {
		return
	}
	v := resolve(e.value)
	if v.Kind != yaml.SequenceNode {
		return
	}
	for _, item := range v.Content {
		if s := resolve(item); s.Kind == yaml.ScalarNode && strings.HasPrefix(s.Value, ccxPrefix) {
			if r.Kind == edx.KindPassing {
				p.addf(item.Line, "when.courses: %s is a CCX key, which matches only with include_ccx: true", quote(s.Value))
			} else {
				p.addf(item.Line, "when.courses: %s is a CCX key; certificate rules never match CCX runs", quote(s.Value))
			}
		}
	}
}

// item is one string of a YAML list, with its line.
type item struct {
	value string
	line  int
}

// list reads a list of strings, reporting (and leaving out) entries that are not strings; false
// means it is not a list at all. A single string is an error rather than a one-item list: the
// brackets are cheap and it keeps every file looking the same.
func (p *parser) list(key string, e entry) ([]item, bool) {
	v := resolve(e.value)
	if v.Kind != yaml.SequenceNode {
		p.addf(e.line, "%s: want a list", key)
		return nil, false
	}
	out := make([]item, 0, len(v.Content))
	for _, n := range v.Content {
		s := resolve(n)
		if s.Kind != yaml.ScalarNode {
			p.addf(n.Line, "%s: want a list of strings", key)
			continue
		}
		value := s.Value
		if isNull(s) {
			value = ""
		}
		out = append(out, item{value: value, line: n.Line})
	}
	return out, true
}

// str reads a scalar as a string; a number is taken as written, null is the empty string.
func (p *parser) str(key string, e entry) (string, bool) {
	v := resolve(e.value)
	if v.Kind != yaml.ScalarNode {
		p.addf(e.line, "%s: want a string", key)
		return "", false
	}
	if isNull(v) {
		return "", true
	}
	return v.Value, true
}

func (p *parser) boolean(key string, e entry) (bool, bool) {
	v := resolve(e.value)
	var b bool
	if v.Kind != yaml.ScalarNode || isNull(v) || v.Decode(&b) != nil {
		p.addf(e.line, "%s: want true or false", key)
		return false, false
	}
	return b, true
}

func (p *parser) duration(key string, e entry) (d time.Duration, ok bool) {
	v := resolve(e.value)
	if v.Kind != yaml.ScalarNode || isNull(v) {
		p.addf(e.line, "%s: want a duration such as 72h or 30d", key)
		return 0, false
	}
	d, err := parseDuration(v.Value)
	if err != nil {
		p.addf(e.line, "%s: %v", key, err)
		return 0, false
	}
	if d < 0 {
		p.addf(e.line, "%s: must not be negative", key)
		return 0, false
	}
	return d, true
}

// resolve follows an alias to the node it names, so that anchors work anywhere.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// quote quotes a value from the file for a message, keeping it short.
func quote(s string) string {
	const max = 80
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}
