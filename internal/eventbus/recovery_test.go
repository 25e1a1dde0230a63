package eventbus

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// leavePending makes consumer name read entries (at most Count) and stop before acknowledging
// them, as a replica killed between read and acknowledgement would. The group must not exist.
func leavePending(t *testing.T, bus, own redis.UniversalClient, name, stream string, entries ...entry) {
	t.Helper()
	stuck := newFakeHandler()
	stuck.block = true
	stuck.called = make(chan string, len(entries))
	// Written before the group exists and read from the oldest, so one read takes them all.
	produce(t, bus, stream, entries...)
	cfg := testConfig(name, stream)
	cfg.Start = StartOldest
	c := start(t, bus, own, stuck, cfg)
	select {
	case <-stuck.called:
	case <-time.After(waitTimeout):
		t.Fatal("the handler was not called")
	}
	c.stop()
	if stuck.recorded() != 0 {
		t.Fatal("blocked handler recorded an event")
	}
	eventually(t, "entries pending with "+name, func() bool {
		p, err := bus.XPendingExt(context.Background(), &redis.XPendingExtArgs{
			Stream: stream, Group: testGroup, Start: "-", End: "+", Count: 100, Consumer: name,
		}).Result()
		return err == nil && len(p) == len(entries)
	})
}

// A consumer that stops between read and acknowledgement loses nothing: the same consumer
// name finishes its pending entries at restart, another consumer claims them when idle.
func TestCrashBetweenReadAndAck(t *testing.T) {
	t.Run("same name resumes", func(t *testing.T) {
		bus, own, _, _ := redisPair(t)
		leavePending(t, bus, own, "web-1", certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))

		h := newFakeHandler()
		start(t, bus, own, h, testConfig("web-1", certStream)) // ClaimIdle 1 min: no claim involved
		eventually(t, "pending entries recorded", func() bool { return h.recorded() == 2 })
		eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
		for i := 1; i <= 2; i++ {
			if n := h.callsFor(eventID(i)); n != 1 {
				t.Errorf("entry %d handed in %d times, want 1", i, n)
			}
		}
	})

	t.Run("other consumer claims", func(t *testing.T) {
		bus, own, _, _ := redisPair(t)
		leavePending(t, bus, own, "web-1", certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)))

		h := newFakeHandler()
		cfg := testConfig("web-2", certStream)
		cfg.ClaimIdle = 200 * time.Millisecond
		start(t, bus, own, h, cfg)
		eventually(t, "claimed entries recorded", func() bool { return h.recorded() == 2 })
		eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
		for i := 1; i <= 2; i++ {
			if n := h.callsFor(eventID(i)); n != 1 {
				t.Errorf("entry %d handed in %d times, want 1", i, n)
			}
		}
	})
}

// The consumer outlives a restart of the bus Redis that loses the stream and the group: it
// retries, recreates the group and processes entries written afterwards. One warning for the
// outage, one line when it is over.
func TestBusRedisRestart(t *testing.T) {
	bus, own, busServer, _ := redisPair(t)
	h := newFakeHandler()
	c := start(t, bus, own, h, testConfig("web-1", certStream))
	eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
	produce(t, bus, certStream, certEntry(t, eventID(1)))
	eventually(t, "first entry recorded", func() bool { return h.recorded() == 1 })

	busServer.Stop()
	// Until the consumer reports the outage: go-redis first retries the command in flight
	// itself, which on a loaded machine can take longer than any fixed pause.
	eventually(t, "outage reported", func() bool {
		return countLines(c.log, "event bus Redis failing; retrying with backoff, unacknowledged entries stay pending") > 0
	})
	if c.exited() {
		t.Fatal("Run returned while the bus Redis was down")
	}
	busServer.Restart(t) // started without persistence: stream and group are gone
	eventually(t, "group recreated", func() bool { return groupExists(bus, certStream) })
	produce(t, bus, certStream, certEntry(t, eventID(2)))
	eventually(t, "entry written after the restart recorded", func() bool { return h.recorded() == 2 })
	eventually(t, "acknowledged", func() bool { return pendingCount(t, bus, certStream) == 0 })
	if c.exited() {
		t.Fatal("Run returned")
	}
	if n := countLines(c.log, "event bus Redis failing; retrying with backoff, unacknowledged entries stay pending"); n != 1 {
		t.Errorf("%d outage warnings, want 1", n)
	}
	if n := countLines(c.log, "event bus Redis working again"); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
	if n := countLines(c.log, "consumer group was missing and has been recreated; entries written before it was recreated may not be processed (run bridge backfill if in doubt)"); n != 1 {
		t.Errorf("%d group recreation warnings, want 1", n)
	}
}
