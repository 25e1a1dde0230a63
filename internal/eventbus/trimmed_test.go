package eventbus

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Entries the producer trimmed before the group read them are counted once: at the pass that
// sees them, not again at later passes or after a restart, and a later loss adds only itself.
func TestTrimmedBeforeRead(t *testing.T) {
	for _, tc := range []struct {
		name        string
		bridgeGroup bool // the bridge created the group (read counter set), or an operator did (XGROUP CREATE … 0)
	}{{"group created by the bridge", true}, {"group created elsewhere", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			bus, own, _, _ := redisPair(t)
			cfg := testConfig("web-1", certStream)
			if tc.bridgeGroup {
				c := start(t, bus, own, newFakeHandler(), cfg)
				eventually(t, "group created", func() bool { return groupExists(bus, certStream) })
				c.stop()
			} else if err := bus.XGroupCreateMkStream(ctx, certStream, testGroup, "0").Err(); err != nil {
				t.Fatal(err)
			}

			entries := make([]entry, 80)
			for i := range entries {
				entries[i] = certEntry(t, eventID(i))
			}
			produce(t, bus, certStream, entries[:50]...)
			trim(t, bus, 10)
			h := newFakeHandler()
			c := start(t, bus, own, h, cfg)
			eventually(t, "remaining entries recorded", func() bool { return h.recorded() == 10 })
			time.Sleep(3 * fastClaimTick) // later passes must not count again
			if got := c.outcomes(t, certStream, outcomeTrimmed); got != 40 {
				t.Errorf("trimmed = %v, want 40", got)
			}
			if got := counterValue(t, c.metrics.trimmedTotal.WithLabelValues(certStream)); got != 40 {
				t.Errorf("bridge_eventbus_trimmed_total = %v, want 40", got)
			}
			msg := "entries were trimmed from the stream before the consumer group read them; they are lost to the bridge: run bridge backfill"
			if n := countLines(c.log, msg); n != 1 {
				t.Errorf("%d trimmed warnings, want 1", n)
			}
			c.stop()

			produce(t, bus, certStream, entries[50:]...)
			trim(t, bus, 5)
			c = start(t, bus, own, h, cfg)
			eventually(t, "entries after the second loss recorded", func() bool { return h.recorded() == 15 })
			time.Sleep(3 * fastClaimTick)
			if got := c.outcomes(t, certStream, outcomeTrimmed); got != 25 {
				t.Errorf("trimmed after restart = %v, want 25", got)
			}
			if n := countLines(c.log, msg); n != 1 {
				t.Errorf("%d trimmed warnings after restart, want 1", n)
			}
		})
	}
}

// Pending entries trimmed from the stream are counted and leave the pending list: read back
// by the same consumer name (no fields), or claimed by another (Redis 7 lists them apart).
func TestTrimmedWhilePending(t *testing.T) {
	for _, tc := range []struct {
		name      string
		consumer  string
		claimIdle time.Duration
	}{{"same name", "web-1", time.Minute}, {"claimed", "web-2", 200 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			bus, own, _, _ := redisPair(t)
			leavePending(t, bus, own, "web-1", certStream, certEntry(t, eventID(1)), certEntry(t, eventID(2)), certEntry(t, eventID(3)))
			trim(t, bus, 0)

			h := newFakeHandler()
			cfg := testConfig(tc.consumer, certStream)
			cfg.ClaimIdle = tc.claimIdle
			c := start(t, bus, own, h, cfg)
			eventually(t, "trimmed pending entries counted", func() bool { return c.outcomes(t, certStream, outcomeTrimmed) == 3 })
			eventually(t, "pending list empty", func() bool { return pendingCount(t, bus, certStream) == 0 })
			time.Sleep(3 * fastClaimTick)
			if got := c.outcomes(t, certStream, outcomeTrimmed); got != 3 {
				t.Errorf("trimmed = %v, want 3 (counted once)", got)
			}
			if h.recorded() != 0 {
				t.Error("a trimmed entry reached the handler")
			}
		})
	}
}

// trim runs an exact XTRIM MAXLEN on the certificate stream.
func trim(t *testing.T, bus redis.UniversalClient, maxLen int64) {
	t.Helper()
	if err := bus.XTrimMaxLen(context.Background(), certStream, maxLen).Err(); err != nil {
		t.Fatal(err)
	}
}
