package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

const awardMapping = `
badges:
  - name: cert
    badge_class: c1
    when: {courses: ["course-v1:OpenedX+DemoX+*"]}
    notify: true
    expires_after: 365d
    narrative: "{{.Name}} ({{.Username}}) completed {{.Org}}/{{.Course}}/{{.Run}} as {{.Mode}} with {{.Grade}} on {{.EventTime.Format \"2006-01-02\"}}"
    evidence_url: "{{.CertificateURL}}"
  - name: pass
    badge_class: c2
    when: {event: passing, courses: ["course-v1:OpenedX+DemoX+*"], include_ccx: true}
    narrative: "{{.Username}} passed {{.CourseKey}}"
    evidence_url: "https://lms.example.org/u/{{.UserID}}/{{.CourseKey | urlquery}}"
  - name: no-text
    badge_class: c3
    when: {courses: ["*"]}
`

func TestRender(t *testing.T) {
	m, err := Parse([]byte(awardMapping))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	at := time.Date(2024, 5, 27, 12, 25, 45, 0, time.UTC)
	cert := edx.Event{
		Type: edx.TypeCertificateCreated, Kind: edx.KindCertificate, Time: at,
		UserID: 7, Username: "ada", Name: "Ada Lovelace", Email: "ada@example.org",
		Course: edx.CourseKey{Raw: "course-v1:OpenedX+DemoX+Demo_Course", Style: "course-v1", Org: "OpenedX", Course: "DemoX", Run: "Demo_Course"},
		Mode:   "verified", Grade: "0.93", CertificateURL: "https://lms.example.org/certificates/abc", Status: "downloadable",
	}
	ccx := edx.CourseKey{
		Raw: "ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3", Style: "ccx-v1", Org: "OpenedX", Course: "DemoX", Run: "Demo_Course",
		CCX: "3", Master: &edx.CourseKey{Raw: "course-v1:OpenedX+DemoX+Demo_Course", Style: "course-v1"},
	}
	pass := edx.Event{Type: edx.TypeCCXPassingStatus, Kind: edx.KindPassing, Time: at, UserID: 7, Username: "ada", Course: ccx, IsPassing: true}
	webCert := cert
	webCert.CertificateURL = ""

	tests := []struct {
		rule string
		ev   edx.Event
		want AwardText
	}{
		{"cert", cert, AwardText{
			Narrative:    `Ada Lovelace (ada) completed OpenedX/DemoX/Demo\_Course as verified with 0\.93 on 2024\-05\-27`,
			EvidenceURL:  "https://lms.example.org/certificates/abc",
			Notify:       true,
			ExpiresAfter: 365 * 24 * time.Hour,
		}},
		{"cert", webCert, AwardText{
			Narrative:    `Ada Lovelace (ada) completed OpenedX/DemoX/Demo\_Course as verified with 0\.93 on 2024\-05\-27`,
			Notify:       true,
			ExpiresAfter: 365 * 24 * time.Hour,
		}},
		{"pass", pass, AwardText{
			Narrative: `ada passed ccx\-v1\:OpenedX\+DemoX\+Demo\_Course\+ccx\@3`,
			// urlquery is the operator's own escaping: not path-escaped again.
			EvidenceURL: "https://lms.example.org/u/7/ccx-v1%3AOpenedX%2BDemoX%2BDemo_Course%2Bccx%403",
		}},
		{"no-text", cert, AwardText{}},
	}
	for _, tt := range tests {
		got, err := ruleNamed(m, tt.rule).Render(tt.ev)
		if err != nil {
			t.Errorf("%s: Render: %v", tt.rule, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: Render =\n %+v\nwant\n %+v", tt.rule, got, tt.want)
		}
	}
}

func TestRenderErrors(t *testing.T) {
	m, err := Parse([]byte(awardMapping))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	cert := edx.Event{Kind: edx.KindCertificate, Course: edx.CourseKey{Raw: "course-v1:OpenedX+DemoX+1"}}

	// Open edX can send a relative download_url; it is not usable evidence.
	relative := cert
	relative.CertificateURL = "/certificates/abc"
	if _, err := ruleNamed(m, "cert").Render(relative); err == nil || !strings.Contains(err.Error(), "absolute http(s) URL") {
		t.Errorf("relative evidence URL: err = %v", err)
	}
	if _, err := ruleNamed(m, "pass").Render(cert); err == nil || !strings.Contains(err.Error(), "cannot render a certificate event") {
		t.Errorf("kind mismatch: err = %v", err)
	}
}

// A rule built without Parse (e.g. by another package's test) renders empty text.
func TestRenderRuleLiteral(t *testing.T) {
	r := &Rule{Name: "lit", Kind: edx.KindPassing, Notify: true}
	got, err := r.Render(edx.Event{Kind: edx.KindPassing})
	if err != nil || got != (AwardText{Notify: true}) {
		t.Errorf("Render = %+v, %v", got, err)
	}
}
