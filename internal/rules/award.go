package rules

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// eventData holds the template fields every event offers.
type eventData struct {
	UserID    int64
	Username  string
	Name      string
	CourseKey string // the key as received: the CCX key for CCX events
	Org       string
	Course    string
	Run       string
	EventTime time.Time
}

// certificateData and passingData are distinct types on purpose: a passing rule that uses
// .Grade fails when the template is checked at Parse instead of rendering an empty grade.
type certificateData struct {
	eventData
	Mode           string
	Grade          string
	CertificateURL string
}

type passingData struct {
	eventData
}

// milestoneData is what a milestone rule's templates read: the learner and the counted courses.
type milestoneData struct {
	UserID    int64
	Username  string
	Name      string
	Courses   []string // one course key per counted course, sorted
	EventTime time.Time
}

// Learner is who a milestone is awarded to, from the learner record.
type Learner struct {
	UserID   int64
	Username string
	Name     string
}

// dataOf gives the template data of a kind: a zero value to check field names against, or the
// sample that templates are tried on at Parse.
func dataOf(kind edx.Kind, sample bool) any {
	switch {
	case kind == KindMilestone && sample:
		return milestoneData{UserID: 42, Username: "sample_learner", Name: "Sample Learner",
			Courses:   []string{"course-v1:OpenedX+DemoX+Demo_Course", "course-v1:OpenedX+DemoY+2024"},
			EventTime: time.Date(2024, 5, 27, 12, 25, 45, 678901000, time.UTC)}
	case kind == KindMilestone:
		return milestoneData{}
	case sample:
		return templateData(sampleEvent(kind))
	}
	return templateData(edx.Event{Kind: kind})
}

// templateData gives the value a template of this kind executes against.
func templateData(ev edx.Event) any {
	common := eventData{
		UserID:    ev.UserID,
		Username:  ev.Username,
		Name:      ev.Name,
		CourseKey: ev.Course.Raw,
		Org:       ev.Course.Org,
		Course:    ev.Course.Course,
		Run:       ev.Course.Run,
		EventTime: ev.Time,
	}
	if ev.Kind == edx.KindPassing {
		return passingData{common}
	}
	return certificateData{eventData: common, Mode: ev.Mode, Grade: ev.Grade, CertificateURL: ev.CertificateURL}
}

// sampleEvent is what templates are tried against at Parse. Every field is non-empty so that
// {{if}} and {{with}} branches on them run, and the certificate URL is absolute so that an
// evidence_url of just {{.CertificateURL}} passes the URL check.
func sampleEvent(kind edx.Kind) edx.Event {
	return edx.Event{
		Kind:     kind,
		Time:     time.Date(2024, 5, 27, 12, 25, 45, 678901000, time.UTC),
		UserID:   42,
		Username: "sample_learner",
		Name:     "Sample Learner",
		Course: edx.CourseKey{
			Raw: "course-v1:OpenedX+DemoX+Demo_Course", Style: "course-v1",
			Org: "OpenedX", Course: "DemoX", Run: "Demo_Course",
		},
		Mode:           "verified",
		Grade:          "0.87",
		CertificateURL: "https://lms.example.org/certificates/0123456789abcdef",
		Status:         "downloadable",
		IsPassing:      true,
	}
}

// Render renders the rule's award text for ev, which must be of the rule's kind.
//
// Parse has already tried the templates, so an error here means this event's values made a
// part unusable, e.g. an evidence URL that is no longer an absolute http(s) URL. The Award is
// still returned, with that part empty.
func (r *Rule) Render(ev edx.Event) (AwardText, error) {
	if ev.Kind != r.Kind {
		return AwardText{}, fmt.Errorf("rule %q: cannot render a %s event with a %s rule", r.Name, ev.Kind, r.Kind)
	}
	return r.render(templateData(ev))
}

// RenderMilestone renders a milestone rule's award text for a learner and the counted courses.
func (r *Rule) RenderMilestone(who Learner, courses []string, at time.Time) (AwardText, error) {
	return r.render(milestoneData{UserID: who.UserID, Username: who.Username, Name: who.Name, Courses: courses, EventTime: at})
}

func (r *Rule) render(data any) (AwardText, error) {
	a := AwardText{Notify: r.Notify, ExpiresAfter: r.ExpiresAfter}
	narrative, nerr := execute(r.narrative, data)
	if nerr == nil {
		a.Narrative = narrative
	}
	evidence, eerr := execute(r.evidenceURL, data)
	if eerr == nil {
		eerr = checkEvidenceURL(evidence)
	}
	if eerr == nil {
		a.EvidenceURL = evidence
	}
	// The award stays usable without the broken part: a learner's badge must not wait on a
	// template that one event's values (e.g. a relative download_url) could not fill.
	switch {
	case nerr != nil:
		return a, fmt.Errorf("rule %q: narrative left empty: %w", r.Name, nerr)
	case eerr != nil:
		return a, fmt.Errorf("rule %q: evidence_url left empty: %w", r.Name, eerr)
	}
	return a, nil
}

func execute(t *template.Template, data any) (string, error) {
	if t == nil {
		return "", nil
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// checkEvidenceURL accepts an empty string or an absolute http(s) URL with a host: the badge host
// shows the evidence as a link, and a relative one would point into the badge host itself.
func checkEvidenceURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a valid URL", s)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// compileTemplate parses src and tries it against the sample event of kind, so that a syntax
// error, a field the kind's events lack or a failing execution is reported at Parse. An empty
// src gives a nil template (rendered as the empty string). key (narrative or evidence_url) says
// how the values it prints are escaped (escape.go).
func compileTemplate(key, src string, kind edx.Kind) (*template.Template, error) {
	if src == "" {
		return nil, nil
	}
	t, err := template.New(key).Funcs(templateFuncs).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("bad template: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	switch key {
	case "narrative":
		escapeTemplate(t, markdownFunc, false)
	case "evidence_url":
		escapeTemplate(t, pathFunc, true)
	default:
		return nil, fmt.Errorf("no escaping known for %s", key)
	}
	dataType := reflect.TypeOf(dataOf(kind, false))
	if t.Tree != nil && t.Tree.Root != nil {
		if field := unknownField(t.Tree.Root, dataType, true); field != "" {
			return nil, fmt.Errorf("%s events have no field .%s (fields: %s)", kind, field, fieldList(dataType))
		}
	}
	if _, err := execute(t, dataOf(kind, true)); err != nil {
		return nil, fmt.Errorf("template fails: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	return t, nil
}

// unknownField finds a field reference to the top-level data that dataType lacks. Executing the
// sample alone would miss fields in branches the sample does not take ({{if eq .Mode "audit"}}),
// so the parse tree is walked too. dotIsData is false inside {{with}} and {{range}} bodies, where
// dot is something else; $ always refers to the data.
func unknownField(node parse.Node, dataType reflect.Type, dotIsData bool) string {
	has := func(name string) bool {
		_, ok := dataType.FieldByName(name)
		return ok
	}
	switch n := node.(type) {
	case *parse.ListNode:
		if n == nil {
			return ""
		}
		for _, c := range n.Nodes {
			if f := unknownField(c, dataType, dotIsData); f != "" {
				return f
			}
		}
	case *parse.ActionNode:
		return unknownField(n.Pipe, dataType, dotIsData)
	case *parse.PipeNode:
		if n == nil {
			return ""
		}
		for _, cmd := range n.Cmds {
			for _, arg := range cmd.Args {
				if f := unknownField(arg, dataType, dotIsData); f != "" {
					return f
				}
			}
		}
	case *parse.FieldNode:
		if dotIsData && len(n.Ident) > 0 && !has(n.Ident[0]) {
			return n.Ident[0]
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" && !has(n.Ident[1]) {
			return n.Ident[1]
		}
	case *parse.ChainNode:
		return unknownField(n.Node, dataType, dotIsData)
	case *parse.IfNode:
		return firstField(
			unknownField(n.Pipe, dataType, dotIsData),
			unknownField(n.List, dataType, dotIsData),
			unknownField(n.ElseList, dataType, dotIsData))
	case *parse.WithNode:
		return firstField(
			unknownField(n.Pipe, dataType, dotIsData),
			unknownField(n.List, dataType, false),
			unknownField(n.ElseList, dataType, dotIsData))
	case *parse.RangeNode:
		return firstField(
			unknownField(n.Pipe, dataType, dotIsData),
			unknownField(n.List, dataType, false),
			unknownField(n.ElseList, dataType, dotIsData))
	case *parse.TemplateNode:
		return unknownField(n.Pipe, dataType, dotIsData)
	}
	return ""
}

func firstField(fields ...string) string {
	for _, f := range fields {
		if f != "" {
			return f
		}
	}
	return ""
}

// fieldList names the template fields of a data type, for error messages.
func fieldList(t reflect.Type) string {
	var names []string
	for _, f := range reflect.VisibleFields(t) {
		if f.IsExported() && !f.Anonymous {
			names = append(names, "."+f.Name)
		}
	}
	return strings.Join(names, ", ")
}
