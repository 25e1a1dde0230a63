// Package chaos proves the bridge's guarantee end to end: real bridge processes, a real Redis
// that restarts, a badge host that misbehaves, duplicated and reordered events; at the end the
// host must hold exactly what a simple model of the events says.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// The courses of the run. The course badge rule covers every Chaos course; the pathway needs a
// certificate in both C101 and C202, and a re-run (2026) counts as its course.
const (
	courseA      = "course-v1:Chaos+C101+2025"
	courseARerun = "course-v1:Chaos+C101+2026"
	courseB      = "course-v1:Chaos+C202+2025"
	courseBRerun = "course-v1:Chaos+C202+2026"
)

// pathwayCourses are the org+course the pathway rule requires, every one of them.
var pathwayCourses = []string{"Chaos+C101", "Chaos+C202"}

// event is one Open edX signal of the run, before it is sent (possibly several times).
type event struct {
	id     string
	typ    string
	status string
	course string
	uid    int64
	email  string
	at     time.Time
	viaBus bool
	sendAt time.Duration // offset from the start of the run
	copies int
}

// expect is what the model says of one badge class for one learner at the end: held or not, the
// issuedOn of the final state, and every issuedOn an assertion may carry — the bridge may award
// while it has heard only some of the events (they arrive out of order), and that assertion
// rightly stays while the badge stays held.
type expect struct {
	held    bool
	at      time.Time
	allowed map[int64]bool // µs
	story   string         // for messages
}

// learner is one learner's story and what the model says they hold at the end.
type learner struct {
	uid    int64
	email  string
	events []event
	course expect // the single-course badge (any Chaos course)
	path   expect // the pathway badge (C101 and C202)
}

// Story kinds of one course.
const (
	storyNone     = iota // no certificate
	storyAward           // awarded (sometimes twice at one time: created and changed)
	storyRevoked         // awarded, revoked an hour later
	storyReEarned        // awarded, revoked, earned again (sometimes in the course's re-run)
	storySameTime        // awarded and revoked with the award's own timestamp: the revocation wins
	storyKinds
)

var storyNames = [storyKinds]string{"none", "award", "revoked", "re-earned", "same-time"}

// scenario builds n learners whose stories span two courses — every combination of the stories
// above in course A and course B, B's events before, with or after A's — each event to be sent
// 2–3 times, spread over spread and split between the webhook and the event bus.
func scenario(n int, spread time.Duration, rng *rand.Rand) []learner {
	base := time.Date(2025, 3, 1, 9, 0, 0, 123456000, time.UTC)
	offsets := []time.Duration{-40 * time.Minute, 0, 30 * time.Minute, 150 * time.Minute}
	out := make([]learner, 0, n)
	for i := 0; i < n; i++ {
		l := learner{uid: int64(5000 + i), email: fmt.Sprintf("Chaos.Learner%d@Example.org", i)}
		add := func(kind, typ, status, course string, at time.Time) {
			l.events = append(l.events, event{
				id: fmt.Sprintf("%s-%d-%d", kind, l.uid, len(l.events)), typ: typ, status: status, course: course,
				uid: l.uid, email: l.email, at: at, viaBus: rng.IntN(2) == 0,
				sendAt: time.Duration(rng.Int64N(int64(spread))), copies: 2 + rng.IntN(2),
			})
		}
		story := func(kind int, run, rerun string, t0 time.Time) {
			switch kind {
			case storyAward:
				add("created", edx.TypeCertificateCreated, "downloadable", run, t0)
				if rng.IntN(2) == 0 {
					add("changed", edx.TypeCertificateChanged, "downloadable", run, t0)
				}
			case storyRevoked:
				add("created", edx.TypeCertificateCreated, "downloadable", run, t0)
				if rng.IntN(2) == 0 {
					add("changed", edx.TypeCertificateChanged, "unavailable", run, t0.Add(time.Hour))
				}
				add("revoked", edx.TypeCertificateRevoked, "unavailable", run, t0.Add(time.Hour))
			case storyReEarned:
				add("created", edx.TypeCertificateCreated, "downloadable", run, t0)
				add("revoked", edx.TypeCertificateRevoked, "notpassing", run, t0.Add(time.Hour))
				again := run
				if rng.IntN(3) == 0 {
					again = rerun
				}
				add("created", edx.TypeCertificateCreated, "downloadable", again, t0.Add(2*time.Hour))
			case storySameTime:
				add("created", edx.TypeCertificateCreated, "downloadable", run, t0)
				if rng.IntN(2) == 0 {
					add("revoked", edx.TypeCertificateRevoked, "unverified", run, t0)
				} else {
					add("changed", edx.TypeCertificateChanged, "unverified", run, t0)
				}
			}
		}
		a, b := i%storyKinds, (i/storyKinds)%storyKinds
		tA := base.Add(time.Duration(i) * time.Minute)
		off := offsets[rng.IntN(len(offsets))]
		story(a, courseA, courseARerun, tA)
		story(b, courseB, courseBRerun, tA.Add(off))
		l.course = expectOf(l.events, courseBadge)
		l.path = expectOf(l.events, pathway)
		l.course.story = fmt.Sprintf("A %s, B %s at %v from A", storyNames[a], storyNames[b], off)
		l.path.story = l.course.story
		out = append(out, l)
	}
	return out
}

// signal is what a certificate event says of its course run (contract 4.1): earned, not earned,
// or nothing (a transient status).
func signal(e event) (earned, says bool) {
	switch {
	case e.typ == edx.TypeCertificateRevoked:
		return false, true
	case e.status == "downloadable" || e.status == "generating":
		return true, true
	case e.typ == edx.TypeCertificateChanged && strings.Contains(
		" unavailable notpassing unverified invalidated deleted restricted audit_notpassing ", " "+e.status+" "):
		return false, true
	}
	return false, false
}

// fact is the latest outcome of one course run.
type fact struct {
	at     time.Time
	earned bool
}

// latest is section 5's rule for each course run: the newest event wins, and at equal times the
// revocation wins — whatever order the events came in.
func latest(evs []event) map[string]fact {
	out := map[string]fact{}
	for _, e := range evs {
		earned, says := signal(e)
		if !says {
			continue
		}
		f, seen := out[e.course]
		if !seen || e.at.After(f.at) || (e.at.Equal(f.at) && !earned) {
			out[e.course] = fact{at: e.at, earned: earned}
		}
	}
	return out
}

// courseBadge: one rule over every Chaos course, so the badge is held while some course run's
// latest outcome is earned; issuedOn is the earliest of those (section 5, award text).
func courseBadge(evs []event) (bool, time.Time) {
	var at time.Time
	held := false
	for _, f := range latest(evs) {
		if f.earned && (!held || f.at.Before(at)) {
			held, at = true, f.at
		}
	}
	return held, at
}

// orgCourse is what counts as a course (section 9.1): org+course, so re-runs count once.
func orgCourse(run string) string {
	parts := strings.Split(strings.TrimPrefix(run, "course-v1:"), "+")
	return parts[0] + "+" + parts[1]
}

// pathway is section 9.2 for `all_of` C101 and C202 earned by certificate: met when both
// courses count by their latest outcomes; issuedOn is the time of the outcome that made it met,
// the outcomes taken in event-time order.
func pathway(evs []event) (bool, time.Time) {
	type counted struct {
		course string
		at     time.Time
	}
	var outcomes []counted
	for run, f := range latest(evs) {
		if f.earned {
			outcomes = append(outcomes, counted{orgCourse(run), f.at})
		}
	}
	sort.Slice(outcomes, func(i, j int) bool { return outcomes[i].at.Before(outcomes[j].at) })
	have := map[string]bool{}
	for _, o := range outcomes {
		have[o.course] = true
		all := true
		for _, c := range pathwayCourses {
			all = all && have[c]
		}
		if all {
			return true, o.at
		}
	}
	return false, time.Time{}
}

// expectOf applies a badge's model to all the events, and to every subset of them (what the
// bridge may have heard at some moment) for the issuedOn an assertion may carry.
func expectOf(evs []event, model func([]event) (bool, time.Time)) expect {
	x := expect{allowed: map[int64]bool{}}
	x.held, x.at = model(evs)
	if len(evs) > 12 {
		panic("too many events for the subset model")
	}
	for mask := 1; mask < 1<<len(evs); mask++ {
		var sub []event
		for i, e := range evs {
			if mask&(1<<i) != 0 {
				sub = append(sub, e)
			}
		}
		if held, at := model(sub); held {
			x.allowed[at.UnixMicro()] = true
		}
	}
	return x
}
