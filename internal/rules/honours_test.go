package rules

import (
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

const honoursFile = `badges:
  - name: Honours
    badge_class: Honours000000000000000a
    when:
      courses: ["course-v1:A+B+*"]
      min_grade: 0.9
  - name: Honours kept
    badge_class: HonoursKept00000000000a
    when:
      courses: ["course-v1:A+B+*"]
      min_grade: 0.9
    revoke: false
  - name: Completion
    badge_class: Completion000000000000a
    when:
      courses: ["course-v1:A+B+*"]
`

func certEvent(typ, status, grade string, at int64) edx.Event {
	k, _ := edx.ParseCourseKey("course-v1:A+B+R")
	return edx.Event{Kind: edx.KindCertificate, Type: typ, Status: status, Grade: grade, Mode: "verified",
		Time: time.UnixMicro(at).UTC(), Course: k, UserID: 1}
}

func TestHonoursChange(t *testing.T) {
	m, err := Parse([]byte(honoursFile))
	if err != nil {
		t.Fatal(err)
	}
	type want map[string]edx.Signal // rule → signal of its update; absent = no update
	S, R := edx.SignalSupports, edx.SignalRevokes
	cases := []struct {
		name  string
		ev    edx.Event
		wants want
	}{
		{"grade above", certEvent(edx.TypeCertificateCreated, "downloadable", "0.95", 10), want{"Honours": S, "Honours kept": S, "Completion": S}},
		{"grade at min", certEvent(edx.TypeCertificateCreated, "downloadable", "0.9", 10), want{"Honours": S, "Honours kept": S, "Completion": S}},
		{"grade 1", certEvent(edx.TypeCertificateCreated, "downloadable", "1", 10), want{"Honours": S, "Honours kept": S, "Completion": S}},
		{"grade below", certEvent(edx.TypeCertificateChanged, "downloadable", "0.89", 10), want{"Honours": R, "Completion": S}},
		{"grade missing", certEvent(edx.TypeCertificateCreated, "downloadable", "", 10), want{"Honours": R, "Completion": S}},
		{"grade a percentage", certEvent(edx.TypeCertificateCreated, "downloadable", "95", 10), want{"Honours": R, "Completion": S}},
		{"grade NaN", certEvent(edx.TypeCertificateCreated, "downloadable", "NaN", 10), want{"Honours": R, "Completion": S}},
		{"revoked", certEvent(edx.TypeCertificateRevoked, "", "0.95", 10), want{"Honours": R, "Completion": R}},
		{"transient", certEvent(edx.TypeCertificateChanged, "requesting", "0.95", 10), want{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, err := m.Change(c.ev, false)
			if err != nil {
				t.Fatal(err)
			}
			got := want{}
			for _, u := range ch.Updates {
				if u.Signal == edx.SignalNone {
					continue // a transient status: Merge leaves the fact alone
				}
				got[u.Rule] = u.Signal
			}
			if len(got) != len(c.wants) {
				t.Fatalf("updates %v, want %v", got, c.wants)
			}
			for rule, s := range c.wants {
				if got[rule] != s {
					t.Errorf("%s: signal %v, want %v (all: %v)", rule, got[rule], s, got)
				}
			}
		})
	}
}

// TestHonoursLowerGradeIsANewerOutcome: a later certificate event with a lower grade takes the
// honours badge away where the rule revokes; an older one changes nothing; a later higher grade
// gives it back.
func TestHonoursLowerGradeIsANewerOutcome(t *testing.T) {
	m, err := Parse([]byte(honoursFile))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		ev              edx.Event
		honours, kept   bool
		completionHolds bool
	}{
		{certEvent(edx.TypeCertificateCreated, "downloadable", "0.95", 10), true, true, true},
		{certEvent(edx.TypeCertificateChanged, "downloadable", "0.5", 5), true, true, true}, // older
		{certEvent(edx.TypeCertificateChanged, "downloadable", "0.8", 20), false, true, true},
		{certEvent(edx.TypeCertificateChanged, "downloadable", "0.92", 30), true, true, true},
		{certEvent(edx.TypeCertificateChanged, "downloadable", "", 30), false, true, true}, // equal time: the negative wins
		{certEvent(edx.TypeCertificateRevoked, "", "", 40), false, true, false},
	}
	st := Stored{}
	for i, s := range steps {
		ch, err := m.Change(s.ev, false)
		if err != nil {
			t.Fatal(err)
		}
		d := ch.Decide(st, Record{}, 100)
		mergeFacts(st, d.Facts)
		for class, want := range map[string]bool{
			"Honours000000000000000a": s.honours, "HonoursKept00000000000a": s.kept, "Completion000000000000a": s.completionHolds,
		} {
			if got, _ := Desired(factsOf(st[class]), 100); got != want {
				t.Errorf("step %d (grade %q at %d): %s held = %v, want %v", i, s.ev.Grade, Micros(s.ev.Time), class, got, want)
			}
		}
	}
}

// mergeFacts writes a decision's facts into stored, by field, as the ledger does.
func mergeFacts(st Stored, facts map[string][]Fact) {
	for class, fs := range facts {
		if st[class] == nil {
			st[class] = map[string]Fact{}
		}
		for _, f := range fs {
			st[class][f.Field()] = f
		}
	}
}

func factsOf(m map[string]Fact) []Fact {
	out := make([]Fact, 0, len(m))
	for _, f := range m {
		out = append(out, f)
	}
	return out
}

// A failing fact that hears of a true at the time its run of not passing began keeps that start:
// at equal times the false wins, so it still comes after the true.
func TestMergeFailingTrueAtSince(t *testing.T) {
	old := Fact{Course: run, Rule: "p", Kind: Failing, At: 20, Since: 10, Event: edx.KindPassing, Revoke: true, RevokeAfter: 15}
	f, _ := Merge(&old, Update{Course: run, Rule: "p", Signal: edx.SignalSupports, At: 10, Event: edx.KindPassing, Revoke: true, RevokeAfter: 15})
	if f.Kind != Failing || f.LastTrue != 10 || f.Since != 10 {
		t.Errorf("Merge = %+v, want failing since 10 with last true 10", f)
	}
	// A true strictly inside the run of not passing: the start moves to the latest known false.
	f, _ = Merge(&old, Update{Course: run, Rule: "p", Signal: edx.SignalSupports, At: 15, Event: edx.KindPassing, Revoke: true, RevokeAfter: 15})
	if f.Kind != Failing || f.LastTrue != 15 || f.Since != 20 {
		t.Errorf("Merge = %+v, want failing since 20 with last true 15", f)
	}
}
