package rules

import (
	"strings"
	"testing"

	"github.com/badgebridge/bridge/internal/edx"
)

func TestDemo(t *testing.T) {
	m := Demo("K829IK8RS6ercwkpeFOn-Q")
	if len(m.Rules) != 1 {
		t.Fatalf("got %d rules, want 1", len(m.Rules))
	}
	r := m.Rules[0]
	if r.Name != "Demo course completion" || r.BadgeClass != "K829IK8RS6ercwkpeFOn-Q" || r.Kind != edx.KindCertificate ||
		!r.Revoke || len(r.Modes) != 0 || !equalWant(r.Courses, []string{"course-v1:OpenedX+DemoX+*"}) {
		t.Errorf("demo rule = %+v", *r)
	}
	ev := edx.Event{
		Type: edx.TypeCertificateCreated, Kind: edx.KindCertificate, UserID: 3, Mode: "audit", Status: "downloadable",
		Course: edx.CourseKey{Raw: "course-v1:OpenedX+DemoX+Demo_Course", Style: "course-v1"},
	}
	if got := m.Match(ev); len(got) != 1 {
		t.Fatalf("demo mapping matched %d rules, want 1", len(got))
	}
	award, err := r.Render(ev)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	want := AwardText{
		// Markdown-escaped; the badge host renders it as the plain key.
		Narrative: `Completed course\-v1\:OpenedX\+DemoX\+Demo\_Course`,
		// PathEscape keeps ':' and '+': the key stays one readable path segment.
		EvidenceURL: "https://lms.example.org/certificates/user/3/course/course-v1:OpenedX+DemoX+Demo_Course",
	}
	if award != want {
		t.Errorf("Render = %+v, want %+v", award, want)
	}
}

func TestDemoRejectsBadBadgeClass(t *testing.T) {
	for _, class := range []string{"", "a/b", `a"b`, "a\nb"} {
		if _, err := NewDemo(class); err == nil {
			t.Errorf("NewDemo(%q) succeeded", class)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(error).Error(), "badge_class") {
			t.Errorf("Demo(bad) panic = %v", r)
		}
	}()
	Demo("a b")
}
