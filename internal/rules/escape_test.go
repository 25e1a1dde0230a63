package rules

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// renderOne parses a one-rule mapping with the given templates and renders it for ev.
func renderOne(t *testing.T, narrative, evidence string, ev edx.Event) AwardText {
	t.Helper()
	src := fmt.Sprintf("badges:\n  - name: r\n    badge_class: c\n    when: {courses: [\"*\"]}\n    narrative: %s\n    evidence_url: %s\n",
		strconv.Quote(narrative), strconv.Quote(evidence))
	m, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	a, err := m.Rules[0].Render(ev)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return a
}

func hostileEvent() edx.Event {
	return edx.Event{
		Type: edx.TypeCertificateCreated, Kind: edx.KindCertificate, Time: time.Date(2024, 5, 27, 12, 0, 0, 0, time.UTC),
		UserID: 7, Username: "../../../admin?next=//evil.example#", Name: `<img src=x onerror=alert(1)> [click](https://evil.example) **x** www.evil.example`,
		Course:         edx.CourseKey{Raw: "course-v1:OpenedX+DemoX+Demo_Course", Style: "course-v1", Org: "OpenedX", Course: "DemoX", Run: "Demo_Course"},
		Mode:           "verified",
		CertificateURL: "https://lms.example.org/certificates/abc?x=1",
	}
}

// Issue 7 item 15: a learner's own name cannot put markup into the narrative.
func TestNarrativeEscapesValues(t *testing.T) {
	a := renderOne(t, "Awarded to {{.Name}}.", "", hostileEvent())
	want := `Awarded to \<img src\=x onerror\=alert\(1\)\> \[click\]\(https\:\/\/evil\.example\) \*\*x\*\* www\.evil\.example.`
	if a.Narrative != want {
		t.Fatalf("narrative\n %s\nwant\n %s", a.Narrative, want)
	}
}

// A line break in a value cannot start a Markdown block (a heading, a list, a quote).
func TestNarrativeValueStaysOnItsLine(t *testing.T) {
	ev := hostileEvent()
	ev.Name = "Alice\n# Heading\r\n> quote"
	if a := renderOne(t, "{{.Name}}", "", ev); a.Narrative != `Alice \# Heading  \> quote` {
		t.Fatalf("narrative %q", a.Narrative)
	}
}

// Issue 7 item 15: a username cannot leave its path segment, add a query or a fragment.
func TestEvidenceURLPathEscapesValues(t *testing.T) {
	ev := hostileEvent()
	a := renderOne(t, "", "https://lms.example.org/u/{{.Username}}/c/{{.CourseKey}}", ev)
	want := "https://lms.example.org/u/..%2F..%2F..%2Fadmin%3Fnext=%2F%2Fevil.example%23/c/course-v1:OpenedX+DemoX+Demo_Course"
	if a.EvidenceURL != want {
		t.Fatalf("evidence URL\n %s\nwant\n %s", a.EvidenceURL, want)
	}
	u, err := url.Parse(a.EvidenceURL)
	if err != nil || u.Host != "lms.example.org" || u.RawQuery != "" || u.Fragment != "" {
		t.Fatalf("parsed %+v, %v", u, err)
	}
	if parts := strings.Split(u.EscapedPath(), "/"); len(parts) != 5 || parts[4] != "course-v1:OpenedX+DemoX+Demo_Course" {
		t.Fatalf("path segments %q: the course key must stay one segment, unescaped", parts)
	}
	ev.Username = "ada lovelace"
	if a := renderOne(t, "", "https://lms.example.org/u/{{.Username}}", ev); a.EvidenceURL != "https://lms.example.org/u/ada%20lovelace" {
		t.Fatalf("space: %s", a.EvidenceURL)
	}
	ev.Course = edx.CourseKey{Raw: "OpenedX/DemoX/2014", Style: "slash", Org: "OpenedX", Course: "DemoX", Run: "2014"}
	if a := renderOne(t, "", "https://lms.example.org/c/{{.CourseKey}}", ev); a.EvidenceURL != "https://lms.example.org/c/OpenedX%2FDemoX%2F2014" {
		t.Fatalf("slash key: %s", a.EvidenceURL)
	}
}

// A value that begins the evidence URL is the URL itself: kept whole (and checked as a URL);
// the same value inside a path is escaped.
func TestEvidenceURLLeadingValueIsTheURL(t *testing.T) {
	ev := hostileEvent()
	for tmpl, want := range map[string]string{
		"{{.CertificateURL}}":                                       "https://lms.example.org/certificates/abc?x=1",
		"{{with .CertificateURL}}{{.}}{{end}}":                      "https://lms.example.org/certificates/abc?x=1",
		"{{if .CertificateURL}}{{.CertificateURL}}{{else}}x{{end}}": "https://lms.example.org/certificates/abc?x=1",
		"https://lms.example.org/r/{{.CertificateURL}}":             "https://lms.example.org/r/https:%2F%2Flms.example.org%2Fcertificates%2Fabc%3Fx=1",
	} {
		if a := renderOne(t, "", tmpl, ev); a.EvidenceURL != want {
			t.Errorf("%s: %s, want %s", tmpl, a.EvidenceURL, want)
		}
	}
	// Only the first run of a range body could begin the output; Parse would refuse such a URL
	// anyway, so the else branch after text is what is checked here.
	ev.CertificateURL = ""
	if a := renderOne(t, "", "{{if .CertificateURL}}{{.CertificateURL}}{{else}}https://lms.example.org/u/{{.Username}}{{end}}", ev); !strings.HasSuffix(a.EvidenceURL, "/u/..%2F..%2F..%2Fadmin%3Fnext=%2F%2Fevil.example%23") {
		t.Errorf("else branch: %s", a.EvidenceURL)
	}
}

// raw is the operator's explicit way to insert a value unescaped.
func TestRawLeavesValuesAsTheyAre(t *testing.T) {
	ev := hostileEvent()
	ev.Name, ev.Username = "**Ada**", "ada/lovelace"
	a := renderOne(t, "{{raw .Name}} {{.Name | raw}} {{.Name}}", "https://lms.example.org/u/{{raw .Username}}/{{.Username}}", ev)
	if want := `**Ada** **Ada** \*\*Ada\*\*`; a.Narrative != want {
		t.Errorf("narrative %s, want %s", a.Narrative, want)
	}
	if want := "https://lms.example.org/u/ada/lovelace/ada%2Flovelace"; a.EvidenceURL != want {
		t.Errorf("evidence %s, want %s", a.EvidenceURL, want)
	}
}

// Values reach the output through variables, branches and defined templates too; an escaper
// written by hand is not applied twice.
func TestEscapingEveryPath(t *testing.T) {
	ev := hostileEvent()
	ev.Name = "a_b"
	for tmpl, want := range map[string]string{
		"{{$n := .Name}}{{$n}}":                            `a\_b`,
		"{{if .Name}}{{.Name}}{{end}}":                     `a\_b`,
		"{{with .Name}}{{.}}{{end}}":                       `a\_b`,
		`{{define "n"}}{{.Name}}{{end}}{{template "n" .}}`: `a\_b`,
		`{{printf "%s!" .Name}}`:                           `a\_b\!`,
		"{{.Name | _escape_markdown}}":                     `a\_b`,
		"{{.UserID}} {{.EventTime.Format \"2006-01-02\"}}": `7 2024\-05\-27`,
	} {
		if a := renderOne(t, tmpl, "", ev); a.Narrative != want {
			t.Errorf("%s: %q, want %q", tmpl, a.Narrative, want)
		}
	}
}
