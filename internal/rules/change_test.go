package rules

import (
	"testing"

	"github.com/badgebridge/bridge/internal/edx"
)

const run = "course-v1:O+C+R"

// stored builds a learner's stored facts from updates merged onto nothing.
func stored(updates ...Update) Stored {
	out := Stored{}
	for _, u := range updates {
		f, _ := Merge(nil, u)
		if out[u.BadgeClass] == nil {
			out[u.BadgeClass] = map[string]Fact{}
		}
		out[u.BadgeClass][f.Field()] = f
	}
	return out
}

func fact(class, rule string, kind edx.Kind, revoke bool, course string) Update {
	return Update{BadgeClass: class, Rule: rule, Course: course, Signal: edx.SignalSupports, At: 10, Event: kind, Revoke: revoke}
}

func TestChangeApply(t *testing.T) {
	held := stored(
		fact("A", "verified rule", edx.KindCertificate, true, run), // matched the award under another mode
		fact("B", "removed rule", edx.KindCertificate, true, run),  // no longer in the mapping
		fact("C", "keep rule", edx.KindCertificate, false, run),    // revoke: false
		fact("D", "other run", edx.KindCertificate, true, "course-v1:O+C+Other"),
		fact("E", "passing rule", edx.KindPassing, true, run), // another kind of event
	)
	cases := []struct {
		name string
		c    Change
		want map[string]FactKind // badge class → the kind of its changed fact
	}{
		{
			name: "a revocation reaches every stored revoking certificate fact of the run",
			c:    Change{Course: run, Kind: edx.KindCertificate, Signal: edx.SignalRevokes, At: 20},
			want: map[string]FactKind{"A": Revoked, "B": Revoked},
		},
		{
			name: "an award touches only the rules it matched",
			c: Change{Course: run, Kind: edx.KindCertificate, Signal: edx.SignalSupports, At: 20,
				Updates: []Update{{BadgeClass: "F", Rule: "new", Signal: edx.SignalSupports, At: 20, Event: edx.KindCertificate}}},
			want: map[string]FactKind{"F": Supports},
		},
		{
			name: "an older revocation changes nothing",
			c:    Change{Course: run, Kind: edx.KindCertificate, Signal: edx.SignalRevokes, At: 5},
			want: map[string]FactKind{},
		},
		{
			name: "a failing status reaches stored passing facts only",
			c:    Change{Course: run, Kind: edx.KindPassing, Signal: edx.SignalFailing, At: 20},
			want: map[string]FactKind{"E": Failing},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.c.Apply(held)
			if len(got) != len(tc.want) {
				t.Fatalf("changed %v, want %v", got, tc.want)
			}
			for class, kind := range tc.want {
				if len(got[class]) != 1 || got[class][0].Kind != kind {
					t.Fatalf("class %s: %+v, want one %s fact", class, got[class], kind)
				}
			}
		})
	}
	if len(held["A"]) != 1 || held["A"]["course-v1:O+C+R|verified rule"].Kind != Supports {
		t.Fatal("Apply modified the stored facts")
	}
}

// Two rules of one badge class both matched: each has its fact; the same rule twice in one
// change merges into one fact.
func TestChangeApplySameFieldMerges(t *testing.T) {
	c := Change{Course: run, Kind: edx.KindCertificate, Signal: edx.SignalSupports, At: 20, Updates: []Update{
		{BadgeClass: "A", Rule: "r", Signal: edx.SignalSupports, At: 20, Event: edx.KindCertificate},
		{BadgeClass: "A", Rule: "r", Signal: edx.SignalSupports, At: 10, Event: edx.KindCertificate},
		{BadgeClass: "A", Rule: "s", Signal: edx.SignalSupports, At: 20, Event: edx.KindCertificate},
	}}
	got := c.Apply(Stored{})["A"]
	if len(got) != 2 {
		t.Fatalf("facts %+v, want one per rule", got)
	}
	if got[0].Rule != "r" || got[0].First != 10 {
		t.Fatalf("fact of rule r: %+v, want its support to begin at the older event", got[0])
	}
}

func TestChangeClasses(t *testing.T) {
	award := Change{Signal: edx.SignalSupports, Updates: []Update{{BadgeClass: "B"}, {BadgeClass: "A"}, {BadgeClass: "B"}}}
	if got := award.Classes([]string{"Z"}); len(got) != 2 || got[0] != "A" || got[1] != "B" {
		t.Fatalf("award classes %v, want [A B]", got)
	}
	revoke := Change{Signal: edx.SignalRevokes, Updates: []Update{{BadgeClass: "B"}}}
	if got := revoke.Classes([]string{"Z", "A"}); len(got) != 3 {
		t.Fatalf("revocation classes %v, want every held class and the matched one", got)
	}
}
