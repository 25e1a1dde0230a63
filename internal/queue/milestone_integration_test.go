package queue

import (
	"context"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/testutil"
)

const (
	classPathway   = "ClassPathway-000000001"
	pathwayMapping = testutil.TestMapping + `
  - name: pathway
    badge_class: ClassPathway-000000001
    when:
      milestone:
        all_of:
          - courses: ["course-v1:Org+Course+*"]
          - courses: ["course-v1:Org+Stats+*", "course-v1:Org+Viz+*"]
            earned_by: enrollment
    narrative: "Completed {{len .Courses}} courses: {{range .Courses}}{{.}} {{end}}"
`
)

func certFor(id string, uid int64, course, eventType, status string, at time.Time) edx.Event {
	ev := testutil.CertEvent(id, uid, "path@example.org", eventType, status, at)
	ev.Course, _ = edx.ParseCourseKey(course)
	return ev
}

// A milestone over two courses is awarded once both count, to the learner's address, with the
// time of the outcome that completed it as issuedOn, and revoked when a course stops counting.
func TestMilestoneAwardedAndRevokedEndToEnd(t *testing.T) {
	p := newPipelineWith(t, pathwayMapping, testutil.ClassCert, classPathway)
	ctx := context.Background()
	t0 := time.Date(2024, 5, 27, 12, 0, 0, 123456000, time.UTC) // issuedOn keeps the microseconds
	const uid = 501
	handle := func(ev edx.Event) intake.Result {
		t.Helper()
		res, err := p.intake.Handle(ctx, ev, "test")
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	enroll := edx.Event{ID: "en-1", Type: "org.openedx.learning.course.enrollment.created.v1", Kind: edx.KindEnrollment,
		Time: t0.Add(time.Hour), UserID: uid, Email: "path@example.org", IsActive: true, Mode: "audit"}
	enroll.Course, _ = edx.ParseCourseKey("course-v1:Org+Stats+2024")
	// Enrolled in Stats first: only the learner record changes.
	if res := handle(enroll); res.Status != intake.StatusAccepted || len(res.Jobs) != 0 {
		t.Fatalf("enrollment: %+v, want accepted with no jobs", res)
	}
	// The certificate of the first course completes the pathway (and earns its own badge).
	res := handle(certFor("c-1", uid, testutil.TestCourse, edx.TypeCertificateCreated, "downloadable", t0.Add(2*time.Hour)))
	if res.Status != intake.StatusAccepted || len(res.Jobs) != 2 {
		t.Fatalf("certificate: %+v, want both rows owed", res)
	}
	k := ledger.RowKey{BadgeClass: classPathway, UserID: uid}
	waitState(t, p, k, ledger.StateIssued)
	var found bool
	for _, a := range p.sandbox.Assertions(classPathway) {
		if !a.Revoked && a.Recipient == "path@example.org" {
			found = true
			if !a.IssuedOn.Equal(t0.Add(2 * time.Hour)) {
				t.Errorf("issuedOn %v, want the certificate's time %v", a.IssuedOn, t0.Add(2*time.Hour))
			}
		}
	}
	if !found {
		t.Fatalf("no pathway assertion on the host: %+v", p.sandbox.Assertions(classPathway))
	}
	// Unenrolled: the pathway no longer met, its badge is revoked; the course badge stays.
	unenroll := enroll
	unenroll.ID, unenroll.Type, unenroll.IsActive, unenroll.Time = "en-2", "org.openedx.learning.course.enrollment.changed.v1", false, t0.Add(3*time.Hour)
	if res := handle(unenroll); res.Status != intake.StatusAccepted || len(res.Jobs) != 1 {
		t.Fatalf("unenrollment: %+v, want the pathway row owed", res)
	}
	waitState(t, p, k, ledger.StateRevoked)
	if r, _ := p.ledger.Read(ctx, ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: uid}); r == nil || r.State != ledger.StateIssued {
		t.Fatalf("course badge: %+v", r)
	}
}

func waitState(t *testing.T, p *pipeline, k ledger.RowKey, state string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := p.ledger.Read(context.Background(), k)
		if err == nil && r != nil && r.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("row %s: %+v, want state %s", k, r, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
