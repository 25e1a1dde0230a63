package edx

import (
	"testing"
	"time"
)

func TestDigest(t *testing.T) {
	at := time.Date(2024, 5, 27, 12, 25, 45, 678901000, time.UTC)
	base := Event{ID: "e1", Type: TypeCertificateCreated, Kind: KindCertificate, Time: at, UserID: 7,
		Email: "Ada@Example.org", Course: CourseKey{Raw: "course-v1:A+B+C"}, Mode: "verified", Status: "downloadable"}
	same := base
	same.ID = "other id" // the id is what is compared against, not part of the content
	same.Email = "ada@example.org"
	if base.Digest() != same.Digest() {
		t.Fatal("the same content must have the same digest")
	}
	for name, change := range map[string]func(*Event){
		"type":   func(e *Event) { e.Type = TypeCertificateRevoked },
		"status": func(e *Event) { e.Status = "notpassing" },
		"time":   func(e *Event) { e.Time = at.Add(time.Microsecond) },
		"user":   func(e *Event) { e.UserID = 8 },
		"course": func(e *Event) { e.Course.Raw = "course-v1:A+B+D" },
		"shift":  func(e *Event) { e.Mode, e.Grade = "", "verified" },
	} {
		e := base
		change(&e)
		if e.Digest() == base.Digest() {
			t.Errorf("%s: a different event must have another digest", name)
		}
	}
	missing := base
	missing.TimeMissing = true
	later := missing
	later.Time = at.Add(time.Hour) // the receive time of a retry
	if missing.Digest() != later.Digest() {
		t.Error("a receive time must not change the digest")
	}
}
