package eventbus

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/edx"
)

// The two example events reach the handler with their values and are acknowledged; an event
// of a type the bridge does not handle is acknowledged and counted without reaching it.
func TestConsumesExampleEntries(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	h := newFakeHandler()
	c := start(t, bus, own, h, testConfig("web-1", certStream, badgesStream))
	eventually(t, "groups created", func() bool { return groupExists(bus, certStream) && groupExists(bus, badgesStream) })

	cert := certEntry(t, "3e068212-1c24-11ef-9a57-0242ac120005")
	produce(t, bus, certStream, cert)
	produce(t, bus, badgesStream, entry{eventType: badgeAwarded, id: "b-1", data: []byte("\x00any bytes\xff")})
	produce(t, bus, badgesStream, passingEntry(t, "3ab6d080-1c24-11ef-9a57-0242ac120005"))

	eventually(t, "both events recorded", func() bool { return h.recorded() == 2 })
	ev, _ := h.event("3e068212-1c24-11ef-9a57-0242ac120005")
	if ev.Type != edx.TypeCertificateCreated || ev.Kind != edx.KindCertificate || ev.UserID != 42 ||
		ev.Username != "alice" || ev.Email != exampleEmail || ev.Name != "Alice Liddell" ||
		ev.Course.String() != "course-v1:OpenedX+DemoX+Demo_Course" || ev.Mode != "honor" ||
		ev.Grade != "0.87" || ev.Status != "downloadable" || ev.Source != "openedx/lms/web" || ev.TimeMissing {
		t.Errorf("certificate event: %+v", ev)
	}
	ev, _ = h.event("3ab6d080-1c24-11ef-9a57-0242ac120005")
	if ev.Type != edx.TypePassingStatus || ev.Kind != edx.KindPassing || !ev.IsPassing || ev.UserID != 42 ||
		ev.Course.String() != "course-v1:OpenedX+DemoX+Demo_Course" {
		t.Errorf("passing event: %+v", ev)
	}
	if h.callsFor("b-1") != 0 {
		t.Error("the unsupported entry reached the handler")
	}
	if vias := h.viaValues(); !slices.Equal(vias, []string{Via}) {
		t.Errorf("via = %v, want only %q", vias, Via)
	}
	eventually(t, "all entries acknowledged", func() bool {
		return pendingCount(t, bus, certStream) == 0 && pendingCount(t, bus, badgesStream) == 0
	})
	eventually(t, "unsupported counted", func() bool {
		return c.outcomes(t, badgesStream, outcomeUnsupported) == 1 &&
			counterValue(t, c.metrics.byType.WithLabelValues(badgeAwarded)) == 1
	})
	if got := c.outcomes(t, certStream, outcomeProcessed) + c.outcomes(t, badgesStream, outcomeProcessed); got != 2 {
		t.Errorf("processed = %v, want 2", got)
	}
}

// Two consumers of one group share the entries: each entry goes to exactly one of them.
func TestTwoConsumersSplitTheWork(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	ha, hb := newFakeHandler(), newFakeHandler()
	ha.delay, hb.delay = time.Millisecond, time.Millisecond
	cfgA, cfgB := testConfig("web-a", certStream), testConfig("web-b", certStream)
	cfgA.Count, cfgB.Count = 5, 5
	start(t, bus, own, ha, cfgA)
	start(t, bus, own, hb, cfgB)
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	// Both consumers read once, so both are blocked waiting when the entries arrive.
	time.Sleep(3 * fastBlock)

	const n = 200
	entries := make([]entry, n)
	for i := range entries {
		entries[i] = certEntry(t, eventID(i))
	}
	produce(t, bus, certStream, entries...)
	eventually(t, "all entries recorded", func() bool { return ha.recorded()+hb.recorded() >= n })
	eventually(t, "all entries acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })

	a, b := ha.recordedIDs(), hb.recordedIDs()
	if len(a) == 0 || len(b) == 0 {
		t.Errorf("one consumer got nothing: %d and %d", len(a), len(b))
	}
	union := map[string]bool{}
	for _, id := range slices.Concat(a, b) {
		union[id] = true
	}
	if len(union) != n {
		t.Errorf("union of handled entries has %d ids, want %d", len(union), n)
	}
	for i := range n {
		if calls := ha.callsFor(eventID(i)) + hb.callsFor(eventID(i)); calls != 1 {
			t.Errorf("entry %d handled %d times, want 1", i, calls)
		}
	}
}

// A group keeps its position while the bridge is stopped; a new group starts at the newest or
// the oldest entry as configured.
func TestStartPositions(t *testing.T) {
	t.Run("restart resumes", func(t *testing.T) {
		bus, own, _, _ := redisPair(t)
		h := newFakeHandler()
		c := start(t, bus, own, h, testConfig("web-1", certStream))
		eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
		c.stop()

		produce(t, bus, certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))
		// Another replica name: the group's position, not the consumer, carries over.
		start(t, bus, own, h, testConfig("web-2", certStream))
		eventually(t, "entries written while stopped recorded", func() bool { return h.recorded() == 2 })
	})

	t.Run("new group", func(t *testing.T) {
		bus, own, _, _ := redisPair(t)
		produce(t, bus, certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))

		oldest := newFakeHandler()
		cfg := testConfig("web-1", certStream)
		cfg.Start, cfg.Group = StartOldest, "from-oldest"
		start(t, bus, own, oldest, cfg)
		eventually(t, "existing entries recorded", func() bool { return oldest.recorded() == 2 })

		newest := newFakeHandler()
		start(t, bus, own, newest, testConfig("web-1", certStream))
		eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
		produce(t, bus, certStream, certEntry(t, eventID(3)))
		eventually(t, "new entry recorded", func() bool { return newest.recorded() == 1 })
		if _, ok := newest.event(eventID(3)); !ok {
			t.Errorf("newest group recorded %v, want only the entry written after it started", newest.recordedIDs())
		}
	})

	t.Run("existing group is not moved", func(t *testing.T) {
		bus, own, _, _ := redisPair(t)
		produce(t, bus, certStream, certEntry(t, eventID(1)))
		if err := bus.XGroupCreate(context.Background(), certStream, testGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		h := newFakeHandler()
		start(t, bus, own, h, testConfig("web-1", certStream)) // Start newest: applies to new groups only
		eventually(t, "entry before start recorded", func() bool { return h.recorded() == 1 })
	})
}

// When the intake fails the entry is not acknowledged, later entries wait, and it is recorded
// once the intake works again.
func TestHandlerFailureIsRetried(t *testing.T) {
	bus, own, _, _ := redisPair(t)
	h := newFakeHandler()
	h.fail = 3
	c := start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })

	produce(t, bus, certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))
	eventually(t, "first failure", func() bool { return h.callsFor(eventID(1)) >= 1 })
	if n := pendingCount(t, bus, certStream); n == 0 {
		t.Error("failed entry was acknowledged")
	}
	eventually(t, "both recorded", func() bool { return h.recorded() == 2 })
	if got, want := h.recordedIDs(), []string{eventID(1), eventID(2)}; !slices.Equal(got, want) {
		t.Errorf("recorded in order %v, want %v", got, want)
	}
	if n := h.callsFor(eventID(1)); n != 4 {
		t.Errorf("first entry handed in %d times, want 4 (3 failures, then success)", n)
	}
	if n := h.callsFor(eventID(2)); n != 1 {
		t.Errorf("second entry handed in %d times, want 1", n)
	}
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	if got := c.outcomes(t, certStream, outcomeFailed); got != 3 {
		t.Errorf("failed = %v, want 3", got)
	}
	if n := countLines(c.log, "event intake failing; retrying with backoff, unacknowledged entries stay pending"); n != 1 {
		t.Errorf("%d intake failure warnings, want 1", n)
	}
	if n := countLines(c.log, "event intake working again"); n != 1 {
		t.Errorf("%d intake recovery lines, want 1", n)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Group: "g"},
		{Streams: []string{"a", "a"}, Group: "g"},
		{Streams: []string{" "}, Group: "g"},
		{Streams: []string{"a"}},
		{Streams: []string{"a"}, Group: "g", Start: "latest"},
	} {
		c := New(nil, nil, newFakeHandler(), cfg, nil, nil)
		if err := c.Run(context.Background()); err == nil {
			t.Errorf("Run with %+v: no error", cfg)
		}
	}
	c := New(nil, nil, newFakeHandler(), Config{Streams: []string{"a"}, Group: "g"}, nil, nil)
	if c.cfg.Start != StartNewest || c.cfg.Block != DefaultBlock || c.cfg.Count != DefaultCount ||
		c.cfg.ClaimIdle != DefaultClaimIdle || c.cfg.ClaimInterval != DefaultClaimInterval || c.cfg.DeadMaxLen != DefaultDeadMaxLen {
		t.Errorf("defaults not applied: %+v", c.cfg)
	}
	if c.cfg.Consumer == "" || c.cfg.Consumer != New(nil, nil, nil, Config{}, nil, nil).cfg.Consumer {
		t.Errorf("default consumer name must be stable per host: %q", c.cfg.Consumer)
	}
	if c.cfg.GoneAfter != DefaultGoneAfter {
		t.Errorf("GoneAfter = %v, want %v", c.cfg.GoneAfter, DefaultGoneAfter)
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 8: 25600 * time.Millisecond, 9: 30 * time.Second, 100: 30 * time.Second} {
		for range 20 {
			if d := wait(n); d < want/2 || d > want {
				t.Errorf("wait(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}
