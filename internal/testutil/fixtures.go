package testutil

import (
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// A mapping, course and badge class the pipeline tests share.
const (
	ClassCert  = "ClassCert-000000000001"
	TestCourse = "course-v1:Org+Course+Run"
)

// TestMapping maps TestCourse to ClassCert through two rules, one of them for verified
// certificates only: rules sharing a badge class.
const TestMapping = `
badges:
  - name: cert
    badge_class: ClassCert-000000000001
    when:
      courses: ["course-v1:Org+Course+*"]
    narrative: "Completed {{.CourseKey}}"
  - name: cert verified
    badge_class: ClassCert-000000000001
    when:
      courses: ["course-v1:Org+Course+Run"]
      modes: [verified]
`

// CertEvent is an honor-mode certificate event of TestCourse.
func CertEvent(id string, uid int64, email, eventType, status string, at time.Time) edx.Event {
	key, err := edx.ParseCourseKey(TestCourse)
	if err != nil {
		panic(err)
	}
	return edx.Event{ID: id, Type: eventType, Kind: edx.KindCertificate, Time: at, UserID: uid,
		Email: email, Course: key, Mode: "honor", Status: status}
}
