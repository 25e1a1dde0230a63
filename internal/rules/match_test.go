package rules

import (
	"testing"

	"github.com/badgebridge/bridge/internal/edx"
)

const matchMapping = `
badges:
  - name: demo-any-mode
    badge_class: c1
    when: {courses: ["course-v1:OpenedX+DemoX+*"]}
  - name: demo-verified
    badge_class: c2
    when: {courses: ["course-v1:OpenedX+DemoX+*"], modes: [verified, Honor]}
  - name: exact-run
    badge_class: c3
    when: {courses: ["course-v1:A.B+C+2024_T1"]}
  - name: demo-passing
    badge_class: c4
    when: {event: passing, courses: ["course-v1:OpenedX+DemoX+*"]}
  - name: demo-passing-ccx
    badge_class: c5
    when: {event: passing, courses: ["course-v1:OpenedX+DemoX+*"], include_ccx: true}
  - name: one-ccx
    badge_class: c6
    when: {event: passing, courses: ["ccx-v1:Other+X+Y+ccx@7"], include_ccx: true}
  - name: legacy
    badge_class: c7
    when: {courses: ["Org/Legacy/*"]}
`

func courseKey(raw string) edx.CourseKey { return edx.CourseKey{Raw: raw, Style: "course-v1"} }

func ccxKey(raw, master string) edx.CourseKey {
	return edx.CourseKey{Raw: raw, Style: "ccx-v1", CCX: "7", Master: &edx.CourseKey{Raw: master, Style: "course-v1"}}
}

func certificate(key edx.CourseKey, mode, status string) edx.Event {
	return edx.Event{Type: edx.TypeCertificateChanged, Kind: edx.KindCertificate, Course: key, Mode: mode, Status: status}
}

func revocation(key edx.CourseKey, mode string) edx.Event {
	return edx.Event{Type: edx.TypeCertificateRevoked, Kind: edx.KindCertificate, Course: key, Mode: mode, Status: "notpassing"}
}

func passing(key edx.CourseKey, isPassing bool) edx.Event {
	typ := edx.TypePassingStatus
	if key.Style == "ccx-v1" {
		typ = edx.TypeCCXPassingStatus
	}
	return edx.Event{Type: typ, Kind: edx.KindPassing, Course: key, IsPassing: isPassing}
}

func TestMatch(t *testing.T) {
	m, err := Parse([]byte(matchMapping))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	demo := courseKey("course-v1:OpenedX+DemoX+Demo_Course")
	tests := []struct {
		name string
		ev   edx.Event
		want []string
	}{
		{"wildcard, mode in filter", certificate(demo, "verified", "downloadable"), []string{"demo-any-mode", "demo-verified"}},
		{"mode filter is case-insensitive", certificate(demo, "honor", "downloadable"), []string{"demo-any-mode", "demo-verified"}},
		{"mode not in filter", certificate(demo, "audit", "downloadable"), []string{"demo-any-mode"}},
		{"revocation ignores modes", revocation(demo, "audit"), []string{"demo-any-mode", "demo-verified"}},
		{"revoking status ignores modes", certificate(demo, "audit", "unverified"), []string{"demo-any-mode", "demo-verified"}},
		{"other course", certificate(courseKey("course-v1:OpenedX+Other+1"), "verified", "downloadable"), nil},
		{"exact key with literal dot", certificate(courseKey("course-v1:A.B+C+2024_T1"), "honor", "downloadable"), []string{"exact-run"}},
		{"dot is not a wildcard", certificate(courseKey("course-v1:AxB+C+2024_T1"), "honor", "downloadable"), nil},
		{"plus is not a quantifier", certificate(courseKey("course-v1:A.B+CC+2024_T1"), "honor", "downloadable"), nil},
		{"another run", certificate(courseKey("course-v1:A.B+C+2024_T2"), "honor", "downloadable"), nil},
		{"slash key", certificate(edx.CourseKey{Raw: "Org/Legacy/2013", Style: "slash"}, "honor", "generating"), []string{"legacy"}},
		{"passing matches passing rules only", passing(demo, true), []string{"demo-passing", "demo-passing-ccx"}},
		{"not passing matches the same rules", passing(demo, false), []string{"demo-passing", "demo-passing-ccx"}},
		{"ccx via master, include_ccx only", passing(ccxKey("ccx-v1:OpenedX+DemoX+Demo_Course+ccx@7", demo.Raw), true), []string{"demo-passing-ccx"}},
		{"ccx key itself", passing(ccxKey("ccx-v1:Other+X+Y+ccx@7", "course-v1:Other+X+Y"), true), []string{"one-ccx"}},
		{"ccx of an unmapped course", passing(ccxKey("ccx-v1:Other+X+Z+ccx@7", "course-v1:Other+X+Z"), true), nil},
		{"unparsed ccx key is still a ccx key", passing(edx.CourseKey{Raw: "ccx-v1:OpenedX+DemoX+Demo_Course+ccx@7"}, true), nil},
		{"ccx certificate matches no certificate rule", certificate(ccxKey("ccx-v1:OpenedX+DemoX+Demo_Course+ccx@7", demo.Raw), "honor", "downloadable"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, r := range m.Match(tt.ev) {
				got = append(got, r.Name)
			}
			if !equalWant(got, tt.want) {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatchNilMapping(t *testing.T) {
	var m *Mapping
	if got := m.Match(passing(courseKey("x"), true)); got != nil {
		t.Errorf("nil mapping matched %v", got)
	}
	if ruleNamed(m, "x") != nil || m.BadgeClasses() != nil {
		t.Error("nil mapping has rules")
	}
}
