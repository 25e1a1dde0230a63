package rules

import (
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

func upd(sig edx.Signal, at int64) Update {
	return Update{BadgeClass: "C", Rule: "r", Course: "course-v1:O+C+R", Signal: sig, At: at, Event: edx.KindCertificate, Revoke: true}
}

func passingUpdate(sig edx.Signal, at int64, after time.Duration) Update {
	u := upd(sig, at)
	u.Event, u.RevokeAfter = edx.KindPassing, after
	return u
}

func TestMergeOrdering(t *testing.T) {
	sup := func(at int64) *Fact { f, _ := Merge(nil, upd(edx.SignalSupports, at)); return &f }
	rev := func(at int64) *Fact { f, _ := Merge(nil, upd(edx.SignalRevokes, at)); return &f }
	cases := []struct {
		name    string
		old     *Fact
		u       Update
		kind    FactKind
		changed bool
	}{
		{"first award", nil, upd(edx.SignalSupports, 10), Supports, true},
		{"duplicate award", sup(10), upd(edx.SignalSupports, 10), Supports, false},
		{"newer award re-sent", sup(10), upd(edx.SignalSupports, 20), Supports, true},
		{"revoke after award", sup(10), upd(edx.SignalRevokes, 20), Revoked, true},
		{"revoke at equal time wins", sup(10), upd(edx.SignalRevokes, 10), Revoked, true},
		{"stale revoke ignored", sup(20), upd(edx.SignalRevokes, 10), Supports, false},
		{"award at equal time after revoke loses", rev(10), upd(edx.SignalSupports, 10), Revoked, false},
		{"older award after revoke loses", rev(10), upd(edx.SignalSupports, 5), Revoked, false},
		{"re-award later wins", rev(10), upd(edx.SignalSupports, 11), Supports, true},
		{"duplicate revoke", rev(10), upd(edx.SignalRevokes, 10), Revoked, false},
		{"revoke first blocks nothing yet recorded", nil, upd(edx.SignalRevokes, 10), Revoked, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, changed := Merge(c.old, c.u)
			if got.Kind != c.kind || changed != c.changed {
				t.Fatalf("Merge = %s changed=%v, want %s changed=%v", got.Kind, changed, c.kind, c.changed)
			}
		})
	}
}

func TestMergeKeepsStartOfSupport(t *testing.T) {
	f, _ := Merge(nil, upd(edx.SignalSupports, 20))
	f, _ = Merge(&f, upd(edx.SignalSupports, 30))
	if f.First != 20 || f.At != 30 {
		t.Fatalf("first=%d at=%d, want 20/30", f.First, f.At)
	}
	f, changed := Merge(&f, upd(edx.SignalSupports, 10))
	if !changed || f.First != 10 || f.At != 30 {
		t.Fatalf("older re-send: first=%d at=%d changed=%v, want 10/30/true", f.First, f.At, changed)
	}
}

func TestPassingFailingSince(t *testing.T) {
	hour := time.Hour
	f, _ := Merge(nil, passingUpdate(edx.SignalSupports, 100, hour))
	f, _ = Merge(&f, passingUpdate(edx.SignalFailing, 200, hour))
	f, _ = Merge(&f, passingUpdate(edx.SignalFailing, 300, hour))
	if f.Kind != Failing || f.Since != 200 || f.At != 300 || f.LastTrue != 100 {
		t.Fatalf("got %+v, want failing since 200, at 300, last true 100", f)
	}
	// An older false (before the latest true) changes nothing.
	if _, changed := Merge(&f, passingUpdate(edx.SignalFailing, 50, hour)); changed {
		t.Fatal("a false older than the latest true changed the fact")
	}
	// Held until since + revoke_after.
	deadline := int64(200) + hour.Microseconds()
	if held, until := f.Holds(deadline - 1); !held || until != deadline {
		t.Fatalf("Holds before deadline = %v %d", held, until)
	}
	if held, _ := f.Holds(deadline); held {
		t.Fatal("still held at the deadline")
	}
	// Passing again resets.
	g, _ := Merge(&f, passingUpdate(edx.SignalSupports, 400, hour))
	if g.Kind != Supports {
		t.Fatalf("true after failing: %s", g.Kind)
	}
	// Never passed: a failing fact does not hold.
	n, _ := Merge(nil, passingUpdate(edx.SignalFailing, 10, hour))
	if held, _ := n.Holds(11); held {
		t.Fatal("failing fact without a prior pass holds the badge")
	}
}

func TestDesiredTwoRulesOneClass(t *testing.T) {
	a, _ := Merge(nil, upd(edx.SignalSupports, 10))
	b := upd(edx.SignalSupports, 20)
	b.Rule, b.Order = "other", 1
	bf, _ := Merge(nil, b)
	if held, _ := Desired([]Fact{a, bf}, 30); !held {
		t.Fatal("two supporting rules: not held")
	}
	ar, _ := Merge(&a, upd(edx.SignalRevokes, 25))
	if held, _ := Desired([]Fact{ar, bf}, 30); !held {
		t.Fatal("one rule revoked, the other supports: must stay held")
	}
	br, _ := Merge(&bf, Update{BadgeClass: "C", Rule: "other", Signal: edx.SignalRevokes, At: 26, Event: edx.KindCertificate, Revoke: true})
	if held, _ := Desired([]Fact{ar, br}, 30); held {
		t.Fatal("both revoked: still held")
	}
	best, ok := AwardFact([]Fact{bf, a}, 30)
	if !ok || best.Rule != "r" {
		t.Fatalf("award text from %q, want the earliest supporting fact r", best.Rule)
	}
}
