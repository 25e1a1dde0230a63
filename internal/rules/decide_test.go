package rules

import (
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

const decideMapping = `badges:
  - name: Two courses
    badge_class: TwoCourses000000000000a
    when:
      milestone: {courses: ["course-v1:A+*"], count: 2}
    narrative: "{{len .Courses}}: {{range .Courses}}{{.}} {{end}}for {{.Username}}"
  - name: Two kept
    badge_class: TwoKept000000000000000a
    when:
      milestone: {courses: ["course-v1:A+*"], count: 2}
    revoke: false
  - name: Passing one
    badge_class: PassingOne000000000000a
    when:
      milestone: {earned_by: passing, courses: ["course-v1:A+*"], revoke_after: 1h}
`

func decideEvent(run string, at int64, earned bool) edx.Event {
	k, _ := edx.ParseCourseKey(run)
	ev := edx.Event{Kind: edx.KindCertificate, Course: k, Time: time.UnixMicro(at).UTC(), UserID: 3, Username: "ann",
		Type: edx.TypeCertificateCreated, Status: "downloadable"}
	if !earned {
		ev.Type, ev.Status = edx.TypeCertificateRevoked, ""
	}
	return ev
}

func TestDecideMilestones(t *testing.T) {
	m, err := Parse([]byte(decideMapping))
	if err != nil {
		t.Fatal(err)
	}
	st, rec := Stored{}, Record{}
	const now = 1000 * hour
	step := func(ev edx.Event) Decision {
		t.Helper()
		c, err := m.Change(ev, false)
		if err != nil {
			t.Fatal(err)
		}
		d := c.Decide(st, rec, now)
		mergeFacts(st, d.Facts)
		return d
	}
	get := func(class, rule string) Fact { return st[class][milestoneField(rule)] }

	if d := step(decideEvent("course-v1:A+B+R1", 10, true)); d.Run == nil || len(d.Facts) != 0 {
		t.Fatalf("one course: %+v, want the record changed and no fact", d)
	}
	if d := step(decideEvent("course-v1:Other+B+R1", 11, true)); d.Run != nil || len(rec) != 1 {
		t.Fatalf("a run no rule could match: %+v, record %s", d, showRecord(rec))
	}
	d := step(decideEvent("course-v1:A+C+R1", 20, true))
	f := get("TwoCourses000000000000a", "Two courses")
	if f.Kind != Supports || f.First != 20 || f.Until != 0 || f.Event != KindMilestone || !f.Revoke {
		t.Fatalf("met: %+v", f)
	}
	// The course keys are Markdown-escaped like every value a narrative prints (escape.go).
	if want := `2: course\-v1\:A\+B\+R1 course\-v1\:A\+C\+R1 for ann`; f.Award.Narrative != want {
		t.Errorf("narrative %q, want %q", f.Award.Narrative, want)
	}
	if len(d.Facts) != 2 {
		t.Errorf("facts %v, want the two certificate milestones", d.Facts)
	}
	if d := step(decideEvent("course-v1:A+C+R1", 20, true)); d.Run != nil || len(d.Facts) != 0 {
		t.Errorf("a duplicate: %+v", d)
	}
	if d := step(decideEvent("course-v1:A+B+R2", 15, true)); len(d.Facts) != 0 {
		t.Errorf("another run of a counted course, still met since 20: %+v", d.Facts)
	}
	step(decideEvent("course-v1:A+C+R1", 30, false))
	if f := get("TwoCourses000000000000a", "Two courses"); f.Kind != Revoked {
		t.Errorf("after a revocation: %+v, want revoked", f)
	}
	if held, _ := Desired(factsOf(st["TwoCourses000000000000a"]), now); held {
		t.Error("the revoking milestone is still held")
	}
	if f := get("TwoKept000000000000000a", "Two kept"); f.Kind != Supports {
		t.Errorf("revoke: false: %+v, want still supports", f)
	}
	step(decideEvent("course-v1:A+D+R1", 40, true))
	if f := get("TwoCourses000000000000a", "Two courses"); f.Kind != Supports || f.First != 40 {
		t.Errorf("met again: %+v, want a new support from 40", f)
	}

	// Passing with revoke_after: the fact ends by itself.
	k, _ := edx.ParseCourseKey("course-v1:A+P+R1")
	pass := func(at int64, p bool) {
		step(edx.Event{Kind: edx.KindPassing, Type: edx.TypePassingStatus, Course: k, Time: time.UnixMicro(at).UTC(), UserID: 3, IsPassing: p})
	}
	pass(now-3*hour, true)
	pass(now-hour/2, false)
	f = get("PassingOne000000000000a", "Passing one")
	if f.Kind != Supports || f.First != now-3*hour || f.Until != now+hour/2 {
		t.Errorf("passing within revoke_after: %+v", f)
	}
	if held, next := Desired(factsOf(st["PassingOne000000000000a"]), now); !held || next != now+hour/2 {
		t.Errorf("Desired = %v, %d", held, next)
	}
	if held, _ := Desired(factsOf(st["PassingOne000000000000a"]), now+hour); held {
		t.Error("held after Until")
	}
}

func TestChangeKeepAll(t *testing.T) {
	m, err := Parse([]byte(decideMapping))
	if err != nil {
		t.Fatal(err)
	}
	ev := decideEvent("course-v1:Other+B+R1", 10, true)
	if c, _ := m.Change(ev, false); c.Outcome != nil {
		t.Errorf("mapped: an unmatched run is recorded: %s", show(c.Outcome))
	}
	if c, _ := m.Change(ev, true); c.Outcome == nil {
		t.Error("all: the run is not recorded")
	}
}
