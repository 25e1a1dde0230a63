// Package chaos proves the bridge's guarantee end to end: real bridge processes, a real Redis
// that restarts, a badge host that misbehaves, duplicated and reordered events; at the end the
// host must hold exactly what a simple model of the events says.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// event is one Open edX signal of the run, before it is sent (possibly several times).
type event struct {
	id     string
	typ    string
	status string
	uid    int64
	email  string
	at     time.Time
	viaBus bool
	sendAt time.Duration // offset from the start of the run
	copies int
}

// learner is one learner's story and what the model says they hold at the end.
type learner struct {
	uid    int64
	email  string
	events []event
	held   bool
}

// scenario builds n learners with stories of award, revocation, re-award and same-time
// revocation, each event to be sent 2–3 times, spread over spread and split between the
// webhook and the event bus.
func scenario(n int, spread time.Duration, rng *rand.Rand) []learner {
	base := time.Date(2025, 3, 1, 9, 0, 0, 123456000, time.UTC)
	out := make([]learner, 0, n)
	for i := 0; i < n; i++ {
		l := learner{uid: int64(5000 + i), email: fmt.Sprintf("Chaos.Learner%d@Example.org", i)}
		t0 := base.Add(time.Duration(i) * time.Minute)
		add := func(kind, typ, status string, at time.Time) {
			l.events = append(l.events, event{
				id: fmt.Sprintf("%s-%d-%d", kind, l.uid, len(l.events)), typ: typ, status: status,
				uid: l.uid, email: l.email, at: at, viaBus: rng.IntN(2) == 0,
				sendAt: time.Duration(rng.Int64N(int64(spread))), copies: 2 + rng.IntN(2),
			})
		}
		add("created", edx.TypeCertificateCreated, "downloadable", t0)
		add("changed", edx.TypeCertificateChanged, "downloadable", t0)
		switch i % 4 {
		case 0: // awarded only
		case 1: // revoked later
			add("changed", edx.TypeCertificateChanged, "unavailable", t0.Add(time.Hour))
			add("revoked", edx.TypeCertificateRevoked, "unavailable", t0.Add(time.Hour))
		case 2: // revoked, then earned again
			add("revoked", edx.TypeCertificateRevoked, "notpassing", t0.Add(time.Hour))
			add("created", edx.TypeCertificateCreated, "downloadable", t0.Add(2*time.Hour))
		case 3: // revoked with the award's own timestamp: the revocation wins
			add("revoked", edx.TypeCertificateRevoked, "unverified", t0)
		}
		l.held = model(l.events)
		out = append(out, l)
	}
	return out
}

// model is the contract's rule for one (course run, rule): the latest event wins, a revocation
// wins a tie.
func model(evs []event) bool {
	var best *event
	for i := range evs {
		e := &evs[i]
		rev := e.typ == edx.TypeCertificateRevoked || e.status != "downloadable"
		if best == nil || e.at.After(best.at) || (e.at.Equal(best.at) && rev) {
			best = e
		}
	}
	return best != nil && best.typ != edx.TypeCertificateRevoked && best.status == "downloadable"
}
