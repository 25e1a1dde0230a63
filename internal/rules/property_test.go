package rules

import (
	"fmt"
	"math/rand"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// The property test of contract section 9: random certificate, passing and enrollment events
// for a few learners over a few courses, re-runs and CCX runs, delivered shuffled and with
// duplicates through Mapping.Change and Change.Decide the way the ledger does (the stored facts
// and the learner record carried from event to event), must leave every milestone row in the
// desired state that a plain model of section 9 gives for the events delivered so far, and an
// awarded milestone must carry the model's issuedOn.

const propertyMapping = `badges:
  - name: Path
    badge_class: Path000000000000000000a
    when:
      milestone:
        all_of:
          - courses: ["course-v1:X+C1+*", "course-v1:X+C2+*", "course-v1:X+C3+*"]
            count: 2
            min_grade: 0.8
          - any_of:
              - courses: ["course-v1:X+C3+*"]
                earned_by: enrollment
                modes: [verified]
              - courses: ["course-v1:X+C4+*"]
                earned_by: passing
                include_ccx: true
    narrative: "{{len .Courses}} courses"
  - name: Enrolled
    badge_class: Enrolled00000000000000a
    when:
      milestone: {earned_by: enrollment, courses: ["course-v1:X+*"], count: 2}
  - name: Any two
    badge_class: AnyTwo0000000000000000a
    when:
      milestone:
        count: 2
        any_of:
          - courses: ["course-v1:X+C1+*"]
            modes: [verified, honor]
          - courses: ["course-v1:X+C2+*"]
          - courses: ["course-v1:X+C4+*"]
            include_ccx: true
  - name: Passed both
    badge_class: PassedBoth000000000000a
    when:
      milestone:
        earned_by: passing
        include_ccx: true
        courses: ["course-v1:X+C1+*", "course-v1:X+C4+*"]
        count: 2
`

var propertyRuns = []string{
	"course-v1:X+C1+R1", "course-v1:X+C1+R2", "course-v1:X+C2+R1", "course-v1:X+C3+R1",
	"course-v1:X+C3+R2", "course-v1:X+C4+R1", "ccx-v1:X+C4+R1+ccx@1", "ccx-v1:X+C1+R1+ccx@2",
	"course-v1:Y+Z+R1",
}

var t0 = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// ---- the model -------------------------------------------------------------------------------

// mOutcome is the model's view of one event: its run, type and what it says.
type mOutcome struct {
	run      string
	kind     edx.Kind
	at       int64 // seconds after t0
	positive bool  // earned / passing / enrolled
	mode     string
	grade    string
}

type mKey struct {
	run  string
	kind edx.Kind
}

type mState map[mKey]mOutcome

// mCourse is the model's org+course of a run: "X+C1" for course-v1:X+C1+R1, and for a CCX run
// its master's, which only items with include_ccx take.
func mCourse(run string, includeCCX bool) (string, bool) {
	switch {
	case strings.HasPrefix(run, "course-v1:"):
		p := strings.Split(strings.TrimPrefix(run, "course-v1:"), "+")
		return p[0] + "+" + p[1], true
	case strings.HasPrefix(run, "ccx-v1:") && includeCCX:
		p := strings.Split(strings.TrimPrefix(run, "ccx-v1:"), "+")
		return p[0] + "+" + p[1], true
	}
	return "", false
}

var mDecimal = regexp.MustCompile(`^[0-9]*\.?[0-9]+$`)

func mGradeAtLeast(g string, min float64) bool {
	if !mDecimal.MatchString(g) {
		return false
	}
	v, err := strconv.ParseFloat(g, 64)
	return err == nil && v >= 0 && v <= 1 && v >= min
}

// mCount counts distinct courses among courses whose latest outcome of kind counts.
func mCount(s mState, kind edx.Kind, courses []string, ccx bool, counts func(mOutcome) bool) int {
	seen := map[string]bool{}
	for k, o := range s {
		if k.kind != kind {
			continue
		}
		c, ok := mCourse(k.run, ccx)
		if !ok || !slices.Contains(courses, c) || !counts(o) {
			continue
		}
		seen[c] = true
	}
	return len(seen)
}

func earned(o mOutcome) bool { return o.positive }

func inModes(modes ...string) func(mOutcome) bool {
	return func(o mOutcome) bool { return o.positive && slices.Contains(modes, o.mode) }
}

// mRules are the mapping's milestone rules in the contract's words: whether each is met over a
// state of latest outcomes, and whether it revokes.
var mRules = []struct {
	class  string
	revoke bool
	met    func(mState) bool
}{
	{"Path000000000000000000a", true, func(s mState) bool {
		certs := mCount(s, edx.KindCertificate, []string{"X+C1", "X+C2", "X+C3"}, false, func(o mOutcome) bool {
			return o.positive && mGradeAtLeast(o.grade, 0.8)
		})
		enrolled := mCount(s, edx.KindEnrollment, []string{"X+C3"}, false, inModes("verified"))
		passed := mCount(s, edx.KindPassing, []string{"X+C4"}, true, earned)
		return certs >= 2 && (enrolled >= 1 || passed >= 1)
	}},
	{"Enrolled00000000000000a", true, func(s mState) bool {
		return mCount(s, edx.KindEnrollment, []string{"X+C1", "X+C2", "X+C3", "X+C4"}, false, earned) >= 2
	}},
	{"AnyTwo0000000000000000a", true, func(s mState) bool {
		n := 0
		if mCount(s, edx.KindCertificate, []string{"X+C1"}, false, inModes("verified", "honor")) >= 1 {
			n++
		}
		if mCount(s, edx.KindCertificate, []string{"X+C2"}, false, earned) >= 1 {
			n++
		}
		if mCount(s, edx.KindCertificate, []string{"X+C4"}, true, earned) >= 1 {
			n++
		}
		return n >= 2
	}},
	// Every item earned_by passing: revoke defaults to false, so once met the row stays held.
	{"PassedBoth000000000000a", false, func(s mState) bool {
		return mCount(s, edx.KindPassing, []string{"X+C1", "X+C4"}, true, earned) >= 2
	}},
}

// mDecision is the model's answer for one rule over a set of events.
type mDecision struct {
	held     bool
	met      bool
	at       int64 // issuedOn, seconds after t0: when it last became met, outcomes in time order
	atLatest int64 // the same over the latest outcomes only (a re-sent outcome moves it)
}

// model decides every rule over the events: sorted by time (at equal times the negative comes
// last, so it wins), the state after each point in time is the latest outcome per run and type.
func model(evs []mOutcome) []mDecision {
	sorted := slices.Clone(evs)
	slices.SortStableFunc(sorted, func(a, b mOutcome) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		switch {
		case a.positive == b.positive:
			return 0
		case a.positive:
			return -1
		}
		return 1
	})
	out := make([]mDecision, len(mRules))
	state := mState{}
	wasMet := make([]bool, len(mRules))
	for i := 0; i < len(sorted); {
		at := sorted[i].at
		for ; i < len(sorted) && sorted[i].at == at; i++ {
			state[mKey{sorted[i].run, sorted[i].kind}] = sorted[i]
		}
		for r, rule := range mRules {
			met := rule.met(state)
			if met && !wasMet[r] {
				out[r].at = at
			}
			if met {
				out[r].held = true // ever met: what a rule that does not revoke keeps
			}
			wasMet[r] = met
		}
	}
	for r, rule := range mRules {
		out[r].met = wasMet[r]
		if rule.revoke {
			out[r].held = out[r].met
		}
		if !out[r].met {
			continue
		}
		// The latest outcomes only: the earliest time by which those of them known then meet it.
		times := []int64{}
		for _, o := range state {
			times = append(times, o.at)
		}
		slices.Sort(times)
		for _, at := range times {
			sub := mState{}
			for k, o := range state {
				if o.at <= at {
					sub[k] = o
				}
			}
			if rule.met(sub) {
				out[r].atLatest = at
				break
			}
		}
	}
	return out
}

// ---- the generator ---------------------------------------------------------------------------

type genEvent struct {
	ev edx.Event
	m  mOutcome
	ok bool // says something (a transient certificate status does not)
}

func genEvents(rng *rand.Rand, n int) []genEvent {
	used := map[string]bool{} // run|kind|time|polarity: one content per such slot (see the report)
	var out []genEvent
	for len(out) < n {
		run := propertyRuns[rng.Intn(len(propertyRuns))]
		key, err := edx.ParseCourseKey(run)
		if err != nil {
			panic(err)
		}
		at := int64(1 + rng.Intn(12))
		ev := edx.Event{UserID: 7, Username: "learner", Name: "A Learner", Email: "l@example.org",
			Course: key, Time: t0.Add(time.Duration(at) * time.Second)}
		g := genEvent{ok: true}
		switch rng.Intn(3) {
		case 0:
			ev.Kind = edx.KindCertificate
			ev.Mode = []string{"verified", "honor", "audit"}[rng.Intn(3)]
			ev.Grade = []string{"", "0.5", "0.8", "0.95", "1", "x", "1.5"}[rng.Intn(7)]
			switch rng.Intn(6) {
			case 0:
				ev.Type, ev.Status = edx.TypeCertificateCreated, "downloadable"
			case 1:
				ev.Type, ev.Status = edx.TypeCertificateChanged, "downloadable"
			case 2:
				ev.Type, ev.Status = edx.TypeCertificateChanged, "generating"
			case 3:
				ev.Type, ev.Status = edx.TypeCertificateRevoked, "unavailable"
			case 4:
				ev.Type, ev.Status = edx.TypeCertificateChanged, "notpassing"
			case 5:
				ev.Type, ev.Status = edx.TypeCertificateChanged, "requesting"
				g.ok = false
			}
			g.m = mOutcome{positive: ev.Status == "downloadable" || ev.Status == "generating"}
		case 1:
			ev.Kind, ev.Type, ev.IsPassing = edx.KindPassing, edx.TypePassingStatus, rng.Intn(2) == 0
			if key.Style == edx.StyleCCXV1 {
				ev.Type = edx.TypeCCXPassingStatus
			}
			g.m = mOutcome{positive: ev.IsPassing}
		case 2:
			ev.Kind, ev.IsActive = edx.KindEnrollment, rng.Intn(3) > 0
			ev.Type = []string{edx.TypeEnrollmentCreated, edx.TypeEnrollmentChanged}[rng.Intn(2)]
			ev.Mode = []string{"verified", "audit"}[rng.Intn(2)]
			g.m = mOutcome{positive: ev.IsActive}
		}
		g.m.run, g.m.kind, g.m.at, g.m.mode, g.m.grade = run, ev.Kind, at, ev.Mode, ev.Grade
		g.ev = ev
		if g.ok {
			slot := fmt.Sprintf("%s|%s|%d|%v", run, ev.Kind, at, g.m.positive)
			if used[slot] {
				continue
			}
			used[slot] = true
		}
		out = append(out, g)
	}
	return out
}

func describe(evs []genEvent) string {
	var b strings.Builder
	for _, g := range evs {
		fmt.Fprintf(&b, "  t=%-2d %-26s %-11s", g.m.at, g.m.run, g.ev.Kind)
		switch g.ev.Kind {
		case edx.KindCertificate:
			fmt.Fprintf(&b, " %s/%s mode=%s grade=%q", strings.TrimPrefix(g.ev.Type, "org.openedx.learning.certificate."), g.ev.Status, g.ev.Mode, g.ev.Grade)
		case edx.KindPassing:
			fmt.Fprintf(&b, " passing=%v", g.ev.IsPassing)
		case edx.KindEnrollment:
			fmt.Fprintf(&b, " active=%v mode=%s", g.ev.IsActive, g.ev.Mode)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ---- the property ----------------------------------------------------------------------------

func TestMilestoneProperty(t *testing.T) {
	m, err := Parse([]byte(propertyMapping))
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]*Rule{}
	for _, r := range m.Rules {
		rules[r.BadgeClass] = r
	}
	now := Micros(t0.Add(time.Hour))
	atLatestOnly, keptByDelivery := 0, 0
	for seed := int64(1); seed <= 250; seed++ {
		rng := rand.New(rand.NewSource(seed))
		for learner := 0; learner < 3; learner++ {
			evs := genEvents(rng, 4+rng.Intn(20))
			// Delivery: shuffled, with duplicates.
			delivery := slices.Clone(evs)
			for _, g := range evs {
				if rng.Intn(3) == 0 {
					delivery = append(delivery, g)
				}
			}
			rng.Shuffle(len(delivery), func(i, j int) { delivery[i], delivery[j] = delivery[j], delivery[i] })

			stored, rec := Stored{}, Record{}
			var seen []mOutcome
			for step, g := range delivery {
				c, err := m.Change(g.ev, false)
				if err != nil {
					t.Fatalf("Change: %v", err)
				}
				d := c.Decide(stored, rec, now)
				mergeFacts(stored, d.Facts)
				if g.ok {
					seen = append(seen, g.m)
				}
				want := model(seen)
				for r, mr := range mRules {
					f := stored[mr.class][milestoneField(rules[mr.class].Name)]
					held, _ := Desired(factsOf(stored[mr.class]), now)
					fail := func(format string, args ...any) {
						t.Fatalf("seed %d learner %d, after delivery %d of %d, rule %s: %s\nevents:\n%sdelivered:\n%sfact: %+v\nrecord: %s",
							seed, learner, step+1, len(delivery), rules[mr.class].Name, fmt.Sprintf(format, args...),
							describe(evs), describe(delivery[:step+1]), f, showRecord(rec))
					}
					switch {
					case mr.revoke && held != want[r].held:
						fail("held = %v, model %+v", held, want[r])
					case !mr.revoke && want[r].met && !held:
						fail("met but not held, model %+v", want[r])
					case !mr.revoke && held != want[r].held:
						// A rule that does not revoke keeps whatever it once decided; with the
						// record holding only the latest outcomes it decides over the order of
						// delivery, not of event time, so "ever met" can differ (see the report).
						keptByDelivery++
					}
					if !want[r].met || !held {
						continue
					}
					at := Micros(t0.Add(time.Duration(want[r].at) * time.Second))
					if f.First != at {
						atLatest := Micros(t0.Add(time.Duration(want[r].atLatest) * time.Second))
						if f.First != atLatest {
							fail("issuedOn t=%d, model t=%d (latest outcomes only: t=%d)", (f.First-Micros(t0))/1e6, want[r].at, want[r].atLatest)
						}
						atLatestOnly++
					}
				}
			}
		}
	}
	if keptByDelivery > 0 {
		t.Logf("a rule with revoke: false differed from \"ever met in event-time order\" after %d deliveries", keptByDelivery)
	}
	if atLatestOnly > 0 {
		t.Logf("issuedOn followed a re-sent outcome (latest outcomes only) %d times", atLatestOnly)
	}
}

func showRecord(rec Record) string {
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s: %s", k, show(rec[k]))
	}
	return b.String()
}
