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

// Digests are stored with every handled event id, so a release must not change them: a resent
// event would otherwise answer 409. These values predate enrollment events (which added
// IsActive to enrollment digests only).
func TestDigestStable(t *testing.T) {
	at := time.Date(2024, 5, 27, 12, 25, 45, 678901000, time.UTC)
	course := CourseKey{Raw: "course-v1:A+B+C"}
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"certificate", Event{Type: TypeCertificateCreated, Kind: KindCertificate, Time: at, UserID: 7,
			Email: "Ada@Example.org", Course: course, Mode: "verified", Status: "downloadable"}, "fb1f0dec38b2a443f462acf455ad1c29"},
		{"passing", Event{Type: TypePassingStatus, Kind: KindPassing, Time: at, UserID: 7,
			Email: "ada@example.org", Course: course, IsPassing: true}, "838b40f8f35de98639eca5e079c52609"},
	}
	for _, tt := range tests {
		if got := tt.ev.Digest(); got != tt.want {
			t.Errorf("%s: Digest() = %s, want %s", tt.name, got, tt.want)
		}
	}
}
